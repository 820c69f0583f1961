"""A templates.json in the shape of MindSpeed-RL's own templates.json loads
as is: its qwen3 entry carries ``template_class``, ``format_function`` with a ``tool_format``
beside its slots, and a ``format_tools`` with no slots at all. The strings here are written for
this test; only the shape follows the real file."""

import json
import logging

import pytest

from r1zero.data import templates as T
from r1zero.host.errors import ConfigError

MINDSPEED_SHAPED = [
    {"name": "plain", "format_user": {"slots": ["Q: {{content}}\nA:"]},
     "format_system": {"slots": ["{{content}}\n"]}, "format_separator": {"slots": ["\n"]}},
    {"name": "chat_r1",
     "format_user": {"slots": ["<|im_start|>user\nThink, then answer in \\boxed{}.\n"
                               "{{content}}<|im_end|>\n<|im_start|>assistant\n"]},
     "format_system": {"slots": ["<|im_start|>system\n{{content}}<|im_end|>\n"]},
     "format_observation": {"slots": ["<|im_start|>tool\n{{content}}<|im_end|>\n"]},
     "format_separator": {"slots": ["\n"]}, "default_system": "Be brief.",
     "stop_words": ["<|im_end|>"], "replace_eos": True},
    {"name": "qwen3",
     "format_user": {"slots": ["<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n"]},
     "format_assistant": {"slots": ["{{content}}<|im_end|>\n"]},
     "format_system": {"slots": ["<|im_start|>system\n{{content}}<|im_end|>\n"]},
     "format_function": {"slots": ["{{content}}<|im_end|>\n"], "tool_format": "qwen"},
     "format_observation": {"slots": ["<|im_start|>user\n<tool_response>\n{{content}}\n"
                                      "</tool_response><|im_end|>\n<|im_start|>assistant\n"]},
     "format_tools": {"tool_format": "qwen"},
     "stop_words": ["<|im_end|>"], "replace_eos": True, "template_class": "ReasoningTemplate"},
    {"name": "with_bos", "format_user": {"slots": ["[Q] {{content}} [A]"]},
     "format_prefix": {"slots": [["bos_token"]]}, "efficient_eos": True},
]


@pytest.fixture
def shaped_file(tmp_path):
    f = tmp_path / "templates.json"
    f.write_text(json.dumps(MINDSPEED_SHAPED, indent=2, ensure_ascii=False))
    return f


def test_mindspeed_shaped_file_loads_and_keeps_template_class(shaped_file, caplog):
    caplog.set_level(logging.WARNING, logger="r1zero.data.templates")
    loaded = {t.name: t for t in T.load_templates_file(shaped_file)}
    assert list(loaded) == ["plain", "chat_r1", "qwen3", "with_bos"]
    q3 = loaded["qwen3"]
    assert q3.ignored == {"template_class": "ReasoningTemplate"}
    assert q3.render("2+2?") == "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    assert q3.stop_words == ("<|im_end|>",) and q3.replace_eos
    assert loaded["chat_r1"].render("x").startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    warned = [r.getMessage() for r in caplog.records if "ignoring template field" in r.getMessage()]
    assert len(warned) == 1 and "qwen3.template_class" in warned[0] and str(shaped_file) in warned[0]


def test_ignored_fields_are_reported_once_per_file(shaped_file, caplog):
    caplog.set_level(logging.WARNING, logger="r1zero.data.templates")
    T._REPORTED.clear()
    for _ in range(3):
        T.load_templates_file(shaped_file)
    assert sum("ignoring template field" in r.getMessage() for r in caplog.records) == 1


def test_mindspeed_shaped_template_drives_preprocessing(shaped_file, tmp_path, tiny_tokenizer):
    from r1zero.data.preprocess import load_preprocessed, preprocess
    from r1zero.host.manager import PluginHost
    from r1zero.registry import get_handler, get_template

    host = PluginHost().load()
    t = get_template("qwen3", file=str(shaped_file), host=host)
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"problem": "What is 2 + 3?", "answer": "5"}) + "\n")
    preprocess(data, get_handler("deepscaler", host=host), t, tiny_tokenizer, tmp_path / "out", map_keys=None,
               max_prompt_length=256, workers=1)
    table, manifest = load_preprocessed(tmp_path / "out")
    assert manifest.template == "qwen3"
    assert table.to_pylist()[0]["prompt"] == ("<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n"
                                              "<|im_start|>assistant\n")


def test_a_misspelt_known_field_is_still_an_error(tmp_path):
    f = tmp_path / "templates.json"
    f.write_text(json.dumps([{"name": "x", "format_user": {"slots": ["{{content}}"]},
                              "default_sytem": "hi"}]))
    with pytest.raises(ConfigError, match=r"'default_sytem' -> 'default_system'"):
        T.load_templates_file(f)
