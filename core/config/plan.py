"""``make_plan``: a recipe's parallel layout and per-die memory, with every failing check.

    r1zero plan examples/r1_zero_deepseek_671b.yaml [--json]

Pure (it reads at most the model's ``config.json``): every backend's ``validate_layout``,
``r1zero plan`` and ``r1zero launch`` call it, so there is one rule set (``config.layout``).
Rules that fail are collected with their numbers rather than stopping at the first; the
numbers that depend on a failed rule are left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from attrs import asdict, field, frozen

from r1zero.config import layout as L
from r1zero.config import memory as M
from r1zero.host.errors import ConfigError

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig

GIB = 1024 ** 3


@frozen
class Plan:
    backend: str
    world: int
    engine: str
    actor: dict[str, Any]
    rollout: dict[str, Any]
    memory: dict[str, Any]
    device_memory: int | None
    failures: list[dict[str, str]] = field(factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}

    def require(self) -> "Plan":
        """Raise one ``ConfigError`` listing every failing check (the first one's key)."""
        if self.failures:
            lines = [f"{f['key']}: {f['message']}" if f["key"] else f["message"]
                     for f in self.failures]
            raise ConfigError(f"the layout cannot run on backend {self.backend!r} "
                              f"({self.world} devices): " + "; ".join(lines))
        return self

    def render(self) -> str:
        return render(self)


def model_arch(cfg: RecipeConfig) -> dict[str, Any]:
    """The model's ``config.json`` (when ``model.path`` has one) under ``model.arch``."""
    arch: dict[str, Any] = {}
    path = Path(cfg.model.path) / "config.json" if cfg.model.path else None
    if path is not None and path.is_file():
        try:
            arch = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: not a readable JSON model config ({exc})",
                              key="model.path") from exc
    arch.update(cfg.model.arch)
    if cfg.model.num_layers is not None:
        arch["num_hidden_layers"] = cfg.model.num_layers
    return arch


# architecture numbers the layout and memory rules read: positive whole numbers (0 allowed
# for the counts that may be none); a wrong one fails the plan and is left out of the rules
ARCH_NUMBERS = {k: 1 for k in (
    "hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size",
    "vocab_size", "num_hidden_layers", "head_dim", "moe_intermediate_size", "n_routed_experts",
    "num_experts", "num_experts_per_tok", "kv_lora_rank", "q_lora_rank", "qk_nope_head_dim",
    "qk_rope_head_dim", "v_head_dim", "max_position_embeddings")}
ARCH_NUMBERS.update(n_shared_experts=0, first_k_dense_replace=0)


def checked_arch(checks: "_Checks", arch: dict[str, Any]) -> dict[str, Any]:
    """``arch`` without the numbers that are not whole numbers >= their minimum (each a
    failure naming ``model.arch.KEY``); ``None`` means unset."""
    out = dict(arch)
    for key, least in ARCH_NUMBERS.items():
        value = arch.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            checks.fail(f"model.arch.{key}", f"must be a whole number >= {least}, got "
                        f"{value!r} (config.json or model.arch)")
            del out[key]
    return out


class _Checks:
    """Run rules, keeping each failure's key and message."""

    def __init__(self) -> None:
        self.failures: list[dict[str, str]] = []

    def run(self, rule: Callable, *args, **kwargs):
        try:
            return rule(*args, **kwargs)
        except ConfigError as exc:
            self.failures.append({"key": exc.key or "", "message": exc.message})
            return None

    def fail(self, key: str, message: str) -> None:
        self.failures.append({"key": key, "message": message})


def make_plan(cfg: RecipeConfig, world: int, *, backend: str = "", device_memory: int | None = None,
              node_error: ConfigError | None = None) -> Plan:
    """Apply every layout rule and the memory model to ``cfg`` on ``world`` devices."""
    a, r = cfg.actor, cfg.rollout
    checks = _Checks()
    if node_error is not None:
        checks.fail(node_error.key or "backend", node_error.message)
    arch = checked_arch(checks, model_arch(cfg))
    engine = checks.run(L.resolve_engine, getattr(a, "engine", "auto"), a.tensor_parallel,
                        a.pipeline_parallel, a.expert_parallel, world) or "?"
    dp = checks.run(L.actor_data_parallel, world, a.tensor_parallel, a.pipeline_parallel)
    layers = arch.get("num_hidden_layers")
    stages = checks.run(L.stage_layers, a.num_layer_list, a.pipeline_parallel, layers)
    actor: dict[str, Any] = {"dp": dp, "tp": a.tensor_parallel, "pp": a.pipeline_parallel,
                             "ep": a.expert_parallel, "moe_tp_extend_ep": a.moe_tp_extend_ep,
                             "layers_per_stage": stages}
    n_experts = arch.get("n_routed_experts") or arch.get("num_experts")
    heads = arch.get("num_attention_heads")
    if heads:
        kv = arch.get("num_key_value_heads") or heads
        checks.run(L.heads_split, heads, kv, a.tensor_parallel, "actor")
        checks.run(L.heads_split, heads, kv, r.tensor_parallel, "rollout")
    if dp is not None:
        ranks = checks.run(L.actor_expert_ranks, dp, a.tensor_parallel, a.expert_parallel,
                           a.moe_tp_extend_ep)
        actor["expert_ranks"] = ranks
        if n_experts and ranks:
            actor["experts_per_rank"] = checks.run(L.experts_per_rank, n_experts, ranks, "actor")
        mini = a.mini_batch_size or a.global_batch_size
        prompts = checks.run(L.prompts_per_rank, a.global_batch_size, mini, dp)
        if prompts is not None:
            actor["prompts_per_rank"] = prompts
            actor["sequences_per_rank"] = prompts * r.n_samples_per_prompt
    rollout = _rollout(checks, cfg, world, n_experts)
    memory = _memory(checks, cfg, arch, engine, stages, actor, rollout, device_memory)
    if n_experts and layers:
        memory["routes"] = _routes(cfg, arch, layers, actor)
    return Plan(backend, world, engine, actor, rollout, memory, device_memory, checks.failures)


def _rollout(checks: _Checks, cfg: RecipeConfig, world: int, n_experts: int | None) -> dict[str, Any]:
    r = cfg.rollout
    out: dict[str, Any] = {"tp": r.tensor_parallel, "pp": r.pipeline_parallel,
                           "ep": r.expert_parallel}
    instances = checks.run(L.rollout_instances, world, r.tensor_parallel, r.pipeline_parallel)
    out["instances"] = instances
    if instances is not None:
        out["expert_groups"] = checks.run(L.rollout_expert_groups, instances, r.expert_parallel)
        # each instance generates a contiguous slice of the step's prompts (trainer.dist)
        gbs = cfg.actor.global_batch_size
        out["prompts_per_instance"] = -(-gbs // instances)
        out["sequences_per_instance"] = out["prompts_per_instance"] * r.n_samples_per_prompt
    if n_experts and r.expert_parallel > 1:    # without EP each instance holds every expert
        out["experts_per_rank"] = checks.run(L.experts_per_rank, n_experts,
                                             r.expert_parallel * r.tensor_parallel, "rollout")
    return out


def _routes(cfg: RecipeConfig, arch: dict, layers: int, actor: dict) -> dict[str, Any]:
    """Routing replay's recorded routes of one step at full response length: every sample
    (global_batch_size x n_samples_per_prompt), and one data-parallel rank's share (each rank
    of its model-parallel group receives them all)."""
    a, r = cfg.actor, cfg.rollout
    per_seq = r.max_response_length
    out: dict[str, Any] = {"replay": cfg.algorithm.routing_replay,
                           "tokens": a.global_batch_size * r.n_samples_per_prompt * per_seq}
    got = M.routes_bytes(arch, layers, out["tokens"])
    out.update(moe_layers=got["moe_layers"], top_k=got["top_k"], bytes_per_step=got["bytes"])
    if actor.get("sequences_per_rank"):
        out["bytes_per_dp_rank"] = M.routes_bytes(arch, layers,
                                                  actor["sequences_per_rank"] * per_seq)["bytes"]
    return out


def _engine_bytes(engine: str, dtype_bytes: int) -> tuple[int, int]:
    """(gradient, optimizer) bytes per parameter: every engine keeps fp32 grads and fp32 master
    weights + Adam moments (the torch and fsdp engines' compute-dtype bytes are the sampler's
    copy / FSDP's gathered layer, counted as the parameters)."""
    return M.GRAD_BYTES, M.OPTIM_BYTES


def _memory(checks: _Checks, cfg: RecipeConfig, arch: dict, engine: str, stages: list[int] | None,
            actor: dict, rollout: dict, device_memory: int | None) -> dict[str, Any]:
    a, r = cfg.actor, cfg.rollout
    needed = ("hidden_size", "num_attention_heads", "intermediate_size", "vocab_size")
    missing = [k for k in needed if k not in arch]
    if missing or stages is None or actor.get("dp") is None or not actor.get("expert_ranks"):
        why = f"model facts missing: {', '.join(missing)}" if missing else "layout failed"
        return {"estimated": False, "why": why}
    d = M.DTYPE_BYTES[cfg.model.dtype]
    grad_b, opt_b = _engine_bytes(engine, d)
    seq = r.max_prompt_length + r.max_response_length
    micro_batch = a.micro_batch_size
    if a.use_remove_padding and a.max_packing_token_size:    # one packed row per micro-batch
        seq, micro_batch = max(seq, a.max_packing_token_size), 1
    elif a.use_dynamic_bsz and a.max_packing_token_size:
        seq = max(seq, a.max_packing_token_size)
    per_stage = []
    for s in range(len(stages)):
        b = M.stage_bytes(arch, stages, s, tp=a.tensor_parallel, expert_ranks=actor["expert_ranks"],
                          dp=actor["dp"], ep=a.expert_parallel, dtype_bytes=d,
                          distributed_optimizer=engine == "megatron" and a.distributed_optimizer)
        b["grad_bytes"] = b["params"] * grad_b
        if engine != "megatron" or not a.distributed_optimizer:
            b["optimizer_bytes"] = b["params"] * opt_b
        in_flight = min(len(stages) - s, max(1, actor.get("sequences_per_rank") or 1))
        if engine == "fsdp" and a.distributed_optimizer is not False:   # FSDP2 shards all 3
            for k in ("param_bytes", "grad_bytes", "optimizer_bytes"):
                b[k] = -(-b[k] // actor["dp"])
        if a.swap_optimizer:            # on the host; one part at a time on the die for the step
            b["optimizer_bytes"] = -(-b["optimizer_bytes"] // M.SWAP_CHUNKS)
        b["activation_bytes"] = M.activation_bytes(
            arch, stages, s, tp=a.tensor_parallel, seq=seq, micro_batch=micro_batch,
            in_flight=in_flight, recompute=a.recompute, dtype_bytes=d)
        b["peak_bytes"] = b["param_bytes"] + b["grad_bytes"] + b["optimizer_bytes"] + \
            b["activation_bytes"]
        per_stage.append(b)
    worst = max(per_stage, key=lambda b: b["peak_bytes"])
    total = M.total_params(arch, sum(stages))
    r_ranks = r.tensor_parallel * (r.expert_parallel if r.expert_parallel > 1 else 1)
    routed = M.routed_params(arch, sum(stages))
    rollout_weights = int(((total - routed) / r.tensor_parallel + routed / r_ranks)
                          / r.pipeline_parallel * d)
    resident = (0 if r.offload_train_params else worst["param_bytes"]) + \
        (0 if r.offload_train_grads else worst["grad_bytes"]) + \
        (0 if (r.offload_train_optimizer or a.swap_optimizer) else worst["optimizer_bytes"])
    out = {"estimated": True, "total_params": total, "sequence_length": seq,
           "per_stage": per_stage, "peak_stage": per_stage.index(worst),
           "peak_bytes": worst["peak_bytes"], "rollout_weight_bytes": rollout_weights,
           "train_resident_during_rollout_bytes": resident}
    if device_memory:
        if worst["peak_bytes"] > device_memory:
            checks.fail("actor", f"estimated actor peak {worst['peak_bytes'] / GIB:.1f} GiB on a "
                        f"die of stage {out['peak_stage']} exceeds the {device_memory / GIB:.1f} "
                        f"GiB of one device")
        budget = r.gpu_memory_utilization * device_memory
        out["rollout_kv_budget_bytes"] = max(0, int(budget - rollout_weights))
        if rollout_weights > budget:
            checks.fail("rollout", f"rollout weights {rollout_weights / GIB:.1f} GiB per die "
                        f"exceed gpu_memory_utilization {r.gpu_memory_utilization} x "
                        f"{device_memory / GIB:.1f} GiB = {budget / GIB:.1f} GiB")
        if resident + budget > device_memory:
            checks.fail("rollout.gpu_memory_utilization", (
                f"train state kept during rollout {resident / GIB:.1f} GiB + rollout budget "
                f"{budget / GIB:.1f} GiB exceed the {device_memory / GIB:.1f} GiB of one device; "
                f"offload more (rollout.offload_train_*) or lower gpu_memory_utilization"))
    return out


def render(plan: Plan) -> str:
    """The plan as the lines ``r1zero plan`` prints ('?' where a failed rule left no number)."""
    a, r, m = (_shown(d) for d in (plan.actor, plan.rollout, plan.memory))
    gib = lambda b: f"{b / GIB:.1f} GiB"   # noqa: E731
    lines = [f"backend {plan.backend}: {plan.world} devices"
             + (f", {gib(plan.device_memory)} each" if plan.device_memory else ", device memory unknown"),
             f"actor   engine {plan.engine}: dp {a['dp']} x tp {a['tp']} x pp {a['pp']}; ep "
             f"{a['ep']}" + (" (x tp: moe_tp_extend_ep)" if a["moe_tp_extend_ep"] else "")
             + f" -> {a.get('expert_ranks')} expert ranks",
             f"        layers per stage {a['layers_per_stage']}; experts per rank "
             f"{a.get('experts_per_rank', '-')}; {a.get('prompts_per_rank')} prompts = "
             f"{a.get('sequences_per_rank')} sequences per dp rank",
             f"rollout tp {r['tp']} x pp {r['pp']} -> {r['instances']} instances; ep {r['ep']} -> "
             f"{r.get('expert_groups')} expert groups; experts per rank {r.get('experts_per_rank', 'all')}",
             f"        {r['tp'] * r['pp']} dies per instance; {r.get('prompts_per_instance')} prompts "
             f"= {r.get('sequences_per_instance')} sequences per instance"]
    if m.get("estimated"):
        lines.append(f"memory  {m['total_params'] / 1e9:.2f} B parameters; per die (stage: params "
                     f"+ grads + optimizer + activations = peak), sequence {m['sequence_length']}:")
        for s, b in enumerate(m["per_stage"]):
            lines.append(f"        stage {s}: {gib(b['param_bytes'])} + {gib(b['grad_bytes'])} + "
                         f"{gib(b['optimizer_bytes'])} + {gib(b['activation_bytes'])} = "
                         f"{gib(b['peak_bytes'])}")
        lines.append(f"        peak {gib(m['peak_bytes'])} (stage {m['peak_stage']}); rollout "
                     f"weights {gib(m['rollout_weight_bytes'])} per die; train state kept during "
                     f"rollout {gib(m['train_resident_during_rollout_bytes'])}"
                     + (f"; KV cache budget {gib(m['rollout_kv_budget_bytes'])} per die "
                        "(gpu_memory_utilization x die - rollout weights)"
                        if "rollout_kv_budget_bytes" in m else ""))
    else:
        lines.append(f"memory  not estimated: {m.get('why')}")
    if "routes" in m:
        rt = m["routes"]
        lines.append(f"routes  routing replay {'on' if rt['replay'] else 'off'}: {rt['tokens']} "
                     f"response tokens x {rt['moe_layers']} MoE layers x top {rt['top_k']} int16 "
                     f"= {gib(rt['bytes_per_step'])} per step on the host"
                     + (f", {gib(rt['bytes_per_dp_rank'])} per dp rank"
                        if "bytes_per_dp_rank" in rt else ""))
    if plan.failures:
        lines.append(f"FAILED  {len(plan.failures)} check(s):")
        lines += [f"  - {f['key']}: {f['message']}" for f in plan.failures]
    else:
        lines.append("ok      every layout check passes")
    return "\n".join(lines)


def _shown(d: dict[str, Any]) -> dict[str, Any]:
    return {k: "?" if v is None else v for k, v in d.items()}
