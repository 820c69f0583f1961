"""The one parallel-layout rule set: pure functions of integers, used by every backend, by
``r1zero plan``, by ``r1zero launch`` and by the train engines.

Each rule takes plain numbers, returns the derived number (data-parallel size, expert ranks,
...) and raises ``ConfigError`` whose message carries every number involved. ``plan.make_plan``
applies them all to a recipe and collects every failure instead of stopping at the first.

The seed's A3 layout, as the rules compute it:

    world          24 nodes x 16 dies                    = 384
    actor          tp 4 x pp 6 = 24 dies per replica   -> dp 16
    actor experts  ep 16 inside dp 16; moe_tp_extend_ep: 16 x tp 4 = 64 expert ranks, 256 / 64 = 4
    pipeline       num_layer_list 9,10,10,10,11,11       = 61 layers over 6 stages
    rollout        tp 2 x pp 1                         -> 384 / 2 = 192 vLLM instances
    rollout EP     64 instances per expert group       -> 3 groups; experts over 64 x tp 2 = 128
                   dies (MindSpeed-RL passes infer EP x infer TP to vLLM), 256 / 128 = 2 each
    batch          384 prompts / dp 16 = 24 prompts x 32 samples = 768 sequences per actor rank
"""

from __future__ import annotations

from typing import Sequence

from r1zero.host.errors import ConfigError

A3_DIES_PER_NODE = 16
# Train engines and the parallelism each implements (dp comes from the world size for all).
ENGINE_PARALLELISM = {"torch": (), "fsdp": ("tensor",),
                      "megatron": ("tensor", "pipeline", "expert")}


def check_node_devices(num_nodes: int, devices_per_node: int, max_per_node: int | None) -> int:
    """world = num_nodes x devices_per_node; a node holds at most ``max_per_node`` devices, and a
    multi-node job uses whole nodes (every node the same count, as Ray placement assumes)."""
    if devices_per_node < 1:
        raise ConfigError(f"devices_per_node is {devices_per_node}; no devices to place workers on",
                          key="backend.devices_per_node")
    if max_per_node is not None and devices_per_node > max_per_node:
        raise ConfigError(f"devices_per_node {devices_per_node} exceeds the {max_per_node} "
                          f"devices of one node", key="backend.devices_per_node")
    if max_per_node is not None and num_nodes > 1 and devices_per_node != max_per_node:
        raise ConfigError(f"{num_nodes} nodes with {devices_per_node} of {max_per_node} devices "
                          f"each; a multi-node job uses whole nodes", key="backend.devices_per_node")
    return num_nodes * devices_per_node


def resolve_engine(engine: str, tp: int, pp: int, ep: int, world: int = 1) -> str:
    """``auto`` is megatron when the actor needs pipeline or expert parallelism, fsdp (FSDP2 +
    tensor parallel) when it runs on more than one rank or tp > 1, else torch (one device); an
    explicit engine must implement every parallelism the layout asks for."""
    asked = {"tensor": tp, "pipeline": pp, "expert": ep}
    if engine == "auto":
        engine = "megatron" if pp * ep > 1 else "fsdp" if world > 1 or tp > 1 else "torch"
    supported = ENGINE_PARALLELISM.get(engine)
    if supported is None:
        return engine            # a plugin's engine: it checks its own layout
    for kind, size in asked.items():
        if size > 1 and kind not in supported:
            raise ConfigError(f"actor.engine {engine!r} does not implement {kind} parallelism "
                              f"({kind}_parallel {size}); use actor.engine: megatron or set "
                              f"{kind}_parallel to 1", key=f"actor.{kind}_parallel")
    return engine


def actor_data_parallel(world: int, tp: int, pp: int) -> int:
    """dp = world / (tp x pp); tp x pp devices hold one model replica."""
    if world % (tp * pp):
        raise ConfigError(f"actor tensor_parallel {tp} x pipeline_parallel {pp} = {tp * pp} "
                          f"does not divide the {world} devices", key="actor")
    return world // (tp * pp)


def actor_expert_ranks(dp: int, tp: int, ep: int, moe_tp_extend_ep: bool) -> int:
    """Ranks the routed experts are split over: ep, or ep x tp with ``moe_tp_extend_ep``.

    Megatron forms expert groups inside the data-parallel ranks of one stage, so ep divides dp
    (the same rule with and without ``moe_tp_extend_ep``: (dp x tp) / (ep x tp) = dp / ep).
    """
    if dp % ep:
        raise ConfigError(f"actor expert_parallel {ep} does not divide data parallel {dp}",
                          key="actor.expert_parallel")
    return ep * tp if moe_tp_extend_ep else ep


def experts_per_rank(n_experts: int, expert_ranks: int, role: str) -> int:
    """n_experts / expert_ranks, which must be whole."""
    if n_experts % expert_ranks:
        raise ConfigError(f"{n_experts} routed experts do not split over {expert_ranks} "
                          f"{role} expert ranks ({n_experts} % {expert_ranks} = "
                          f"{n_experts % expert_ranks})", key=f"{role}.expert_parallel")
    return n_experts // expert_ranks


def heads_split(heads: int, kv_heads: int, tp: int, role: str) -> None:
    """Tensor parallelism splits attention heads: tp divides the query and key/value heads."""
    for what, n in (("attention heads", heads), ("key/value heads", kv_heads)):
        if n % tp:
            raise ConfigError(f"{role} tensor_parallel {tp} does not divide the model's {n} "
                              f"{what} ({n} % {tp} = {n % tp})", key=f"{role}.tensor_parallel")


def stage_layers(num_layer_list: Sequence[int] | None, pp: int, num_layers: int | None) -> list[int] | None:
    """Layers of each pipeline stage: ``num_layer_list`` (one positive count per stage, summing
    to the model's layers), else num_layers / pp (which must be whole)."""
    key = "actor.num_layer_list"
    if num_layer_list is None:
        if num_layers is None:
            return None
        if num_layers % pp:
            raise ConfigError(f"{num_layers} layers do not split evenly over pipeline_parallel "
                              f"{pp} ({num_layers} % {pp} = {num_layers % pp}); set "
                              f"num_layer_list", key="actor.pipeline_parallel")
        return [num_layers // pp] * pp
    if len(num_layer_list) != pp:
        raise ConfigError(f"num_layer_list {list(num_layer_list)} has {len(num_layer_list)} "
                          f"stages but pipeline_parallel is {pp}", key=key)
    if any(n < 1 for n in num_layer_list):
        raise ConfigError(f"num_layer_list {list(num_layer_list)} has an empty stage", key=key)
    if num_layers is not None and sum(num_layer_list) != num_layers:
        raise ConfigError(f"num_layer_list {list(num_layer_list)} sums to {sum(num_layer_list)} "
                          f"but the model has {num_layers} layers", key=key)
    return list(num_layer_list)


def rollout_instances(world: int, tp: int, pp: int) -> int:
    """Independent rollout (vLLM) instances = world / (tp x pp)."""
    if world % (tp * pp):
        raise ConfigError(f"rollout tensor_parallel {tp} x pipeline_parallel {pp} = {tp * pp} "
                          f"does not divide the {world} devices", key="rollout")
    return world // (tp * pp)


def rollout_expert_groups(instances: int, ep: int) -> int:
    """With expert parallelism ``ep`` instances share one copy of the experts: instances / ep."""
    if instances % ep:
        raise ConfigError(f"rollout expert_parallel {ep} does not divide the {instances} "
                          f"rollout instances", key="rollout.expert_parallel")
    return instances // ep


def prompts_per_rank(global_batch: int, mini_batch: int, dp: int) -> int:
    """Prompts of a step (and of each mini-batch) per data-parallel rank; a GRPO group (one
    prompt's samples) never spans ranks, so dp divides both."""
    for what, n in (("global_batch_size", global_batch), ("mini_batch_size", mini_batch)):
        if n % dp:
            raise ConfigError(f"actor {what} {n} prompts do not split over data parallel {dp} "
                              f"({n} % {dp} = {n % dp})", key=f"actor.{what}")
    return global_batch // dp
