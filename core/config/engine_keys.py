"""Recipe keys that only some engines act on, and the check that refuses the rest.

Every train and rollout engine class declares ``name`` and ``implements``, the frozenset of
dotted keys below that it acts on. A key set to anything other than its "off" value must be
in the chosen engine's ``implements``; ``refuse_unimplemented`` raises one ``ConfigError``
naming each such key and the engine before anything is built, so a key that loads is a key
that acts. A new engine (FSDP, Megatron, ...) opts in by listing the keys it implements.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from r1zero.host.errors import ConfigError

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig

# key -> the value (or tuple of values) that asks nothing of the engine
TRAIN_ENGINE_KEYS: dict[str, Any] = {
    "actor.recompute": "none",
    "actor.distributed_optimizer": (None, False),   # None: the engine's default
    "actor.swap_optimizer": False,
    "actor.initial_loss_scale": None,
    "actor.use_dynamic_bsz": False,
    "actor.max_packing_token_size": None,
    "actor.use_remove_padding": False,
    "rollout.offload_train_params": False,       # the actor's memory while the rollout runs
    "rollout.offload_train_grads": False,
    "rollout.offload_train_optimizer": False,
    "algorithm.routing_replay": False,           # the actor's routers reuse the rollout's
}
ROLLOUT_ENGINE_KEYS: dict[str, Any] = {
    "rollout.min_p": 0.0,
    "rollout.tensor_parallel": 1,
    "rollout.pipeline_parallel": 1,
    "rollout.expert_parallel": 1,
    "rollout.max_num_seqs": 64,
    "rollout.max_model_len": None,
    "rollout.max_num_batched_tokens": None,
    "rollout.gpu_memory_utilization": 0.75,
    "rollout.enforce_eager": False,
    "rollout.dtype": None,
    # need the rollout's per-token log-probs (SampleOutput.logprobs) / expert choices (routes)
    "algorithm.rollout_correction": None,
    "algorithm.routing_replay": False,
    "rollout.sleep_level": 0,
    "rollout.sync_bucket_mb": 512,
}


def _value(cfg: RecipeConfig, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def unimplemented(cfg: RecipeConfig, engine: type, table: dict[str, Any]) -> list[str]:
    """``"<key>: <value> is not implemented by engine '<name>'"`` for each set key of
    ``table`` that ``engine`` does not list in ``implements``, with the engine's reason where
    its ``not_implemented_because`` gives one for the key."""
    implements = getattr(engine, "implements", frozenset())
    why = getattr(engine, "not_implemented_because", {})
    name = getattr(engine, "name", engine.__name__)
    return [f"{key}: {_value(cfg, key)!r} is not implemented by engine {name!r}"
            + (f" ({why[key]})" if key in why else "")
            for key, off in table.items()
            if _value(cfg, key) not in (off if isinstance(off, tuple) else (off,))
            and key not in implements]


def refuse_unimplemented(cfg: RecipeConfig, train_engine: type, rollout_engine: type) -> None:
    """One ``ConfigError`` listing every set key the chosen engines do not act on."""
    problems = (unimplemented(cfg, train_engine, TRAIN_ENGINE_KEYS)
                + unimplemented(cfg, rollout_engine, ROLLOUT_ENGINE_KEYS))
    if problems:
        raise ConfigError("; ".join(problems) + " (unset these keys, or choose an engine that "
                          "implements them)")
