"""make-raw's ground truth and counts: MANIFEST.json agrees with an independent reading of every
file (formats, encodings, headers, sizes, rows and damaged records), the faults cover every kind
and go only where a reader meets them record by record, every dataset holds scale copies of the
Chinook rows, the files split the stream without gaps or overlap, and scale 500 gives the reference
submission's counts. The independent reader is in tests/rawgen_util.py.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from helpers.chinook.datasets import DATASETS
from helpers.chinook.tables import ROW_COUNTS
from helpers.rawgen.formats import FAULT_KINDS, PLAN
from helpers.rawgen.generate import MANIFEST, make_raw, plan_files, read_base_rows
from tests.rawgen_util import base_rows, read_records, sniff
from tests.rawgen_util import faulty_raw as faulty_raw  # a fixture

SOURCE_TABLE = {"tracks": "tracks", "track_facts": "tracks", "playlist_track": "playlist_track",
                "orders": "invoice_items"}


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

