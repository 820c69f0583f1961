"""engine.SeqBatch's distinct-prompt view and the shared-prompt forward of response_logits."""

from __future__ import annotations

import pytest
import torch

from r1zero.engines.torch_engine import SeqBatch, response_logits

PAD = 0


@pytest.fixture(scope="module")
def model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=True, pad_token_id=PAD)
    return Qwen2ForCausalLM(cfg).train()


def _groups():
    """Three prompts of lengths 5, 3, 7 with 3, 2, 3 responses of lengths 1..6, rows interleaved."""
    p = [[5, 6, 7, 8, 9], [10, 11, 12], [13, 14, 15, 16, 17, 18, 19]]
    rows = [(p[0], [20, 21]), (p[1], [22]), (p[0], [23, 24, 25, 26, 27, 28]), (p[2], [29, 30, 31]),
            (p[1], [32, 33, 34, 35]), (p[0], [36]), (p[2], [37, 38]), (p[2], [39, 40, 41, 42, 43])]
    return [r[0] for r in rows], [r[1] for r in rows]


def test_seqbatch_keeps_each_distinct_prompt_once():
    prompts, responses = _groups()
    b = SeqBatch(prompts, responses, PAD, torch.device("cpu"))
    assert b.shared
    assert b.row_prompt.tolist() == [0, 1, 0, 2, 1, 0, 2, 2]
    # width 7: prompt 0 (len 5) gets 2 pads on the left, prompt 1 (len 3) gets 4
    assert b.prompt_ids.tolist()[:2] == [[PAD, PAD, 5, 6, 7, 8, 9], [PAD] * 4 + [10, 11, 12]]
    assert b.prompt_mask.tolist()[1] == [0, 0, 0, 0, 1, 1, 1]
    assert b.prompt_positions.tolist()[1][-3:] == [0, 1, 2]
    distinct = SeqBatch([[1, 2], [3]], [[4], [5]], PAD, torch.device("cpu"))
    assert not distinct.shared


def _logp(model, batch, shared: bool) -> torch.Tensor:
    batch.shared = shared
    logits = response_logits(model, batch).float()
    return torch.log_softmax(logits, -1).gather(-1, batch.response_ids.unsqueeze(-1)).squeeze(-1)


def test_shared_prompt_forward_equals_full_forward_and_its_gradients(model):
    prompts, responses = _groups()
    batch = SeqBatch(prompts, responses, PAD, torch.device("cpu"))
    mask = batch.response_mask
    grads = {}
    for shared in (False, True):
        model.zero_grad(set_to_none=True)
        logp = _logp(model, batch, shared)
        assert logp.shape == (8, 6) and torch.isfinite(logp).all()
        (logp * mask).sum().backward()
        grads[shared] = (logp.detach() * mask, [p.grad.clone() for p in model.parameters()])
    (full, g_full), (shared, g_shared) = grads[False], grads[True]
    assert torch.allclose(full, shared, atol=1e-5), (full - shared).abs().max()
    for a, b in zip(g_full, g_shared):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), (a - b).abs().max()
