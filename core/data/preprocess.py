"""``r1zero preprocess``: records -> handler -> template -> tokenizer -> dataset on disk.

The output directory holds ``data.parquet`` (one row per kept prompt; columns ``id``, ``row``,
``input_ids`` list<int32>, ``prompt`` (the rendered text), ``ground_truth`` (verbatim),
``system``, ``prompt_length``, ``extra`` (JSON text)) and ``manifest.json`` (counts, hashes of
the input and the tokenizer, template, handler, map_keys, the given config, version, time).

- Prompts of more than ``max_prompt_length`` tokens are dropped and counted, as MindSpeed-RL
  drops them.
- ``workers`` processes tokenize chunks of prompts; rows keep the input's order for any count.
- Same input, tokenizer, template, handler, map_keys and max_prompt_length as the manifest in
  ``output_dir``: the existing output is returned (``manifest.reused``) unless ``force``.
- The dataset is written into a temporary sibling directory and renamed into place, so an
  interrupted run leaves either no ``output_dir`` or a complete one; leftovers of killed runs
  are removed by the next run.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
import sys
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Mapping

import attrs

import r1zero
from r1zero.data.records import (
    DatasetHandler,
    Item,
    LoadStats,
    input_sha256,
    iter_items,
    resolve_map_keys,
    text_sha256,
    tokenizer_sha256,
)
from r1zero.host.errors import ConfigError, DatasetError
from r1zero.host.files import pid_alive, publish_dir, remove_path

log = logging.getLogger("r1zero.data.preprocess")
FORMAT = "r1zero-preprocessed/1"
DATA_FILE, MANIFEST_FILE = "data.parquet", "manifest.json"
CHUNK = 512         # prompts per task sent to a worker
WRITE_ROWS = 4096   # rows buffered per Parquet row group
# What decides the output; equal fingerprints mean the output can be reused.
FINGERPRINT_KEYS = ("format", "input_sha256", "tokenizer_sha256", "template", "template_sha256",
                    "handler", "map_keys", "max_prompt_length")


@attrs.frozen
class Manifest:
    """What ``manifest.json`` holds. ``n_read = n_kept + n_skipped_bad + n_filtered_length``."""
    input_path: str
    input_sha256: str
    tokenizer_path: str
    tokenizer_sha256: str
    template: str
    template_sha256: str
    handler: str
    map_keys: dict
    max_prompt_length: int
    n_read: int = 0
    n_kept: int = 0
    n_skipped_bad: int = 0
    n_filtered_length: int = 0
    skipped_examples: list = attrs.field(factory=list)
    n_duplicate_ids: int = 0                                 # kept rows whose id came before
    duplicate_ids: list = attrs.field(factory=list)          # the first few, with their rows
    prompt_length_max: int = 0
    prompt_length_mean: float = 0.0
    workers: int = 1
    seconds: float = 0.0
    config: dict = attrs.field(factory=dict)
    data_file: str = DATA_FILE
    format: str = FORMAT
    r1zero_version: str = r1zero.__version__
    created: str = ""
    fingerprint: str = ""
    reused: bool = attrs.field(default=False, metadata={"stored": False})

    def to_dict(self) -> dict:
        return attrs.asdict(self, filter=lambda a, _: a.metadata.get("stored", True))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "") -> "Manifest":
        names = {a.name for a in attrs.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in names and k != "reused"})
        except TypeError as exc:
            raise DatasetError(f"manifest is incomplete: {exc}", path=path) from exc

    def fingerprint_of(self) -> str:
        d = self.to_dict()
        return text_sha256(json.dumps({k: d[k] for k in FINGERPRINT_KEYS}, sort_keys=True))


def preprocess(input_path: str | Path, handler: DatasetHandler, template: Any,
               tokenizer_path: str | Path, output_dir: str | Path, *,
               map_keys: Mapping[str, str] | None, max_prompt_length: int, workers: int = 8,
               skip_bad_rows: bool = False, config: Mapping[str, Any] | None = None,
               force: bool = False) -> Manifest:
    """Preprocess ``input_path`` into ``output_dir``; returns the manifest (``reused=True``
    when an identical earlier output was kept). ``handler`` and ``template`` are plugin
    objects (``r1zero.data.pipeline.resolve`` looks them up)."""
    start = time.perf_counter()
    if max_prompt_length < 1 or workers < 1:
        raise ConfigError(f"max_prompt_length ({max_prompt_length}) and workers ({workers}) "
                          "must be >= 1")
    out = Path(output_dir)
    _refuse_input_inside(Path(input_path), out)
    handler, template = _check_plugins(handler, template)
    tokenizer = load_tokenizer(tokenizer_path)
    plan = Manifest(
        str(input_path), input_sha256(input_path), str(tokenizer_path),
        tokenizer_sha256(tokenizer_path), template.name, _template_sha256(template, tokenizer),
        handler.name, resolve_map_keys(map_keys), int(max_prompt_length), workers=workers,
        config=json.loads(json.dumps(dict(config or {}), default=str)))
    plan = attrs.evolve(plan, fingerprint=plan.fingerprint_of())
    _clean_stale(out)
    existing = _check_existing(out, plan, skip_bad_rows, force)
    if existing is not None:
        log.info("reusing %s: same inputs as its manifest (force=True / --force redoes it)", out)
        return attrs.evolve(existing, reused=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        counts = _tokenize_into(tmp, input_path, handler, template, tokenizer, plan,
                                skip_bad_rows, workers)
        manifest = attrs.evolve(plan, **counts, seconds=round(time.perf_counter() - start, 3),
                                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        _write_json(tmp / MANIFEST_FILE, manifest.to_dict())
        publish_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if manifest.n_duplicate_ids:
        log.warning("%s: %d rows repeat an id of an earlier row (%s); ids name the prompts in "
                    "metrics and rewards, so these are ambiguous", input_path,
                    manifest.n_duplicate_ids, "; ".join(manifest.duplicate_ids))
    log.info("preprocessed %s -> %s: %d read, %d kept, %d bad rows skipped, %d longer than %d "
             "tokens dropped (%.2fs)", input_path, out, manifest.n_read, manifest.n_kept,
             manifest.n_skipped_bad, manifest.n_filtered_length, max_prompt_length,
             manifest.seconds)
    return manifest


def load_preprocessed(output_dir: str | Path) -> tuple[Any, Manifest]:
    """(``pyarrow.Table`` of the kept prompts, ``Manifest``) of a preprocessed directory."""
    import pyarrow.parquet as pq

    out = Path(output_dir)
    mpath = out / MANIFEST_FILE
    if not mpath.exists():
        raise DatasetError("not a preprocessed dataset (no manifest.json); run `r1zero "
                           "preprocess` first", path=str(out))
    manifest = _read_manifest(mpath)
    if manifest.format != FORMAT:
        raise DatasetError(f"format {manifest.format!r}, this r1zero reads {FORMAT!r}; "
                           "preprocess again with --force", path=str(mpath))
    table = pq.read_table(out / manifest.data_file)
    if table.num_rows != manifest.n_kept:
        raise DatasetError(f"{manifest.data_file} has {table.num_rows} rows but the manifest "
                           f"says {manifest.n_kept}; preprocess again with --force", path=str(out))
    return table, manifest


def _read_manifest(mpath: Path) -> Manifest:
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"unreadable manifest: {exc}", path=str(mpath)) from exc
    if not isinstance(data, dict):
        raise DatasetError("manifest is not a JSON object", path=str(mpath))
    return Manifest.from_dict(data, str(mpath))


def load_tokenizer(tokenizer_path: str | Path) -> Any:
    """A ``transformers`` tokenizer from a local directory (nothing is ever downloaded)."""
    if not Path(tokenizer_path).is_dir():
        raise ConfigError("not a local tokenizer directory (nothing is downloaded)",
                          path=str(tokenizer_path))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_path), local_files_only=True)


# -- plan ------------------------------------------------------------------------------------
def _check_plugins(handler: Any, template: Any) -> tuple[Any, Any]:
    for obj, what, attrs_needed in ((handler, "dataset handler", ("name", "convert")),
                                    (template, "template", ("name", "render"))):
        missing = [a for a in attrs_needed if not hasattr(obj, a)]
        if missing:
            raise ConfigError(f"{what} {obj!r} lacks {missing}")
    return handler, template


def _template_sha256(template: Any, tokenizer: Any) -> str:
    """Hash of what the template renders for probe inputs (catches edits under one name)."""
    probe = [template.render("\x00content\x00", None, tokenizer=tokenizer),
             template.render("\x00content\x00", "\x00system\x00", tokenizer=tokenizer)]
    return text_sha256(json.dumps(probe))


def _refuse_input_inside(inp: Path, out: Path) -> None:
    """The output is replaced as a whole, so it may be neither the input nor a folder above it."""
    src, dst = inp.resolve(), out.resolve()
    if src == dst or dst in src.parents:
        raise ConfigError(f"{str(out)!r} is, or contains, the input {str(inp)!r}; "
                          "preprocessing would replace it: choose another folder", key="data.output")


def _check_existing(out: Path, plan: Manifest, skip_bad_rows: bool,
                    force: bool) -> Manifest | None:
    """The reusable manifest in ``out``, None to (re)build, or an error if ``out`` holds
    something else and ``force`` is off."""
    if not out.exists() and not out.is_symlink():
        return None
    if out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
        return None
    mpath = out / MANIFEST_FILE
    if out.is_symlink() or not out.is_dir() or not mpath.is_file():
        raise DatasetError("exists and is not a preprocessed dataset (no manifest.json); r1zero "
                           "replaces only its own earlier output, even with --force: remove it "
                           "yourself or choose another data.output", path=str(out))
    old = _read_manifest(mpath)
    foreign = sorted(p.name for p in out.iterdir() if p.name not in (MANIFEST_FILE, old.data_file))
    if foreign or not str(old.format).startswith(FORMAT.split("/")[0] + "/"):
        why = f"it also holds {foreign[:5]}, which r1zero did not write" if foreign else \
            f"its manifest has format {old.format!r}"
        raise DatasetError(f"will not replace this output: {why}; remove it yourself or choose "
                           "another data.output", path=str(out))
    if force:
        return None
    if old.fingerprint != plan.fingerprint:
        new_d, old_d = plan.to_dict(), old.to_dict()
        diff = [k for k in FINGERPRINT_KEYS if new_d[k] != old_d.get(k)] or ["fingerprint"]
        raise DatasetError(f"holds a dataset preprocessed from other inputs ({', '.join(diff)} "
                           "differ); pass force=True (--force) to replace it", path=str(out))
    if old.n_skipped_bad and not skip_bad_rows:
        return None   # it skipped bad rows; without skipping, the run must fail on them
    return old if (out / old.data_file).exists() else None


# -- tokenize --------------------------------------------------------------------------------
_STATE: dict[str, Any] = {}


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()), ("row", pa.int64()), ("input_ids", pa.list_(pa.int32())),
        ("prompt", pa.string()), ("ground_truth", pa.string()), ("system", pa.string()),
        ("prompt_length", pa.int32()), ("extra", pa.string())])


def encode_chunk(items: list[Item], template: Any, tokenizer: Any,
                 max_prompt_length: int) -> tuple[Any, dict[str, int]]:
    """Render, tokenize and length-filter one chunk -> (Arrow batch of the kept rows, stats).

    The template renders BOS as text, so the tokenizer adds no special tokens of its own.
    stats: ``n_filtered`` (prompts > max_prompt_length), ``shortest`` over all prompts,
    ``longest`` and ``total`` over the kept ones.
    """
    import pyarrow as pa

    prompts = [template.render(it.content, it.system, tokenizer=tokenizer) for it in items]
    ids = tokenizer(prompts, add_special_tokens=False)["input_ids"] if prompts else []
    keep = [i for i, x in enumerate(ids) if len(x) <= max_prompt_length]
    kept = [items[i] for i in keep]
    lengths = [len(ids[i]) for i in keep]
    cols = {
        "id": [str(it.extra.get("id", "")) for it in kept],
        "row": [it.extra.get("row") for it in kept],
        "input_ids": [ids[i] for i in keep], "prompt": [prompts[i] for i in keep],
        "ground_truth": [it.ground_truth for it in kept], "system": [it.system for it in kept],
        "prompt_length": lengths,
        "extra": [json.dumps(dict(it.extra), ensure_ascii=False, sort_keys=True, default=str)
                  for it in kept]}
    stats = {"n_filtered": len(items) - len(keep), "longest": max(lengths, default=0),
             "total": sum(lengths), "shortest": min((len(x) for x in ids), default=0)}
    return pa.RecordBatch.from_pydict(cols, schema=_schema()), stats


def _init_worker(tokenizer_path: str, template: Any, max_prompt_length: int) -> None:
    """Pool initializer: one tokenizer per worker (inherited under fork, loaded under spawn);
    workers do not also multithread inside the tokenizer."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    if _STATE.get("tokenizer_path") != tokenizer_path:
        _STATE.update(tokenizer=load_tokenizer(tokenizer_path), tokenizer_path=tokenizer_path)
    _STATE.update(template=template, max_prompt_length=max_prompt_length)


def _encode_in_worker(items: list[Item]) -> tuple[Any, dict[str, int]]:
    return encode_chunk(items, _STATE["template"], _STATE["tokenizer"],
                        _STATE["max_prompt_length"])


def _tokenize_into(tmp: Path, input_path: Any, handler: Any, template: Any, tokenizer: Any,
                   plan: Manifest, skip_bad_rows: bool, workers: int) -> dict[str, Any]:
    """Stream items through ``workers`` processes into ``tmp/data.parquet``; the counts."""
    stats = LoadStats()
    items = iter_items(input_path, handler, plan.map_keys, skip_bad_rows, stats)
    sink, max_len = _Sink(tmp / DATA_FILE), plan.max_prompt_length
    pool = None
    if workers > 1:
        _STATE.update(tokenizer=tokenizer, tokenizer_path=plan.tokenizer_path)
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        pool = ctx.Pool(workers, _init_worker, (plan.tokenizer_path, template, max_len))
    try:
        pending: deque = deque()
        for chunk in _chunks(items, CHUNK):
            if pool is None:
                sink.add(*encode_chunk(chunk, template, tokenizer, max_len))
                continue
            pending.append(pool.apply_async(_encode_in_worker, (chunk,)))
            if len(pending) >= 2 * workers:   # bounded look-ahead keeps memory flat
                sink.add(*pending.popleft().get())
        while pending:
            sink.add(*pending.popleft().get())
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        sink.close()
    if sink.n_kept == 0:
        raise DatasetError(f"no prompts left: {stats.n_read} read, {stats.n_skipped} bad rows "
                           f"skipped, {sink.n_filtered} longer than max_prompt_length="
                           f"{max_len} (shortest: {sink.shortest} tokens)", path=str(input_path))
    return {"n_read": stats.n_read, "n_kept": sink.n_kept, "n_skipped_bad": stats.n_skipped,
            "n_filtered_length": sink.n_filtered, "skipped_examples": stats.first_errors,
            "n_duplicate_ids": sink.n_duplicates, "duplicate_ids": sink.duplicates,
            "prompt_length_max": sink.longest,
            "prompt_length_mean": round(sink.total / sink.n_kept, 3)}


def _chunks(items, size):
    chunk: list[Item] = []
    for it in items:
        chunk.append(it)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _Sink:
    """Appends Arrow batches to a Parquet file, ~WRITE_ROWS rows per row group; sums stats."""

    def __init__(self, path: Path):
        import pyarrow.parquet as pq

        self.writer = pq.ParquetWriter(path, _schema())
        self.batches: list = []
        self.n_kept = self.n_filtered = self.longest = self.total = self.buffered = 0
        self.shortest: int | None = None
        self.first_row: dict[str, int] = {}         # id -> row that used it first
        self.duplicates: list[str] = []             # "id 'p1': rows 3 and 7", the first few
        self.n_duplicates = 0

    def add(self, batch: Any, stats: dict[str, int]) -> None:
        self.n_kept += batch.num_rows
        self.n_filtered += stats["n_filtered"]
        self.longest, self.total = max(self.longest, stats["longest"]), self.total + stats["total"]
        if self.shortest is None or stats["shortest"] < self.shortest:
            self.shortest = stats["shortest"]
        self._check_ids(batch.column("id").to_pylist(), batch.column("row").to_pylist())
        self.batches.append(batch)
        self.buffered += batch.num_rows
        if self.buffered >= WRITE_ROWS:
            self._flush()

    def _check_ids(self, ids: list[str], rows: list[int]) -> None:
        for rid, row in zip(ids, rows):
            first = self.first_row.setdefault(rid, row)
            if first != row:
                self.n_duplicates += 1
                if len(self.duplicates) < 5:
                    self.duplicates.append(f"id {rid!r}: rows {first} and {row}")

    def _flush(self) -> None:
        import pyarrow as pa

        if self.buffered:
            self.writer.write_table(pa.Table.from_batches(self.batches, schema=_schema()))
        self.batches, self.buffered = [], 0

    def close(self) -> None:
        self._flush()
        self.writer.close()


# -- atomic output ---------------------------------------------------------------------------
def _write_json(path: Path, data: Any) -> None:
    with path.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _clean_stale(out: Path) -> None:
    """Remove temp dirs of dead runs; if a run died between its two renames, put the old
    output back."""
    if not out.parent.is_dir():
        return
    prefix = f".{out.name}."
    for p in sorted(out.parent.iterdir()):
        if not p.name.startswith(prefix):
            continue
        kind, _, rest = p.name[len(prefix):].partition("-")
        pid = rest.split("-")[0]
        if kind not in ("tmp", "old") or not pid.isdigit() or pid_alive(int(pid)):
            continue
        if kind == "old" and not out.exists() and (p / MANIFEST_FILE).exists():
            os.replace(p, out)
        else:
            remove_path(p)
