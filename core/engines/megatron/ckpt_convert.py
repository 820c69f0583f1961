"""HF -> Megatron-mcore weight conversion for the Ascend layouts, with MindSpeed-LLM's convert_ckpt.py.

For MindSpeed's own checkpoint format, MindSpeed-LLM converts and ``convert_command`` builds its
command line from the recipe (its README is authoritative for flag names); r1zero's own
in-process converter (``engines.megatron.convert``, ``r1zero convert --in-process``) writes
megatron-core's ``dist_checkpointing`` format for the megatron engine. For the seed:

    python convert_ckpt_v2.py --load-model-type hf --save-model-type mg --model-type-hf deepseek3
        --load-dir HF --save-dir MG --target-tensor-parallel-size 4
        --target-pipeline-parallel-size 6 --target-expert-parallel-size 16 --num-layers 61
        --first-k-dense-replace 3 --num-layer-list 9,10,10,10,11,11 --moe-grouped-gemm
        --moe-tp-extend-ep --mtp-num-layers 0

(dialect "deepseek3": MindSpeed-LLM's model-specific
``examples/mcore/deepseek3/convert_ckpt_deepseek3.py``, the same flags without the three type
flags. The older generic ``convert_ckpt.py`` has no deepseek3 model type.)

The DeepSeek-V3 HF release is FP8 with 128x128 block scales (``<name>_scale_inv``); the
converters expect bf16. ``fp8_report`` / ``require_bf16`` read only safetensors headers and the
index, so they are cheap on 671B; ``dequantize_checkpoint`` writes the bf16 copy shard by shard.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from attrs import frozen

from r1zero.engines.state_io import inside
from r1zero.host.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig

SCRIPTS = {"v2": "convert_ckpt_v2.py",
           "deepseek3": "examples/mcore/deepseek3/convert_ckpt_deepseek3.py"}
INDEX = "model.safetensors.index.json"
SCALE_SUFFIX = "_scale_inv"


def layer_flags(num_layers: int, pp: int, num_layer_list: Sequence[int] | None,
                noop_layers: Sequence[int] | None) -> list[str]:
    """``--num-layers`` plus how layers go to pipeline stages: an explicit ``--num-layer-list``
    or ``--noop-layers`` (mutually exclusive in MindSpeed-LLM), else an even split."""
    if num_layer_list and noop_layers:
        raise ConfigError("num_layer_list and noop_layers are mutually exclusive in MindSpeed-LLM",
                          key="actor.num_layer_list")
    if num_layer_list:
        if len(num_layer_list) != pp or sum(num_layer_list) != num_layers:
            raise ConfigError(f"num_layer_list {list(num_layer_list)} ({len(num_layer_list)} "
                              f"stages, {sum(num_layer_list)} layers) does not match pp {pp} and "
                              f"{num_layers} layers", key="actor.num_layer_list")
        return ["--num-layers", str(num_layers),
                "--num-layer-list", ",".join(map(str, num_layer_list))]
    total = num_layers + len(noop_layers or ())
    if total % pp:
        raise ConfigError(f"{num_layers} layers + {len(noop_layers or ())} noop layers = {total} "
                          f"do not split evenly over pipeline_parallel {pp}; set "
                          f"actor.num_layer_list or noop layers", key="actor.pipeline_parallel")
    flags = ["--num-layers", str(total)]
    if noop_layers:
        flags += ["--noop-layers", ",".join(map(str, noop_layers))]
    return flags


def convert_command(cfg: RecipeConfig, load_dir: str, save_dir: str, *, dialect: str = "v2",
                    model_type_hf: str = "deepseek3", mtp_num_layers: int = 0,
                    noop_layers: Sequence[int] | None = None, mindspeed_llm_dir: str | None = None,
                    python: str = "python") -> list[str]:
    """The MindSpeed-LLM HF -> mcore argv for the actor layout of ``cfg``.

    mtp_num_layers 0 drops DeepSeek-V3's MTP layer (HF layer 61) since GRPO does not train it.
    """
    if dialect not in SCRIPTS:
        raise ConfigError(f"unknown converter dialect {dialect!r}; known: {', '.join(SCRIPTS)}")
    a, arch = cfg.actor, cfg.model.arch
    if cfg.model.num_layers is None:
        raise ConfigError("the converter needs the layer count (without MTP layers)",
                          key="model.num_layers")
    script = SCRIPTS[dialect]
    if mindspeed_llm_dir:
        script = str(Path(mindspeed_llm_dir) / script)
    cmd = [python, script]
    if dialect == "v2":
        cmd += ["--load-model-type", "hf", "--save-model-type", "mg", "--model-type-hf", model_type_hf]
    cmd += ["--load-dir", str(load_dir), "--save-dir", str(save_dir),
            "--target-tensor-parallel-size", str(a.tensor_parallel),
            "--target-pipeline-parallel-size", str(a.pipeline_parallel),
            "--target-expert-parallel-size", str(a.expert_parallel)]
    cmd += layer_flags(cfg.model.num_layers, a.pipeline_parallel, a.num_layer_list, noop_layers)
    if "first_k_dense_replace" in arch:
        cmd += ["--first-k-dense-replace", str(arch["first_k_dense_replace"])]
    if arch.get("n_routed_experts"):
        cmd.append("--moe-grouped-gemm")
    if a.moe_tp_extend_ep:
        cmd.append("--moe-tp-extend-ep")
    return cmd + ["--mtp-num-layers", str(mtp_num_layers)]


# -- what a checkpoint holds, from headers only --------------------------------------------------

def safetensors_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file (8-byte little-endian length, then JSON):
    tensor name -> {"dtype", "shape", "data_offsets"}; "__metadata__" removed."""
    path = Path(path)
    with path.open("rb") as f:
        raw = f.read(8)
        size = path.stat().st_size
        if len(raw) < 8 or struct.unpack("<Q", raw)[0] > size - 8:
            raise ConfigError("not a safetensors file (bad header length)", path=str(path))
        try:
            header = json.loads(f.read(struct.unpack("<Q", raw)[0]))
        except ValueError as exc:
            raise ConfigError(f"not a safetensors file ({exc})", path=str(path)) from exc
    header.pop("__metadata__", None)
    return header


def read_weight_map(hf_dir: str | Path) -> dict[str, str]:
    """Tensor name -> shard file, from model.safetensors.index.json or a single shard."""
    hf_dir = Path(hf_dir)
    if (hf_dir / INDEX).exists():
        return dict(json.loads((hf_dir / INDEX).read_text())["weight_map"])
    shards = sorted(hf_dir.glob("*.safetensors"))
    if len(shards) != 1:
        raise ConfigError(f"no {INDEX} and {len(shards)} .safetensors files; cannot tell the "
                          f"weight map", path=str(hf_dir))
    return {name: shards[0].name for name in safetensors_header(shards[0])}


def mtp_layer_indices(weight_map: dict[str, str], num_layers: int) -> list[int]:
    """HF layer indices >= num_layers: DeepSeek-V3's multi-token-prediction layer(s) (61)."""
    found = set()
    for name in weight_map:
        if name.startswith("model.layers."):
            idx = int(name.split(".")[2])
            if idx >= num_layers:
                found.add(idx)
    return sorted(found)


@frozen
class Fp8Report:
    tensors: int
    fp8_tensors: tuple[str, ...]
    scale_keys: tuple[str, ...]
    quant_method: str | None
    mtp_layers: tuple[int, ...]

    @property
    def needs_dequant(self) -> bool:
        return bool(self.fp8_tensors or self.scale_keys or self.quant_method == "fp8")


def fp8_report(hf_dir: str | Path, num_layers: int = 61) -> Fp8Report:
    """Which tensors are float8 (header dtype F8_*) and which are block scales, per shard headers."""
    hf_dir = Path(hf_dir)
    weight_map = read_weight_map(hf_dir)
    fp8 = []
    for shard in sorted(set(weight_map.values())):
        fp8 += [k for k, v in safetensors_header(hf_dir / shard).items()
                if str(v.get("dtype", "")).startswith("F8")]
    quant = None
    if (hf_dir / "config.json").exists():
        qc = json.loads((hf_dir / "config.json").read_text()).get("quantization_config") or {}
        quant = qc.get("quant_method")
    scales = sorted(k for k in weight_map if k.endswith(SCALE_SUFFIX))
    return Fp8Report(len(weight_map), tuple(sorted(fp8)), tuple(scales), quant,
                     tuple(mtp_layer_indices(weight_map, num_layers)))


def require_bf16(hf_dir: str | Path, num_layers: int = 61) -> Fp8Report:
    """The report, or a ConfigError saying the checkpoint must be dequantised first."""
    rep = fp8_report(hf_dir, num_layers)
    if rep.needs_dequant:
        example = (rep.scale_keys or rep.fp8_tensors or ("-",))[0]
        raise ConfigError(
            f"FP8 checkpoint: {len(rep.fp8_tensors)} of {rep.tensors} tensors are float8 with "
            f"{len(rep.scale_keys)} block scales (e.g. {example!r}; quant_method "
            f"{rep.quant_method!r}); dequantise to bf16 first "
            f"(r1zero.engines.megatron.ckpt_convert.dequantize_checkpoint(src, dst), or DeepSeek's "
            f"inference/fp8_cast_bf16.py) and convert the bf16 copy", path=str(hf_dir))
    return rep


# -- dequantisation -------------------------------------------------------------------------------

def dequantize_block(weight: Any, scale_inv: Any, block: int = 128) -> Any:
    """(M, N) float8 weight, (ceil(M/b), ceil(N/b)) scales -> (M, N) bf16.

    w_bf16[i, j] = w[i, j] * scale_inv[i // b, j // b]   (b = block, 128 in DeepSeek-V3)
    """
    import torch

    m, n = weight.shape
    want = (math.ceil(m / block), math.ceil(n / block))
    if tuple(scale_inv.shape) != want:
        raise ValueError(f"scale shape {tuple(scale_inv.shape)} does not tile a {m}x{n} weight "
                         f"in {block}x{block} blocks (expected {want})")
    s = scale_inv.float().repeat_interleave(block, 0)[:m].repeat_interleave(block, 1)[:, :n]
    return (weight.float() * s).to(torch.bfloat16)


def dequantize_checkpoint(src: str | Path, dst: str | Path, block: int = 128) -> int:
    """Write a bf16 copy of an FP8 HF checkpoint (shard by shard; scales dropped; config.json
    loses quantization_config; other files copied). Only regular files inside ``src`` are read
    or copied: a symlink out of it, or an index naming a path, is a CheckpointError naming it.
    Returns the number of tensors dequantised."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    weight_map = read_weight_map(src)
    shards = sorted(set(weight_map.values()))
    for shard in shards:                # the index names files: plain names inside src only
        if not isinstance(shard, str) or Path(shard).name != shard or shard in ("", ".", ".."):
            raise CheckpointError(f"the weight index names {shard!r}, not a file of this "
                                  f"directory; refused", path=str(src / INDEX))
        inside(src, src / shard)
    copies = [inside(src, p) for p in sorted(src.iterdir()) if (p.is_file() or p.is_symlink())
              and p.suffix != ".safetensors" and p.name not in (INDEX, "config.json")]
    dst.mkdir(parents=True, exist_ok=True)
    done = 0
    for shard in shards:
        out = {}
        with safe_open(src / shard, "pt") as f:
            for name in f.keys():
                if name.endswith(SCALE_SUFFIX):
                    continue
                t = f.get_tensor(name)
                if t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
                    t = dequantize_block(t, _scale(src, weight_map, name), block)
                    done += 1
                out[name] = t
        save_file(out, str(dst / shard), metadata={"format": "pt"})
    kept = {k: v for k, v in weight_map.items() if not k.endswith(SCALE_SUFFIX)}
    (dst / INDEX).write_text(json.dumps({"metadata": {}, "weight_map": kept}, indent=2))
    for p in copies:
        shutil.copyfile(p, dst / p.name)
    if (src / "config.json").exists():
        conf = json.loads(inside(src, src / "config.json").read_text())
        conf.pop("quantization_config", None)
        (dst / "config.json").write_text(json.dumps(conf, indent=2))
    return done


def _scale(src: Path, weight_map: dict[str, str], name: str) -> Any:
    from safetensors import safe_open

    key = name + SCALE_SUFFIX
    if key not in weight_map:
        raise ConfigError(f"tensor {name!r} is float8 but has no {key!r}", path=str(src))
    with safe_open(src / weight_map[key], "pt") as f:   # scales may sit in another shard
        return f.get_tensor(key)
