"""Engine config keys act with a visible effect or are refused by name: recompute, dynamic
micro-batches, engine choice; and `r1zero export` of a checkpoint's master weights."""

from __future__ import annotations

import pytest
import torch

from r1zero.config.load import load_config
from r1zero.config.layout import resolve_engine
from r1zero.host.errors import ConfigError
from r1zero.trainer.batching import check_dynamic_bsz, split_to, token_budget_chunks
from r1zero.trainer.grpo import GRPOTrainer
from tests.trainer.conftest import recipe


def _trainer(setup, run_dir, **sections) -> GRPOTrainer:
    sections.setdefault("algorithm", {"kl_coef": 0.0})
    return GRPOTrainer.from_config(load_config(None, base=recipe(setup, run_dir, **sections)))


def _seqs(trainer):
    p, q = trainer.prompts[0].input_ids, trainer.prompts[1].input_ids
    return [(p, [5, 6, 7, 8]), (p, [9, 10]), (q, [11, 12, 13]), (q, [14])], \
        torch.tensor([1.0, -1.0, 1.0, -1.0])


def _mlp_calls_per_update(trainer) -> tuple[int, int]:
    """Calls of layer 0's MLP during one update: (in forwards, inside backward)."""
    eng, phase, calls = trainer.engine, ["forward"], {"forward": 0, "backward": 0}
    backward = eng.backward

    def counted_backward(loss):
        phase[0] = "backward"
        backward(loss)
        phase[0] = "forward"

    mlp = eng.model.model.layers[0].mlp
    forward = mlp.forward

    def counted_forward(*args, **kwargs):     # module hooks do not fire in a recompute
        calls[phase[0]] += 1
        return forward(*args, **kwargs)

    eng.backward, mlp.forward = counted_backward, counted_forward
    try:
        trainer.update(*_seqs(trainer))
    finally:
        del eng.backward, mlp.forward
    return calls["forward"], calls["backward"]


def test_recompute_full_runs_each_layer_again_in_backward(tiny_setup, tmp_path):
    plain = _trainer(tiny_setup, tmp_path / "a", actor={"micro_batch_size": 2})
    full = _trainer(tiny_setup, tmp_path / "b", actor={"micro_batch_size": 2, "recompute": "full"})
    try:
        # 2 micro-batches of one prompt each: prompt + responses forwards (KV shared) = 4;
        # under recompute every row runs whole (2 forwards), each repeated in backward
        assert _mlp_calls_per_update(plain) == (4, 0)
        assert _mlp_calls_per_update(full) == (2, 2)
        assert not full.engine.share_prompts        # the KV-shared prompt form needs a cache
    finally:
        plain.close()
        full.close()


def test_recompute_selective_is_refused_naming_engine(tiny_setup, tmp_path):
    with pytest.raises(ConfigError, match=r"actor.recompute: recompute 'selective' is not "
                                          r"implemented by the torch engine"):
        _trainer(tiny_setup, tmp_path, actor={"recompute": "selective"})


def test_token_budget_chunks_by_hand():
    lengths = [(3, 1), (3, 2), (3, 2), (5, 4)]
    # [0,1]: 2*(3+2)=10 fits; +2 -> 3*5=15 > 10; [2,3] -> 2*(5+4)=18 > 10
    assert token_budget_chunks([0, 1, 2, 3], lengths, 10) == [[0, 1], [2], [3]]
    assert token_budget_chunks([0, 1, 2, 3], lengths, 100) == [[0, 1, 2, 3]]
    assert token_budget_chunks([3], lengths, 4) == [[3]]       # longer than the budget: alone
    assert split_to([[0, 1, 2, 3], [4]], 3) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError):
        split_to([[0], [1]], 3)


def test_dynamic_bsz_cuts_micro_batches_by_the_token_budget(tiny_setup, tmp_path):
    trainer = _trainer(tiny_setup, tmp_path, actor={
        "micro_batch_size": 8, "use_dynamic_bsz": True, "max_packing_token_size": 48})
    try:
        seqs, _ = _seqs(trainer)
        chunks = trainer._micro_batches(list(range(4)), seqs)
        sizes = [len(c) * (max(len(seqs[i][0]) for i in c) + max(len(seqs[i][1]) for i in c))
                 for c in chunks]
        assert sorted(i for c in chunks for i in c) == [0, 1, 2, 3]
        assert len(chunks) > 1 and all(s <= 48 for s in sizes), (chunks, sizes)
        assert len(trainer._micro_batches(list(range(4)), seqs)) != 1   # fixed size would give 1
    finally:
        trainer.close()


def test_dynamic_bsz_keys_alone_are_refused():
    with pytest.raises(ConfigError, match=r"actor.use_dynamic_bsz: use_dynamic_bsz needs "
                                          r"actor.max_packing_token_size"):
        check_dynamic_bsz(load_config(None, ["actor.use_dynamic_bsz=true"]))
    with pytest.raises(ConfigError, match=r"actor.max_packing_token_size: max_packing_token_size "
                                          r"4096 acts only with actor.use_dynamic_bsz: true"):
        check_dynamic_bsz(load_config(None, ["actor.max_packing_token_size=4096"]))


def test_engine_choice_and_what_the_torch_engine_refuses(tiny_setup, tmp_path):
    from types import SimpleNamespace

    from r1zero.host.manager import PluginHost

    assert resolve_engine("auto", 1, 1, 1, 1) == "torch"
    assert resolve_engine("auto", 1, 1, 1, 2) == "fsdp"            # more than one rank
    assert resolve_engine("auto", 2, 1, 1, 2) == "fsdp"            # tensor parallel
    assert resolve_engine("auto", 2, 2, 1, 4) == "megatron"        # pipeline parallel
    with pytest.raises(ConfigError, match=r"actor.engine 'fsdp' does not implement pipeline"):
        resolve_engine("fsdp", 1, 2, 1, 2)
    with pytest.raises(ConfigError, match=r"actor.engine 'torch' does not implement tensor"):
        resolve_engine("torch", 2, 1, 1, 2)
    cfg = load_config(None, base=recipe(tiny_setup, tmp_path, actor={
        "engine": "torch", "distributed_optimizer": True}))
    two_ranks = SimpleNamespace(world=2, mesh=None)     # only the rank count is read
    with pytest.raises(ConfigError, match=r"actor.distributed_optimizer: distributed_optimizer "
                                          r"is not implemented by the torch engine"):
        PluginHost().load().get("backends", "cpu").make_train_engine(cfg, None, two_ranks)


def test_checkpoint_keeps_fp32_master_and_exports_hf(tiny_setup, tmp_path, capsys):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from r1zero.cli.main import main

    trainer = _trainer(tiny_setup, tmp_path, model={"path": str(tiny_setup["model"]),
                                                    "dtype": "bfloat16"}, actor={"train_iters": 1})
    try:
        trainer.run()
        master = {k: v.detach().clone() for k, v in trainer.engine.full_weights()}
    finally:
        trainer.close()
    ckpt = tmp_path / "ckpt" / "step_000001"
    saved = load_file(ckpt / "master.safetensors")
    assert all(torch.equal(saved[k], master[k]) for k in saved)       # fp32, exact
    state = torch.load(ckpt / "engine.pt", weights_only=True)
    assert "scheduler" in state and "scaler" in state
    hf = AutoModelForCausalLM.from_pretrained(ckpt / "model")          # the export at each save
    assert hf.dtype == torch.bfloat16
    w = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(hf.state_dict()[w], master[w].to(torch.bfloat16))
    assert main(["export", str(ckpt), str(tmp_path / "out"), "--dtype", "float32"]) == 0
    out = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert out.dtype == torch.float32
    assert all(torch.equal(out.state_dict()[k], master[k]) for k in master)
    assert (tmp_path / "out" / "tokenizer_config.json").exists()
    assert main(["export", str(ckpt), str(tmp_path / "out")]) == 2
    assert "already exists" in capsys.readouterr().err
