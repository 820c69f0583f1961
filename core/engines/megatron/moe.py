"""Expert parallelism of the megatron engine.

The recipe's ``actor.expert_parallel`` (ep) and ``actor.moe_tp_extend_ep`` map onto
megatron-core's two expert sizes:

    moe_tp_extend_ep false  expert_model_parallel_size ep,      expert_tensor_parallel_size tp
                            (each expert's FFN split over the tensor-parallel ranks)
    moe_tp_extend_ep true   expert_model_parallel_size ep x tp, expert_tensor_parallel_size 1
                            (MindSpeed's flag: whole experts spread over ep x tp ranks)

Either way ep divides the data-parallel size and the routed experts divide evenly over the
expert ranks (``r1zero.config.layout``, the rules ``r1zero plan`` checks). Expert-parallel rank
``r`` holds global experts ``r * local ... (r + 1) * local - 1`` as its local experts
``0 ... local - 1``.
"""

from __future__ import annotations

import re
from typing import Any

from r1zero.config import layout as L
from r1zero.host.errors import ConfigError

_LOCAL = re.compile(r"\.local_experts\.(\d+)\.")


def expert_sizes(tp: int, ep: int, moe_tp_extend_ep: bool) -> tuple[int, int]:
    """(expert_model_parallel_size, expert_tensor_parallel_size)."""
    return (ep * tp, 1) if moe_tp_extend_ep else (ep, tp)


def check_layout(actor: Any, facts: dict[str, Any], world: int) -> None:
    """Refuse, by key, expert settings the model cannot take."""
    ep, tp, pp = actor.expert_parallel, actor.tensor_parallel, actor.pipeline_parallel
    if not facts.get("experts"):
        for key, value, asks in (("actor.expert_parallel", ep, ep > 1),
                                 ("actor.moe_tp_extend_ep", actor.moe_tp_extend_ep,
                                  actor.moe_tp_extend_ep is True)):
            if asks:
                raise ConfigError(f"{value!r} asks for expert parallelism, but the model has no "
                                  f"routed experts (a dense model)", key=key)
        return
    ranks = L.actor_expert_ranks(world // (tp * pp), tp, ep, actor.moe_tp_extend_ep)
    L.experts_per_rank(facts["experts"], ranks, "actor")


def global_expert(name: str, n_experts: int) -> tuple[str, bool]:
    """``name`` with its local expert number made global (this rank's expert-parallel rank),
    and whether it is a routed expert's parameter."""
    from megatron.core import parallel_state as ps

    match = _LOCAL.search(name)
    if not match:
        return name, False
    local = n_experts // ps.get_expert_model_parallel_world_size()
    e = ps.get_expert_model_parallel_rank() * local + int(match.group(1))
    return name[:match.start()] + f".local_experts.{e}." + name[match.end():], True


def split_group(expert: bool) -> tuple[int, int]:
    """(rank, size) of the group a parameter's tensor-parallel slices are spread over: the
    expert-tensor-parallel group for routed experts, else the tensor-parallel group."""
    from megatron.core import parallel_state as ps

    if expert:
        return ps.get_expert_tensor_parallel_rank(), ps.get_expert_tensor_parallel_world_size()
    return ps.get_tensor_model_parallel_rank(), ps.get_tensor_model_parallel_world_size()
