"""The pretraining loop: the shared-prefix loss equals the plain batch loss, gradients included."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from r1zero.demo.pretrain import common_prefix_len, lr_factor, pretrain, shared_prefix_loss

PAD = 0


def _tiny_model(seed: int = 0) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                         tie_word_embeddings=True, pad_token_id=PAD)
    return Qwen2ForCausalLM(config)


def _plain_loss(model, rows):
    width = max(map(len, rows))
    batch = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
    return model(input_ids=batch, attention_mask=(batch != PAD).long(),
                 labels=batch.masked_fill(batch == PAD, -100)).loss


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shared_prefix_loss_matches_plain_forward(seed):
    gen = torch.Generator().manual_seed(seed)
    prefix = torch.randint(1, 50, (7,), generator=gen).tolist()
    rows = [prefix + torch.randint(1, 50, (int(n),), generator=gen).tolist()
            for n in torch.randint(1, 12, (5,), generator=gen)]
    model = _tiny_model(seed)
    plain = _plain_loss(model, rows)
    plain.backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    shared = shared_prefix_loss(model, torch.tensor(prefix), [r[7:] for r in rows], PAD)
    shared.backward()
    assert torch.allclose(plain, shared, atol=1e-5)
    for w, p in zip(want, model.parameters()):
        assert torch.allclose(w, p.grad, atol=1e-5)


def test_common_prefix_len():
    assert common_prefix_len([[1, 2, 3, 4], [1, 2, 3, 9, 9], [1, 2, 5]]) == 2
    assert common_prefix_len([[1, 2, 3], [1, 2, 3]]) == 2       # a token is left to predict
    assert common_prefix_len([[4, 2], [1, 2]]) == 0


def test_lr_factor():
    # warmup 10: step 0 -> 0.1, step 9 -> 1.0; cosine to 0.1 at the end, 0.55 half way
    assert lr_factor(0, 10, 110) == pytest.approx(0.1)
    assert lr_factor(9, 10, 110) == pytest.approx(1.0)
    assert lr_factor(10, 10, 110) == pytest.approx(1.0)
    assert lr_factor(60, 10, 110) == pytest.approx(0.55)
    assert lr_factor(110, 10, 110) == pytest.approx(0.1)


def test_pretrain_lowers_the_loss_on_a_repeated_pattern():
    docs = [[1, 2, 3] + [5 + (i % 4), 10 + (i % 4), 20 + (i % 4)] for i in range(40)]
    model = _tiny_model()
    before = _plain_loss(model, docs).item()
    losses = pretrain(model, docs, steps=60, batch_size=8, lr=1e-2, warmup=5, weight_decay=0.0,
                      seed=0, pad_id=PAD)
    assert len(losses) == 1 and _plain_loss(model, docs).item() < before - 1.0
