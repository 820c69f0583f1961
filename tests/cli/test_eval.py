"""``r1zero eval`` end to end on a tiny random Qwen2: the command path, the files it writes,
and its refusals (the learning itself is shown by ``r1zero demo``)."""

import json
import pytest

from r1zero.cli.main import main
from tests.tiny_qwen2 import save_tiny_qwen2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_tokenizer):
    from transformers import AutoTokenizer

    from r1zero.demo.arith import demo_records

    root = tmp_path_factory.mktemp("eval")
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer)
    model = save_tiny_qwen2(tok, root / "model", max_positions=256)
    tok.save_pretrained(model)
    rows = demo_records(6, seed=5)
    for i, r in enumerate(rows):
        r["source"] = "alpha" if i % 2 else "beta"
    data = root / "problems.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = root / "recipe.yaml"
    recipe.write_text("template: {name: r1_demo}\nbackend: {name: cpu, num_threads: 1}\n"
                      "scoring: {workers: 1}\nmodel: {dtype: float32}\n"
                      "rollout: {max_prompt_length: 128, max_response_length: 8}\n")
    return {"root": root, "model": model, "data": data, "recipe": recipe}


def _eval(tiny, out, *extra):
    return main(["eval", str(tiny["model"]), "--data", str(tiny["data"]), "--output", str(out),
                 "--config", str(tiny["recipe"]), *extra])


def test_eval_writes_summary_and_responses(tiny, tmp_path, capsys):
    assert _eval(tiny, tmp_path, "--n", "4", "--k", "2") == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert {"accuracy", "pass@2", "mean@2", "format_rate", "n_problems", "k"} <= set(s)
    assert s["n_problems"] == 6 and s["k"] == 2 and s["n"] == 4
    assert s["pass@2"] >= s["mean@2"]
    assert set(s["by_source"]) == {"alpha", "beta"}
    assert sum(v["n_problems"] for v in s["by_source"].values()) == 6
    lines = [json.loads(x) for x in (tmp_path / "responses.jsonl").read_text().splitlines()]
    assert len(lines) == 6 * (1 + 4)                    # a greedy answer + 4 samples each
    assert {x["mode"] for x in lines} == {"greedy", "sample"}
    first = lines[0]
    assert {"prompt", "response", "components", "reward", "ground_truth"} <= set(first)
    assert "base_acc/format" in first["components"]
    # summary numbers recomputed from the per-answer file
    greedy = [x for x in lines if x["mode"] == "greedy"]
    assert s["accuracy"] == pytest.approx(sum(x["correct"] for x in greedy) / 6)
    assert s["format_rate"] == pytest.approx(
        sum(x["components"]["base_acc/format"] for x in greedy) / 6)
    assert "[eval] 6 problems" in capsys.readouterr().out


def test_greedy_is_deterministic_and_temperature_zero_draws_once(tiny, tmp_path):
    assert _eval(tiny, tmp_path / "a", "--temperature", "0") == 0
    assert _eval(tiny, tmp_path / "b", "--n", "2") == 0
    a = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert a["n"] == 1 and a["k"] == 1 and a["pass@1"] == a["mean@1"] == a["accuracy"]
    ga = [json.loads(x)["response"] for x in (tmp_path / "a" / "responses.jsonl").read_text().splitlines()]
    gb = [json.loads(x)["response"] for x in (tmp_path / "b" / "responses.jsonl").read_text().splitlines()
          if json.loads(x)["mode"] == "greedy"]
    assert len(ga) == 6 and ga == gb


def test_eval_reads_an_r1zero_checkpoint_and_its_recipe(tiny, tmp_path):
    from r1zero.cli.eval import resolve_model

    step = tmp_path / "ckpt" / "step_000003"
    (step / "model").mkdir(parents=True)
    for f in tiny["model"].iterdir():
        (step / "model" / f.name).write_bytes(f.read_bytes())
    (step / "meta.json").write_text('{"step": 3}')
    (tmp_path / "ckpt" / "latest").write_text("step_000003")
    (tmp_path / "ckpt" / "recipe.yaml").write_text(tiny["recipe"].read_text())
    assert resolve_model(tmp_path / "ckpt") == (step / "model", tmp_path / "ckpt")
    assert resolve_model(step) == (step / "model", tmp_path / "ckpt")
    out = tmp_path / "out"
    rc = main(["eval", str(tmp_path / "ckpt"), "--data", str(tiny["data"]), "--output", str(out),
               "--n", "2", "--limit", "3"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["recipe"] == str(tmp_path / "ckpt" / "recipe.yaml") and s["n_problems"] == 3
    assert s["template"] == "r1_demo"


@pytest.mark.parametrize("argv, message", [
    (["--n", "2", "--k", "3"], "--k 3 must be between 1 and the 2 samples"),
    (["--n", "0"], "--n must be >= 1"),
    (["--temperature", "-1"], "--temperature must be >= 0"),
    (["actor.lrr=1"], "actor.lrr: unknown key"),
])
def test_eval_refuses_bad_arguments_by_name(tiny, tmp_path, capsys, argv, message):
    rc = main(["eval", str(tiny["model"]), "--data", str(tiny["data"]),
               "--config", str(tiny["recipe"]), "--output", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("r1zero: error:") and message in err, err
    assert not (tmp_path / "summary.json").exists()


def test_eval_refuses_a_directory_that_is_no_model(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["eval", str(tmp_path / "empty"), "--data", str(tmp_path / "x.jsonl")]) == 2
    assert "neither a Hugging Face model directory" in capsys.readouterr().err
