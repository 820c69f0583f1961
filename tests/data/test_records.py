"""Readers (json list / json lines / jsonl / parquet / save_to_disk), 1-based rows, malformed
rows, skip_bad_rows, map_keys resolution and input fingerprints, on real files."""

from __future__ import annotations

import json

import pytest

from r1zero.data.records import (DatasetHandler, Item, input_sha256, load_items, read_records,
                         resolve_map_keys, tokenizer_sha256)
from r1zero.host.errors import ConfigError, DatasetError
from r1zero.plugins.datasets.deepscaler import DeepScalerHandler

RECORDS = [{"problem": f"What is {i} + {i}?", "answer": str(2 * i), "solution": "...",
            "id": f"r{i}"} for i in range(5)]
H = DeepScalerHandler()


def write_jsonl(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_jsonl_rows_are_line_numbers_blank_lines_counted(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [json.dumps(RECORDS[0]), "", json.dumps(RECORDS[1])])
    assert list(read_records(p)) == [(1, RECORDS[0]), (3, RECORDS[1])]


def test_json_list_and_json_lines_under_json_suffix(tmp_path):
    lst = tmp_path / "list.json"
    lst.write_text(json.dumps(RECORDS, indent=2), encoding="utf-8")
    lines = write_jsonl(tmp_path / "lines.json", [json.dumps(r) for r in RECORDS])
    expected = list(enumerate(RECORDS, start=1))
    assert list(read_records(lst)) == expected
    assert list(read_records(lines)) == expected


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(RECORDS * 500), p, row_group_size=700)  # > 1 batch
    rows = list(read_records(p))
    assert len(rows) == 2500 and rows[0] == (1, RECORDS[0]) and rows[-1] == (2500, RECORDS[4])


def test_saved_hf_dataset_dir_and_datasetdict_error(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list(RECORDS)
    ds.save_to_disk(str(tmp_path / "ds"))
    assert list(read_records(tmp_path / "ds")) == list(enumerate(RECORDS, start=1))
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DatasetError, match=r"DatasetDict with splits \['test', 'train'\]"):
        list(read_records(tmp_path / "dd"))
    assert len(list(read_records(tmp_path / "dd" / "train"))) == 5


def test_unknown_format_lists_supported_ones_and_missing_file(tmp_path):
    (tmp_path / "d.csv").write_text("problem,answer\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"d\.csv: unknown format '\.csv'; supported: "
                                           r"\.json \(list or lines\), \.jsonl, .*parquet"):
        list(read_records(tmp_path / "d.csv"))
    with pytest.raises(DatasetError, match="nope.jsonl: file not found"):
        list(read_records(tmp_path / "nope.jsonl"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DatasetError, match="not a dataset saved by datasets.save_to_disk"):
        list(read_records(tmp_path / "empty_dir"))


def test_bad_json_line_names_file_and_row(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [json.dumps(RECORDS[0]), '{"problem": "x", "ans',
                                           json.dumps(RECORDS[1])])
    it = read_records(p)
    assert next(it) == (1, RECORDS[0])
    with pytest.raises(DatasetError) as ei:
        next(it)
    assert (ei.value.path, ei.value.row) == (str(p), 2)
    assert str(ei.value).startswith(f"{p} row 2: not valid JSON")


def test_non_object_row_and_invalid_utf8_row(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'[1, 2]\n{"problem": "\xff"}\n')
    items, n_skipped, first = load_items(p, H, None, skip_bad_rows=True)
    assert (items, n_skipped) == ([], 2)
    assert first[0] == f"{p} row 1: record is not an object: got list [1, 2]"
    assert first[1].startswith(f"{p} row 2: not valid UTF-8")


def test_broken_json_list_file_names_line_and_column(tmp_path):
    p = tmp_path / "d.json"
    p.write_text('[\n  {"problem": "a", "answer": "1"},\n  {"problem": }\n]', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"d\.json: not valid JSON: .* at line 3 column 15"):
        list(read_records(p))


def test_load_items_strict_raises_on_first_bad_row_with_field(tmp_path):
    bad = {"problem": "p", "solution": "s"}
    p = write_jsonl(tmp_path / "d.jsonl", [json.dumps(r) for r in (RECORDS[0], bad, RECORDS[1])])
    with pytest.raises(DatasetError) as ei:
        load_items(p, H, None)
    assert (ei.value.row, ei.value.field) == (2, "answer")
    assert "field 'answer' missing (map_keys.response='answer')" in str(ei.value)


def test_skip_bad_rows_counts_and_keeps_order(tmp_path):
    lines = [json.dumps(RECORDS[0]), "not json", json.dumps({"problem": "p", "answer": None}),
             json.dumps(RECORDS[1]), json.dumps({"problem": "", "answer": "1"}),
             json.dumps(RECORDS[2])]
    p = write_jsonl(tmp_path / "d.jsonl", lines)
    items, n_skipped, first = load_items(p, H, None, skip_bad_rows=True)
    assert [i.extra["id"] for i in items] == ["r0", "r1", "r2"]
    assert [i.extra["row"] for i in items] == [1, 4, 6]
    assert n_skipped == 3
    assert [e.split(":")[0] for e in first] == [f"{p} row 2", f"{p} row 3", f"{p} row 5"]


def test_map_keys_resolution_defaults_and_errors():
    assert resolve_map_keys(None) == {"prompt": "problem", "query": "", "response": "answer",
                                      "system": ""}
    assert resolve_map_keys({"prompt": "question"})["response"] == "answer"
    with pytest.raises(ConfigError, match=r"map_keys: unknown role\(s\) \['answer'\]; roles are"):
        resolve_map_keys({"answer": "x"})
    with pytest.raises(ConfigError, match="map_keys.response must name a field"):
        resolve_map_keys({"response": ""})


def test_map_keys_alternative_field_names_with_query(tmp_path):
    p = write_jsonl(tmp_path / "alpaca.jsonl", [json.dumps(
        {"instruction": "Solve.", "input": "2x = 6", "output": "3", "sys": "Be brief."})])
    keys = {"prompt": "instruction", "query": "input", "response": "output", "system": "sys"}
    (item,), n, _ = load_items(p, H, keys)
    assert (item.content, item.ground_truth, item.system, n) == ("Solve.\n2x = 6", "3",
                                                                 "Be brief.", 0)


def test_handler_bug_is_reported_with_row_and_handler_name(tmp_path):
    class Buggy(DatasetHandler):
        name = "buggy"

        def convert(self, record, map_keys, where):
            return Item(record["question"], "1")

    p = write_jsonl(tmp_path / "d.jsonl", [json.dumps(RECORDS[0])])
    with pytest.raises(DatasetError, match=r"row 1: dataset handler 'buggy' .* raised KeyError"):
        load_items(p, Buggy(), None)


def test_input_and_tokenizer_hashes_follow_content(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [json.dumps(RECORDS[0])])
    h1 = input_sha256(p)
    write_jsonl(p, [json.dumps(RECORDS[1])])
    assert input_sha256(p) != h1 and len(h1) == 64
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_text("{}", encoding="utf-8")
    t1 = tokenizer_sha256(tok)
    (tok / "model.safetensors").write_bytes(b"weights")   # weights do not count
    assert tokenizer_sha256(tok) == t1
    (tok / "tokenizer_config.json").write_text("{}", encoding="utf-8")
    assert tokenizer_sha256(tok) != t1
    with pytest.raises(ConfigError, match="no tokenizer files"):
        tokenizer_sha256(tmp_path)
