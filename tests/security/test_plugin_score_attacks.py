"""Items 10, 11, 12, 15 (score paths) and 16: plugins that misspell hooks or exit, and score
files or flags that are hostile, end as recorded failures or ``r1zero: error:`` lines; the
``--json`` stdout stays JSON whatever a plugin prints."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from r1zero.host.errors import PluginError
from r1zero.host.manager import PluginHost
from r1zero.scoring.pool import ScoringPool, available_cores
from tests.security.conftest import assert_user_error, main_

MISSPELLED = textwrap.dedent('''
    from r1zero.host.hookspecs import hookimpl

    @hookimpl
    def register_reward(register):          # singular: no such hook
        raise AssertionError("never called")

    def register_templates(register):       # right name, but no @hookimpl
        raise AssertionError("never called")

    def register_everything(register):      # a register_* that matches nothing
        pass
''')
EXITS = "import sys\nsys.exit(3)\n"
EXITS_IN_HOOK = textwrap.dedent('''
    import sys
    from r1zero.host.hookspecs import hookimpl

    @hookimpl
    def register_rewards(register):
        sys.exit(4)
''')


def _host(tmp_path, source, name, strict=False):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return PluginHost([str(path)], entry_points=False, strict=strict), str(path)


def test_misspelled_hooks_are_load_failures_with_the_closest_hook(tmp_path):
    host, path = _host(tmp_path, MISSPELLED, "misspelled")
    host.load()
    error = host.plugins[path].error
    assert "'register_reward' matches no hook; did you mean 'register_rewards'?" in error
    assert "defines register_templates() without @hookimpl" in error
    assert "defines register_everything(), which matches no hook" in error
    assert host.names("rewards") == []


def test_strict_plugins_refuse_a_misspelled_hook(tmp_path):
    host, _ = _host(tmp_path, MISSPELLED, "misspelled", strict=True)
    with pytest.raises(PluginError, match="did you mean 'register_rewards'"):
        host.load()


def test_hook_names_come_from_the_hookspecs(tmp_path):
    """A hook added to the specs (as other issues add them) is known at once."""
    import pluggy

    from r1zero.host.hookcheck import unknown_hooks

    class Extra:
        @pluggy.HookspecMarker("r1zero")
        def register_widgets(register):
            """A hook this test adds."""

    host, path = _host(tmp_path, "from r1zero.host.hookspecs import hookimpl\n\n@hookimpl\n"
                       "def register_widget(register):\n    pass\n", "widget")
    host.pm.add_hookspecs(Extra)
    host.load()
    assert "did you mean 'register_widgets'?" in host.plugins[path].error
    assert unknown_hooks(host.pm, host.pm.get_plugin(path)) == [host.plugins[path].error]


@pytest.mark.parametrize("source,where", [(EXITS, "failed to import"),
                                          (EXITS_IN_HOOK, "register_rewards raised")])
def test_sys_exit_in_a_plugin_is_a_load_failure_naming_it(tmp_path, source, where):
    host, path = _host(tmp_path, source, "exits")
    assert host.names("rewards") == []                 # no SystemExit escapes
    assert where in host.plugins[path].error and "SystemExit(" in host.plugins[path].error


def test_sys_exit_plugin_does_not_kill_the_cli(tmp_path):
    plugin = tmp_path / "exits.py"
    plugin.write_text(EXITS)
    env = dict(os.environ, R1ZERO_PLUGINS=str(plugin))
    proc = subprocess.run([sys.executable, "-m", "r1zero.cli", "plugins"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "FAILED: failed to import" in proc.stdout and "SystemExit(3)" in proc.stdout
    assert "1 failed to load" in proc.stdout


# -- score ------------------------------------------------------------------------------------
def _rows(tmp_path, rows, name="s.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


GOOD = [{"response": "<think>x</think><answer>\\boxed{2}</answer>", "ground_truth": "2"}]


@pytest.mark.parametrize("flags,key,why", [(["--workers", "0"], "--workers", ">= 1"),
                                          (["--timeout", "-1"], "--timeout", "> 0"),
                                          (["--timeout", "nan"], "--timeout", "finite")])
def test_score_flags_out_of_range(tmp_path, capsys, flags, key, why):
    assert_user_error(main_(capsys, "score", str(_rows(tmp_path, GOOD)), *flags), key, why)


def test_score_input_missing_directory_or_not_utf8(tmp_path, capsys):
    assert_user_error(main_(capsys, "score", str(tmp_path / "nope.jsonl")), "file not found")
    assert_user_error(main_(capsys, "score", str(tmp_path)), "is a directory")
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(json.dumps(GOOD[0]).encode() + b"\n" + b'{"response": "caf\xe9"}\n')
    assert_user_error(main_(capsys, "score", str(bad)), "latin1.jsonl row 2", "not valid UTF-8")


def test_score_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = main_(capsys, "score", str(_rows(tmp_path, GOOD)), "--output", str(blocker / "x.jsonl"))
    assert_user_error(proc, "--output", "cannot write")


@pytest.mark.parametrize("response,what", [(None, "null"), (["2"], "a list"), ({"a": 1}, "an object"),
                                           (2, "int")])
def test_non_string_response_is_a_row_error(tmp_path, capsys, response, what):
    path = _rows(tmp_path, [GOOD[0], {"response": response, "ground_truth": "2"}])
    assert_user_error(main_(capsys, "score", str(path)), "s.jsonl row 2",
                      f"'response' must be a string, got {what}")


def test_score_workers_are_capped_at_the_cores(caplog):
    from r1zero.plugins.rewards.base_acc import BaseAccScorer

    with caplog.at_level(logging.WARNING, logger="r1zero"):
        with ScoringPool([(BaseAccScorer(), 1.0)], workers=100_000) as pool:
            assert len(pool._workers.workers) == available_cores()
            assert pool.score(["\\boxed{1}"], ["1"]).counts["reward/errors"] == 0
    assert f"100000 scoring workers requested, {available_cores()} cores available" in caplog.text


NOISY = textwrap.dedent('''
    print("noisy: imported")
    from r1zero.host.hookspecs import hookimpl

    class Noisy:
        name, components, in_process, in_process_reason = "noisy", ("x",), False, ""

        def score(self, response, ground_truth, extra):
            print("noisy: scoring", response)
            return {"reward": 1.0, "x": 0.5}

    @hookimpl
    def register_rewards(register):
        print("noisy: registering")
        register(Noisy())
''')


def test_plugin_prints_do_not_corrupt_score_json(tmp_path):
    plugin = tmp_path / "noisy_plugin.py"
    plugin.write_text(NOISY)
    path = _rows(tmp_path, GOOD * 3)
    env = dict(os.environ, R1ZERO_PLUGINS=str(plugin))
    proc = subprocess.run([sys.executable, "-m", "r1zero.cli", "score", str(path), "--scorer",
                           "noisy", "--json", "--workers", "1"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]   # every line is JSON
    assert [r["row"] for r in records[:-1]] == [1, 2, 3] and "summary" in records[-1]
    assert "noisy: imported" in proc.stderr and "noisy: registering" in proc.stderr
    assert "noisy: scoring" in proc.stderr


def test_duplicate_dataset_ids_are_reported(tiny_setup, tmp_path, capsys):
    from tests.security.conftest import recipe, write_recipe

    data = tmp_path / "dup.jsonl"
    rows = [{"id": "a", "problem": "1+1?", "answer": "2"}, {"id": "b", "problem": "2+2?", "answer": "4"},
            {"id": "a", "problem": "3+3?", "answer": "6"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = recipe(tiny_setup, tmp_path, data={"input": str(data), "output": str(tmp_path / "p")})
    proc = main_(capsys, "preprocess", str(write_recipe(tmp_path / "r.yaml", cfg)))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    assert manifest["n_duplicate_ids"] == 1 and manifest["duplicate_ids"] == ["id 'a': rows 1 and 3"]
