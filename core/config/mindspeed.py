"""``r1zero config import``: a MindSpeed-RL GRPO config (Hydra YAML with ``megatron_training``,
``actor_config``, ``rl_config``, ``generate_config`` ...) -> an r1zero recipe.

Each source key is either mapped (to an r1zero key, converted), implied (its value is what
r1zero always does, e.g. ``rl_config.gamma: 1.0`` for GRPO) or unmapped, and every unmapped
key is named with the reason. MindSpeed-RL sets the template and the dataset file in its data
preprocessing config, not here, so the recipe leaves ``template`` / ``data.input`` to fill in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from r1zero.host.errors import ConfigError

DEVICES_PER_NODE = 16        # an Ascend A3 node (MindSpeed-RL counts dies, not nodes)


def _layers(v: Any) -> list[int]:
    if isinstance(v, str):
        return [int(x) for x in v.split(",") if x.strip()]
    return [int(x) for x in v]


def _scheduler(v: Any) -> str:
    if v not in ("constant", "cosine", "linear"):
        raise ValueError(f"lr_decay_style {v!r} has no r1zero equivalent (constant, cosine, linear)")
    return v


_KL = {"kl": "kl", "abs": "abs", "mse": "mse", "low_var_kl": "low_var_kl", "k1": "k1", "k2": "k2",
       "k3": "k3"}
_ID: Callable[[Any], Any] = lambda v: v

# MindSpeed-RL key -> (r1zero key, conversion)
MAPPED: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "megatron_training.global_batch_size": ("actor.global_batch_size", int),
    "megatron_training.train_iters": ("actor.train_iters", int),
    "megatron_training.save_interval": ("checkpoint.save_interval", int),
    "megatron_training.tokenizer_name_or_path": ("model.tokenizer", str),
    "megatron_training.use_distributed_optimizer": ("actor.distributed_optimizer", bool),
    "megatron_training.swap_optimizer": ("actor.swap_optimizer", bool),
    "megatron_training.seed": ("actor.seed", int),
    "megatron_training.no_shuffle": ("data.shuffle", lambda v: not v),
    "megatron_training.bf16": ("model.dtype", lambda v: "bfloat16" if v else "float32"),
    "actor_config.model": ("model.name", str),
    "actor_config.load": ("model.path", str),
    "actor_config.save": ("checkpoint.dir", str),
    "actor_config.micro_batch_size": ("actor.micro_batch_size", int),
    "actor_config.tensor_model_parallel_size": ("actor.tensor_parallel", int),
    "actor_config.pipeline_model_parallel_size": ("actor.pipeline_parallel", int),
    "actor_config.expert_model_parallel_size": ("actor.expert_parallel", int),
    "actor_config.moe_tp_extend_ep": ("actor.moe_tp_extend_ep", bool),
    "actor_config.num_layer_list": ("actor.num_layer_list", _layers),
    "actor_config.recompute_granularity": ("actor.recompute", str),
    "actor_config.lr": ("actor.lr", float),
    "actor_config.lr_decay_style": ("actor.lr_scheduler", _scheduler),
    "actor_config.min_lr": ("actor.min_lr", float),
    "actor_config.weight_decay": ("actor.weight_decay", float),
    "actor_config.clip_grad": ("actor.clip_grad", float),
    "actor_config.adam_beta1": ("actor.adam_beta1", float),
    "actor_config.adam_beta2": ("actor.adam_beta2", float),
    "actor_config.initial_loss_scale": ("actor.initial_loss_scale", float),
    "rl_config.adv_estimator": ("algorithm.adv_estimator", str),
    "rl_config.kl_penalty": ("algorithm.kl_penalty", lambda v: _KL[v]),
    "rl_config.kl_ctrl_type": ("algorithm.kl_ctrl", str),
    "rl_config.init_kl_coef": ("algorithm.kl_coef", float),
    "rl_config.clip_ratio": ("algorithm.clip_ratio", float),
    "rl_config.entropy_coeff": ("algorithm.entropy_coeff", float),
    "rl_config.mini_batch_size": ("actor.mini_batch_size", int),
    "rl_config.epochs": ("actor.ppo_epochs", int),
    "rl_config.shuffle_mini_batch": ("actor.shuffle_mini_batch", bool),
    "rl_config.max_prompt_length": ("rollout.max_prompt_length", int),
    "rl_config.n_samples_per_prompt": ("rollout.n_samples_per_prompt", int),
    "rl_config.use_dynamic_bsz": ("actor.use_dynamic_bsz", bool),
    "rl_config.max_packing_token_size": ("actor.max_packing_token_size", int),
    "rl_config.use_remove_padding": ("actor.use_remove_padding", bool),
    "rl_config.use_integrated_worker": ("ray.integrated_worker", bool),
    "rl_config.verifier_timeout": ("scoring.timeout_s", float),
    "rl_config.verifier_parallel": ("scoring.workers", int),
    "rl_config.use_tensorboard": ("logging.tensorboard", bool),
    "generate_config.trust_remote_code": ("model.trust_remote_code", bool),
    "generate_config.infer_tensor_parallel_size": ("rollout.tensor_parallel", int),
    "generate_config.infer_pipeline_parallel_size": ("rollout.pipeline_parallel", int),
    "generate_config.infer_expert_parallel_size": ("rollout.expert_parallel", int),
    "generate_config.max_num_seqs": ("rollout.max_num_seqs", int),
    "generate_config.max_model_len": ("rollout.max_model_len", int),
    "generate_config.max_num_batched_tokens": ("rollout.max_num_batched_tokens", int),
    "generate_config.gpu_memory_utilization": ("rollout.gpu_memory_utilization", float),
    "generate_config.enforce_eager": ("rollout.enforce_eager", bool),
    "generate_config.offload_train_optimizer": ("rollout.offload_train_optimizer", bool),
    "generate_config.offload_train_grad": ("rollout.offload_train_grads", bool),
    "generate_config.offload_train_param": ("rollout.offload_train_params", bool),
    "generate_config.sampling_config.max_tokens": ("rollout.max_response_length", int),
    "generate_config.sampling_config.temperature": ("rollout.temperature", float),
    "generate_config.sampling_config.top_p": ("rollout.top_p", float),
    "generate_config.sampling_config.top_k": ("rollout.top_k", int),
    "generate_config.sampling_config.min_p": ("rollout.min_p", float),
}
# keys whose value is what r1zero always does (anything else is reported as unmapped)
IMPLIED: dict[str, Any] = {
    "megatron_training.stage": "ray_grpo", "rl_config.rule_reward": True,
    "rl_config.gamma": 1.0, "rl_config.lam": 0.95,      # GAE knobs; GRPO has no critic
    "generate_config.sampling_config.detokenize": False,
    "generate_config.sampling_config.logprobs": 1, "generate_config.dtype": "bfloat16",
    "megatron_training.tokenizer_type": "PretrainedFromHF", "actor_config.finetune": True,
    "actor_config.lr_warmup_fraction": 0.0,
}
HANDLED = {"rl_config.verifier_function", "rl_config.verifier_weight",
           "rl_config.actor_resource.num_npus", "defaults"}


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v and key != "defaults":
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def _put(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[last] = value


# why a family of keys has no r1zero counterpart (longest matching prefix wins)
REASONS = {
    "megatron_training.data_path": "a Megatron-preprocessed dataset prefix: set data.input to the "
                                   "raw dataset and let r1zero preprocess it",
    "megatron_training.seq_length": "r1zero sizes sequences from rollout.max_prompt_length and "
                                    "rollout.max_response_length",
    "megatron_training": "a Megatron/MindSpeed training switch with no r1zero counterpart",
    "actor_config": "a Megatron actor switch with no r1zero counterpart",
    "ref_config": "r1zero's reference model is the actor's initial weights (reference.enabled); "
                  "its layout follows the actor",
    "reward_config": "r1zero uses rule rewards only (rewards:); no reward model",
    "generate_config": "a vLLM / MindSpeed rollout switch with no r1zero counterpart",
    "rl_config": "an RL switch with no r1zero counterpart",
}


def _reason(key: str) -> str:
    best = max((p for p in REASONS if key == p or key.startswith(p + ".")), key=len, default="")
    return REASONS.get(best, "not a MindSpeed-RL GRPO section r1zero knows")


def import_mindspeed(source: Mapping[str, Any], name: str = "imported") -> tuple[dict, dict, dict]:
    """MindSpeed-RL config tree -> (r1zero recipe tree, {source key: r1zero key} mapped,
    {source key: reason} unmapped). Implied keys (see ``IMPLIED``) appear in neither."""
    flat = _flatten(source)
    recipe: dict[str, Any] = {"name": name, "backend": {"name": "ascend_a3"},
                              "rollout": {"engine": "vllm"}, "ray": {"enabled": True}}
    mapped: dict[str, str] = {}
    unmapped: dict[str, str] = {}
    for key, value in flat.items():
        if key in MAPPED:
            target, convert = MAPPED[key]
            try:
                _put(recipe, target, convert(value))
                mapped[key] = target
            except (ValueError, TypeError, KeyError) as exc:
                unmapped[key] = f"value {value!r} not convertible: {exc}"
        elif key in IMPLIED and value == IMPLIED[key]:
            continue
        elif key in IMPLIED:
            unmapped[key] = f"{value!r} differs from what r1zero does ({IMPLIED[key]!r})"
        elif key not in HANDLED:
            unmapped[key] = _reason(key)
    _special(flat, recipe, mapped, unmapped)
    return recipe, mapped, unmapped


def _special(flat: dict, recipe: dict, mapped: dict, unmapped: dict) -> None:
    """Keys that combine or need other keys: rewards, devices, warmup, the model name."""
    names = flat.get("rl_config.verifier_function")
    if names is not None:
        names = [names] if isinstance(names, str) else list(names)
        weights = flat.get("rl_config.verifier_weight") or [1.0] * len(names)
        if len(weights) != len(names):
            unmapped["rl_config.verifier_weight"] = (f"{len(weights)} weights for {len(names)} "
                                                     f"verifiers {names}")
            weights = [1.0] * len(names)
        recipe["rewards"] = {n: {"weight": float(w)} for n, w in zip(names, weights)}
        if "base_acc" in recipe["rewards"]:     # MindSpeed-RL's own extraction of \boxed{}
            recipe["rewards"]["base_acc"]["options"] = {"format_mode": "mindspeed"}
        mapped["rl_config.verifier_function"] = mapped["rl_config.verifier_weight"] = "rewards"
    npus = flat.get("rl_config.actor_resource.num_npus")
    if isinstance(npus, int) and npus > 0:
        per_node = min(npus, DEVICES_PER_NODE)
        if npus % per_node:
            unmapped["rl_config.actor_resource.num_npus"] = \
                f"{npus} devices do not fill nodes of {per_node}"
        else:
            _put(recipe, "backend.num_nodes", npus // per_node)
            _put(recipe, "backend.devices_per_node", per_node)
            mapped["rl_config.actor_resource.num_npus"] = "backend.num_nodes x devices_per_node"
    frac = flat.get("actor_config.lr_warmup_fraction")
    if isinstance(frac, (int, float)) and frac and "actor_config.lr_warmup_fraction" in unmapped:
        iters = flat.get("megatron_training.train_iters")
        if isinstance(iters, int):
            _put(recipe, "actor.lr_warmup_steps", round(frac * iters))
            mapped["actor_config.lr_warmup_fraction"] = "actor.lr_warmup_steps"
            del unmapped["actor_config.lr_warmup_fraction"]
    defaults = flat.get("defaults")
    if defaults is not None:
        model = [d["model"] for d in defaults if isinstance(d, Mapping) and "model" in d]
        model = model[0][0] if model and isinstance(model[0], list) else (model[0] if model else None)
        if isinstance(model, str):
            recipe.setdefault("model", {}).setdefault("name", model)
            mapped["defaults"] = "model.name"
        else:
            unmapped["defaults"] = f"no model entry in {defaults!r}"


def import_file(path: str | Path) -> tuple[str, dict, dict]:
    """-> (recipe YAML text that loads as an r1zero config, mapped, unmapped)."""
    from r1zero.config.load import load_config

    from r1zero.config.load import read_yaml_file

    p = Path(path)
    source = read_yaml_file(p, missing="MindSpeed-RL config not found")
    if not isinstance(source, Mapping):
        raise ConfigError("top level must be a mapping", path=str(p))
    recipe, mapped, unmapped = import_mindspeed(source, name=p.stem)
    load_config(None, base=recipe)      # what we write must load
    head = [f"# Imported from MindSpeed-RL config {p.name} by `r1zero config import`.",
            "# Fill in: data.input (raw dataset), template.name (MindSpeed-RL sets both in its",
            "# data preprocessing config), and model.path if it is an mcore checkpoint.",
            f"# {len(mapped)} keys mapped; {len(unmapped)} not mapped:"]
    head += [f"#   {k}: {why}" for k, why in sorted(unmapped.items())]
    text = "\n".join(head) + "\n" + yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True)
    return text, mapped, unmapped
