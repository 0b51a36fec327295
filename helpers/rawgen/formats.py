"""What each raw file looks like: the plan of files per dataset, and how their bytes are made.

The plan puts every variation the assessment hints at ("light investigation into the data files
to understand their file formats and delimiters") somewhere at default settings. A file is
rendered once for the base rows as a `Block`; `rawgen` then writes slices of it again and again,
so no row is formatted more than once per file however large the scale.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass

from helpers.chinook.datasets import Dataset

BOM = b"\xef\xbb\xbf"
DATA_FORMATS = ("csv", "jsonl", "json_array")
FAULT_KINDS = ("truncated_json", "too_many_fields", "non_numeric_id", "missing_required")
# A few bytes like the start of a real .DS_Store: binary, and not UTF-8.
DS_STORE = b"\x00\x00\x00\x01Bud1\x00\x00\x10\x00\x00\x00\x08\x00\x00\x00\x10\x00\xff\xfe\x80"


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset's folder, as a real export might have written it."""

    name: str
    format: str  # "csv", "jsonl", "json_array", "empty" (0 bytes) or "stray" (not data)
    weight: int = 0  # this file's share of the dataset's rows
    delimiter: str | None = None
    encoding: str = "utf-8"  # "utf-8", "utf-8-sig" (with a BOM) or "cp1252"
    compression: str | None = None  # None or "gzip"
    line_ending: str = "\n"
    names: str = "canonical"  # spelling of headers/keys: canonical, lower, upper, prefixed
    order: str = "canonical"  # column order: canonical, shuffled or reversed
    nulls: str = "null"  # JSON only: "null" writes null, "absent" leaves the key out
    ascii: bool = False  # JSON only: escape non-ASCII text as \\uXXXX
    faults: tuple[str, ...] = ()  # damaged records added under --faults
    content: bytes = b""  # the bytes of a stray file

    @property
    def is_data(self) -> bool:
        return self.format in DATA_FORMATS


def _csv(name: str, weight: int, delimiter: str = ",", **kw) -> FileSpec:
    return FileSpec(name, "csv", weight, delimiter, **kw)


def _jsonl(name: str, weight: int, **kw) -> FileSpec:
    return FileSpec(name, "jsonl", weight, **kw)


def _array(name: str, weight: int, **kw) -> FileSpec:
    return FileSpec(name, "json_array", weight, **kw)


# Weights keep scale 500 near the reference's ~400 MB: the wide, verbose formats get fewer rows.
PLAN: dict[str, tuple[FileSpec, ...]] = {
    "tracks": (
        _csv("tracks_0.csv", 4, faults=("too_many_fields",)),
        _jsonl("tracks_1.json", 3, faults=("truncated_json",)),
        _csv("tracks_2.csv", 3, ";", encoding="utf-8-sig", line_ending="\r\n", names="prefixed",
             order="shuffled", faults=("missing_required",)),
        _array("tracks_3.json", 2, order="shuffled"),
        _csv("tracks_4.txt", 2, "|", encoding="cp1252", line_ending="\r\n", names="lower"),
        _jsonl("tracks_5.jsonl", 2, nulls="absent", ascii=True, order="reversed"),
        FileSpec("tracks_6.csv", "empty"),
        FileSpec(".DS_Store", "stray", content=DS_STORE),
    ),
    "track_facts": (
        _csv("track_facts_0.csv", 3, "\t", names="upper", faults=("non_numeric_id",)),
        _jsonl("track_facts_1.json.gz", 2, compression="gzip", faults=("truncated_json",)),
        _csv("track_facts_2.csv", 3, line_ending="\r\n", order="reversed"),
        _array("track_facts_3.json", 2, names="lower"),
        FileSpec("_SUCCESS", "stray"),
    ),
    "playlist_track": (
        _csv("playlist_track_0.csv", 3),
        _jsonl("playlist_track_1.json", 3, faults=("non_numeric_id",)),
        _csv("playlist_track_2.csv.gz", 3, compression="gzip", names="prefixed",
             order="reversed"),
        _csv("playlist_track_3.txt", 2, "|", faults=("too_many_fields",)),
        FileSpec("playlist_track_4.json", "empty"),
    ),
    "orders": (
        _csv("orders_0.csv", 3, line_ending="\r\n", faults=("non_numeric_id",)),
        _array("orders_1.json", 2),
        _csv("orders_2.csv", 2, ";", names="lower", order="shuffled"),
        _jsonl("orders_3.jsonl", 2, faults=("missing_required", "truncated_json")),
        _csv("orders_4.tsv", 2, "\t", encoding="utf-8-sig"),
        FileSpec(".DS_Store", "stray", content=DS_STORE),
    ),
}


@dataclass(frozen=True)
class Layout:
    """How one data file arranges the dataset's columns."""

    order: tuple[int, ...]  # indices into the canonical columns, in written order
    names: tuple[str, ...]  # the header or keys as written, in that order


@dataclass(frozen=True)
class Block:
    """A data file's bytes for one copy of the base rows, ready to be written in slices."""

    head: bytes  # BOM and header line, or the opening of a JSON array
    body: bytes  # every base row, in order
    offsets: tuple[int, ...]  # where row i starts in body; the last entry is len(body)
    lines: tuple[int, ...]  # line breaks in body before row i: fault lines are counted
    tail: bytes  # closes a JSON array
    trim: int  # bytes to drop after a file's last row (an array's ",\n" separator)
    encoding: str  # as actually written (cp1252 falls back to utf-8 if a value needs it)


def layout_for(spec: FileSpec, ds: Dataset, seed: int) -> Layout:
    """Choose the file's column order (seeded where shuffled) and the spelling of its names."""
    n = len(ds.columns)
    order = list(range(n))
    if spec.order == "reversed":
        order.reverse()
    elif spec.order == "shuffled":
        rng = random.Random(f"{seed}/{ds.name}/{spec.name}")
        # A shuffle that changed nothing would hide the variation.
        while n > 1 and order == sorted(order):
            rng.shuffle(order)
    return Layout(tuple(order), tuple(_spell(ds, ds.columns[i], spec.names) for i in order))


def _spell(ds: Dataset, column: str, style: str) -> str:
    return {"canonical": column, "lower": column.lower(), "upper": column.upper(),
            "prefixed": f"{ds.name}.{column}"}[style]


def render(spec: FileSpec, layout: Layout, rows: Sequence[tuple]) -> Block:
    """Render the base rows once in the file's format, delimiter, encoding and line ending."""
    if spec.format == "csv":
        head, lines = _csv_text(spec, layout, rows)
        tail, trim = "", 0
    elif spec.format == "jsonl":
        head, tail, trim = "", "", 0
        lines = [_json_line(spec, layout, row) + spec.line_ending for row in rows]
    else:
        head, tail, trim = "[\n", "\n]\n", 2
        lines = [_json_element(spec, layout, row) + ",\n" for row in rows]
    return _encode(spec, head, lines, tail, trim)


class _Lines(list):
    """Collects what csv.writer writes: it calls write() once per row, line ending included."""

    write = list.append


def _csv_lines(spec: FileSpec, rows) -> _Lines:
    # The csv module quotes a field holding the delimiter, a quote or a line break, and
    # doubles embedded quotes; None becomes an empty field, a float its shortest repr (0.99).
    lines = _Lines()
    csv.writer(lines, delimiter=spec.delimiter, lineterminator=spec.line_ending).writerows(rows)
    return lines


def _csv_text(spec: FileSpec, layout: Layout, rows: Sequence[tuple]) -> tuple[str, list[str]]:
    lines = _csv_lines(spec, [layout.names, *([row[i] for i in layout.order] for row in rows)])
    return lines[0], lines[1:]


def _record(spec: FileSpec, layout: Layout, row: tuple) -> dict:
    record = {}
    for i, name in zip(layout.order, layout.names, strict=True):
        if row[i] is not None or spec.nulls == "null":
            record[name] = row[i]
    return record


def _json_line(spec: FileSpec, layout: Layout, row: tuple) -> str:
    return json.dumps(_record(spec, layout, row), ensure_ascii=spec.ascii)


def _json_element(spec: FileSpec, layout: Layout, row: tuple) -> str:
    # The same text json.dumps(rows, indent=2) gives for each element of the whole array.
    text = json.dumps(_record(spec, layout, row), indent=2, ensure_ascii=spec.ascii)
    return "\n".join("  " + line for line in text.split("\n"))


def _encode(spec: FileSpec, head: str, lines: list[str], tail: str, trim: int) -> Block:
    encoding = spec.encoding
    try:
        parts = [line.encode(_codec(encoding)) for line in lines]
    except UnicodeEncodeError:  # a Windows export only if every value fits cp1252
        encoding = "utf-8"
        parts = [line.encode(encoding) for line in lines]
    offsets, breaks = [0], [0]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
        breaks.append(breaks[-1] + part.count(b"\n"))
    bom = BOM if encoding == "utf-8-sig" else b""
    return Block(bom + head.encode(_codec(encoding)), b"".join(parts), tuple(offsets),
                 tuple(breaks), tail.encode(), trim, encoding)


def _codec(encoding: str) -> str:
    return "utf-8" if encoding == "utf-8-sig" else encoding  # the BOM is written once, by hand


def render_fault(kind: str, spec: FileSpec, layout: Layout, ds: Dataset, row: tuple,
                 encoding: str) -> tuple[str, bytes]:
    """A damaged copy of `row` in the file's own style: its text (no line ending) and bytes."""
    values = list(row)
    if kind == "non_numeric_id":
        values[0] = f"{values[0]}a"  # the id column comes first in every dataset
    elif kind == "missing_required":
        required = next(i for i, f in enumerate(ds.fields) if not f.nullable)
        values[required] = "" if spec.format == "csv" else None
    if spec.format == "csv":
        text = _csv_fault(spec, layout, values, extra=kind == "too_many_fields")
    else:
        text = _json_fault(spec, layout, ds, values, kind)
    return text, (text + spec.line_ending).encode(_codec(encoding))


def _csv_fault(spec: FileSpec, layout: Layout, values: list, extra: bool) -> str:
    fields = [values[i] for i in layout.order]
    if extra:  # a stray trailing field, as when a value's delimiter went unquoted
        fields.append(fields[-1])
    return _csv_lines(spec, [fields])[0].removesuffix(spec.line_ending)


def _json_fault(spec: FileSpec, layout: Layout, ds: Dataset, values: list, kind: str) -> str:
    record = {}
    for i, name in zip(layout.order, layout.names, strict=True):
        required = not ds.fields[i].nullable
        if values[i] is not None or spec.nulls == "null" or required:
            record[name] = values[i]
    text = json.dumps(record, ensure_ascii=spec.ascii)
    if kind == "truncated_json":  # cut mid-record, as a crashed writer leaves it
        text = text[: len(text) // 2]
    return text
