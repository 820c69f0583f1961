"""A vLLM rollout engine for the ``cuda`` and ``ascend_a3`` backends (vllm-ascend on NPUs).

The engine has the rollout interface the trainer calls:

    generate(prompt_ids, n, generator) -> SampleOutput(prompt_index, response_ids, finished)
    sync_weights()      # after each optimizer step: actor weights -> the vLLM model

Everything that does not need vLLM is a pure function of the config and tested on CPU
(``llm_kwargs``, ``sampling_kwargs``, ``request_seeds``, ``flatten_outputs``, ``use_vllm``).
``VLLMRolloutEngine`` itself imports vLLM inside ``__init__`` and is unverified here: no
machine this project runs its tests on has vLLM and a GPU/NPU.

Weight sync follows what RL trainers do with vLLM >= 0.8: ``LLM.apply_model(fn)`` runs
``fn(model)`` in every vLLM worker, and ``model.load_weights(iter of (hf_name, tensor))`` lets
each tensor-parallel rank take its own shard of full HF tensors. Older vLLM (V0, in-process,
tp 1) is reached through ``llm.llm_engine.model_executor.driver_worker.model_runner.model``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from r1zero.host.errors import BackendUnavailable, ConfigError

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


def llm_kwargs(cfg: RecipeConfig) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` from the config (model, parallel sizes, memory).

    vLLM reads only the architecture from the HF directory (``model.tokenizer``, else
    ``model.path``; for the 671B recipe ``model.path`` is the mcore checkpoint) and starts from
    dummy weights: the engine pushes the actor's weights before the first generation, so a
    resumed actor and vLLM never disagree (MindSpeed-RL and verl do the same).

    max_model_len defaults to max_prompt_length + max_response_length; expert parallelism is
    switched on when rollout.expert_parallel > 1 (the EP size itself comes from the data
    parallel x tensor parallel layout of the instances, i.e. VLLM_DP_SIZE on Ascend).
    """
    r, m = cfg.rollout, cfg.model
    hf_dir = m.tokenizer or m.path
    kw: dict[str, Any] = {
        "model": hf_dir,
        "tokenizer": hf_dir,
        "load_format": "dummy",
        "dtype": m.dtype,
        "trust_remote_code": m.trust_remote_code,
        "tensor_parallel_size": r.tensor_parallel,
        "gpu_memory_utilization": r.gpu_memory_utilization,
        "max_num_seqs": r.max_num_seqs,
        "max_model_len": r.max_model_len or r.max_prompt_length + r.max_response_length,
        "enforce_eager": r.enforce_eager,
        "seed": cfg.actor.seed,
    }
    if r.pipeline_parallel > 1:
        kw["pipeline_parallel_size"] = r.pipeline_parallel
    if r.max_num_batched_tokens is not None:
        kw["max_num_batched_tokens"] = r.max_num_batched_tokens
    if r.expert_parallel > 1:
        kw["enable_expert_parallel"] = True
    return kw


def sampling_kwargs(cfg: RecipeConfig, n: int, stop_token_ids: Sequence[int],
                    seed: int | None = None) -> dict[str, Any]:
    """Keyword arguments of one ``vllm.SamplingParams``: n samples of at most
    max_response_length tokens, token ids only (no detokenisation)."""
    r = cfg.rollout
    kw: dict[str, Any] = {
        "n": n, "temperature": r.temperature, "top_p": r.top_p, "top_k": r.top_k,
        "min_p": r.min_p, "max_tokens": r.max_response_length,
        "stop_token_ids": list(stop_token_ids), "detokenize": False,
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


class LoadWeights:
    """Picklable ``fn(model)`` for ``LLM.apply_model``: load (hf_name, tensor) pairs."""

    def __init__(self, weights: list[tuple[str, Any]]):
        self.weights = weights

    def __call__(self, model: Any) -> int:
        model.load_weights(iter(self.weights))
        return len(self.weights)


def push_weights(llm: Any, named_tensors: Iterable[tuple[str, Any]], in_process: bool) -> int:
    """Load the actor's tensors into every vLLM worker; returns the number of tensors sent.

    Across processes tensors travel as CPU copies (pickled by vLLM's RPC); in process they are
    handed over as they are.
    """
    # torch.compile prefixes names with "_orig_mod."; vLLM expects the HF checkpoint names
    weights = [(name.removeprefix("_orig_mod."), t.detach() if in_process else t.detach().to("cpu"))
               for name, t in named_tensors]
    if hasattr(llm, "apply_model"):
        llm.apply_model(LoadWeights(weights))
    else:   # vLLM V0 without apply_model: only the driver worker is reachable (tp 1)
        llm.llm_engine.model_executor.driver_worker.model_runner.model.load_weights(iter(weights))
    return len(weights)


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
    """Generation with vLLM from token-id prompts; weights pushed from the actor after each step.

    Unverified on hardware (written against the vLLM >= 0.8 ``LLM`` API). Colocated with the
    actor on the same devices, so ``rollout.gpu_memory_utilization`` must leave the actor room.
    """

    name = "vllm"
    implements = frozenset({
        "rollout.min_p", "rollout.tensor_parallel", "rollout.pipeline_parallel",
        "rollout.expert_parallel", "rollout.max_num_seqs", "rollout.max_model_len",
        "rollout.max_num_batched_tokens", "rollout.gpu_memory_utilization", "rollout.enforce_eager"})

    def __init__(self, cfg: RecipeConfig, train_engine: Any, tokenizer: Any,
                 stops: Sequence[Sequence[int]]):
        # apply_model ships LoadWeights to worker processes; vLLM V1 refuses to pickle
        # arbitrary objects unless this is set.
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        from vllm import LLM, SamplingParams

        self.cfg, self.train_engine = cfg, train_engine
        self._sampling_params = SamplingParams
        self.stop_ids = single_token_stops(stops)
        self.llm = LLM(**llm_kwargs(cfg))
        self.in_process = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"
        self._synced = False

    def generate(self, prompt_ids: Sequence[Sequence[int]], n: int, generator: Any = None,
                 seeds: Sequence[int] | None = None):
        from r1zero.engines.sampler import SampleOutput

        if not self._synced:        # vLLM started from dummy weights
            self.sync_weights()
        if seeds is None:   # per-prompt seeds from the trainer, else drawn from the generator
            seeds = request_seeds(generator, len(prompt_ids)) or [None] * len(prompt_ids)
        seeds = [None if s is None else int(s) % (2 ** 31 - 1) for s in seeds]
        params = [self._sampling_params(**sampling_kwargs(self.cfg, n, self.stop_ids, s))
                  for s in seeds]
        prompts = [{"prompt_token_ids": list(p)} for p in prompt_ids]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        per_prompt = [[(c.token_ids, c.finish_reason) for c in o.outputs] for o in outs]
        index, responses, finished = flatten_outputs(per_prompt)
        return SampleOutput(prompt_index=index, response_ids=responses, finished=finished)

    def sync_weights(self) -> None:
        """The actor's full weights, one tensor at a time from ``train_engine.full_weights()``
        (gathered from the shards of a sharded engine), cast to ``model.dtype``."""
        dtype = getattr(self.train_engine, "compute_dtype", None)
        weights = ((k, t if dtype is None else t.to(dtype))
                   for k, t in self.train_engine.full_weights())
        push_weights(self.llm, weights, self.in_process)
        self._synced = True
