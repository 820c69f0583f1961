"""docs/plugins.md keeps up with the code: a heading per hookspec with its literal signature,
a ``test_hook_<name>`` per hookspec somewhere in tests/, and every Python example under a hook
heading loads as a plugin and registers something that works."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch

from r1zero.host import hookspecs
from r1zero.host.manager import KINDS, PluginHost
from r1zero.scoring.pool import ScoringPool

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "plugins.md"
HOOK_KINDS: dict[str, list[str]] = {}
for _kind, (_hook, _noun, _attrs) in KINDS.items():
    HOOK_KINDS.setdefault(_hook, []).append(_kind)


def hookspec_signatures() -> dict[str, str]:
    """hook name -> literal signature, e.g. 'register_rewards(register)'."""
    return {name: f"{name}{inspect.signature(fn)}" for name, fn in vars(hookspecs).items()
            if callable(fn) and hasattr(fn, "r1zero_spec")}


def sections() -> dict[str, str]:
    """'## heading' -> the text up to the next '## ' heading."""
    parts = re.split(r"^## (.+)$", DOC.read_text(encoding="utf-8"), flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def test_five_hookspecs_are_known():
    assert set(hookspec_signatures()) == set(HOOK_KINDS) and len(HOOK_KINDS) == 5


def test_every_hookspec_has_a_heading_with_its_literal_signature():
    heads = sections()
    missing = [sig for sig in hookspec_signatures().values() if sig not in heads]
    assert not missing, f"docs/plugins.md lacks '## <signature>' headings for {missing}"


def test_every_hookspec_has_a_test_hook_function():
    text = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("*.py"))
    missing = [n for n in hookspec_signatures() if not re.search(rf"def test_hook_{n}\w*\(", text)]
    assert not missing, f"no test_hook_<name> in tests/ for {missing}"


def _examples():
    for name, sig in sorted(hookspec_signatures().items()):
        blocks = re.findall(r"```python\n(.*?)```", sections().get(sig, ""), flags=re.S)
        for i, code in enumerate(blocks):
            yield pytest.param(name, code, id=f"{name}-{i}")


@pytest.mark.parametrize("hook, code", list(_examples()))
def test_docs_example_is_a_working_plugin(hook, code, tmp_path):
    path = tmp_path / f"doc_{hook}.py"
    path.write_text(code, encoding="utf-8")
    host = PluginHost(modules=[str(path)], entry_points=False).load()
    regs = [r for kind in HOOK_KINDS[hook] for r in host.items(kind)]
    info = host.plugins[str(path)]
    assert info.error is None, info.error
    assert regs and all(r.plugin is info for r in regs)
    for r in regs:
        _exercise(r.kind, r.obj, tmp_path)


def _exercise(kind: str, obj, tmp_path: Path) -> None:
    """Use the registered thing the way r1zero does."""
    if kind == "templates":
        assert "2 + 3" in obj.render("2 + 3")
    elif kind == "dataset_handlers":
        from r1zero.data.records import load_items

        data = tmp_path / "mc.jsonl"
        data.write_text('{"question": "2 + 3?", "choices": ["4", "5"], "answer": 1}\n'
                        '{"question": "q", "choices": ["a"], "answer": 0}\n')
        items, skipped, errors = load_items(data, obj, {"prompt": "question", "response": "answer"},
                                            skip_bad_rows=True)
        assert [(i.content, i.ground_truth) for i in items] == [("2 + 3?\nA. 4\nB. 5", "B")]
        assert skipped == 1 and "mc.jsonl row 2: field 'choices'" in errors[0]
    elif kind == "rewards":
        with ScoringPool([(obj, 1.0)], workers=1) as pool:
            batch = pool.score(["<think>so 5 is right</think><answer>5</answer>",
                                "<think>所以 是 5</think>", "\x00" * 1000], ["5"] * 3)
        assert not batch.errors and batch.rewards == [1.0, pytest.approx(1 / 3), 0.0]
        assert obj.configure(min_words=3).score("<think>a b</think>", "", {})["reward"] == 0.0
    elif kind == "advantage_estimators":       # two prompts' groups, interleaved
        got = obj.fn(torch.tensor([1., 0., 0., 0.]), torch.tensor([0, 1, 0, 0]), None)
        assert torch.allclose(got, torch.tensor([1., 0., -.5, -.5]))   # rloo: n/(n-1)(r - mean)
    elif kind == "algorithms":
        from r1zero.algo.algorithm import resolve_algorithm
        from r1zero.config.load import load_config

        host = PluginHost(modules=[str(tmp_path / "doc_register_algorithms.py")]).load()
        alg = resolve_algorithm(load_config(None, [f"algorithm.name={obj.name}"]), host)
        assert alg.name == obj.name
    elif kind == "backends":
        ok, reason = obj.is_available()
        assert isinstance(ok, bool) and reason
