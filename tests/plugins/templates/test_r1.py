import json

import pytest
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from r1zero.host.errors import ConfigError, PluginError
from r1zero.host.manager import PluginHost
from r1zero.registry import get_template
from r1zero.data.templates import Template, load_templates_file

# MindSpeed-RL's deepseek3_r1 string, written out here on purpose, not imported.
DEEPSEEK3_R1 = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> "
    "</answer> tags, respectively, i.e., <think> reasoning process here </think><answer> answer here "
    "</answer>. Put your final answer within \\boxed{}. <｜User｜>{{content}}<｜Assistant｜>")
ITEM = ("Let $a_n$ be a sequence with $a_1 = 1$ and $a_{n+1} = 2a_n + 1$. Find $a_{10}$.")


@pytest.fixture(scope="module")
def tokenizer():
    tok = Tokenizer(models.WordLevel({"<unk>": 0, "<｜begin▁of▁sentence｜>": 1, "<eos>": 2}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<｜begin▁of▁sentence｜>",
                                   eos_token="<eos>", unk_token="<unk>")


@pytest.fixture(scope="module")
def host():
    return PluginHost().load()


def test_deepseek3_r1_renders_reference_string(host, tokenizer):
    t = get_template("deepseek3_r1", host=host)
    expected = "<｜begin▁of▁sentence｜>" + DEEPSEEK3_R1.replace("{{content}}", ITEM)
    assert t.render(ITEM, tokenizer=tokenizer) == expected
    assert "\uff5c" in t.render(ITEM, tokenizer=tokenizer)      # full-width bars survive
    assert t.stop_words == ()


def test_qwen_r1_has_system_and_stop_word(host, tokenizer):
    t = get_template("qwen_r1", host=host)
    out = t.render("1+1?", tokenizer=tokenizer)
    assert out.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert out.endswith("\n1+1?<|im_end|>\n<|im_start|>assistant\n")
    assert t.stop_words == ("<|im_end|>",)


def test_templates_json_file_registers_custom_template(tmp_path, host, tokenizer):
    f = tmp_path / "templates.json"
    f.write_text(json.dumps([{"name": "mine", "format_prefix": {"slots": [["bos_token"]]},
                              "format_user": {"slots": ["Q: {{content}}\nA: <think>"]},
                              "stop_words": ["</answer>"]}]))
    t = get_template("mine", file=str(f), host=host)
    assert t.render("2+3", tokenizer=tokenizer) == "<｜begin▁of▁sentence｜>Q: 2+3\nA: <think>"
    assert t.stop_words == ("</answer>",)
    # names not in the file still resolve to registered templates
    assert get_template("deepseek3_r1", file=str(f), host=host).name == "deepseek3_r1"


def test_templates_json_errors_name_the_file(tmp_path):
    f = tmp_path / "templates.json"
    f.write_text(json.dumps([{"name": "x", "format_usr": {"slots": ["{{content}}"]}}]))
    with pytest.raises(ConfigError, match=r"templates.json: template 'x': unknown field\(s\) \['format_usr'\]"):
        load_templates_file(f)
    f.write_text("[{")
    with pytest.raises(ConfigError, match="templates.json: not valid JSON"):
        load_templates_file(f)


def test_unknown_template_lists_available(host):
    with pytest.raises(PluginError, match=r"unknown template 'deepseek4'; available: .*deepseek3_r1.*qwen_r1"):
        get_template("deepseek4", host=host)


def test_special_token_without_tokenizer_is_an_error():
    t = Template.from_entry({"name": "b", "format_prefix": {"slots": [["bos_token"]]},
                             "format_user": {"slots": ["{{content}}"]}})
    with pytest.raises(ConfigError, match="needs a tokenizer"):
        t.render("x")
