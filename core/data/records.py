"""Raw dataset records -> ``Item`` (prompt content + ground truth), through a handler plugin.

Readers: JSON (a list of objects, or one object per line), JSON Lines (``.jsonl``/``.ndjson``),
Parquet, and a directory written by ``datasets.Dataset.save_to_disk``.

Row numbers are **1-based** everywhere: in ``RowRef``, in ``DatasetError.row``, in
``Item.extra["row"]`` and in messages. For JSON Lines the row is the line number (blank lines
count), so ``data.jsonl row 17`` is what an editor shows as line 17; for the other formats it
is the record's position (first record = row 1).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple

import attrs

from r1zero.host.errors import ConfigError, DatasetError, short_repr

SUPPORTED_FORMATS = (".json (list or lines)", ".jsonl", ".ndjson", ".parquet",
                     "a directory saved by datasets.save_to_disk")
MAP_KEY_ROLES = ("prompt", "query", "response", "system")
# MindSpeed-RL's deepscaler.yaml; an empty string means "this role is not used".
DEFAULT_MAP_KEYS: Mapping[str, str] = {"prompt": "problem", "query": "", "response": "answer",
                                       "system": ""}
_ERRORS_KEPT = 5   # load_items keeps the first few skipped-row messages for the report


class RowRef(NamedTuple):
    """Where a record came from: its file and its 1-based row."""
    path: str
    row: int


@attrs.frozen
class Item:
    """One prompt: what a handler yields for one record.

    ``content`` is the user turn's text (e.g. problem [+ "\\n" + query]); ``ground_truth`` is
    the answer string verbatim (never round-tripped through a tokenizer); ``extra`` carries
    e.g. ``{"id": ..., "row": n, "source": path}`` through to the reward scorers.
    """
    content: str
    ground_truth: str
    system: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)


class DatasetHandler:
    """Base class of dataset-handler plugins: ``name`` plus ``convert``.

    ``convert(record, map_keys, where)`` maps one raw record to an ``Item`` or raises
    ``DatasetError(path=where.path, row=where.row, field=...)``; ``text_field`` helps with that.
    """
    name: str = ""

    def convert(self, record: Mapping[str, Any], map_keys: Mapping[str, str],
                where: RowRef) -> Item:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<dataset handler {self.name!r} ({type(self).__module__}.{type(self).__name__})>"

    @staticmethod
    def text_field(record: Mapping[str, Any], map_keys: Mapping[str, str], role: str,
                   where: RowRef, *, required: bool = True, allow_int: bool = False) -> str | None:
        """The string in the field that ``map_keys[role]`` names.

        required=True: the field must exist and hold a non-blank string (or an int when
        ``allow_int``; a float is refused because ``0.5`` cannot say whether it was ``"0.50"``).
        required=False: a missing field, ``None`` or ``""`` gives ``None``.
        """
        key = map_keys.get(role) or ""
        if not key:
            return None
        how = f"(map_keys.{role}={key!r})"
        if key not in record:
            if not required:
                return None
            raise DatasetError(f"field {key!r} missing {how}; keys are {sorted(record)}",
                               path=where.path, row=where.row, field=key)
        value = record[key]
        if allow_int and isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if value is None or value == "":
            if not required:
                return None
            what = "null" if value is None else "empty"
            raise DatasetError(f"field {key!r} is {what} {how}", path=where.path, row=where.row,
                               field=key)
        if not isinstance(value, str):
            want = "a string or an integer" if allow_int else "a string"
            raise DatasetError(f"field {key!r} {how} must be {want}, got {type(value).__name__} "
                               f"{short_repr(value, 60)}", path=where.path, row=where.row,
                               field=key)
        if required and not value.strip():
            raise DatasetError(f"field {key!r} is blank {how}", path=where.path, row=where.row,
                               field=key)
        return value


def resolve_map_keys(map_keys: Mapping[str, str] | None) -> dict[str, str]:
    """``DEFAULT_MAP_KEYS`` updated with ``map_keys``; unknown roles are an error."""
    given = dict(map_keys or {})
    unknown = sorted(set(given) - set(MAP_KEY_ROLES))
    if unknown:
        raise ConfigError(f"unknown role(s) {unknown}; roles are {list(MAP_KEY_ROLES)}",
                          key="map_keys")
    out = {**DEFAULT_MAP_KEYS, **{k: (v or "") for k, v in given.items()}}
    bad = {k: v for k, v in out.items() if not isinstance(v, str)}
    if bad:
        raise ConfigError(f"values must be field names (strings), got {bad}", key="map_keys")
    for role in ("prompt", "response"):
        if not out[role]:
            raise ConfigError(f"map_keys.{role} must name a field", key=f"map_keys.{role}")
    return out


# -- readers ---------------------------------------------------------------------------------
def read_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(1-based row, record) for every record of ``path``; the first bad row raises."""
    for row, rec in _iter_records(path):
        if isinstance(rec, DatasetError):
            raise rec
        yield row, rec


def _iter_records(path: str | Path) -> Iterator[tuple[int, dict | DatasetError]]:
    """Like ``read_records`` but yields a row's ``DatasetError`` instead of raising it, so a
    caller can skip the row and go on (a file that cannot be opened at all still raises)."""
    p = Path(path)
    if not p.exists():
        raise DatasetError("file not found", path=str(path))
    if p.is_dir():
        yield from _read_saved_dataset(p)
        return
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        yield from _read_json_lines(p)
    elif suffix == ".json":
        yield from (_read_json_list(p) if _first_char(p) == "[" else _read_json_lines(p))
    elif suffix == ".parquet":
        yield from _read_parquet(p)
    else:
        raise DatasetError(f"unknown format {suffix or '(no suffix)'!r}; supported: "
                           f"{', '.join(SUPPORTED_FORMATS)}", path=str(path))


def _first_char(p: Path) -> str:
    with p.open("rb") as f:
        head = f.read(4096).decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    return head[:1]


def _as_record(obj: Any, path: Path, row: int) -> dict | DatasetError:
    if isinstance(obj, dict):
        return obj
    return DatasetError(f"record is not an object: got {type(obj).__name__} {short_repr(obj, 60)}",
                        path=str(path), row=row)


def _read_json_lines(p: Path) -> Iterator[tuple[int, dict | DatasetError]]:
    with p.open("rb") as f:
        for row, raw in enumerate(f, start=1):
            if row == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield row, DatasetError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})",
                                        path=str(p), row=row)
                continue
            except json.JSONDecodeError as exc:
                yield row, DatasetError(f"not valid JSON: {exc.msg} at column {exc.colno}",
                                        path=str(p), row=row)
                continue
            yield row, _as_record(obj, p, row)


def _read_json_list(p: Path) -> Iterator[tuple[int, dict | DatasetError]]:
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})",
                           path=str(p)) from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                           path=str(p)) from exc
    for row, obj in enumerate(data, start=1):
        yield row, _as_record(obj, p, row)


def _read_parquet(p: Path) -> Iterator[tuple[int, dict | DatasetError]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(p)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise DatasetError(f"not a readable Parquet file: {exc}", path=str(p)) from exc
    row = 0
    for batch in pf.iter_batches(batch_size=1024):
        for rec in batch.to_pylist():
            row += 1
            yield row, rec


def _read_saved_dataset(p: Path) -> Iterator[tuple[int, dict | DatasetError]]:
    if (p / "dataset_dict.json").exists():
        splits = sorted(d.name for d in p.iterdir() if (d / "state.json").exists())
        raise DatasetError(f"is a DatasetDict with splits {splits}; point to one split's "
                           f"directory, e.g. {p / (splits[0] if splits else 'train')}", path=str(p))
    if not (p / "state.json").exists():
        raise DatasetError("directory is not a dataset saved by datasets.save_to_disk (no "
                           f"state.json); supported: {', '.join(SUPPORTED_FORMATS)}", path=str(p))
    import datasets

    ds = datasets.load_from_disk(str(p))
    row = 0
    for batch in ds.iter(batch_size=1024):
        keys = list(batch)
        for values in zip(*(batch[k] for k in keys)):
            row += 1
            yield row, dict(zip(keys, values))


# -- records -> items ------------------------------------------------------------------------
@attrs.define
class LoadStats:
    """Counts kept while items stream: rows read (good and bad), rows skipped, first errors."""
    n_read: int = 0
    n_skipped: int = 0
    first_errors: list[str] = attrs.field(factory=list)


def iter_items(path: str | Path, handler: DatasetHandler, map_keys: Mapping[str, str] | None,
               skip_bad_rows: bool = False, stats: LoadStats | None = None) -> Iterator[Item]:
    """Stream ``Item``s; a bad row raises its ``DatasetError`` unless ``skip_bad_rows``, in
    which case it is counted in ``stats`` (and its message kept if among the first few)."""
    keys = resolve_map_keys(map_keys)
    stats = stats if stats is not None else LoadStats()
    source = str(path)
    for row, rec in _iter_records(path):
        stats.n_read += 1
        try:
            if isinstance(rec, DatasetError):
                raise rec
            item = _convert(handler, rec, keys, RowRef(source, row))
        except DatasetError as exc:
            if not skip_bad_rows:
                raise
            stats.n_skipped += 1
            if len(stats.first_errors) < _ERRORS_KEPT:
                stats.first_errors.append(str(exc))
            continue
        yield item


def _convert(handler: DatasetHandler, rec: dict, keys: Mapping[str, str], where: RowRef) -> Item:
    try:
        item = handler.convert(rec, keys, where)
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001 - a handler bug must still name the row
        raise DatasetError(f"dataset handler {getattr(handler, 'name', handler)!r} "
                           f"({type(handler).__module__}) raised {type(exc).__name__}: {exc}",
                           path=where.path, row=where.row) from exc
    if not isinstance(item, Item):
        raise DatasetError(f"dataset handler {getattr(handler, 'name', handler)!r} returned "
                           f"{type(item).__name__}, not r1zero.data.records.Item",
                           path=where.path, row=where.row)
    for name, value in (("content", item.content), ("ground_truth", item.ground_truth),
                        ("system", item.system), *((f"extra.{k}", v) for k, v in item.extra.items())):
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise DatasetError(f"{name} is not valid Unicode text (a lone surrogate "
                                   f"{value[exc.start]!r} at character {exc.start})",
                                   path=where.path, row=where.row, field=name) from None
    return item


def load_items(path: str | Path, handler: DatasetHandler, map_keys: Mapping[str, str] | None,
               skip_bad_rows: bool = False) -> tuple[list[Item], int, list[str]]:
    """(items, number of bad rows skipped, the first few skipped rows' messages)."""
    stats = LoadStats()
    items = list(iter_items(path, handler, map_keys, skip_bad_rows, stats))
    return items, stats.n_skipped, stats.first_errors


# -- fingerprints of inputs ------------------------------------------------------------------
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "added_tokens.json", "merges.txt", "vocab.*", "*.model", "*.tiktoken",
                    "chat_template.*")


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def input_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes; for a directory, of every file's relative path and bytes."""
    p = Path(path)
    if not p.exists():
        raise DatasetError("file not found", path=str(path))
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    return _hash_files(files, p if p.is_dir() else p.parent)


def tokenizer_sha256(path: str | Path) -> str:
    """sha256 of the tokenizer files in a directory (never the model weights beside them)."""
    p = Path(path)
    files = sorted({f for pat in _TOKENIZER_FILES for f in p.glob(pat) if f.is_file()})
    if not files:
        raise ConfigError(f"no tokenizer files ({', '.join(_TOKENIZER_FILES)}) found",
                          path=str(path))
    return _hash_files(files, p)


def _hash_files(files: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(root).as_posix().encode("utf-8") + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()
