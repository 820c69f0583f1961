"""Run after `pip install -e .`:  python -m pytest -q"""

import pytest

from r1zero.manager import PluginHost
from r1zero.plugins.templates.r1 import R1_INSTRUCTION
from r1zero.registry import get_template


class _Tok:       # the two attributes a template reads from a tokenizer
    bos_token, eos_token = "<s>", "</s>"


@pytest.fixture
def host():
    return PluginHost().load()


def test_registered_by_the_installed_distribution(host):
    (reg,) = [r for r in host.items("templates") if r.name == "chat_r1"]
    assert reg.plugin.distribution == "r1zero-template-example" and reg.plugin.error is None


def test_renders_system_and_user_turns(host):
    t = get_template("chat_r1", host=host)
    assert t.render("What is 2 + 3?", tokenizer=_Tok()) == (
        f"<s>System: {R1_INSTRUCTION}\nUser: What is 2 + 3?\nAssistant:")
    assert t.render("Q", system="Be brief.", tokenizer=_Tok()) == "<s>System: Be brief.\nUser: Q\nAssistant:"
    assert t.stop_strings(_Tok()) == ["</answer>", "</s>"]


def test_needs_a_tokenizer_for_bos(host):
    with pytest.raises(Exception, match="chat_r1.*needs a tokenizer"):
        get_template("chat_r1", host=host).render("Q")
