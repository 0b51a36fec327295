"""`make-raw`: writes raw_data/ from the Chinook database, messy, deterministic and streamed.

Each dataset's base rows (from `datasets.py`) are repeated `scale` times, end to end, and that
stream is cut into the files `rawformats.PLAN` describes. MANIFEST.json, written last, holds the
ground truth the ingestion is checked against: rows, distinct rows, every file's format and every
damaged record added with `faults=True`.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from isal import isal_zlib

from helpers.chinook.datasets import DATASETS, Dataset
from helpers.errors import HelpersError, InputError
from helpers.fs import replace_durably, write_atomic
from helpers.rawgen.formats import PLAN, Block, FileSpec, layout_for, render, render_fault

GENERATOR = 1  # bump whenever the same arguments would give different files
MANIFEST = "MANIFEST.json"
GZIP_LEVEL = 1  # inputs only need to be gzip; speed matters more than size


@dataclass(frozen=True)
class Placement:
    """Where one file sits in its dataset's stream of `scale` copies of the base rows."""

    spec: FileSpec
    start: int  # first row of the stream in this file
    stop: int  # one past its last row
    faults: tuple[tuple[int, str], ...]  # (valid rows written before it, kind), ascending

    @property
    def rows(self) -> int:
        return self.stop - self.start


def make_raw(db: str | Path, out: str | Path, scale: int, seed: int = 0, faults: bool = False,
             force: bool = False, say: Callable[[str], None] | None = None) -> dict:
    """Write the four dataset folders and MANIFEST.json under `out`; return the manifest.

    A no-op when `out` already holds a complete generation with the same arguments, unless
    `force`. `say` receives one line per dataset (or one saying the data was kept).
    """
    say = say or (lambda _line: None)
    db, out = Path(db), Path(out)
    if scale < 1:
        raise HelpersError(f"scale must be at least 1, got {scale}", fix="Pass --scale 1 or more")
    if not force and (kept := current_manifest(out, scale, seed, faults)) is not None:
        say(f"{out} already holds scale {scale}, seed {seed}, faults {faults}: kept "
            "(use --force to regenerate)")
        return kept
    base = read_base_rows(db)
    out.mkdir(parents=True, exist_ok=True)
    # Until the new manifest lands, the folder is visibly incomplete.
    (out / MANIFEST).unlink(missing_ok=True)
    datasets = {}
    for name, ds in DATASETS.items():
        datasets[name] = write_dataset(out / name, ds, base[name], scale, seed, faults)
        summary = datasets[name]
        say(f"{name}: {summary['rows']} rows in {len(summary['files'])} files, "
            f"{len(summary['faults'])} faults")
    manifest = {"generator": GENERATOR, "scale": scale, "seed": seed, "faults": faults,
                "datasets": datasets}
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    write_atomic(out / MANIFEST, text.encode("utf-8"))
    return manifest


def read_base_rows(db: Path) -> dict[str, list[tuple]]:
    """Each dataset's rows, once, in the stable order its source SQL gives."""
    if not db.is_file():
        raise InputError("database not found", path=db,
                         fix="Build it with `python -m helpers build-db` or pass --db")
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {name: con.execute(ds.source_sql).fetchall() for name, ds in DATASETS.items()}
    except sqlite3.Error as exc:
        raise InputError(f"not a Chinook database ({exc})", path=db,
                         fix="Rebuild it with `python -m helpers build-db --force`") from exc
    finally:
        con.close()


def current_manifest(out: Path, scale: int, seed: int, faults: bool) -> dict | None:
    """The manifest in `out` if it records these arguments and every file it lists is intact."""
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    wanted = {"generator": GENERATOR, "scale": scale, "seed": seed, "faults": faults}
    if any(manifest.get(k) != v for k, v in wanted.items()):
        return None
    if set(manifest.get("datasets", {})) != set(DATASETS):
        return None
    for name, summary in manifest["datasets"].items():
        for entry in summary["files"] + summary["skipped"]:
            path = out / name / entry["name"]
            if not path.is_file() or path.stat().st_size != entry["bytes"]:
                return None
    return manifest


def plan_files(name: str, base: int, scale: int, seed: int = 0,
               faults: bool = False) -> list[Placement]:
    """Cut the dataset's stream of `scale` x `base` rows into its files, by weight."""
    specs = PLAN[name]
    total, weights = base * scale, sum(s.weight for s in specs)
    rng = random.Random(f"{seed}/{name}/faults")
    placements, start, cumulative = [], 0, 0
    for spec in specs:
        cumulative += spec.weight
        stop = total * cumulative // weights
        chosen: tuple[tuple[int, str], ...] = ()
        if faults and spec.faults:
            n = stop - start
            # Inside the file, never before its first row nor after its last.
            spots = sorted(min(n, 1 + rng.randrange(max(n - 1, 1))) for _ in spec.faults)
            chosen = tuple(zip(spots, spec.faults, strict=True))
        placements.append(Placement(spec, start, stop, chosen))
        start = stop
    return placements


def write_dataset(folder: Path, ds: Dataset, rows: list[tuple], scale: int, seed: int,
                  faults: bool) -> dict:
    """Write one dataset's folder; return its part of the manifest."""
    placements = plan_files(ds.name, len(rows), scale, seed, faults)
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale(folder, {p.spec.name for p in placements})
    files, skipped, fault_records = [], [], []
    for place in placements:
        if place.spec.is_data:
            entry, records = _write_data_file(folder, place, ds, rows, seed)
            files.append(entry)
            fault_records.extend(records)
        else:
            write_atomic(folder / place.spec.name, place.spec.content)
            why = "empty" if place.spec.format == "empty" else "non-data"
            skipped.append({"name": place.spec.name, "why": why,
                            "bytes": len(place.spec.content)})
    assert sum(f["rows"] for f in files) == scale * len(rows)
    return {"columns": ds.columns, "rows": scale * len(rows), "distinct_rows": len(set(rows)),
            "files": files, "skipped": skipped, "faults": fault_records}


def _remove_stale(folder: Path, keep: set[str]) -> None:
    # Files of an earlier plan, or temporary files of an interrupted run, would be read as data.
    for path in folder.iterdir():
        if path.name not in keep and (path.is_file() or path.is_symlink()):
            path.unlink()


def _write_data_file(folder: Path, place: Placement, ds: Dataset, rows: list[tuple],
                     seed: int) -> tuple[dict, list[dict]]:
    spec = place.spec
    layout = layout_for(spec, ds, seed)
    block = render(spec, layout, rows)
    path, tmp = folder / spec.name, folder / f".{spec.name}.tmp"
    records = []
    with open(tmp, "wb") as fh:
        sink = _Sink(fh, gzip=spec.compression == "gzip")
        sink.write(block.head, block.head.count(b"\n"))
        pos = place.start
        for before, kind in place.faults:
            _write_rows(sink, block, pos, place.start + before)
            pos = place.start + before
            raw, data = render_fault(kind, spec, layout, ds, rows[pos % len(rows)],
                                     block.encoding)
            records.append({"file": spec.name, "line": sink.lines + 1, "kind": kind, "raw": raw})
            sink.write(data, data.count(b"\n"))
        _write_rows(sink, block, pos, place.stop, trim=block.trim)
        sink.write(block.tail, 0)
        sink.close()
        fh.flush()
        os.fsync(fh.fileno())
    replace_durably(tmp, path)
    entry = {
        "name": spec.name, "bytes": path.stat().st_size, "format": spec.format,
        "delimiter": spec.delimiter, "encoding": block.encoding, "compression": spec.compression,
        "line_ending": spec.line_ending,
        "header": list(layout.names) if spec.format == "csv" else None,
        "rows": place.rows, "faults": len(records),
    }
    return entry, records


def _write_rows(sink: _Sink, block: Block, start: int, stop: int, trim: int = 0) -> None:
    """Write rows start..stop of the stream: slices of the block, whole copies in between."""
    base = len(block.offsets) - 1
    body = memoryview(block.body)
    pos = start
    while pos < stop:
        i = pos % base
        j = min(base, i + stop - pos)
        pos += j - i
        end = block.offsets[j] - (trim if pos == stop else 0)
        sink.write(body[block.offsets[i]:end], block.lines[j] - block.lines[i])


class _Sink:
    """A file being written, through gzip if asked, counting lines of the uncompressed text."""

    def __init__(self, fh, gzip: bool) -> None:
        self.fh = fh
        # wbits 31: a gzip member whose header has mtime 0 and no file name, so it is repeatable.
        self.zip = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, 31) if gzip else None
        self.lines = 0

    def write(self, data: bytes | memoryview, lines: int) -> None:
        self.lines += lines
        self.fh.write(self.zip.compress(data) if self.zip else data)

    def close(self) -> None:
        if self.zip:
            self.fh.write(self.zip.flush())
