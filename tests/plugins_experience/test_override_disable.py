"""Overriding a built-in (same name, chosen in the config) and disabling plugins from the config.

The overriding package is an installed distribution in a temp site folder (tests/plugin_dists):
it must not stay installed, since every recipe naming ``deepseek3_r1`` would then have to pick.
"""

from __future__ import annotations

import pytest

from r1zero.config.load import load_config
from r1zero.host.errors import PluginError
from r1zero.host.manager import PluginHost
from r1zero.registry import get_scorers, get_template
from tests.plugin_dists import activate, make_dist

OVERRIDE = '''
from r1zero.host.hookspecs import hookimpl
from r1zero.data.templates import Template

@hookimpl
def register_templates(register):
    register(Template("deepseek3_r1", format_prefix=(("bos_token",),),
                      format_user=("Problem: {{content}}\\nSolution:",)))
'''


@pytest.fixture
def override_host(tmp_path, monkeypatch) -> PluginHost:
    site = tmp_path / "site"
    make_dist(site, "r1zero-my-templates", "2.0.1", {"r1z_test_override": OVERRIDE},
              {"my_templates": "r1z_test_override"})
    activate(site, monkeypatch)
    return PluginHost().load()


def test_same_name_as_a_builtin_is_an_error_naming_both(override_host):
    with pytest.raises(PluginError) as err:
        get_template("deepseek3_r1", host=override_host)
    msg = str(err.value)
    assert "template 'deepseek3_r1' is registered by both" in msg
    assert "'templates' [r1zero (0.1.0)]" in msg and "'my_templates' [r1zero-my-templates (2.0.1)]" in msg
    assert "`template.plugin:`" in msg


def test_config_picks_the_override_or_the_builtin(override_host, write_recipe, tiny_run):
    from transformers import AutoTokenizer

    from r1zero.data.pipeline import prepare, resolve
    from r1zero.data.prompts import load_dataset, output_dir

    tok = AutoTokenizer.from_pretrained(str(tiny_run / "model"))
    cfg = load_config(write_recipe(template={"name": "deepseek3_r1", "plugin": "r1zero-my-templates"}))
    prepare(resolve(cfg, override_host))                # preprocess renders with the override
    rows = load_dataset(output_dir(cfg)).rows
    first = tok.decode(rows[0].input_ids)
    assert first.startswith("<|bos|>Problem: ") and first.endswith("\nSolution:")
    # by entry-point name too; and `plugin: r1zero` picks the built-in
    assert get_template("deepseek3_r1", plugin="my_templates", host=override_host).format_user == (
        "Problem: {{content}}\nSolution:",)
    builtin = get_template("deepseek3_r1", plugin="r1zero", host=override_host)
    assert "A conversation between User and Assistant" in builtin.render("x", tokenizer=tok)


def test_disable_an_installed_plugin(examples_installed, write_recipe):
    cfg = load_config(write_recipe(
        rewards={"base_acc": {"weight": 1.0}, "length_penalty": {"weight": 0.5}},
        plugins={"disable": ["length_reward"]}))
    host = PluginHost(cfg.plugins.modules, cfg.plugins.disable).load()
    assert host.plugins["length_reward"].disabled
    with pytest.raises(PluginError, match=r"unknown reward scorer 'length_penalty'; available: "
                                          r".*base_acc.*\(disabled: length_reward\)"):
        get_scorers(cfg, host=host)


def test_disable_a_builtin_while_a_plugin_keeps_working(examples_installed, write_recipe):
    cfg = load_config(write_recipe(template={"name": "chat_r1"},
                                   plugins={"disable": ["templates", "demo_template"]}))
    host = PluginHost(cfg.plugins.modules, cfg.plugins.disable).load()
    assert host.names("templates") == ["chat_r1"]
    assert get_template(cfg.template.name, host=host).name == "chat_r1"
    with pytest.raises(PluginError, match=r"unknown template 'deepseek3_r1'.*disabled: .*templates"):
        get_template("deepseek3_r1", host=host)
