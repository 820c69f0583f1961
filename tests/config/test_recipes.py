"""Every shipped recipe loads as is, and trains a step on a tiny random model of the recipe's own
architecture (``model.arch``, sizes shrunk), built here from the shared tiny tokenizer: nothing
is downloaded. GPU-only parts (cuda backend, vLLM) are swapped for cpu + sampler and named."""

from __future__ import annotations

from pathlib import Path

import pytest

from r1zero.config.load import load_config

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "examples").glob("*.yaml"))
SAMPLE = ROOT / "examples" / "data" / "deepscaler_sample.jsonl"
# recipe -> the overrides that make it runnable on a 2-core CPU without the real weights
CPU_SWAPS = {"r1_zero_qwen2.5_1.5b.yaml": [
    "backend.name=cpu", "rollout.engine=sampler", "backend.devices_per_node=1",
    "rollout.max_num_seqs=64", "rollout.gpu_memory_utilization=0.75"]}   # vLLM-only keys back to defaults


def tiny_of_arch(arch: dict, tokenizer, out: Path) -> tuple[Path, dict]:
    """A 2-layer random model with the recipe's model type and structural choices (GQA ratio,
    tied embeddings, rope theta, norm eps) and the tiny tokenizer's vocabulary; returns its
    directory and its sizes (for ``model.arch``, which ``r1zero plan`` sizes memory from)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    heads, kv = arch["num_attention_heads"], arch["num_key_value_heads"]
    cfg = AutoConfig.for_model(
        arch["model_type"], vocab_size=len(tokenizer), hidden_size=16 * heads,
        intermediate_size=32 * heads, num_hidden_layers=2, num_attention_heads=heads,
        num_key_value_heads=kv, tie_word_embeddings=arch["tie_word_embeddings"],
        rope_theta=arch["rope_theta"], rms_norm_eps=arch["rms_norm_eps"],
        max_position_embeddings=1536, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    sizes = ("hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size")
    return out, {k: getattr(cfg, k) for k in sizes}


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_loads_as_shipped(path):
    cfg = load_config(path)
    assert cfg.name and cfg.template.name and cfg.rewards


REAL_MODEL_RECIPES = [p for p in RECIPES if not p.name.startswith("r1_zero_deepseek_671b")]


@pytest.mark.parametrize("path", REAL_MODEL_RECIPES, ids=[p.name for p in REAL_MODEL_RECIPES])
def test_recipe_trains_a_step_on_a_tiny_model_of_its_architecture(path, tmp_path, tiny_tokenizer):
    from transformers import AutoTokenizer

    from r1zero.trainer.grpo import GRPOTrainer

    shipped = load_config(path)
    assert shipped.model.arch["model_type"] == "qwen2"
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer)
    model, sizes = tiny_of_arch(shipped.model.arch, tok, tmp_path / "model")
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text("".join(SAMPLE.read_text().splitlines(keepends=True)[-3:]))
    cfg = load_config(path, [
        f"model.path={model}", "model.dtype=float32", f"data.input={SAMPLE}",
        f"data.output={tmp_path / 'data'}", f"data.val_input={held_out}", "data.workers=1",
        "actor.train_iters=1", "actor.global_batch_size=2", "actor.mini_batch_size=2",
        "actor.micro_batch_size=4", "rollout.n_samples_per_prompt=2", "rollout.val_n=2",
        "rollout.max_response_length=6", "scoring.workers=1", "backend.num_threads=1",
        f"checkpoint.dir={tmp_path / 'ckpt'}", f"logging.dir={tmp_path / 'logs'}",
        "logging.progress=false", "logging.plots=false", *CPU_SWAPS.get(path.name, []),
        *[f"model.arch.{k}={v}" for k, v in sizes.items()]])
    assert cfg.template.name == shipped.template.name == "qwen_r1"
    trainer = GRPOTrainer.from_config(cfg)
    try:
        history = trainer.run()
    finally:
        trainer.close()
    assert len(history) == 1 and "val/accuracy" in history[0]
    assert "<|im_start|>user\n" in trainer.validation.problems.prompts[0]
    assert (tmp_path / "ckpt" / "recipe.yaml").exists()
