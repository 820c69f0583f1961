"""``preprocess``: real records -> deepscaler handler -> deepseek3_r1 template -> a real
(tiny, locally trained) tokenizer -> Parquet + manifest; reuse, force, workers, atomicity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import r1zero
from r1zero.data.records import input_sha256
from r1zero.host.errors import DatasetError
from r1zero.plugins.datasets.deepscaler import DeepScalerHandler
from r1zero.plugins.templates.r1 import builtin_templates
from r1zero.data.preprocess import load_preprocessed, load_tokenizer, preprocess

ROOT = Path(__file__).resolve().parents[2]
H = DeepScalerHandler()
TPL = {t.name: t for t in builtin_templates()}["deepseek3_r1"]
# MindSpeed-RL's deepseek3_r1: BOS + instruction + <｜User｜>{{content}}<｜Assistant｜> (U+FF5C bars)
R1_TEXT = ("A conversation between User and Assistant. The user asks a question, and the "
           "Assistant solves it. The assistant first thinks about the reasoning process in the "
           "mind and then provides the user with the answer. The reasoning process and answer "
           "are enclosed within <think> </think> and <answer> </answer> tags, respectively, "
           "i.e., <think> reasoning process here </think><answer> answer here </answer>. Put "
           "your final answer within \\boxed{}. <\uff5cUser\uff5c>")


def records(n, words=lambda i: 1 + i % 9):
    """n DeepScaleR-shaped records whose problems grow in a 9-step cycle."""
    return [{"problem": f"Compute {i} + {i}. " + "Then add one. " * words(i),
             "answer": str(2 * i + words(i)), "solution": "...", "id": f"p{i}"}
            for i in range(n)]


def write_jsonl(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def run(inp, tok, out, **kw):
    kw.setdefault("map_keys", None)
    kw.setdefault("max_prompt_length", 4096)
    kw.setdefault("workers", 1)
    return preprocess(inp, H, TPL, tok, out, **kw)


def test_output_rows_and_manifest(tmp_path, tiny_tokenizer):
    recs = records(20)
    recs[3]["answer"] = "\\frac{3}{4}"
    inp = write_jsonl(tmp_path / "in.jsonl", recs)
    cfg = {"data": {"input": str(inp)}, "actor": {"lr": 1e-6}}
    m = run(inp, tiny_tokenizer, tmp_path / "out", config=cfg)
    table, m2 = load_preprocessed(tmp_path / "out")
    assert m2 == m and not m.reused
    rows = table.to_pylist()
    tok = load_tokenizer(tiny_tokenizer)
    assert [r["id"] for r in rows] == [f"p{i}" for i in range(20)]
    r3 = rows[3]
    assert r3["prompt"] == "<|bos|>" + R1_TEXT + recs[3]["problem"] + "<\uff5cAssistant\uff5c>"
    assert r3["input_ids"] == tok(r3["prompt"], add_special_tokens=False)["input_ids"]
    assert r3["input_ids"][0] == tok.bos_token_id and r3["input_ids"].count(tok.bos_token_id) == 1
    assert r3["prompt_length"] == len(r3["input_ids"])
    assert r3["ground_truth"] == "\\frac{3}{4}" and r3["system"] is None and r3["row"] == 4
    assert json.loads(r3["extra"]) == {"id": "p3", "row": 4, "source": str(inp)}
    assert (m.n_read, m.n_kept, m.n_skipped_bad, m.n_filtered_length) == (20, 20, 0, 0)
    assert m.input_sha256 == input_sha256(inp) and len(m.tokenizer_sha256) == 64
    assert (m.template, m.handler, m.config, m.r1zero_version) == (
        "deepseek3_r1", "deepscaler", cfg, r1zero.__version__)
    assert m.map_keys == {"prompt": "problem", "query": "", "response": "answer", "system": ""}
    assert m.prompt_length_max == max(r["prompt_length"] for r in rows)
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk["n_kept"] == 20 and "reused" not in on_disk and on_disk["created"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["data.parquet",
                                                                   "manifest.json"]


def test_length_filter_counts_prompts_over_the_limit(tmp_path, tiny_tokenizer):
    recs = records(45)
    inp = write_jsonl(tmp_path / "in.jsonl", recs)
    tok = load_tokenizer(tiny_tokenizer)
    lengths = [len(tok(TPL.render(r["problem"], tokenizer=tok), add_special_tokens=False)
                   ["input_ids"]) for r in recs]
    limit = sorted(lengths)[22]                  # the median: about half are longer
    n_over = sum(n > limit for n in lengths)
    assert 10 < n_over < 30
    m = run(inp, tiny_tokenizer, tmp_path / "out", max_prompt_length=limit)
    table, _ = load_preprocessed(tmp_path / "out")
    assert m.n_filtered_length == n_over
    assert m.n_kept == 45 - n_over == table.num_rows
    assert table.column("id").to_pylist() == [f"p{i}" for i, n in enumerate(lengths) if n <= limit]
    assert max(table.column("prompt_length").to_pylist()) == limit == m.prompt_length_max
    with pytest.raises(DatasetError, match=r"no prompts left: 45 read, 0 bad rows skipped, 45 "
                                           rf"longer than max_prompt_length=10 \(shortest: "
                                           rf"{min(lengths)} tokens\)"):
        run(inp, tiny_tokenizer, tmp_path / "out2", max_prompt_length=10)
    assert not (tmp_path / "out2").exists()


def test_bad_rows_fail_or_are_skipped_and_counted(tmp_path, tiny_tokenizer):
    inp = tmp_path / "in.jsonl"
    lines = [json.dumps(r) for r in records(6)]
    lines[2] = '{"problem": "broken'
    lines[4] = json.dumps({"problem": "p", "answer": ["1"]})
    inp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"in\.jsonl row 3: not valid JSON"):
        run(inp, tiny_tokenizer, tmp_path / "out")
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == [inp]
    m = run(inp, tiny_tokenizer, tmp_path / "out", skip_bad_rows=True)
    assert (m.n_read, m.n_kept, m.n_skipped_bad) == (6, 4, 2)
    assert m.skipped_examples[1] == (f"{inp} row 5: field 'answer' (map_keys.response='answer')"
                                     " must be a string or an integer, got list ['1']")
    assert load_preprocessed(tmp_path / "out")[0].column("row").to_pylist() == [1, 2, 4, 6]
    # the strict run may not reuse an output that skipped rows: it fails on them again
    with pytest.raises(DatasetError, match="row 3"):
        run(inp, tiny_tokenizer, tmp_path / "out")
    assert load_preprocessed(tmp_path / "out")[1] == m   # and the old output is untouched


def test_rerun_reuses_force_redoes_and_other_inputs_are_refused(tmp_path, tiny_tokenizer):
    inp = write_jsonl(tmp_path / "in.jsonl", records(30))
    out = tmp_path / "out"
    first = run(inp, tiny_tokenizer, out)
    stamp = (out / "data.parquet").stat().st_mtime_ns
    again = run(inp, tiny_tokenizer, out, workers=2, config={"other": 1})
    assert again.reused and again.created == first.created
    assert (out / "data.parquet").stat().st_mtime_ns == stamp
    forced = run(inp, tiny_tokenizer, out, force=True)
    assert not forced.reused and forced.fingerprint == first.fingerprint
    assert (out / "data.parquet").stat().st_mtime_ns != stamp
    with pytest.raises(DatasetError, match=r"out: holds a dataset preprocessed from other inputs "
                                           r"\(max_prompt_length differ\); pass force=True"):
        run(inp, tiny_tokenizer, out, max_prompt_length=100)
    with pytest.raises(DatasetError, match=r"\(template, template_sha256 differ\)"):
        qwen = {t.name: t for t in builtin_templates()}["qwen_r1"]
        preprocess(inp, H, qwen, tiny_tokenizer, out, map_keys=None,
                   max_prompt_length=4096, workers=1)
    write_jsonl(inp, records(31))
    with pytest.raises(DatasetError, match=r"\(input_sha256 differ\)"):
        run(inp, tiny_tokenizer, out)
    assert run(inp, tiny_tokenizer, out, force=True).n_kept == 31


def test_existing_foreign_directory_is_not_overwritten_without_force(tmp_path, tiny_tokenizer):
    inp = write_jsonl(tmp_path / "in.jsonl", records(3))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(DatasetError, match="exists and is not a preprocessed dataset"):
        run(inp, tiny_tokenizer, tmp_path / "out")
    assert (tmp_path / "out" / "notes.txt").exists()
    with pytest.raises(DatasetError, match="even with --force"):     # force deletes only r1zero's own
        run(inp, tiny_tokenizer, tmp_path / "out", force=True)
    assert (tmp_path / "out" / "notes.txt").read_text(encoding="utf-8") == "mine"
    with pytest.raises(DatasetError, match="no manifest.json"):
        load_preprocessed(tmp_path)


def test_two_workers_write_exactly_what_one_writes(tmp_path, tiny_tokenizer):
    recs = records(2600)                                     # 6 chunks of up to 512
    inp = write_jsonl(tmp_path / "in.jsonl", recs)
    tok = load_tokenizer(tiny_tokenizer)
    limit = sorted(len(tok(TPL.render(r["problem"], tokenizer=tok), add_special_tokens=False)
                       ["input_ids"]) for r in recs)[1300]
    m1 = run(inp, tiny_tokenizer, tmp_path / "w1", max_prompt_length=limit)
    m2 = run(inp, tiny_tokenizer, tmp_path / "w2", max_prompt_length=limit, workers=2)
    t1, t2 = load_preprocessed(tmp_path / "w1")[0], load_preprocessed(tmp_path / "w2")[0]
    assert 0 < m1.n_filtered_length < 2600 and m1.n_kept == t1.num_rows
    assert t1.equals(t2)
    keys = ("n_read", "n_kept", "n_filtered_length", "prompt_length_max", "prompt_length_mean",
            "fingerprint")
    assert [getattr(m1, k) for k in keys] == [getattr(m2, k) for k in keys]


def test_saved_dataset_and_parquet_inputs(tmp_path, tiny_tokenizer):
    import datasets

    recs = records(7)
    datasets.Dataset.from_list(recs).save_to_disk(str(tmp_path / "ds"))
    datasets.Dataset.from_list(recs).to_parquet(str(tmp_path / "in.parquet"))
    run(tmp_path / "ds", tiny_tokenizer, tmp_path / "a")
    run(tmp_path / "in.parquet", tiny_tokenizer, tmp_path / "b")
    a, b = load_preprocessed(tmp_path / "a")[0], load_preprocessed(tmp_path / "b")[0]
    assert a.num_rows == 7 and a.column("id").to_pylist() == [f"p{i}" for i in range(7)]
    assert a.drop(["extra"]).equals(b.drop(["extra"]))   # extra differs only in "source"


class ExplodingTemplate:
    """A real template object whose render fails on one prompt (raised inside a worker)."""
    name = "exploding"

    def render(self, content, system=None, tokenizer=None):
        if content.startswith("Compute 700 "):
            raise ValueError("cannot render prompt 700")
        return TPL.render(content, system, tokenizer)


def test_failure_inside_a_worker_reaches_the_caller_and_leaves_nothing(tmp_path, tiny_tokenizer):
    inp = write_jsonl(tmp_path / "in.jsonl", records(1200))
    with pytest.raises(ValueError, match="cannot render prompt 700"):
        preprocess(inp, H, ExplodingTemplate(), tiny_tokenizer, tmp_path / "out", map_keys=None,
                   max_prompt_length=4096, workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from r1zero.plugins.datasets.deepscaler import DeepScalerHandler
    from r1zero.plugins.templates.r1 import builtin_templates
    from r1zero.data.preprocess import preprocess
    tpl = {t.name: t for t in builtin_templates()}["deepseek3_r1"]
    preprocess(sys.argv[1], DeepScalerHandler(), tpl, sys.argv[2], sys.argv[3], map_keys=None,
               max_prompt_length=4096, workers=1)
""")


def test_sigkill_mid_run_leaves_no_output_and_next_run_cleans_up(tmp_path, tiny_tokenizer):
    big = write_jsonl(tmp_path / "big.jsonl", records(40000))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(big), tiny_tokenizer,
                             str(out)], env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".out.tmp-*")) and time.monotonic() < deadline:
            assert proc.poll() is None, "preprocess ended before it started writing"
            time.sleep(0.02)
        time.sleep(0.5)
        assert proc.poll() is None, "preprocess finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    (tmp,) = tmp_path.glob(".out.tmp-*")                # it was killed mid-write ...
    assert (tmp / "data.parquet").exists() and not (tmp / "manifest.json").exists()
    assert not out.exists()                              # ... and nothing is at the output
    small = write_jsonl(tmp_path / "small.jsonl", records(5))
    assert run(small, tiny_tokenizer, out).n_kept == 5
    assert not list(tmp_path.glob(".out.*")) and load_preprocessed(out)[0].num_rows == 5


def test_run_killed_between_renames_gets_its_old_output_back(tmp_path, tiny_tokenizer):
    inp = write_jsonl(tmp_path / "in.jsonl", records(4))
    first = run(inp, tiny_tokenizer, tmp_path / "out")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "out").rename(tmp_path / f".out.old-{dead.pid}-abcd1234")
    again = run(inp, tiny_tokenizer, tmp_path / "out")
    assert again.reused and again.created == first.created
    assert not list(tmp_path.glob(".out.*"))


def test_the_example_sample_data_with_the_example_tokenizer(tmp_path):
    sample = ROOT / "examples" / "data" / "deepscaler_sample.jsonl"
    tokdir = ROOT / "examples" / "tokenizer"
    if not sample.exists() or not (tokdir / "tokenizer.json").exists():
        pytest.skip(f"{sample.relative_to(ROOT)} or {tokdir.relative_to(ROOT)} not made yet")
    n_lines = sum(1 for line in sample.read_text(encoding="utf-8").splitlines() if line.strip())
    m = preprocess(sample, H, TPL, tokdir, tmp_path / "out",
                   map_keys={"prompt": "problem", "query": "", "response": "answer",
                             "system": ""}, max_prompt_length=100000, workers=2)
    table, _ = load_preprocessed(tmp_path / "out")
    answers = [json.loads(line)["answer"] for line in sample.read_text(encoding="utf-8")
               .splitlines() if line.strip()]
    assert m.n_read == n_lines == m.n_kept == table.num_rows >= 200
    assert table.column("ground_truth").to_pylist() == [str(a) for a in answers]
