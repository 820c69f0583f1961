"""Broken plugins get an error naming them, ``r1zero plugins`` shows it, the others keep working.

Each broken package is a real installed distribution in a temp site folder (tests/plugin_dists):
one raises at import, one registers garbage, one returns malformed rewards.
"""

from __future__ import annotations

import json

import pytest

from r1zero.host import manager
from r1zero.cli.main import main
from r1zero.host.manager import PluginHost
from r1zero.host.registry import get_reward
from r1zero.scoring.pool import ScoringPool
from tests.plugin_dists import activate, make_dist

GARBAGE = '''
from r1zero.host.hookspecs import hookimpl

@hookimpl
def register_rewards(register):
    register("length_penalty")          # a string, not a scorer
'''

MALFORMED = '''
from r1zero.host.hookspecs import hookimpl

class Scorer:
    components = ("part",)
    in_process = False
    in_process_reason = ""
    def __init__(self, name, value):
        self.name, self.value = name, value
    def score(self, response, ground_truth, extra):
        return {"reward": self.value, "part": 1.0}

class Here(Scorer):
    in_process = True
    in_process_reason = "returns a constant"

@hookimpl
def register_rewards(register):
    register(Scorer("nan_reward", float("nan")))       # scored in a worker process
    register(Here("text_reward", "0.5"))               # scored in this process
'''


@pytest.fixture
def broken_site(tmp_path, monkeypatch, examples_installed):
    site = tmp_path / "site"
    make_dist(site, "r1zero-boom", "0.1.0", {"r1z_test_boom": "raise ImportError('needs libfoo')"},
              {"boom": "r1z_test_boom"})
    make_dist(site, "r1zero-garbage", "0.2.0", {"r1z_test_garbage": GARBAGE},
              {"garbage": "r1z_test_garbage"})
    make_dist(site, "r1zero-malformed", "0.3.0", {"r1z_test_malformed": MALFORMED},
              {"malformed": "r1z_test_malformed"})
    activate(site, monkeypatch)
    monkeypatch.setattr(manager, "_default", None)      # the CLI builds its host anew
    return site


def test_cli_shows_failures_and_the_rest_works(broken_site, capsys):
    assert main(["plugins"]) == 0
    text = capsys.readouterr().out
    assert ("boom  [installed; r1zero-boom 0.1.0; r1z_test_boom]\n    FAILED: failed to import "
            "r1z_test_boom: ImportError: needs libfoo") in text
    assert ("garbage  [installed; r1zero-garbage 0.2.0; r1z_test_garbage]\n    FAILED: "
            "register_rewards raised PluginError: registered a reward scorer 'length_penalty' "
            "without ['name', 'score']") in text
    assert "plugins, 2 failed to load" in text

    manager._default = None
    assert main(["plugins", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["boom"]["error"] and rows["garbage"]["error"]
    ok = ["length_reward", "chat_template", "cpu_alias", "base_acc", "templates", "malformed"]
    assert all(rows[name]["error"] is None for name in ok)
    assert rows["length_reward"]["registered"] == {"rewards": ["length_penalty"]}


def test_lookups_name_the_failed_plugins(broken_site):
    host = PluginHost().load()
    assert get_reward("length_penalty", host=host).name == "length_penalty"   # still works
    with pytest.raises(Exception, match=r"unknown reward scorer 'boom_reward'.*failed to load: "
                                        r"'boom' \[r1zero-boom \(0.1.0\)\]: failed to import"):
        get_reward("boom_reward", host=host)


def test_malformed_rewards_are_errors_naming_the_scorer(broken_site):
    host = PluginHost().load()
    scorers = [(get_reward("nan_reward", host=host), 1.0), (get_reward("text_reward", host=host), 1.0),
               (get_reward("length_penalty", {"max_length": 4, "buffer": 2}, host=host), 1.0)]
    with ScoringPool(scorers, workers=1, timeout_s=10.0) as pool:
        batch = pool.score(["abc", "abcde"], ["1", "1"], [{}, {}])
    # the malformed scorers give 0 with errors; length_penalty: 3 chars -> (2-3)/2 = -0.5, 5 -> -1
    assert batch.rewards == [pytest.approx(-0.5), pytest.approx(-1.0)]
    assert batch.components["nan_reward/reward"] == [0.0, 0.0]
    assert batch.counts["reward/nan_reward/errors"] == 2 and batch.counts["reward/text_reward/errors"] == 2
    assert batch.counts["reward/length_penalty/errors"] == 0
    nan_err = [e for e in batch.errors if "'nan_reward'" in e]
    text_err = [e for e in batch.errors if "'text_reward'" in e]
    assert len(nan_err) == 2 and "returned reward=nan; expected a finite number" in nan_err[0]
    assert len(text_err) == 2 and "returned reward='0.5'; expected a finite number" in text_err[0]
