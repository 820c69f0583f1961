"""The built-in ``deepscaler`` handler: map_keys roles, verbatim answers, errors naming
file + row + field, and its registration through the real entry point."""

from __future__ import annotations

import pytest

from r1zero.data.records import DEFAULT_MAP_KEYS, Item, RowRef, resolve_map_keys
from r1zero.host.errors import DatasetError
from r1zero.host.manager import PluginHost
from r1zero.plugins.datasets.deepscaler import ALIAS, DeepScalerHandler

H = DeepScalerHandler()
WHERE = RowRef("data/deepscaler.jsonl", 1712)
KEYS = resolve_map_keys(DEFAULT_MAP_KEYS)


def test_default_map_keys_problem_to_content_answer_verbatim():
    rec = {"problem": "Compute $\\frac{1}{2}+\\frac{1}{4}$.", "answer": "\\frac{3}{4}",
           "solution": "...", "id": "ds-7"}
    item = H.convert(rec, KEYS, WHERE)
    assert item == Item("Compute $\\frac{1}{2}+\\frac{1}{4}$.", "\\frac{3}{4}", None,
                        {"id": "ds-7", "row": 1712, "source": "data/deepscaler.jsonl"})


def test_answer_with_unusual_characters_is_kept_byte_for_byte():
    # MindSpeed-RL round-trips labels through the tokenizer; here nothing touches the string.
    odd = "  ½·∞ \u00a0x\u200b²  "
    assert H.convert({"problem": "p", "answer": odd}, KEYS, WHERE).ground_truth == odd


def test_integer_answer_becomes_its_decimal_string():
    assert H.convert({"problem": "p", "answer": 17}, KEYS, WHERE).ground_truth == "17"


def test_query_is_appended_after_a_newline_and_empty_query_adds_nothing():
    keys = resolve_map_keys({"prompt": "instruction", "query": "input", "response": "output"})
    rec = {"instruction": "Add the numbers.", "input": "3 and 4", "output": "7"}
    assert H.convert(rec, keys, WHERE).content == "Add the numbers.\n3 and 4"
    assert H.convert({**rec, "input": ""}, keys, WHERE).content == "Add the numbers."
    assert H.convert({**rec, "input": None}, keys, WHERE).content == "Add the numbers."


def test_system_field_is_passed_through_when_mapped():
    keys = resolve_map_keys({"system": "sys"})
    rec = {"problem": "p", "answer": "1", "sys": "You are terse."}
    assert H.convert(rec, keys, WHERE).system == "You are terse."
    assert H.convert({"problem": "p", "answer": "1"}, keys, WHERE).system is None
    # unmapped (default ""): a field called "system" in the record is ignored
    assert H.convert({**rec, "system": "x"}, KEYS, WHERE).system is None


def test_missing_answer_names_file_row_field_mapping_and_keys():
    with pytest.raises(DatasetError) as ei:
        H.convert({"problem": "p", "solution": "s"}, KEYS, WHERE)
    assert str(ei.value) == ("data/deepscaler.jsonl row 1712: field 'answer' missing "
                             "(map_keys.response='answer'); keys are ['problem', 'solution']")
    assert (ei.value.path, ei.value.row, ei.value.field) == ("data/deepscaler.jsonl", 1712,
                                                             "answer")


@pytest.mark.parametrize("answer, fragment", [
    (["1", "2"], "must be a string or an integer, got list ['1', '2']"),
    ({"v": 1}, "got dict {'v': 1}"),
    (None, "field 'answer' is null"),
    (0.5, "got float 0.5"),
    (True, "got bool True"),
    ("", "field 'answer' is empty"),
    ("   ", "field 'answer' is blank"),
])
def test_wrong_answer_types_are_errors_naming_the_field(answer, fragment):
    with pytest.raises(DatasetError, match="row 1712") as ei:
        H.convert({"problem": "p", "answer": answer}, KEYS, WHERE)
    assert ei.value.field == "answer"
    assert fragment in str(ei.value)


@pytest.mark.parametrize("problem, fragment", [
    ("", "field 'problem' is empty (map_keys.prompt='problem')"),
    ("\n ", "field 'problem' is blank"),
    (3, "field 'problem' (map_keys.prompt='problem') must be a string, got int 3"),
])
def test_bad_problem_is_an_error_naming_the_field(problem, fragment):
    with pytest.raises(DatasetError) as ei:
        H.convert({"problem": problem, "answer": "1"}, KEYS, WHERE)
    assert ei.value.field == "problem" and fragment in str(ei.value)


def test_mapped_query_of_wrong_type_is_an_error():
    keys = resolve_map_keys({"query": "input"})
    with pytest.raises(DatasetError, match="field 'input' .* must be a string, got list"):
        H.convert({"problem": "p", "answer": "1", "input": ["x"]}, keys, WHERE)


def test_id_falls_back_to_file_name_and_row():
    item = H.convert({"problem": "p", "answer": "1"}, KEYS, RowRef("/x/y/train.jsonl", 3))
    assert item.extra == {"id": "train.jsonl:3", "row": 3, "source": "/x/y/train.jsonl"}
    assert H.convert({"problem": "p", "answer": "1", "id": 42}, KEYS, WHERE).extra["id"] == "42"


def test_hook_register_dataset_handlers():
    """The entry point registers the handler under its name and the MindSpeed-RL alias."""
    host = PluginHost(entry_points=True)
    assert {"deepscaler", ALIAS} <= set(host.names("dataset_handlers"))
    handler = host.get("dataset_handlers", "deepscaler")
    assert host.get("dataset_handlers", ALIAS) is handler
    (reg,) = [r for r in host.items("dataset_handlers") if r.name == "deepscaler"]
    assert reg.plugin.distribution == "r1zero" and reg.plugin.source == "built-in"
    assert handler.convert({"problem": "p", "answer": "2"}, KEYS, WHERE).ground_truth == "2"
