"""The plugin manager on real distributions: r1zero's built-ins and small installed dists."""

import json
import subprocess
import sys

import pytest

from r1zero.host.errors import PluginError
from r1zero.host.registry import get_reward
from r1zero.host.manager import PluginHost
from tests.plugin_dists import activate, make_dist

REWARD = '''
from r1zero.host.hookspecs import hookimpl

class Scorer:
    name = "{name}"
    components = ()
    in_process = True
    in_process_reason = "test scorer, pure"
    def score(self, response, ground_truth, extra):
        return {{"reward": {value}}}

@hookimpl
def register_rewards(register):
    register(Scorer())
'''


@pytest.fixture
def host():
    return PluginHost().load()


def test_builtins_load_from_entry_points(host):
    info = host.plugins["templates"]
    assert info.source == "built-in" and info.distribution == "r1zero"
    assert "deepseek3_r1" in host.names("templates")
    assert {"deepseek3_r1", "deepseek3", "qwen_r1"} <= set(info.registered["templates"])


def test_hook_register_templates(host):
    t = host.get("templates", "deepseek3_r1")
    assert t.name == "deepseek3_r1"


def test_collision_names_both_distributions(tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_dist(site, "r1zero-alpha", "1.2.0", {"r1z_test_alpha": REWARD.format(name="dup", value=1.0)},
              {"alpha": "r1z_test_alpha"})
    make_dist(site, "r1zero-beta", "0.3.1", {"r1z_test_beta": REWARD.format(name="dup", value=0.5)},
              {"beta": "r1z_test_beta"})
    activate(site, monkeypatch)
    host = PluginHost().load()
    with pytest.raises(PluginError) as err:
        host.get("rewards", "dup")
    msg = str(err.value)
    assert "r1zero-alpha (1.2.0)" in msg and "r1zero-beta (0.3.1)" in msg
    assert "plugins.disable: [beta]" in msg     # no key picks for a bare lookup: switch one off
    with pytest.raises(PluginError, match=r"pick one with `rewards\.dup\.plugin:`"):
        get_reward("dup", host=host)            # the recipe's lookup names the key that picks
    # the config picks one, by distribution or by plugin name
    assert host.get("rewards", "dup", plugin="r1zero-beta").score("", "", {})["reward"] == 0.5
    assert host.get("rewards", "dup", plugin="alpha").score("", "", {})["reward"] == 1.0


def test_disabled_plugin_is_blocked(tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_dist(site, "r1zero-alpha", "1.0", {"r1z_test_alpha": REWARD.format(name="mine", value=1.0)},
              {"alpha": "r1z_test_alpha"})
    activate(site, monkeypatch)
    host = PluginHost(disable=["alpha"]).load()
    assert host.plugins["alpha"].disabled
    with pytest.raises(PluginError, match=r"unknown reward scorer 'mine'.*disabled: alpha"):
        host.get("rewards", "mine")
    # a built-in is disabled the same way
    host = PluginHost(disable=["templates"]).load()
    assert "deepseek3_r1" not in host.names("templates")


def test_import_failure_names_plugin_and_distribution(tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_dist(site, "r1zero-broken", "0.0.1", {"r1z_test_broken": "raise RuntimeError('boom at import')"},
              {"broken": "r1z_test_broken"})
    activate(site, monkeypatch)
    host = PluginHost().load()
    info = host.plugins["broken"]
    assert "boom at import" in info.error and info.distribution == "r1zero-broken"
    assert "deepseek3_r1" in host.names("templates")     # the others keep working
    with pytest.raises(PluginError, match=r"'broken' \[r1zero-broken \(0.0.1\)\].*boom at import"):
        PluginHost(strict=True).load()
    with pytest.raises(PluginError, match="failed to load.*r1zero-broken"):
        host.get("rewards", "nothing_here")


def test_garbage_registration_is_reported(tmp_path, monkeypatch):
    site = tmp_path / "site"
    code = ("from r1zero.host.hookspecs import hookimpl\n"
            "@hookimpl\ndef register_rewards(register):\n    register(42)\n")
    make_dist(site, "r1zero-garbage", "1.0", {"r1z_test_garbage": code}, {"garbage": "r1z_test_garbage"})
    activate(site, monkeypatch)
    host = PluginHost().load()
    host.items("rewards")
    assert "without ['name', 'score']" in host.plugins["garbage"].error


def test_local_module_from_config_and_env(tmp_path, monkeypatch):
    path = tmp_path / "my_local_reward.py"
    path.write_text(REWARD.format(name="local_one", value=1.0))
    host = PluginHost(modules=[str(path)]).load()
    assert host.plugins[str(path)].source == "local"
    assert "local_one" in host.names("rewards")
    monkeypatch.setenv("R1ZERO_PLUGINS", str(path))
    assert "local_one" in PluginHost().load().names("rewards")


def test_register_in_memory_plugin_then_unregister(host):
    class Plugin:
        from r1zero.host.hookspecs import hookimpl

        @hookimpl
        def register_templates(self, register):
            from r1zero.data.templates import Template
            register(Template("tmp_tpl", format_user=("Q: {{content}}\nA:",)))
    host.register(Plugin(), name="throwaway")
    try:
        assert host.get("templates", "tmp_tpl").render("2+2") == "Q: 2+2\nA:"
    finally:
        host.unregister("throwaway")
    assert "tmp_tpl" not in host.names("templates")


def test_cli_plugins_json_lists_builtins():
    out = subprocess.run([sys.executable, "-m", "r1zero.cli.main", "plugins", "--json"],
                         capture_output=True, text=True, check=True).stdout
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["templates"]["source"] == "built-in"
    assert rows["templates"]["distribution"] == "r1zero"
