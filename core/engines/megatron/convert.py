"""In-process HF <-> mcore conversion (dense Llama / Qwen2, DeepSeek-V3) at the recipe's
actor layout (tp x pp, and ep for DeepSeek-V3's routed experts).

    torchrun --nproc-per-node TP*PP -m r1zero convert CONFIG --load-dir HF --save-dir MC --in-process hf-to-mcore
    torchrun --nproc-per-node N     -m r1zero convert CONFIG --load-dir MC --save-dir HF --in-process mcore-to-hf

HF -> mcore: each rank builds its GPTModel piece, loads its slice of the HF weights
(``model.hf_to_mcore``) and ``dist_checkpointing`` saves the sharded tensors with their global
offsets, plus the HF config under ``hf_config/``. mcore -> HF: each rank builds its piece at
its own layout (any tp x pp, not necessarily the saved one), loads it, and the full HF-named
tensors are gathered layer by layer; rank 0 writes ``model.safetensors`` and the config. It
needs one process per tp x pp rank with torch.distributed set up (torchrun's environment) and
a CUDA or NPU device, as the train engine does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from r1zero.engines.megatron import model as M
from r1zero.engines.megatron import moe
from r1zero.engines.megatron.moe import expert_sizes
from r1zero.host.errors import ConfigError

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig

HF_CONFIG = "hf_config"


class ShardedGPT:
    """One rank's GPTModel piece with what ``weights.gather_hf`` needs (facts, tp, stages,
    split dimensions, layer offset)."""
    def __init__(self, cfg: RecipeConfig, hf_dir: Path, full: dict[str, torch.Tensor] | None = None):
        from transformers import AutoConfig, AutoModelForCausalLM

        from r1zero.engines.megatron.engine import (
            _DTYPES,
            _stage_layers,
            init_parallel,
            load_shard,
            require_megatron,
        )

        require_megatron()
        _init_process_group()
        a = cfg.actor
        self.tp, self.pp = a.tensor_parallel, a.pipeline_parallel
        self.ep, self.etp = moe.expert_sizes(self.tp, a.expert_parallel, a.moe_tp_extend_ep)
        hf_config = AutoConfig.from_pretrained(str(hf_dir))
        self.hf_config, self.facts = hf_config, M.arch_facts(hf_config)
        moe.check_layout(a, self.facts, torch.distributed.get_world_size())
        init_parallel(self.tp, self.pp, a.seed, a.expert_parallel, a.moe_tp_extend_ep)
        self.stages = _stage_layers(a.num_layer_list, self.pp, self.facts["layers"])
        dtype = _DTYPES[cfg.model.dtype]
        config = M.transformer_config(self.facts, tp=self.tp, pp=self.pp, dtype=dtype,
                                      num_layer_list=a.num_layer_list, ep=self.ep, etp=self.etp)
        self.model = M.build_gpt(self.facts, config, tp=self.tp)
        if full is None:     # shapes only: the split dimensions, from a weightless HF model
            with torch.device("meta"):
                skeleton = AutoModelForCausalLM.from_config(hf_config)
            full = M.hf_to_mcore(self.facts, skeleton.state_dict(), self.tp, self.etp)
            full = {k: torch.zeros(v.shape, dtype=dtype) for k, v in full.items()}
        self.split_dims = load_shard(self.model, full, self.layer_offset())

    def layer_offset(self) -> int:
        from megatron.core import parallel_state as ps

        return sum(self.stages[:ps.get_pipeline_model_parallel_rank()])


def _init_process_group() -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def hf_to_mcore(cfg: RecipeConfig, hf_dir: str, out_dir: str) -> None:
    """HF checkpoint -> ``dist_checkpointing`` checkpoint of the sharded GPTModel (collective)."""
    from transformers import AutoModelForCausalLM

    from r1zero.engines.megatron.engine import require_megatron

    require_megatron()
    from megatron.core import dist_checkpointing

    try:
        hf = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{hf_dir}: not a loadable HF checkpoint ({exc})") from exc

    facts = M.arch_facts(hf.config)
    a = cfg.actor
    etp = expert_sizes(a.tensor_parallel, a.expert_parallel, a.moe_tp_extend_ep)[1]
    full = M.hf_to_mcore(facts, {k: v.detach() for k, v in hf.state_dict().items()},
                         a.tensor_parallel, etp)
    piece = ShardedGPT(cfg, Path(hf_dir), full)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    dist_checkpointing.save({"model": piece.model.sharded_state_dict()}, out_dir)
    if torch.distributed.get_rank() == 0:
        hf.config.save_pretrained(str(Path(out_dir) / HF_CONFIG))
    torch.distributed.barrier()


def mcore_to_hf(cfg: RecipeConfig, mcore_dir: str, out_dir: str) -> None:
    """``dist_checkpointing`` checkpoint -> HF ``model.safetensors`` + config (collective)."""
    from safetensors.torch import save_file

    from r1zero.engines.megatron import deepseek
    from r1zero.engines.megatron.engine import require_megatron
    from r1zero.engines.megatron.weights import gather_hf

    require_megatron()
    from megatron.core import dist_checkpointing

    piece = ShardedGPT(cfg, Path(mcore_dir) / HF_CONFIG)
    state = dist_checkpointing.load({"model": piece.model.sharded_state_dict()}, mcore_dir)
    piece.model.load_state_dict(state["model"])
    tensors = {}
    for name, t in gather_hf(piece):
        pairs = ([(name, t)] if not piece.facts.get("mla") else
                 deepseek.checkpoint_tensors(name, t, piece.facts["moe_ffn"]))
        tensors.update((k, v.contiguous()) for k, v in pairs)
    if torch.distributed.get_rank() == 0:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(Path(out_dir) / "model.safetensors"), metadata={"format": "pt"})
        piece.hf_config.save_pretrained(out_dir)
    torch.distributed.barrier()
