"""A rank that does not generate (a model-parallel rank other than its group's first) builds no
rollout model: the backend gives it a ``WeightRelay``, for the sampler and for vLLM alike, which
only iterates the actor's (collective) ``full_weights()`` at each sync."""

from __future__ import annotations

import pytest

from r1zero.config.load import load_config
from r1zero.data.pipeline import from_config
from tests.trainer.conftest import recipe


@pytest.mark.parametrize("engine", ["sampler", "vllm"])
def test_a_non_generating_rank_builds_no_rollout_model(tiny_setup, tmp_path, engine):
    from transformers import AutoTokenizer

    from r1zero.engines.rollout import WeightRelay
    from r1zero.engines.torch_engine import TorchTrainEngine
    from r1zero.host.errors import TrainingError

    cfg = load_config(None, base=recipe(tiny_setup, tmp_path, rollout={"engine": engine}))
    backend = from_config(cfg).backend
    tok = AutoTokenizer.from_pretrained(cfg.model.path)
    actor = TorchTrainEngine(cfg, tok, "cpu")
    names = []
    full = actor.full_weights
    actor.full_weights = lambda: (names.append(n) or (n, t) for n, t in full())
    relay = backend.make_rollout_engine(cfg, actor, tok, [(tok.eos_token_id,)], generates=False)
    assert type(relay) is WeightRelay
    assert not any(hasattr(relay, a) for a in ("model", "sampler", "llm"))
    every = [n for n, _ in full()]
    # its part of the generating ranks' gathers: the sampler syncs at build, vLLM in the
    # trainer's first sync
    assert names == (every if engine == "sampler" else [])
    names.clear()
    relay.sync_weights()                    # each step's sync: every tensor, once
    assert names == every
    with pytest.raises(TrainingError, match="this rank does not generate"):
        relay.generate([[1, 2]], 2)
    if engine == "sampler":                 # the generating rank: a full sampler copy
        own = backend.make_rollout_engine(cfg, actor, tok, [(tok.eos_token_id,)])
        assert own.model is not None
