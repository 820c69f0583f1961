"""Item 2: ``preprocess --force`` replaces only r1zero's own earlier output; an output that is,
or contains, the input is refused before anything is touched."""

from __future__ import annotations

import json

import pytest

from r1zero.data.preprocess import preprocess
from r1zero.host.errors import ConfigError, DatasetError
from r1zero.plugins.datasets.deepscaler import DeepScalerHandler
from r1zero.plugins.templates.r1 import builtin_templates

TPL = {t.name: t for t in builtin_templates()}["deepseek3_r1"]


def _run(inp, tok, out, force=True):
    return preprocess(inp, DeepScalerHandler(), TPL, tok, out, map_keys=None,
                      max_prompt_length=4096, workers=1, force=force)


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    inp = d / "raw.jsonl"
    raw = "".join(json.dumps({"problem": f"1+{i}?", "answer": str(1 + i)}) + "\n" for i in range(4))
    inp.write_text(raw, encoding="utf-8")
    (d / "neighbour.txt").write_text("keep me", encoding="utf-8")
    return inp, raw


def _untouched(inp, raw):
    assert inp.is_file() and inp.read_text(encoding="utf-8") == raw
    assert (inp.parent / "neighbour.txt").read_text(encoding="utf-8") == "keep me"


@pytest.mark.parametrize("where", ["the_input", "its_folder", "a_folder_above"])
def test_output_that_is_or_contains_the_input_is_refused(data, tiny_tokenizer, where):
    inp, raw = data
    out = {"the_input": inp, "its_folder": inp.parent, "a_folder_above": inp.parent.parent}[where]
    with pytest.raises(ConfigError, match=r"data.output: .* is, or contains, the input"):
        _run(inp, tiny_tokenizer, out)
    _untouched(inp, raw)


def test_force_never_replaces_a_folder_r1zero_did_not_write(data, tiny_tokenizer, tmp_path):
    inp, raw = data
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "results.csv").write_text("precious", encoding="utf-8")
    with pytest.raises(DatasetError, match="even with --force"):
        _run(inp, tiny_tokenizer, theirs)
    assert (theirs / "results.csv").read_text(encoding="utf-8") == "precious"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine", encoding="utf-8")
    with pytest.raises(DatasetError, match="even with --force"):
        _run(inp, tiny_tokenizer, a_file)
    assert a_file.read_text(encoding="utf-8") == "mine"
    _untouched(inp, raw)


def test_force_keeps_files_added_to_a_previous_output(data, tiny_tokenizer, tmp_path):
    inp, raw = data
    out = tmp_path / "prep"
    _run(inp, tiny_tokenizer, out)
    (out / "my_notes.md").write_text("added by hand", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"my_notes.md.*which r1zero did not write"):
        _run(inp, tiny_tokenizer, out)
    assert (out / "my_notes.md").exists()
    (out / "my_notes.md").unlink()
    assert _run(inp, tiny_tokenizer, out).n_kept == 4          # its own output: replaced
    _untouched(inp, raw)


def test_a_foreign_manifest_json_is_not_taken_for_r1zeros(data, tiny_tokenizer, tmp_path):
    inp, _ = data
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "manifest.json").write_text('{"name": "my-package"}', encoding="utf-8")
    with pytest.raises(DatasetError, match="manifest is incomplete"):
        _run(inp, tiny_tokenizer, out)
    assert (out / "manifest.json").exists()
