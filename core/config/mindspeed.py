"""``r1zero config import``: a MindSpeed-RL GRPO config (Hydra YAML with ``megatron_training``,
``actor_config``, ``rl_config``, ``generate_config`` ...) -> an r1zero recipe.

Each source key is either mapped (to an r1zero key, converted), implied (its value is what
r1zero always does, e.g. ``rl_config.gamma: 1.0`` for GRPO) or unmapped, and every unmapped
key is named with the reason. Values are converted strictly (``"false"`` is not a boolean,
``1.5`` not an integer): a value that does not convert is reported unmapped, never a
traceback. A key with a control character (a newline could write a section of its own into
the recipe's comment header) is refused by name. The recipe is the mapped keys only, written
by the YAML library; the header's comment lines escape anything unprintable. MindSpeed-RL sets the template and the dataset file in its data
preprocessing config, not here, so the recipe leaves ``template`` / ``data.input`` to fill in.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from r1zero.host.errors import ConfigError, short_repr

DEVICES_PER_NODE = 16        # an Ascend A3 node (MindSpeed-RL counts dies, not nodes)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("not true or false")
    return v


def _int(v: Any) -> int:
    if isinstance(v, str) and v.strip().lstrip("+-").isdigit():
        return int(v)
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError("not a whole number")
    return v


def _float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError("not a number")
    return float(v)


def _str(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise ValueError("not a string")
    return str(v)


def _layers(v: Any) -> list[int]:
    if isinstance(v, str):
        return [_int(x) for x in v.split(",") if x.strip()]
    if not isinstance(v, list):
        raise ValueError("not a list of layer counts")
    return [_int(x) for x in v]


def _scheduler(v: Any) -> str:
    if v not in ("constant", "cosine", "linear"):
        raise ValueError(f"lr_decay_style {v!r} has no r1zero equivalent (constant, cosine, linear)")
    return v


_KL = {"kl": "kl", "abs": "abs", "mse": "mse", "low_var_kl": "low_var_kl", "k1": "k1", "k2": "k2",
       "k3": "k3"}


def _kl(v: Any) -> str:
    if not isinstance(v, str) or v not in _KL:
        raise ValueError(f"not one of {', '.join(_KL)}")
    return _KL[v]


def _no_shuffle(v: Any) -> bool:
    return not _bool(v)


def _bf16(v: Any) -> str:
    return "bfloat16" if _bool(v) else "float32"


# MindSpeed-RL key -> (r1zero key, conversion)
MAPPED: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "megatron_training.global_batch_size": ("actor.global_batch_size", _int),
    "megatron_training.train_iters": ("actor.train_iters", _int),
    "megatron_training.save_interval": ("checkpoint.save_interval", _int),
    "megatron_training.tokenizer_name_or_path": ("model.tokenizer", _str),
    "megatron_training.use_distributed_optimizer": ("actor.distributed_optimizer", _bool),
    "megatron_training.swap_optimizer": ("actor.swap_optimizer", _bool),
    "megatron_training.seed": ("actor.seed", _int),
    "megatron_training.no_shuffle": ("data.shuffle", _no_shuffle),
    "megatron_training.bf16": ("model.dtype", _bf16),
    "actor_config.model": ("model.name", _str),
    "actor_config.load": ("model.path", _str),
    "actor_config.save": ("checkpoint.dir", _str),
    "actor_config.micro_batch_size": ("actor.micro_batch_size", _int),
    "actor_config.tensor_model_parallel_size": ("actor.tensor_parallel", _int),
    "actor_config.pipeline_model_parallel_size": ("actor.pipeline_parallel", _int),
    "actor_config.expert_model_parallel_size": ("actor.expert_parallel", _int),
    "actor_config.moe_tp_extend_ep": ("actor.moe_tp_extend_ep", _bool),
    "actor_config.num_layer_list": ("actor.num_layer_list", _layers),
    "actor_config.recompute_granularity": ("actor.recompute", _str),
    "actor_config.lr": ("actor.lr", _float),
    "actor_config.lr_decay_style": ("actor.lr_scheduler", _scheduler),
    "actor_config.min_lr": ("actor.min_lr", _float),
    "actor_config.weight_decay": ("actor.weight_decay", _float),
    "actor_config.clip_grad": ("actor.clip_grad", _float),
    "actor_config.adam_beta1": ("actor.adam_beta1", _float),
    "actor_config.adam_beta2": ("actor.adam_beta2", _float),
    "actor_config.initial_loss_scale": ("actor.initial_loss_scale", _float),
    "rl_config.adv_estimator": ("algorithm.adv_estimator", _str),
    "rl_config.kl_penalty": ("algorithm.kl_penalty", _kl),
    "rl_config.kl_ctrl_type": ("algorithm.kl_ctrl", _str),
    "rl_config.init_kl_coef": ("algorithm.kl_coef", _float),
    "rl_config.clip_ratio": ("algorithm.clip_ratio", _float),
    "rl_config.entropy_coeff": ("algorithm.entropy_coeff", _float),
    "rl_config.mini_batch_size": ("actor.mini_batch_size", _int),
    "rl_config.epochs": ("actor.ppo_epochs", _int),
    "rl_config.shuffle_mini_batch": ("actor.shuffle_mini_batch", _bool),
    "rl_config.max_prompt_length": ("rollout.max_prompt_length", _int),
    "rl_config.n_samples_per_prompt": ("rollout.n_samples_per_prompt", _int),
    "rl_config.use_dynamic_bsz": ("actor.use_dynamic_bsz", _bool),
    "rl_config.max_packing_token_size": ("actor.max_packing_token_size", _int),
    "rl_config.use_remove_padding": ("actor.use_remove_padding", _bool),
    "rl_config.use_integrated_worker": ("ray.integrated_worker", _bool),
    "rl_config.verifier_timeout": ("scoring.timeout_s", _float),
    "rl_config.verifier_parallel": ("scoring.workers", _int),
    "rl_config.use_tensorboard": ("logging.tensorboard", _bool),
    "generate_config.trust_remote_code": ("model.trust_remote_code", _bool),
    "generate_config.infer_tensor_parallel_size": ("rollout.tensor_parallel", _int),
    "generate_config.infer_pipeline_parallel_size": ("rollout.pipeline_parallel", _int),
    "generate_config.infer_expert_parallel_size": ("rollout.expert_parallel", _int),
    "generate_config.max_num_seqs": ("rollout.max_num_seqs", _int),
    "generate_config.max_model_len": ("rollout.max_model_len", _int),
    "generate_config.max_num_batched_tokens": ("rollout.max_num_batched_tokens", _int),
    "generate_config.gpu_memory_utilization": ("rollout.gpu_memory_utilization", _float),
    "generate_config.enforce_eager": ("rollout.enforce_eager", _bool),
    "generate_config.offload_train_optimizer": ("rollout.offload_train_optimizer", _bool),
    "generate_config.offload_train_grad": ("rollout.offload_train_grads", _bool),
    "generate_config.offload_train_param": ("rollout.offload_train_params", _bool),
    "generate_config.sampling_config.max_tokens": ("rollout.max_response_length", _int),
    "generate_config.sampling_config.temperature": ("rollout.temperature", _float),
    "generate_config.sampling_config.top_p": ("rollout.top_p", _float),
    "generate_config.sampling_config.top_k": ("rollout.top_k", _int),
    "generate_config.sampling_config.min_p": ("rollout.min_p", _float),
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
            except (ValueError, TypeError, KeyError, OverflowError) as exc:
                unmapped[key] = f"value {short_repr(value, 80)} not convertible: {exc}"
        elif key in IMPLIED and value == IMPLIED[key]:
            continue
        elif key in IMPLIED:
            unmapped[key] = (f"{short_repr(value, 80)} differs from what r1zero does "
                             f"({IMPLIED[key]!r})")
        elif key not in HANDLED:
            unmapped[key] = _reason(key)
    _special(flat, recipe, mapped, unmapped)
    return recipe, mapped, unmapped


def _special(flat: dict, recipe: dict, mapped: dict, unmapped: dict) -> None:
    """Keys that combine or need other keys: rewards, devices, warmup, the model name."""
    _rewards(flat, recipe, mapped, unmapped)
    npus = flat.get("rl_config.actor_resource.num_npus")
    if npus is not None and (isinstance(npus, bool) or not isinstance(npus, int) or npus <= 0):
        unmapped["rl_config.actor_resource.num_npus"] = (f"{short_repr(npus, 80)} is not a "
                                                         "device count")
    elif npus is not None:
        per_node = min(npus, DEVICES_PER_NODE)
        if npus % per_node:
            unmapped["rl_config.actor_resource.num_npus"] = \
                f"{npus} devices do not fill nodes of {per_node}"
        else:
            _put(recipe, "backend.num_nodes", npus // per_node)
            _put(recipe, "backend.devices_per_node", per_node)
            mapped["rl_config.actor_resource.num_npus"] = "backend.num_nodes x devices_per_node"
    frac = flat.get("actor_config.lr_warmup_fraction")
    iters = flat.get("megatron_training.train_iters")
    if (isinstance(frac, (int, float)) and not isinstance(frac, bool) and 0 < frac < 1
            and "actor_config.lr_warmup_fraction" in unmapped
            and isinstance(iters, int) and not isinstance(iters, bool)):
        _put(recipe, "actor.lr_warmup_steps", round(frac * iters))
        mapped["actor_config.lr_warmup_fraction"] = "actor.lr_warmup_steps"
        del unmapped["actor_config.lr_warmup_fraction"]
    defaults = flat.get("defaults")
    if defaults is not None:
        model = None
        if isinstance(defaults, list):
            models = [d["model"] for d in defaults if isinstance(d, Mapping) and "model" in d]
            model = models[0] if models else None
            model = model[0] if isinstance(model, list) and model else model
        if isinstance(model, str):
            recipe.setdefault("model", {}).setdefault("name", model)
            mapped["defaults"] = "model.name"
        else:
            unmapped["defaults"] = f"no model entry in {short_repr(defaults, 80)}"


def _rewards(flat: dict, recipe: dict, mapped: dict, unmapped: dict) -> None:
    """``rl_config.verifier_function`` (+ ``verifier_weight``) -> ``rewards``."""
    names = flat.get("rl_config.verifier_function")
    if names is None:
        return
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        unmapped["rl_config.verifier_function"] = f"{short_repr(names, 80)} is not a list of names"
        return
    weights = flat.get("rl_config.verifier_weight") or [1.0] * len(names)
    try:
        weights = [_float(w) for w in weights] if isinstance(weights, list) else None
    except ValueError:
        weights = None
    if weights is not None and not all(map(math.isfinite, weights)):
        weights = None
    if weights is None or len(weights) != len(names):
        given = short_repr(flat.get("rl_config.verifier_weight"), 80)
        unmapped["rl_config.verifier_weight"] = (f"{given}"
                                                 f" are not {len(names)} weights for {names}")
        weights = [1.0] * len(names)
    recipe["rewards"] = {n: {"weight": w} for n, w in zip(names, weights)}
    if "base_acc" in recipe["rewards"]:     # MindSpeed-RL's own extraction of \boxed{}
        recipe["rewards"]["base_acc"]["options"] = {"format_mode": "mindspeed"}
    mapped["rl_config.verifier_function"] = mapped["rl_config.verifier_weight"] = "rewards"


def check_keys(tree: Any, path: str, prefix: str = "") -> None:
    """ConfigError naming the first key (at any depth) that holds a control or other
    unprintable character: a newline in a key could write lines of its own into a recipe."""
    if not isinstance(tree, Mapping):
        return
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if not str(k).isprintable():
            raise ConfigError(f"key {key!r} contains a control character; refused (rename "
                              f"the key in the MindSpeed-RL config)", path=path)
        check_keys(v, path, key)


def _comment(text: str) -> str:
    """One comment line: every unprintable character escaped, so it stays one line."""
    return "# " + "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def import_file(path: str | Path) -> tuple[str, dict, dict]:
    """-> (recipe YAML text that loads as an r1zero config, mapped, unmapped)."""
    from r1zero.config.load import load_config

    from r1zero.config.load import read_yaml_file

    p = Path(path)
    source = read_yaml_file(p, missing="MindSpeed-RL config not found")
    if not isinstance(source, Mapping):
        raise ConfigError("top level must be a mapping", path=str(p))
    check_keys(source, str(p))
    recipe, mapped, unmapped = import_mindspeed(source, name=p.stem)
    load_config(None, base=recipe)      # what we write must load
    head = [f"Imported from MindSpeed-RL config {p.name} by `r1zero config import`.",
            "Fill in: data.input (raw dataset), template.name (MindSpeed-RL sets both in its",
            "data preprocessing config), and model.path if it is an mcore checkpoint.",
            f"{len(mapped)} keys mapped; {len(unmapped)} not mapped:"]
    head += [f"  {k}: {why}" for k, why in sorted(unmapped.items())]
    text = "\n".join(map(_comment, head)) + "\n" + yaml.safe_dump(recipe, sort_keys=False,
                                                                  allow_unicode=True)
    return text, mapped, unmapped
