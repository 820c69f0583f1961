"""Typed recipe configuration: frozen attrs sections, loaded from YAML with dotted overrides.

``load_config("examples/r1_zero_deepseek_671b.yaml", ["actor.lr=2e-6"])`` returns a
``RecipeConfig``; an unknown key or a wrong type is a ``ConfigError`` naming the file and the
dotted key and suggesting the closest valid key. A config that loads is a config that runs:
cross-field constraints are checked in ``__attrs_post_init__`` with both numbers in the message.

Numbers are checked where they are declared. Every float read from YAML must be finite (the
loader refuses ``.inf`` / ``.nan`` / ``1e309`` for any float field), and each numeric field
states its range with a validator built from the helpers below, e.g.
``field(default=0.9, validator=_num(ge(0), lt(1)))`` for ``[0, 1)`` or ``_opt(_pos)`` for
"None or > 0"; ``_num`` also refuses non-finite values set from Python. A new numeric field
follows the same pattern, so an impossible value fails at ``config show``, not at step 1.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
from attrs import field, frozen

from r1zero.config.layout import stage_layers
from r1zero.host.errors import ConfigError

ge, gt, le, lt = attrs.validators.ge, attrs.validators.gt, attrs.validators.le, attrs.validators.lt
_opt = attrs.validators.optional


def _finite(_inst: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"'{attribute.name}' must be a finite number, got {value!r}")


def _num(*checks: Any):
    """A finite number that passes every attrs validator in ``checks`` (ge, gt, le, lt)."""
    return attrs.validators.and_(_finite, *checks)


_pos = _num(gt(0))
_nonneg = _num(ge(0))


def _choice(*names: str):
    """One of ``names``; the error is a sentence ("'engine' must be one of auto, sampler,
    vllm; got 'x'"), not attrs' ``in_`` tuple with the attribute's repr."""
    def check(_inst: Any, attribute: Any, value: Any) -> None:
        if value not in names:
            raise ValueError(f"'{attribute.name}' must be one of {', '.join(names)}; "
                             f"got {value!r}")
    return check


def _env_keys(env: dict) -> None:
    """Environment variable names must be shell identifiers: ``r1zero launch`` exports them."""
    import re

    for key in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"'env' holds the variable name {key!r}, which is not a shell "
                             "identifier (letters, digits, '_'; not starting with a digit)")


@frozen
class ModelConfig:
    path: str = field(default="", metadata={"help": "HF model dir (or mcore checkpoint for ascend)"})
    tokenizer: str | None = None
    name: str = ""
    dtype: str = field(default="bfloat16", validator=_choice("float32", "bfloat16", "float16"))
    num_layers: int | None = field(default=None, validator=_opt(_pos))
    arch: dict[str, Any] = field(factory=dict, metadata={"help": "architecture facts (informational)"})
    trust_remote_code: bool = False


@frozen
class DataConfig:
    input: str = ""
    output: str = field(default="", metadata={"help": "preprocessed dataset dir"})
    handler: str = "deepscaler"
    handler_plugin: str | None = None
    map_keys: dict[str, str] = field(factory=lambda: {
        "prompt": "problem", "query": "", "response": "answer", "system": ""})
    workers: int = field(default=8, validator=_pos)
    skip_bad_rows: bool = False
    shuffle: bool = True
    seed: int = field(default=1234, validator=ge(0))
    val_input: str = field(default="", metadata={
        "help": "held-out problems validated during training (same handler and template)"})


@frozen
class TemplateConfig:
    name: str = "deepseek3_r1"
    file: str | None = field(default=None, metadata={"help": "MindSpeed-RL templates.json"})
    plugin: str | None = None


@frozen
class RewardConfig:
    weight: float = field(default=1.0, validator=_num())
    plugin: str | None = None
    options: dict[str, Any] = field(factory=dict)


@frozen
class ScoringConfig:
    workers: int | None = field(default=None, validator=_opt(_pos),
                                metadata={"help": "None = all cores"})
    timeout_s: float = field(default=5.0, validator=_pos)


@frozen
class BackendConfig:
    name: str = "cpu"
    plugin: str | None = None
    num_nodes: int = field(default=1, validator=_pos)
    devices_per_node: int | None = field(default=None, validator=_opt(_pos))
    num_threads: int | None = field(default=None, validator=_opt(_pos), metadata={"help": "torch threads (cpu)"})
    rollout_threads: int | None = field(default=None, validator=_opt(_pos), metadata={
        "help": "rollout.mode one_step_off/async on cpu: torch threads of the rollout worker, "
                "taken from num_threads (None = half)"})
    env: dict[str, str] = field(factory=dict, validator=lambda _i, _a, v: _env_keys(v))


@frozen
class AlgorithmConfig:
    """Unset (None) keys take the chosen algorithm's default (``r1zero.algo.algorithm``)."""
    name: str = field(default="grpo", metadata={"help": "registered algorithm: grpo | dr_grpo | "
                                                       "dapo | gspo | a plugin's"})
    adv_estimator: str | None = field(default=None, metadata={
        "help": "registered advantage estimator (group_norm | group_mean); None = the algorithm's"})
    policy_loss: str | None = field(default=None, metadata={
        "help": "registered policy loss (ppo_clip | gspo); None = the algorithm's"})
    adv_eps: float = field(default=1e-6, validator=_nonneg)
    kl_penalty: str = field(default="k3", validator=_choice(
        "k1", "kl", "abs", "k2", "mse", "k3", "low_var_kl"))
    kl_coef: float = field(default=0.001, validator=_nonneg)
    kl_ctrl: str = field(default="fixed", metadata={"help": "registered KL controller: fixed | adaptive"})
    kl_target: float = field(default=0.1, validator=_pos, metadata={"help": "adaptive: target KL"})
    kl_horizon: int = field(default=10000, validator=_pos, metadata={"help": "adaptive: samples"})
    clip_ratio: float | None = field(default=None, validator=_opt(_pos))
    clip_ratio_high: float | None = field(default=None, validator=_opt(_pos))
    dual_clip: float | None = field(default=None, validator=_opt(_num(gt(1))))
    loss_agg: str | None = field(default=None, validator=_opt(_choice(
        "token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")))
    entropy_coeff: float = field(default=0.0, validator=_nonneg)
    dynamic_sampling: bool | None = field(default=None, metadata={
        "help": "drop groups of equal rewards and refill the batch (DAPO)"})
    max_resample: int = field(default=3, validator=_nonneg, metadata={
        "help": "dynamic sampling: extra rollout rounds per step, at most"})
    overlong_mask: bool | None = field(default=None, metadata={
        "help": "train on no truncated response (DAPO's overlong filtering)"})
    rollout_correction: str | None = field(default=None, metadata={
        "help": "registered train/rollout mismatch correction of the policy term: tis_token | "
                "tis_seq | mis_token | mis_seq | a plugin's; None = off"})
    rollout_correction_c: float = field(default=2.0, validator=_num(ge(1)), metadata={
        "help": "the correction's C: TIS truncates pi_old/pi_rollout at C, MIS drops ratios "
                "outside [1/C, C]"})
    routing_replay: bool = field(default=False, metadata={
        "help": "MoE: the actor reuses the rollout's top-k expert choices (R3)"})


@frozen
class RolloutConfig:
    n_samples_per_prompt: int = field(default=8, validator=_pos)
    temperature: float = field(default=1.0, validator=_pos)
    top_p: float = field(default=1.0, validator=_num(gt(0), le(1)))
    top_k: int = field(default=-1, validator=ge(-1), metadata={"help": "-1 = off"})
    min_p: float = field(default=0.0, validator=_num(ge(0), le(1)))
    max_prompt_length: int = field(default=1024, validator=_pos)
    max_response_length: int = field(default=2048, validator=_pos)
    engine: str = field(default="auto", validator=_choice("auto", "sampler", "vllm"),
                        metadata={"help": "auto (vllm where the backend has it) | sampler | vllm"})
    dtype: str | None = field(default=None, validator=_opt(_choice("float32", "bfloat16",
                                                                    "float16")), metadata={
        "help": "the rollout's weights and compute dtype; None = model.dtype"})
    tensor_parallel: int = field(default=1, validator=_pos)
    pipeline_parallel: int = field(default=1, validator=_pos)
    expert_parallel: int = field(default=1, validator=_pos)
    val_n: int = field(default=4, validator=_pos, metadata={
        "help": "samples per validation problem at rollout.temperature: val/pass@k, val/mean@k "
                "with k = val_n (val/accuracy is greedy)"})
    max_num_seqs: int = field(default=64, validator=_pos)
    max_model_len: int | None = field(default=None, validator=_opt(_pos))
    max_num_batched_tokens: int | None = field(default=None, validator=_opt(_pos))
    gpu_memory_utilization: float = field(default=0.75, validator=_num(gt(0), le(1)))
    enforce_eager: bool = False
    sleep_level: int = field(default=0, validator=[ge(0), le(2)], metadata={
        "help": "vLLM asleep between generations: 0 off, 1 weights offloaded + KV cache "
                "dropped, 2 both dropped (weights pushed again before the next generation)"})
    sync_bucket_mb: int = field(default=512, validator=_pos, metadata={
        "help": "vLLM weight sync: the actor's tensors are streamed in buckets of at most this"})
    offload_train_params: bool = False
    offload_train_grads: bool = False
    offload_train_optimizer: bool = False
    mode: str = field(default="sync", validator=_choice("sync", "one_step_off", "async"), metadata={
        "help": "sync | one_step_off (step k+1's rollout overlaps step k's update) | async "
                "(a rollout worker fills a queue, samples at most max_staleness versions old)"})
    max_staleness: int = field(default=1, validator=_pos, metadata={
        "help": "async: how many weight versions older than the actor a sample may be"})
    partial: bool = field(default=False, metadata={
        "help": "async: a weight sync interrupts generation; tokens kept, resumed on new weights"})
    devices: str | None = field(default=None, metadata={
        "help": "one_step_off/async on accelerators: the rollout copy's device (e.g. cuda:1)"})


@frozen
class ActorConfig:
    lr: float = field(default=1e-6, validator=_num(gt(0), le(1)), metadata={"help": "AdamW lr, (0, 1]"})
    lr_scheduler: str = field(default="constant", validator=_choice("constant", "cosine", "linear"))
    lr_warmup_steps: int = field(default=0, validator=_nonneg)
    min_lr: float = field(default=0.0, validator=_num(ge(0), le(1)))
    weight_decay: float = field(default=0.0, validator=_nonneg)
    adam_beta1: float = field(default=0.9, validator=_num(ge(0), lt(1)))
    adam_beta2: float = field(default=0.95, validator=_num(ge(0), lt(1)))
    adam_eps: float = field(default=1e-8, validator=_pos)
    clip_grad: float = field(default=10000.0, validator=_pos)
    global_batch_size: int = field(default=384, validator=_pos, metadata={"help": "prompts per step"})
    mini_batch_size: int | None = field(default=None, validator=_opt(_pos), metadata={"help": "prompts per optimizer step; None = global"})
    micro_batch_size: int = field(default=1, validator=_pos, metadata={"help": "sequences per forward"})
    ppo_epochs: int = field(default=1, validator=_pos)
    shuffle_mini_batch: bool = False
    train_iters: int = field(default=100, validator=_pos)
    seed: int = field(default=1234, validator=ge(0))
    engine: str = field(default="auto", validator=_choice("auto", "torch", "fsdp", "megatron"),
                        metadata={"help": "train engine; auto = megatron when pp or ep > 1, fsdp "
                                          "when the run has > 1 rank or tp > 1, else torch"})
    tensor_parallel: int = field(default=1, validator=_pos)
    pipeline_parallel: int = field(default=1, validator=_pos)
    expert_parallel: int = field(default=1, validator=_pos)
    moe_tp_extend_ep: bool = False
    num_layer_list: list[int] | None = None
    recompute: str = field(default="none", validator=_choice("none", "full", "selective"))
    distributed_optimizer: bool | None = field(default=None, metadata={
        "help": "shard optimizer state over data-parallel ranks; None = the engine's default "
                "(fsdp: sharded)"})
    swap_optimizer: bool = False
    initial_loss_scale: float | None = field(default=None, validator=_opt(_pos))
    use_dynamic_bsz: bool = False
    max_packing_token_size: int | None = field(default=None, validator=_opt(_pos))
    use_remove_padding: bool = False

    def __attrs_post_init__(self):
        mbs = self.mini_batch_size or self.global_batch_size
        if self.global_batch_size % mbs:
            raise ValueError(f"global_batch_size {self.global_batch_size} must be divisible by "
                             f"mini_batch_size {mbs}")


@frozen
class ReferenceConfig:
    enabled: bool = True
    micro_batch_size: int = field(default=1, validator=_pos)


@frozen
class RayConfig:
    enabled: bool = False
    address: str | None = field(default=None, metadata={"help": "None = start local Ray; 'auto' or host:port"})
    integrated_worker: bool = True
    num_cpus: int | None = field(default=None, validator=_opt(_pos))
    runtime_env: dict[str, Any] = field(factory=dict)


@frozen
class CheckpointConfig:
    dir: str = "runs/checkpoints"
    save_interval: int = field(default=50, validator=_nonneg, metadata={"help": "0 = only at the end"})
    keep_last: int = field(default=2, validator=_pos)
    resume: bool = False
    load: str | None = None


@frozen
class WandbConfig:
    project: str = field(default="r1zero", validator=attrs.validators.min_len(1))
    name: str | None = field(default=None, metadata={"help": "run name; None = the recipe's name"})
    mode: str = field(default="online", validator=_choice("online", "offline", "disabled"))
    dir: str | None = field(default=None, metadata={"help": "None = logging.dir"})


@frozen
class LoggingConfig:
    dir: str = "runs/logs"
    tensorboard: bool = True
    plots: bool = True
    progress: bool = True
    log_interval: int = field(default=1, validator=_pos)
    val_interval: int = field(default=0, validator=_nonneg, metadata={
        "help": "validate on data.val_input every N steps, besides step 0 and the last; "
                "0 = only those two"})
    wandb: WandbConfig | None = field(default=None, metadata={
        "help": "Weights & Biases: {project, name, mode}; None = off (needs `pip install wandb`)"})


@frozen
class PluginsConfig:
    modules: list[str] = field(factory=list, metadata={"help": "local plugin modules or .py files"})
    disable: list[str] = field(factory=list)
    strict: bool = field(default=False, metadata={"help": "a plugin that fails to load is fatal"})


@frozen
class RecipeConfig:
    name: str = "r1zero"
    model: ModelConfig = field(factory=ModelConfig)
    data: DataConfig = field(factory=DataConfig)
    template: TemplateConfig = field(factory=TemplateConfig)
    rewards: dict[str, RewardConfig] = field(factory=lambda: {"base_acc": RewardConfig()})
    scoring: ScoringConfig = field(factory=ScoringConfig)
    backend: BackendConfig = field(factory=BackendConfig)
    algorithm: AlgorithmConfig = field(factory=AlgorithmConfig)
    rollout: RolloutConfig = field(factory=RolloutConfig)
    actor: ActorConfig = field(factory=ActorConfig)
    reference: ReferenceConfig = field(factory=ReferenceConfig)
    ray: RayConfig = field(factory=RayConfig)
    checkpoint: CheckpointConfig = field(factory=CheckpointConfig)
    logging: LoggingConfig = field(factory=LoggingConfig)
    plugins: PluginsConfig = field(factory=PluginsConfig)

    def __attrs_post_init__(self):
        if not self.rewards:
            raise ValueError("rewards: at least one reward scorer is required")
        if self.logging.val_interval and not self.data.val_input:
            raise ValueError(f"logging.val_interval {self.logging.val_interval} needs "
                             f"data.val_input (the held-out problems to validate on)")
        try:       # the layout's own rule, checked at load time too
            stage_layers(self.actor.num_layer_list, self.actor.pipeline_parallel,
                         self.model.num_layers if self.actor.num_layer_list else None)
        except ConfigError as exc:
            raise ValueError(f"{exc.key}: {exc.message}") from exc
