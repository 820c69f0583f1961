"""build_base_model with a tiny step count: builds, caches, reloads with Auto* classes,
and is reproducible."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from r1zero.demo import basemodel
from r1zero.demo.basemodel import DEMO_TEMPLATE, PretrainConfig, build_base_model, cache_key
from r1zero.demo.corpus import render_demo_prompt

TINY = dict(steps=2, n_documents=200, batch_size=8, hidden_size=32, intermediate_size=64,
            num_heads=2, warmup=1)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = tmp_path_factory.mktemp("demo_cache")
    return cache, build_base_model(cache, seed=0, **TINY)


def test_builds_a_loadable_qwen2_model(built):
    _, path = built
    assert path.name.startswith("base-") and (path / "model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(str(path))
    tok = AutoTokenizer.from_pretrained(str(path))
    assert model.config.model_type == "qwen2" and model.config.num_hidden_layers == 2
    assert model.config.vocab_size == len(tok)
    assert (model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id) == \
        (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    prompt = tok.bos_token + render_demo_prompt("What is 3 + 4?")
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    assert ids[0, 0].item() == tok.bos_token_id
    out = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > ids.shape[1]
    info = json.loads((path / "build.json").read_text())
    assert info["config"]["steps"] == 2 and len(info["losses"]) == 1
    assert json.loads((path / "template.json").read_text()) == [DEMO_TEMPLATE]


def test_second_call_is_a_cache_hit(built, monkeypatch):
    cache, path = built
    stamp = (path / "model.safetensors").stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("the cached model was rebuilt")

    monkeypatch.setattr(basemodel, "_build", no_training)
    assert build_base_model(cache, seed=0, **TINY) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in cache.iterdir()) == [path.name]   # no temporary left behind


def test_same_seed_same_weights_other_seed_other_dir(built, tmp_path):
    _, path = built
    again = build_base_model(tmp_path, seed=0, **TINY)
    assert again.name == path.name
    a, b = load_file(str(path / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert cache_key(PretrainConfig(seed=1, **TINY)) != cache_key(PretrainConfig(seed=0, **TINY))
    longer = PretrainConfig(seed=0, **{**TINY, "steps": 3})
    assert cache_key(longer) != cache_key(PretrainConfig(seed=0, **TINY))


def test_unknown_build_parameter_is_an_error(tmp_path):
    with pytest.raises(TypeError, match="unknown build parameter .layers_count.; valid: seed"):
        build_base_model(tmp_path, layers_count=3)
