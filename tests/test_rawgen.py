"""make-raw writes messy but exactly known raw_data/: every variation the assessment hints at is
in the bytes, the counts are scale x Chinook, and MANIFEST.json agrees with an independent reading
of every file."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from helpers.chinook.datasets import DATASETS
from helpers.chinook.tables import ROW_COUNTS
from helpers.cli import main
from helpers.errors import HelpersError, InputError
from helpers.rawgen.formats import FAULT_KINDS, PLAN, FileSpec, Layout, render
from helpers.rawgen.generate import MANIFEST, make_raw, plan_files, read_base_rows

ROOT = Path(__file__).resolve().parent.parent
BOM = b"\xef\xbb\xbf"
SOURCE_TABLE = {"tracks": "tracks", "track_facts": "tracks", "playlist_track": "playlist_track",
                "orders": "invoice_items"}


@pytest.fixture(scope="module")
def default_raw(chinook_db, tmp_path_factory) -> Path:
    """What `make-raw --scale 1` writes at default settings (no faults)."""
    out = tmp_path_factory.mktemp("default_raw")
    make_raw(chinook_db, out, 1)
    return out


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


# --- ground truth -----------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_manifest_agrees_with_an_independent_reading_of_every_file(faulty_raw, chinook_db,
                                                                   dataset):
    manifest = json.loads((faulty_raw / MANIFEST).read_text(encoding="utf-8"))["datasets"][dataset]
    folder = faulty_raw / dataset
    listed = {f["name"]: f for f in manifest["files"]}
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*listed, *(s["name"] for s in manifest["skipped"])])
    valid, faults = Counter(), []
    for facts in map(sniff, sorted(folder.iterdir())):
        entry = listed.get(facts["name"])
        if entry is None:
            assert facts["size"] == 0 or facts["format"] is None
            continue
        assert (facts["format"], facts["delimiter"], facts["encoding"], facts["gzip"],
                facts["crlf"], facts["header"], facts["size"]) == (
            entry["format"], entry["delimiter"], entry["encoding"],
            entry["compression"] == "gzip", entry["line_ending"] == "\r\n", entry["header"],
            entry["bytes"])
        records = list(read_records(dataset, facts))
        damaged = [{"file": facts["name"], "line": line, "kind": kind, "raw": raw}
                   for line, kind, raw, _ in records if kind]
        rows = [row for _, kind, _, row in records if not kind]
        assert (len(rows), len(damaged)) == (entry["rows"], entry["faults"])
        faults += damaged
        valid.update(rows)
    base = base_rows(chinook_db, dataset)
    assert valid == Counter({row: 2 for row in base})
    assert manifest["rows"] == sum(valid.values()) == 2 * len(base)
    assert manifest["distinct_rows"] == len(valid)
    assert manifest["columns"] == DATASETS[dataset].columns
    assert sorted(faults, key=lambda f: (f["file"], f["line"])) == sorted(
        manifest["faults"], key=lambda f: (f["file"], f["line"]))


def test_faults_cover_every_kind_across_datasets(faulty_raw):
    manifest = json.loads((faulty_raw / MANIFEST).read_text(encoding="utf-8"))
    faults = [f for d in manifest["datasets"].values() for f in d["faults"]]
    assert {f["kind"] for f in faults} == set(FAULT_KINDS)
    assert all(d["faults"] for d in manifest["datasets"].values())


@pytest.mark.parametrize("spec", [s for specs in PLAN.values() for s in specs if s.faults],
                         ids=lambda s: s.name)
def test_faults_go_only_where_a_reader_meets_them_record_by_record(spec):
    assert spec.format in ("csv", "jsonl")
    allowed = {"csv": {"too_many_fields", "non_numeric_id", "missing_required"},
               "jsonl": {"truncated_json", "non_numeric_id", "missing_required"}}
    assert set(spec.faults) <= allowed[spec.format]


# --- counts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1, 3])
def test_every_dataset_holds_scale_copies_of_the_chinook_rows(chinook_db, tmp_path, scale):
    manifest = make_raw(chinook_db, tmp_path, scale)
    for name, summary in manifest["datasets"].items():
        expected = scale * ROW_COUNTS[SOURCE_TABLE[name]]
        assert summary["rows"] == sum(f["rows"] for f in summary["files"]) == expected
        assert summary["distinct_rows"] == ROW_COUNTS[SOURCE_TABLE[name]]


@pytest.mark.parametrize("scale", [1, 2, 7, 500, 2000])
def test_files_split_the_stream_without_gaps_or_overlap(chinook_db, scale):
    base = read_base_rows(chinook_db)
    for name in DATASETS:
        placements = plan_files(name, len(base[name]), scale, faults=True)
        data = [p for p in placements if p.spec.is_data]
        assert data[0].start == 0 and data[-1].stop == scale * len(base[name])
        assert all(a.stop == b.start for a, b in zip(data, data[1:], strict=False))
        assert all(p.rows > 0 for p in data)
        assert all(0 < spot < p.rows for p in data for spot, _ in p.faults)


def test_scale_500_gives_the_reference_submissions_counts(chinook_db):
    base = read_base_rows(chinook_db)
    counts = {name: sum(p.rows for p in plan_files(name, len(base[name]), 500))
              for name in DATASETS}
    assert counts == {name: 500 * ROW_COUNTS[SOURCE_TABLE[name]] for name in DATASETS}
    assert counts == {"orders": 1_120_000, "playlist_track": 4_357_500,
                      "track_facts": 1_751_500, "tracks": 1_751_500}


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


# --- determinism, reruns, interruptions -------------------------------------------------------


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_same_arguments_give_byte_identical_files(chinook_db, tmp_path):
    make_raw(chinook_db, tmp_path / "a", 2, seed=3, faults=True)
    make_raw(chinook_db, tmp_path / "b", 2, seed=3, faults=True)
    assert _snapshot(tmp_path / "a") == _snapshot(tmp_path / "b")
    assert gzip.open(tmp_path / "a" / "track_facts" / "track_facts_1.json.gz").read()


def test_another_seed_moves_the_faults(chinook_db, faulty_raw, tmp_path):
    other = make_raw(chinook_db, tmp_path, 2, seed=8, faults=True)
    ours = json.loads((faulty_raw / MANIFEST).read_text(encoding="utf-8"))
    lines = [[f["line"] for d in m["datasets"].values() for f in d["faults"]]
             for m in (ours, other)]
    assert lines[0] != lines[1]


def test_rerun_with_the_same_arguments_is_a_noop_that_says_so(chinook_db, tmp_path):
    make_raw(chinook_db, tmp_path, 1, faults=True)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    said: list[str] = []
    make_raw(chinook_db, tmp_path, 1, faults=True, say=said.append)
    assert said == [f"{tmp_path} already holds scale 1, seed 0, faults True: kept "
                    "(use --force to regenerate)"]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


@pytest.mark.parametrize("change", [
    {"force": True}, {"scale": 2}, {"seed": 1}, {"faults": False},
])
def test_force_or_other_arguments_regenerate(chinook_db, tmp_path, change):
    make_raw(chinook_db, tmp_path, 1, faults=True)
    said: list[str] = []
    args = {"scale": 1, "faults": True, **change}
    manifest = make_raw(chinook_db, tmp_path, say=said.append, **args)
    assert len(said) == len(DATASETS) and not any("kept" in line for line in said)
    assert manifest == json.loads((tmp_path / MANIFEST).read_text(encoding="utf-8"))


def test_a_damaged_file_is_regenerated_not_kept(chinook_db, tmp_path):
    make_raw(chinook_db, tmp_path, 1)
    target = tmp_path / "orders" / "orders_0.csv"
    good = target.read_bytes()
    target.write_bytes(good[:100])
    make_raw(chinook_db, tmp_path, 1)
    assert target.read_bytes() == good


def test_stale_files_go_and_files_outside_the_datasets_stay(chinook_db, tmp_path):
    (tmp_path / "tracks").mkdir()
    stale = [tmp_path / "tracks" / "tracks_9.csv", tmp_path / "tracks" / ".tracks_0.csv.tmp"]
    for path in stale:
        path.write_text("old")
    (tmp_path / "README.md").write_text("ours")
    make_raw(chinook_db, tmp_path, 1)
    assert not any(p.exists() for p in stale)
    assert (tmp_path / "README.md").read_text() == "ours"


def test_an_interrupted_generation_leaves_no_manifest(chinook_db, tmp_path, monkeypatch):
    import helpers.rawgen.generate as rawgen

    make_raw(chinook_db, tmp_path, 1)
    calls = 0
    real = rawgen._write_data_file

    def crash_on_the_third_file(*args):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(rawgen, "_write_data_file", crash_on_the_third_file)
    with pytest.raises(KeyboardInterrupt):
        make_raw(chinook_db, tmp_path, 2)
    assert not (tmp_path / MANIFEST).exists()
    monkeypatch.undo()
    said: list[str] = []
    make_raw(chinook_db, tmp_path, 2, say=said.append)
    assert not any("kept" in line for line in said)
    assert not list(tmp_path.rglob("*.tmp"))


# --- errors and the command line --------------------------------------------------------------


def test_a_missing_database_names_it_and_says_how_to_build_it(tmp_path):
    with pytest.raises(InputError) as error:
        make_raw(tmp_path / "none.db", tmp_path / "out", 1)
    assert error.value.message == (f"{tmp_path / 'none.db'}: database not found. "
                                   "Build it with `python -m helpers build-db` or pass --db")


def test_scale_below_one_is_refused(chinook_db, tmp_path):
    with pytest.raises(HelpersError, match="scale must be at least 1, got 0. Pass --scale 1"):
        make_raw(chinook_db, tmp_path, 0)


def test_command_line_generates_then_keeps(chinook_db, tmp_path, capsys):
    argv = ["make-raw", "--scale", "1", "--out", str(tmp_path), "--db", str(chinook_db)]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "tracks: 3503 rows in 6 files, 0 faults" in first
    assert main(argv) == 0
    assert "kept" in capsys.readouterr().out


# --- memory -----------------------------------------------------------------------------------

PEAK_GROWTH = """
import resource, sys
from helpers.rawgen.generate import make_raw
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
manifest = make_raw(sys.argv[1], sys.argv[2], int(sys.argv[3]))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
written = sum(f["bytes"] for d in manifest["datasets"].values() for f in d["files"])
print((after - before) * 1024, written)
"""


def test_a_large_scale_streams_in_bounded_memory(chinook_db, tmp_path):
    argv = [sys.executable, "-c", PEAK_GROWTH, str(chinook_db), str(tmp_path), "100"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=True)
    growth, written = map(int, done.stdout.split())
    assert written > 70_000_000
    assert growth < 20_000_000 and growth < written / 4
