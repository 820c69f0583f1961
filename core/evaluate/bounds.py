"""Bounds on ``r1zero eval``'s work, checked before any model is loaded.

- positions: ``rollout.max_prompt_length`` + ``--max-new-tokens`` (the recipe's
  ``rollout.max_response_length``) must fit the model's ``max_position_embeddings``;
- memory: one generate call holds ``--batch-size`` x ``--n`` sequences of that length; their
  key/value cache (2 x layers x key/value heads x head size x dtype bytes per token) and one
  step's fp32 logits must fit the memory budget -- one device's memory
  (``Backend.device_memory``) or, on CPU, the machine's physical memory. Without the model's
  facts the sequences' token count alone is bounded (``MAX_TOKENS``).

Pure: numbers in, ``ConfigError`` out (the message names the flag to lower).
"""

from __future__ import annotations

import os
from typing import Any, TYPE_CHECKING

from r1zero.host.errors import ConfigError

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig

GIB = 1024 ** 3
MAX_TOKENS = 1 << 32          # sequence tokens of one generate call when the model is unknown
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def host_memory() -> int | None:
    """Physical memory of this machine in bytes, None when the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def kv_bytes_per_token(arch: dict[str, Any], dtype: str) -> int | None:
    """2 x layers x key/value heads x head size x dtype bytes; None without the facts.
    Qwen2-0.5B (24 layers, 2 kv heads of 64, bf16): 2 * 24 * 2 * 64 * 2 = 12288."""
    layers, heads = arch.get("num_hidden_layers"), arch.get("num_attention_heads")
    hidden = arch.get("hidden_size")
    if not all(isinstance(v, int) and v > 0 for v in (layers, heads, hidden)):
        return None
    kv_heads = arch.get("num_key_value_heads") or heads
    head_dim = arch.get("head_dim") or hidden // heads
    return 2 * layers * kv_heads * head_dim * DTYPE_BYTES.get(dtype, 4)


def check_eval_bounds(cfg: RecipeConfig, arch: dict[str, Any], n: int, batch_size: int,
                      budget: int | None) -> None:
    """ConfigError when ``n`` samples of ``batch_size`` prompts, ``cfg.rollout`` lengths long,
    exceed the model's positions or ``budget`` bytes (module doc)."""
    r = cfg.rollout
    seq = r.max_prompt_length + r.max_response_length
    positions = arch.get("max_position_embeddings")
    if isinstance(positions, int) and not isinstance(positions, bool) and seq > positions:
        raise ConfigError(
            f"rollout.max_prompt_length {r.max_prompt_length} + {r.max_response_length} new "
            f"tokens = {seq} exceed the model's max_position_embeddings {positions}; lower "
            f"--max-new-tokens to at most {max(positions - r.max_prompt_length, 0)}",
            key="--max-new-tokens")
    seqs = batch_size * n
    per_token = kv_bytes_per_token(arch, cfg.model.dtype)
    vocab = arch.get("vocab_size") if isinstance(arch.get("vocab_size"), int) else 0
    if per_token is None or budget is None:
        if seqs * seq > MAX_TOKENS:
            raise ConfigError(f"--batch-size {batch_size} x --n {n} sequences of {seq} tokens "
                              f"are {seqs * seq:.3g} tokens in one generate call, more than "
                              f"{MAX_TOKENS:.3g}; lower --n, --batch-size or --max-new-tokens",
                              key="--n")
        return
    need = seqs * seq * per_token + seqs * vocab * 4
    if need > budget:
        raise ConfigError(
            f"--batch-size {batch_size} x --n {n} sequences of {seq} tokens need "
            f"{need / GIB:.3g} GiB of key/value cache and logits in one generate call, more than "
            f"the {budget / GIB:.1f} GiB memory budget; lower --n, --batch-size or "
            f"--max-new-tokens", key="--n")
