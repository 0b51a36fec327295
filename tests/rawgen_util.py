"""Shared by the make-raw tests (tests/test_rawgen_*.py): an independent reader that finds each
raw file's format, encoding, delimiter, header and records from its bytes alone, as an ingestion
would, never from MANIFEST.json; the base's rows per dataset; and the `faulty_raw` fixture, scale 2
with faults, module-scoped and cheap (each test file that imports it builds its own). Test files
import it as `from tests.rawgen_util import faulty_raw as faulty_raw`: the redundant alias tells
ruff that the import is used (pytest finds fixtures by name).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import sqlite3
from pathlib import Path

import pytest

from helpers.chinook.datasets import DATASETS
from helpers.rawgen.generate import make_raw

BOM = b"\xef\xbb\xbf"


@pytest.fixture(scope="module")
def faulty_raw(chinook_db, tmp_path_factory) -> Path:
    """Scale 2 with --faults: duplicates across files and damaged records."""
    out = tmp_path_factory.mktemp("faulty_raw")
    make_raw(chinook_db, out, 2, seed=7, faults=True)
    return out


# --- an independent reader: sniffs each file from its bytes, as an ingestion would -----------


def sniff(path: Path) -> dict:
    """Facts about a file found from its bytes alone, never from the manifest."""
    raw = path.read_bytes()
    facts = {"name": path.name, "size": len(raw), "gzip": raw[:2] == b"\x1f\x8b", "head": raw[:64]}
    data = gzip.decompress(raw) if facts["gzip"] else raw
    facts["bom"] = data.startswith(BOM)
    try:
        text, facts["encoding"] = data.decode("utf-8-sig"), "utf-8-sig" if facts["bom"] else "utf-8"
    except UnicodeDecodeError:
        text, facts["encoding"] = data.decode("cp1252"), "cp1252"
    facts.update(text=text, crlf="\r\n" in text, format=None, delimiter=None, header=None)
    if facts["gzip"] or path.name[:1] not in "._":
        start = text.lstrip()[:1]
        if start in ("[", "{"):
            facts["format"] = "json_array" if start == "[" else "jsonl"
        elif text:
            first = text.split("\n", 1)[0]
            facts["format"] = "csv"
            facts["delimiter"] = max(",;|\t", key=first.count)
            facts["header"] = next(csv.reader([first.rstrip("\r")], delimiter=facts["delimiter"]))
    return facts


def canonical(dataset: str, name: str) -> str:
    bare = name.removeprefix(f"{dataset}.")
    return next(c for c in DATASETS[dataset].columns if c.lower() == bare.lower())


def classify(dataset: str, record: dict) -> tuple[str | None, tuple]:
    """(damage kind or None, the row in canonical column order) for one parsed record."""
    ds = DATASETS[dataset]
    row = []
    for field in ds.fields:
        value = record.get(field.name)
        if value in ("", None):
            if not field.nullable:
                return "missing_required", ()
            row.append(None)
        elif field.kind == "integer":
            if isinstance(value, str) and not re.fullmatch(r"-?\d+", value):
                return "non_numeric_id", ()
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                return "non_numeric_id", ()
            row.append(int(value))
        elif field.kind == "number":
            row.append(float(value))
        else:
            row.append(value)
    return None, tuple(row)


def read_records(dataset: str, facts: dict):
    """Yield (line, kind, raw line, row) for every record of a data file."""
    text, lines = facts["text"], facts["text"].split("\n")
    if facts["format"] == "json_array":
        for record in json.loads(text):
            kind, row = classify(dataset, {canonical(dataset, k): v for k, v in record.items()})
            yield None, kind, None, row
    elif facts["format"] == "jsonl":
        for number, line in enumerate(lines, 1):
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                yield number, "truncated_json", line, ()
                continue
            kind, row = classify(dataset, {canonical(dataset, k): v for k, v in record.items()})
            yield number, kind, line, row
    else:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=facts["delimiter"])
        header = [canonical(dataset, name) for name in next(reader)]
        start = reader.line_num + 1
        for fields in reader:
            raw = lines[start - 1].removesuffix("\r")
            if len(fields) != len(header):
                yield start, "too_many_fields", raw, ()
            else:
                kind, row = classify(dataset, dict(zip(header, fields, strict=True)))
                yield start, kind, raw, row
            start = reader.line_num + 1


def all_facts(out: Path) -> list[dict]:
    return [dict(sniff(path), dataset=path.parent.name)
            for name in DATASETS for path in sorted((out / name).iterdir())]


def base_rows(db: Path, dataset: str) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(DATASETS[dataset].source_sql).fetchall()

