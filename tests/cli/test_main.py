"""The CLI subcommands that wrap library functions: score, launch, convert."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPE = str(ROOT / "examples" / "r1_zero_deepseek_671b.yaml")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "r1zero.cli.main", *args], capture_output=True, text=True)


def test_score_prints_components_and_survives_hostile_answer(tmp_path):
    marker = tmp_path / "pwned"
    rows = [{"response": "<think>ok</think><answer>\\boxed{\\frac{6}{8}}</answer>", "ground_truth": "\\frac{3}{4}"},
            {"response": f"<think>x</think><answer>\\boxed{{__import__('os').system('touch {marker}')}}</answer>",
             "ground_truth": "1"},
            {"response": "no tags \\boxed{3/4}", "gold": "3/4"}]
    f = tmp_path / "rows.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = _cli("score", str(f), "--workers", "1")
    assert out.returncode == 0, out.stderr
    assert "row 1: reward=1" in out.stdout and "row 2: reward=0" in out.stdout
    assert "row 3: reward=0" in out.stdout and "base_acc/format=0" in out.stdout
    assert not marker.exists()


def test_score_bad_row_names_file_and_row(tmp_path):
    f = tmp_path / "rows.jsonl"
    f.write_text('{"response": "x", "ground_truth": "1"}\n{"response": "y"}\n')
    out = _cli("score", str(f), "--workers", "1")
    assert out.returncode == 2 and "rows.jsonl" in out.stderr and "row 2" in out.stderr


def test_launch_script_forms_the_cluster_like_the_recipe():
    out = _cli("launch", RECIPE, "--master-addr", "192.0.2.1")
    assert out.returncode == 0, out.stderr
    assert "ray start --head --port=6766 --dashboard-host=192.0.2.1" in out.stdout
    assert "until ray start --address=192.0.2.1:6766" in out.stdout
    assert '\'--resources={"NPU": 16}\'' in out.stdout
    assert "export HCCL_CONNECT_TIMEOUT=1800" in out.stdout


def test_convert_command_for_the_671b_layout():
    out = _cli("convert", RECIPE, "--load-dir", "hf", "--save-dir", "mg")
    assert out.returncode == 0, out.stderr
    for flag in ("--target-tensor-parallel-size 4", "--target-pipeline-parallel-size 6",
                 "--target-expert-parallel-size 16", "--num-layer-list 9,10,10,10,11,11",
                 "--moe-tp-extend-ep", "--moe-grouped-gemm"):
        assert flag in out.stdout


def test_preprocess_prints_the_manifest_as_json(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {{path: {ROOT / 'examples' / 'tokenizer'}}}\n"
                      f"data: {{input: {ROOT / 'examples' / 'data' / 'deepscaler_sample.jsonl'}, "
                      f"output: {tmp_path / 'out'}, workers: 1}}\n")
    out = _cli("preprocess", str(recipe))
    assert out.returncode == 0, out.stderr
    manifest = json.loads(out.stdout)
    assert manifest["template"] == "deepseek3_r1" and manifest["n_kept"] > 200


def test_the_usage_docstring_lists_every_command():
    import argparse
    import importlib

    cli_main = importlib.import_module("r1zero.cli.main")

    parser = cli_main.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    usage = cli_main.__doc__
    missing = [name for name in sub.choices if f"r1zero {name} " not in usage
               and f"r1zero {name}\n" not in usage]
    assert not missing, f"cli/main.py's usage does not list: {missing}"
