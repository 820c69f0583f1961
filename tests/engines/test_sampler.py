"""The lean sampler against transformers: greedy token for token, log-probs against a full
forward, the sampling rule against transformers' own top-k/top-p warpers, stops and seeds."""

import math

import pytest
import torch
from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from r1zero.engines.sampler import Sampler, sample_next

VOCAB, PAD = 256, 0
SIZES = dict(vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
             tie_word_embeddings=True)


def _tiny(cls, cfg_cls, seed=0, **extra):
    torch.manual_seed(seed)
    model = cls(cfg_cls(**SIZES, **extra)).eval()
    # a wider init than the default 0.02 gives peaked, varied next-token distributions, so
    # greedy paths do not collapse into repeating one token and argmax ties do not occur
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.15)
    return model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tiny matmuls gain nothing from a second thread, and on a shared 2-core machine a busy
    # peer makes torch's thread hand-offs stall; restored afterwards
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def qwen2():
    return _tiny(Qwen2ForCausalLM, Qwen2Config)


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(7)
    return [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in (5, 17, 1, 11, 30)]


def _hf_greedy(model, prompts, max_new, stop=None):
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), PAD)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):], mask[i, width - len(p):] = torch.tensor(p), 1
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, top_k=None,
                         top_p=None, max_new_tokens=max_new, pad_token_id=PAD,
                         eos_token_id=stop, min_new_tokens=0)
    rows = []
    for row in out[:, width:].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if stop and t in stop), len(row))
        rows.append(row[:cut])
    return rows


@pytest.mark.parametrize("how", [dict(top_k=1), dict(temperature=0.0)])
def test_greedy_equals_hf_generate_mixed_lengths(qwen2, prompts, how):
    out = Sampler(qwen2, [], PAD).generate(prompts, 3, 24, **how)
    want = _hf_greedy(qwen2, prompts, 24)
    assert out.prompt_index == [i for i in range(5) for _ in range(3)]
    assert out.response_ids == [want[i] for i in out.prompt_index]
    assert out.finished == [False] * 15
    assert len(set(map(tuple, want))) == 5  # the prompts really lead to different outputs


def test_greedy_with_stop_tokens_equals_hf(qwen2, prompts):
    # stop ids taken from the free-running greedy outputs, so rows end at different steps and
    # the batch is compacted while others run on
    free = _hf_greedy(qwen2, prompts, 24)
    stop = [free[0][3], free[3][9]]
    want = _hf_greedy(qwen2, prompts, 24, stop=stop)
    assert sorted(map(len, want))[0] < 24 and max(map(len, want)) == 24
    out = Sampler(qwen2, stop, PAD).generate(prompts, 1, 24, top_k=1)
    assert out.response_ids == want
    assert out.finished == [r[-1] in stop for r in want]


def test_a_stop_word_of_several_tokens_ends_the_sample_after_its_last_token(qwen2, prompts):
    # the 2-token sequence at positions 4-5 of row 0's free greedy run: row 0 stops there, with
    # the word kept; a row whose run never holds the pair is not cut by its first token alone
    free = _hf_greedy(qwen2, prompts, 24)
    word = (free[0][4], free[0][5])
    out = Sampler(qwen2, [word], PAD).generate(prompts, 1, 24, top_k=1)
    for row, got, done in zip(free, out.response_ids, out.finished):
        ends = [t + 2 for t in range(len(row) - 1) if tuple(row[t:t + 2]) == word]
        want = row[:ends[0]] if ends else row
        assert (got, done) == (want, bool(ends))
    assert out.response_ids[0] == free[0][:6] and out.finished[0]


@pytest.mark.parametrize("cls,cfg_cls,extra", [
    (LlamaForCausalLM, LlamaConfig, {}),
    (LlamaForCausalLM, LlamaConfig, {"attention_bias": True}),
    (Qwen3ForCausalLM, Qwen3Config, {"head_dim": 48}),
])
def test_fast_path_other_llama_family_models(prompts, cls, cfg_cls, extra):
    model = _tiny(cls, cfg_cls, seed=1, **extra)
    sampler = Sampler(model, [], PAD)
    assert sampler.path == "fast"
    out = sampler.generate(prompts, 1, 16, top_k=1)
    assert out.response_ids == _hf_greedy(model, prompts, 16)


def _full_forward_logprobs(model, prompt, response, temperature):
    ids = torch.tensor([prompt + response])
    logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].float() / temperature
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(response)[:, None]).squeeze(1)


@pytest.mark.parametrize("path", ["fast", "hf"])
@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, -1, 1.0), (0.7, 20, 0.9)])
def test_step_logprobs_equal_a_full_forward(qwen2, prompts, path, temperature, top_k, top_p):
    # 6 of 256 ids stop a row: rows end at different steps, groups get partly finished and
    # the batch is compacted; the cache and positions must still give the model's own
    # next-token distribution at every step of every row
    stop = list(range(200, 206))
    gen = torch.Generator().manual_seed(3)
    out = Sampler(qwen2, stop, PAD, path=path).generate(
        prompts, 4, 40, temperature=temperature, top_k=top_k, top_p=top_p, generator=gen)
    assert 0 < sum(out.finished) < len(out.finished)
    with torch.no_grad():
        for i, (resp, lps) in enumerate(zip(out.response_ids, out.logprobs)):
            want = _full_forward_logprobs(qwen2, prompts[out.prompt_index[i]], resp, temperature)
            assert torch.allclose(torch.tensor(lps), want, atol=1e-4), i
            assert len(resp) == len(lps) and 0 < len(resp) <= 40
            if out.finished[i]:
                assert resp[-1] in stop and not set(resp[:-1]) & set(stop)
            else:
                assert len(resp) == 40 and not set(resp) & set(stop)


def test_fast_and_hf_paths_draw_the_same_samples(qwen2, prompts):
    runs = []
    for path in ("fast", "hf"):
        gen = torch.Generator().manual_seed(11)
        runs.append(Sampler(qwen2, [5, 6, 7], PAD, path=path).generate(
            prompts, 4, 20, generator=gen))
    assert runs[0].response_ids == runs[1].response_ids
    assert runs[0].finished == runs[1].finished


def test_seeded_and_reproducible(qwen2, prompts):
    sampler = Sampler(qwen2, [], PAD)

    def draw(seed):
        return sampler.generate(prompts, 4, 12, generator=torch.Generator().manual_seed(seed))

    a, b, c = draw(1), draw(1), draw(2)
    assert a.response_ids == b.response_ids and a.logprobs == b.logprobs
    assert a.response_ids != c.response_ids
    # samples of one prompt differ from each other (they are independent draws)
    assert len({tuple(r) for r in a.response_ids[:4]}) > 1


def test_reads_the_models_weights_in_place(prompts):
    model = _tiny(Qwen2ForCausalLM, Qwen2Config, seed=2)
    sampler = Sampler(model, [], PAD)
    before = sampler.generate(prompts, 1, 10, top_k=1).response_ids
    with torch.no_grad():  # what an optimizer step does
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.train()  # the actor between updates: sampling must not change its mode
    after = sampler.generate(prompts, 1, 10, top_k=1).response_ids
    assert model.training
    assert after != before and after == _hf_greedy(model.eval(), prompts, 10)


def test_other_architectures_use_the_model_forward(prompts):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4,
                                       n_positions=128, bos_token_id=1, eos_token_id=2)).eval()
    sampler = Sampler(model, [], PAD)
    assert sampler.path == "hf" and "gpt2" in sampler.path_reason
    assert sampler.generate(prompts, 1, 8, top_k=1).response_ids == _hf_greedy(model, prompts, 8)
    with pytest.raises(ValueError, match="fast path unsupported.*'gpt2'"):
        Sampler(model, [], PAD, path="fast")


def _hf_warped_probs(logits, temperature, top_k, top_p):
    z = logits[None] / temperature
    if top_k > 0:
        z = TopKLogitsWarper(top_k)(None, z)
    if top_p < 1:
        z = TopPLogitsWarper(top_p)(None, z)
    return torch.softmax(z, -1)[0]


@pytest.mark.parametrize("temperature,top_k,top_p,by_hand", [
    (1.0, -1, 1.0, [.5, .3, .15, .05, 0]),
    # p ∝ sqrt(p): .7071, .5477, .3873, .2236 (sum 1.8657)
    (2.0, -1, 1.0, [.3790, .2936, .2076, .1198, 0]),
    # top 3 of .5, .3, .15 renormalised by .95
    (1.0, 3, 1.0, [.5263, .3158, .1579, 0, 0]),
    # mass before each token .0, .5, .8, .95: tokens with mass before < .7 are kept -> .5/.8, .3/.8
    (1.0, -1, 0.7, [.625, .375, 0, 0, 0]),
    # top 3 renormalised .5263, .3158, .1579; mass before .0, .5263, .8421 -> keep 2 of them
    (1.0, 3, 0.8, [.625, .375, 0, 0, 0]),
])
def test_sampling_rule_matches_hand_numbers_and_transformers(temperature, top_k, top_p, by_hand):
    logits = torch.tensor([.5, .3, .15, .05, 0.]).log()  # the last token can never be drawn
    want = _hf_warped_probs(logits, temperature, top_k, top_p)
    assert torch.allclose(want, torch.tensor(by_hand), atol=1e-4)
    n = 40_000
    tok, lp = sample_next(logits.expand(n, 5), temperature, top_k, top_p,
                          generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(tok, minlength=5).float() / n
    sigma = (want * (1 - want) / n).sqrt()
    assert (freq - want).abs().le(4 * sigma + 1e-9).all(), (freq, want)
    # the returned log-prob is the unfiltered log softmax(logits / temperature)
    assert torch.allclose(lp, torch.log_softmax(logits / temperature, -1)[tok], atol=1e-6)


def test_min_p_keeps_tokens_within_a_share_of_the_top_one():
    # p = .5, .3, .15, .05, 0; min_p .4 -> threshold .2: keep .5 and .3 -> .625, .375 ;
    # the same as transformers' MinPLogitsWarper
    from transformers.generation.logits_process import MinPLogitsWarper

    logits = torch.tensor([.5, .3, .15, .05, 0.]).log()
    hf = torch.softmax(MinPLogitsWarper(0.4)(None, logits[None].clone()), -1)[0]
    assert torch.allclose(hf, torch.tensor([.625, .375, 0, 0, 0]), atol=1e-6)
    n = 20_000
    tok, _ = sample_next(logits.expand(n, 5), min_p=0.4, generator=torch.Generator().manual_seed(2))
    freq = torch.bincount(tok, minlength=5).float() / n
    assert freq[2:].sum() == 0 and abs(freq[0] - .625) < 4 * (.625 * .375 / n) ** .5


def test_tokens_cut_by_top_p_are_never_drawn():
    # p = .727, .268, .002, .002: mass before token 1 is .727 >= .5, so only token 0 is kept;
    # the zeroed tail must never be hit, whatever the uniform draw
    logits = torch.tensor([[2.0, 1.0, -5.0, -5.0]]).expand(5000, 4)
    tok, _ = sample_next(logits, top_p=0.5, generator=torch.Generator().manual_seed(1))
    assert tok.eq(0).all()


def test_arguments_and_edge_cases(qwen2):
    sampler = Sampler(qwen2, [3], PAD)
    out = sampler.generate([[1, 2]], 2, 0)
    assert out.response_ids == [[], []] and out.finished == [False, False]
    with pytest.raises(ValueError, match=r"empty: \[1\]"):
        sampler.generate([[1], []], 2, 4)
    with pytest.raises(ValueError, match="top_p=0"):
        sampler.generate([[1]], 1, 4, top_p=0)
    with pytest.raises(ValueError, match="path must be"):
        Sampler(qwen2, [], PAD, path="vllm")
    one = sampler.generate([[9]], 1, 1, generator=torch.Generator().manual_seed(0))
    assert len(one.response_ids[0]) == 1 and math.isfinite(one.logprobs[0][0])
