"""``r1zero score``: score a jsonl of (response, ground truth) with registered scorers.

    r1zero score samples.jsonl --scorer base_acc --option format_mode=mindspeed [--json]

Each row needs ``response`` and ``ground_truth`` (``gold`` is accepted too); any other keys
are passed to the scorers as ``extra``. Prints one line per row with the combined reward
and every component, then a summary (means, timeouts, errors, rate). The exit status is 0,
or 3 when some sample timed out or failed — so a plugin author can check a scorer without
training. Scoring goes through the same ``ScoringPool`` the trainer uses.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import IO, Any, Iterator, Mapping, Sequence

import yaml

from r1zero.host.errors import ConfigError, DatasetError
from r1zero.scoring.pool import ScoreBatch, ScoringPool

GOLD_KEYS = ("ground_truth", "gold")
CHUNK = 1024


def resolve_scorers(names: Sequence[str], options: Mapping[str, Any] | None = None, *,
                    host: Any) -> list:
    """Scorer objects for ``names`` from ``host`` (a ``PluginHost``), configured with ``options``.

    ``options`` maps a scorer name to its options (``{"base_acc": {"format_mode": ...}}``);
    flat ``{"format_mode": ...}`` is accepted when one scorer is named, and dotted keys
    ``"base_acc.format_mode"`` always. String values are read as YAML scalars ("0.1" -> 0.1).
    """
    from r1zero.host.registry import get_reward

    per_scorer = split_options(names, options or {})
    return [get_reward(name, per_scorer.get(name) or None, host=host) for name in names]


def split_options(names: Sequence[str], options: Mapping[str, Any]) -> dict[str, dict]:
    out: dict[str, dict] = {n: {} for n in names}
    for key, value in options.items():
        if key in out and isinstance(value, Mapping):
            out[key].update({k: _scalar(v) for k, v in value.items()})
        elif "." in key and key.split(".", 1)[0] in out:
            name, opt = key.split(".", 1)
            out[name][opt] = _scalar(value)
        elif len(names) == 1:
            out[names[0]][key] = _scalar(value)
        else:
            raise ConfigError(f"option {key!r} does not say which scorer it is for; write "
                              f"<scorer>.{key}=... with one of {list(names)}")
    return out


def _scalar(value: Any) -> Any:
    return yaml.safe_load(value) if isinstance(value, str) else value


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a jsonl file; errors name the file, the 1-based row and the field."""
    p = Path(path)
    if p.is_dir():
        raise DatasetError("is a directory, not a jsonl file", path=str(path))
    try:
        raw_lines = p.read_bytes().splitlines()
    except FileNotFoundError:
        raise DatasetError("file not found", path=str(path)) from None
    except OSError as exc:
        raise DatasetError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    rows = []
    for n, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})",
                               path=str(path), row=n) from None
        if line.strip():
            rows.append(_parse_row(line, str(path), n))
    return rows


def _parse_row(line: str, path: str, n: int) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"not JSON: {exc}", path=path, row=n) from exc
    if not isinstance(row, dict) or "response" not in row:
        keys = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise DatasetError(f"field 'response' missing; keys are {keys}", path=path, row=n,
                           field="response")
    gold = next((k for k in GOLD_KEYS if k in row), None)
    if gold is None:
        raise DatasetError(f"field 'ground_truth' (or 'gold') missing; keys are {sorted(row)}",
                           path=path, row=n, field="ground_truth")
    if not isinstance(row["response"], str):    # never score a stringified guess
        raise DatasetError(f"field 'response' must be a string, got {_json_type(row['response'])}",
                           path=path, row=n, field="response")
    truth = row[gold]
    if isinstance(truth, bool) or not isinstance(truth, (str, int, float)):
        raise DatasetError(f"field {gold!r} must be a string or a number, got {_json_type(truth)}",
                           path=path, row=n, field=gold)
    return {"row": n, "response": row["response"], "ground_truth": str(truth),
            "extra": {k: v for k, v in row.items() if k not in ("response", *GOLD_KEYS)}}


def _json_type(value: Any) -> str:
    names = {type(None): "null", bool: "a boolean", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _row_record(row: dict, batch: ScoreBatch, i: int) -> dict:
    return {"row": row["row"], "reward": batch.rewards[i],
            **{k: v[i] for k, v in batch.components.items()}}


def _row_text(rec: dict) -> str:
    parts = [f"row {rec['row']}: reward={rec['reward']:.4g}"]
    parts += [f"{k}={v:.4g}" for k, v in rec.items() if k not in ("row", "reward")]
    return "  ".join(parts)


def run_score(input_path: str | Path, scorer_names: list[str], options: dict | None = None,
              workers: int | None = None, timeout_s: float = 5.0, output: str | Path | None = None,
              as_json: bool = False, *, host: Any) -> int:
    """Score ``input_path`` with scorers from ``host``; per-row lines to ``output`` (default
    stdout), summary to stdout.

    Returns 0, or 3 if any sample timed out or raised. Raises DatasetError / ConfigError /
    PluginError for a bad file, option or scorer name.
    """
    rows = read_rows(input_path)
    with _stdout_reserved(as_json) as stdout:
        sink = _open_output(output) if output else stdout
        try:
            scorers = resolve_scorers(scorer_names, options, host=host)
            summary, failed = _score_rows(rows, scorers, scorer_names, workers, timeout_s, sink,
                                          as_json)
        finally:
            if output:
                sink.close()
        _print_summary(summary, as_json, stdout)
    return 3 if failed else 0


@contextmanager
def _stdout_reserved(active: bool) -> Iterator[IO[str]]:
    """With ``active``, stdout is kept for r1zero's own JSON: the stream yielded writes to
    it, while anything else printed meanwhile (a plugin's import, its hooks, its scorer in a
    worker process, which inherits file descriptor 1) goes to stderr."""
    if not active:
        yield sys.stdout
        return
    sys.stdout.flush()
    try:
        on_fd1 = sys.stdout.fileno() == 1
        saved = os.dup(1)
    except (AttributeError, OSError, ValueError):   # no fd 1 / a replaced sys.stdout
        on_fd1, saved = False, None
    real = os.fdopen(os.dup(saved), "w", encoding="utf-8") if on_fd1 else sys.stdout
    if saved is not None:
        os.dup2(2, 1)
    try:
        with redirect_stdout(sys.stderr):
            yield real
    finally:
        real.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
        if on_fd1:
            real.close()


def _open_output(output: str | Path) -> IO[str]:
    try:
        return open(output, "w", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write per-row results: {exc.strerror or exc}",
                          path=str(output), key="--output") from None


def _score_rows(rows, scorers, scorer_names, workers, timeout_s, sink, as_json):
    """Score ``rows`` chunk by chunk, one line per row to ``sink``; (summary, any failed)."""
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    errors: list[str] = []
    with ScoringPool([(s, 1.0) for s in scorers], workers=workers, timeout_s=timeout_s) as pool:
        t = time.perf_counter()               # scoring only, not the pool's start-up
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start:start + CHUNK]
            batch = pool.score([r["response"] for r in chunk], [r["ground_truth"] for r in chunk],
                               [r["extra"] for r in chunk])
            for i, row in enumerate(chunk):
                rec = _row_record(row, batch, i)
                for k, v in rec.items():
                    if k != "row":
                        totals[k] = totals.get(k, 0.0) + v
                print(json.dumps(rec) if as_json else _row_text(rec), file=sink)
            for k, v in batch.counts.items():
                counts[k] = counts.get(k, 0) + v
            errors += [_error_with_row(e, chunk) for e in batch.errors]
        seconds = time.perf_counter() - t
    summary = {"rows": len(rows), "scorers": list(scorer_names), "seconds": round(seconds, 3),
               "means": {k: v / max(1, len(rows)) for k, v in totals.items()},
               "counts": counts, "errors": errors[:20]}
    return summary, bool(counts.get("reward/timeouts", 0) or counts.get("reward/errors", 0))


def _error_with_row(error: str, chunk: list[dict]) -> str:
    """'... sample 3: ...' -> '... row 17: ...' (the file's row number)."""
    head, sep, tail = error.partition(" sample ")
    index, _, rest = tail.partition(":")
    if not sep or not index.isdigit():
        return error
    return f"{head} row {chunk[int(index)]['row']}:{rest}"


def _print_summary(summary: dict, as_json: bool, out: IO[str]) -> None:
    if as_json:
        print(json.dumps({"summary": summary}), file=out)
        return
    rate = summary["rows"] / summary["seconds"] if summary["seconds"] else 0.0
    print(f"\n{summary['rows']} rows scored by {', '.join(summary['scorers'])} in "
          f"{summary['seconds']:.2f}s ({rate:.0f} rows/s)", file=out)
    for k, v in summary["means"].items():
        print(f"  mean {k} = {v:.4f}", file=out)
    c = summary["counts"]
    print(f"  timeouts {c.get('reward/timeouts', 0)}, errors {c.get('reward/errors', 0)}", file=out)
    for e in summary["errors"]:
        print(f"  ! {e}", file=out)
