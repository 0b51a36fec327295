"""make-raw's messiness, checked in the bytes: every variation the assessment hints at (delimiters,
JSON Lines and pretty arrays, gzip, BOM, CRLF, cp1252, quoting, non-ASCII text, header spellings,
empty fields and files, a binary stray file) appears at default settings, the column order differs
between files, and cp1252 is used only when every value fits. The independent reader is in
tests/rawgen_util.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers.rawgen.formats import FileSpec, Layout, render
from helpers.rawgen.generate import make_raw
from tests.rawgen_util import all_facts, canonical, read_records


@pytest.fixture(scope="module")
def default_raw(chinook_db, tmp_path_factory) -> Path:
    """What `make-raw --scale 1` writes at default settings (no faults)."""
    out = tmp_path_factory.mktemp("default_raw")
    make_raw(chinook_db, out, 1)
    return out


# --- the variations, checked in the bytes -----------------------------------------------------


def _rows_of(f):
    return [row for _, _, _, row in read_records(f["dataset"], f)] if f["format"] else []


def _is_pretty_array(f):
    if f["format"] != "json_array":
        return False
    records = json.loads(f["text"])
    pretty = json.dumps(records, indent=2, ensure_ascii="\\u" in f["text"]) + "\n"
    return f["text"] == pretty and f["text"].count("\n") > 3 * len(records)


def _jsonl_records(f):
    return [json.loads(line) for line in f["text"].splitlines()] if f["format"] == "jsonl" else []


def _orders_differ(facts):
    orders = {}
    for f in facts:
        if f["format"] == "csv":
            names = f["header"]
        elif f["format"] == "jsonl":
            names = list(_jsonl_records(f)[0])
        else:
            continue
        orders.setdefault(f["dataset"], set()).add(
            tuple(canonical(f["dataset"], n) for n in names))
    return any(len(seen) > 1 for seen in orders.values())


VARIATIONS = {
    "comma csv": lambda f: f["delimiter"] == ",",
    "semicolon delimiter": lambda f: f["delimiter"] == ";",
    "pipe delimiter": lambda f: f["delimiter"] == "|",
    "tab delimiter": lambda f: f["delimiter"] == "\t",
    "tab-delimited file named .csv": lambda f: f["delimiter"] == "\t"
        and f["name"].endswith(".csv"),
    "pipe-delimited .txt": lambda f: f["delimiter"] == "|" and f["name"].endswith(".txt"),
    "json lines": lambda f: len(_jsonl_records(f)) > 1,
    "pretty-printed json array": _is_pretty_array,
    "gzip-compressed input": lambda f: f["gzip"] and f["name"].endswith(".gz"),
    "utf-8 bom": lambda f: f["bom"],
    "crlf line endings": lambda f: f["crlf"],
    "cp1252 windows export": lambda f: f["encoding"] == "cp1252",
    "quoted field holding the delimiter": lambda f: f["format"] == "csv" and any(
        f["delimiter"] in v for row in _rows_of(f) for v in row if isinstance(v, str)),
    "quoted field holding a doubled quote": lambda f: f["format"] == "csv" and '""' in f["text"],
    "non-ascii text": lambda f: any(not v.isascii() for row in _rows_of(f)
                                    for v in row if isinstance(v, str)),
    "escaped non-ascii in json": lambda f: f["format"] == "jsonl" and "\\u00" in f["text"],
    "header in another letter case": lambda f: f["header"] is not None and any(
        n != canonical(f["dataset"], n) and "." not in n for n in f["header"]),
    "header with a table prefix": lambda f: f["header"] is not None
        and f"{f['dataset']}.TrackId" in f["header"],
    "empty csv field": lambda f: f["format"] == "csv" and f["delimiter"] * 2 in f["text"],
    "json null": lambda f: f["format"] in ("jsonl", "json_array") and ": null" in f["text"],
    "json key absent": lambda f: f["dataset"] == "tracks" and any(
        "Composer" not in r for r in _jsonl_records(f)),
    "empty data file": lambda f: f["size"] == 0 and re.search(r"_\d+\.(csv|json)$", f["name"]),
    "binary stray file": lambda f: f["name"] == ".DS_Store" and b"\x00" in f["head"],
}


@pytest.mark.parametrize("variation", sorted(VARIATIONS))
def test_each_variation_appears_at_default_settings(default_raw, variation):
    assert any(VARIATIONS[variation](f) for f in all_facts(default_raw))


def test_column_order_differs_between_files(default_raw):
    assert _orders_differ(all_facts(default_raw))


def test_cp1252_is_only_used_when_every_value_fits():
    spec = FileSpec("x.txt", "csv", 1, "|", encoding="cp1252")
    layout = Layout((0, 1), ("Id", "Name"))
    assert render(spec, layout, [(1, "Café")]).encoding == "cp1252"
    assert render(spec, layout, [(1, "Café"), (2, "東京")]).encoding == "utf-8"

