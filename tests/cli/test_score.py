"""``r1zero score`` logic: real jsonl files, the real plugin registry and worker pool."""

from __future__ import annotations

import json

import pytest

from r1zero.host.errors import ConfigError, DatasetError, PluginError, R1ZeroError
from r1zero.host.manager import get_host
from r1zero.cli.score import read_rows, resolve_scorers, run_score, split_options


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [
    {"response": "<think>t</think><answer>\\boxed{\\frac{1}{2}}</answer>", "ground_truth": "0.5"},
    {"response": "<think>t</think><answer>\\boxed{3}</answer>", "gold": "4", "id": 7},
    {"response": "\\boxed{9}", "gold": "9"},
]


def test_scores_a_file_and_prints_components(tmp_path, capsys):
    rc = run_score(write(tmp_path / "s.jsonl", ROWS), ["base_acc"], {}, workers=1, host=get_host())
    out = capsys.readouterr().out
    assert rc == 0
    assert "row 1: reward=1  base_acc/reward=1  base_acc/format=1  base_acc/accuracy=1" in out
    assert "row 2: reward=0  base_acc/reward=0  base_acc/format=1  base_acc/accuracy=0" in out
    assert "row 3: reward=0" in out and "base_acc/format=0" in out
    assert "3 rows scored by base_acc" in out and "mean base_acc/format = 0.6667" in out


def test_json_output_file_and_options(tmp_path, capsys):
    out_file = tmp_path / "scores.jsonl"
    rc = run_score(write(tmp_path / "s.jsonl", ROWS), ["base_acc"],
                   {"format_weight": "0.5", "accuracy_requires_format": "false"},
                   workers=1, output=out_file, as_json=True, host=get_host())
    recs = [json.loads(line) for line in out_file.read_text().splitlines()]
    # 0.5*format + accuracy (counted without format): 1.5, 0.5, 1.0
    assert rc == 0 and [r["reward"] for r in recs] == [1.5, 0.5, 1.0]
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["rows"] == 3 and summary["counts"]["reward/errors"] == 0


def test_bad_rows_name_file_row_and_field(tmp_path):
    path = write(tmp_path / "bad.jsonl", [ROWS[0], {"response": "x", "answer": "1"}])
    with pytest.raises(DatasetError, match=r"bad.jsonl row 2: field 'ground_truth' \(or 'gold'\) "
                                           r"missing; keys are \['answer', 'response'\]"):
        read_rows(path)
    (tmp_path / "nojson.jsonl").write_text('{"response": "1", "gold": 2}\nnot json\n')
    with pytest.raises(DatasetError, match="nojson.jsonl row 2: not JSON"):
        read_rows(tmp_path / "nojson.jsonl")


def test_options_and_unknown_names():
    assert split_options(["a", "b"], {"a.x": "1", "b": {"y": "true"}}) == {"a": {"x": 1},
                                                                        "b": {"y": True}}
    with pytest.raises(ConfigError, match="which scorer"):
        split_options(["a", "b"], {"x": 1})
    with pytest.raises(PluginError, match="unknown reward scorer 'nope'; available: .*base_acc"):
        resolve_scorers(["nope"], host=get_host())
    with pytest.raises(R1ZeroError, match="unknown option 'colour'"):
        resolve_scorers(["base_acc"], {"colour": "red"}, host=get_host())


PLUGIN = '''
from r1zero.host.hookspecs import hookimpl

class Picky:
    name, components, in_process, in_process_reason = "picky", ("len",), False, ""

    def score(self, response, ground_truth, extra):
        if "boom" in response:
            raise ValueError("cannot score " + response)
        return {"reward": 1.0, "len": float(len(response))}

@hookimpl
def register_rewards(register):
    register(Picky())
'''


def test_a_local_file_plugin_scores_in_workers_and_failures_exit_3(tmp_path, monkeypatch, capsys):
    plugin = tmp_path / "picky_plugin.py"
    plugin.write_text(PLUGIN)
    monkeypatch.setenv("R1ZERO_PLUGINS", str(plugin))
    get_host(fresh=True)
    try:
        rows = [{"response": "ab", "gold": "1"}, {"response": "boom", "gold": "1"}]
        rc = run_score(write(tmp_path / "s.jsonl", rows), ["picky", "base_acc"], {}, workers=1,
                       host=get_host())
    finally:
        monkeypatch.delenv("R1ZERO_PLUGINS")
        get_host(fresh=True)
    out = capsys.readouterr().out
    assert rc == 3
    assert "row 1: reward=1  picky/reward=1  picky/len=2" in out
    assert "row 2: reward=0  picky/reward=0  picky/len=0" in out
    assert "! reward scorer 'picky' row 2: error: ValueError: cannot score boom" in out
