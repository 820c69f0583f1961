"""Parallel-layout rules for device backends, one pure function per rule (STYLE §8).

Each rule takes plain integers, returns the derived number (data-parallel size, expert ranks,
...) and raises ``ConfigError`` whose message carries every number involved. ``plan_layout``
applies them all to a ``RecipeConfig`` and returns a ``LayoutPlan``.

The seed's A3 layout (REFERENCE.md §5), as the rules compute it:

    world          24 nodes x 16 dies                    = 384
    actor          tp 4 x pp 6 = 24 dies per replica   -> dp 16
    actor experts  ep 16, moe_tp_extend_ep: 16 x tp 4    = 64 expert ranks; 256 / 64 = 4 each
    pipeline       num_layer_list 9,10,10,10,11,11       = 61 layers over 6 stages
    rollout        tp 2 x pp 1                         -> 384 / 2 = 192 vLLM instances
    rollout EP     64 instances per expert group       -> 3 groups; experts over 64 x tp 2 = 128
                   dies (MindSpeed-RL passes infer EP x infer TP to vLLM), 256 / 128 = 2 each
    batch          384 prompts x 32 samples = 12288 sequences / dp 16 = 768 per actor rank
"""

from __future__ import annotations

from typing import Any, Sequence

from attrs import frozen

from r1zero.host.errors import ConfigError

A3_DIES_PER_NODE = 16


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


def actor_data_parallel(world: int, tp: int, pp: int) -> int:
    """dp = world / (tp x pp); tp x pp devices hold one model replica."""
    if world % (tp * pp):
        raise ConfigError(f"actor tensor_parallel {tp} x pipeline_parallel {pp} = {tp * pp} "
                          f"does not divide the {world} devices", key="actor")
    return world // (tp * pp)


def actor_expert_ranks(dp: int, tp: int, ep: int, moe_tp_extend_ep: bool) -> int:
    """Ranks the routed experts are split over: ep, or ep x tp with ``moe_tp_extend_ep``.

    Megatron forms expert groups inside the data-parallel ranks of one stage, so ep divides dp.
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


def check_num_layer_list(num_layer_list: Sequence[int], pp: int, num_layers: int | None) -> None:
    """One positive layer count per pipeline stage, summing to the model's layers."""
    if len(num_layer_list) != pp:
        raise ConfigError(f"num_layer_list {list(num_layer_list)} has {len(num_layer_list)} "
                          f"stages but pipeline_parallel is {pp}", key="actor.num_layer_list")
    if any(n < 1 for n in num_layer_list):
        raise ConfigError(f"num_layer_list {list(num_layer_list)} has an empty stage",
                          key="actor.num_layer_list")
    if num_layers is not None and sum(num_layer_list) != num_layers:
        raise ConfigError(f"num_layer_list {list(num_layer_list)} sums to {sum(num_layer_list)} "
                          f"but the model has {num_layers} layers", key="actor.num_layer_list")


def rollout_instances(world: int, tp: int, pp: int) -> int:
    """Independent vLLM instances = world / (tp x pp)."""
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


def sequences_per_rank(global_batch: int, n_samples: int, dp: int, micro_batch: int) -> int:
    """Sequences of one step (prompts x samples) per actor data-parallel rank, in whole micro
    batches: (global_batch x n_samples) / dp must be a multiple of micro_batch."""
    total = global_batch * n_samples
    if total % dp or (total // dp) % micro_batch:
        raise ConfigError(f"{global_batch} prompts x {n_samples} samples = {total} sequences do "
                          f"not split into micro batches of {micro_batch} over data parallel {dp}",
                          key="actor.global_batch_size")
    return total // dp


@frozen
class LayoutPlan:
    world: int
    actor_dp: int
    actor_expert_ranks: int
    actor_experts_per_rank: int | None
    rollout_instances: int
    rollout_expert_groups: int
    rollout_experts_per_rank: int | None
    sequences_per_actor_rank: int

    def summary(self) -> str:
        return (f"world {self.world}: actor dp {self.actor_dp}, {self.actor_expert_ranks} expert "
                f"ranks; rollout {self.rollout_instances} instances in "
                f"{self.rollout_expert_groups} expert groups; {self.sequences_per_actor_rank} "
                f"sequences per actor rank")


def plan_layout(cfg: Any, world: int) -> LayoutPlan:
    """Apply every rule to ``cfg`` on ``world`` devices (node rules are the caller's)."""
    a, r = cfg.actor, cfg.rollout
    dp = actor_data_parallel(world, a.tensor_parallel, a.pipeline_parallel)
    ranks = actor_expert_ranks(dp, a.tensor_parallel, a.expert_parallel, a.moe_tp_extend_ep)
    n_experts = cfg.model.arch.get("n_routed_experts")
    per_rank = experts_per_rank(n_experts, ranks, "actor") if n_experts else None
    if a.num_layer_list is not None:
        check_num_layer_list(a.num_layer_list, a.pipeline_parallel, cfg.model.num_layers)
    instances = rollout_instances(world, r.tensor_parallel, r.pipeline_parallel)
    groups = rollout_expert_groups(instances, r.expert_parallel)
    r_per_rank = None
    if n_experts and r.expert_parallel > 1:   # without EP each instance holds every expert
        r_per_rank = experts_per_rank(n_experts, r.expert_parallel * r.tensor_parallel, "rollout")
    seqs = sequences_per_rank(a.global_batch_size, r.n_samples_per_prompt, dp, a.micro_batch_size)
    return LayoutPlan(world, dp, ranks, per_rank, instances, groups, r_per_rank, seqs)
