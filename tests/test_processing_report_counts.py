"""The processing notebook's tables of a real ingestion agree with the generator's ground truth
and say so when they do not: a call that finds the outputs up to date beside the run that wrote
them, the summary and per-file row counts, a read-back of every output that catches every line
breaking the contract (and a line added to an output), every reject matched to an injected fault
(and a fault that got through, or a reject nobody injected, shown), and the load and reconcile
tables. Fixtures are in tests/report_util.py.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import orjson
import pandas as pd
import pytest

from helpers.chinook.datasets import DATASETS
from helpers.ingest.engine import ingest
from helpers.notebook.processing import (
    checks_frame,
    file_rows_frame,
    first_lines,
    line_problem,
    read_back,
    read_back_frame,
    reconcile_frame,
    rejects_frame,
    run_frame,
    summary_frame,
)
from helpers.warehouse.load import load
from tests.report_util import CRASH_OPTIONS
from tests.report_util import faulty_raw as faulty_raw  # a fixture
from tests.report_util import ingested as ingested  # a fixture
from tests.report_util import processed_copy as processed_copy  # a fixture
from tests.report_util import truth as truth  # a fixture

# --- the run -------------------------------------------------------------------------------


def test_a_call_that_finds_everything_up_to_date_shows_the_run_that_wrote_the_outputs(
        faulty_raw, processed_copy):
    out, manifest = processed_copy
    again = ingest(faulty_raw, out, options=CRASH_OPTIONS, jobs=1, progress=False, log_dir=None)
    frame = run_frame(again.run, out)
    now, recorded = frame.columns
    assert frame.loc["ingested", now] == "none"
    assert frame.loc["up to date", now] == ", ".join(sorted(manifest))
    assert frame.loc["ingested", recorded] == ", ".join(sorted(manifest))
    assert frame.loc["up to date", recorded] == "none"
    assert frame.loc["status"].tolist() == ["complete", "complete"]
    assert frame.loc["same options as this call"].tolist() == [True, True]
    # The recorded run is the one that wrote the outputs, not this call.
    assert frame.loc["started", recorded] == manifest.run["started"]


def test_a_recorded_run_with_other_options_says_so(processed_copy):
    out, manifest = processed_copy
    frame = run_frame({**manifest.run, "options": {"chunk_rows": 1}}, out)
    assert frame.loc["same options as this call"].tolist() == [True, False]



def test_summary_agrees_with_the_ground_truth_after_a_real_ingestion(ingested, truth):
    _, manifest = ingested
    frame = summary_frame(manifest, truth)
    assert frame["as MANIFEST.json says"].all(), frame
    assert frame.loc["tracks", "rows written"] == 10 * 3503
    assert frame.loc["tracks", "rejected"] == len(truth["datasets"]["tracks"]["faults"])


@pytest.mark.parametrize(("key", "change"), [
    ("rows_written", -1),  # a row lost
    ("rows_rejected", 1),  # a good row rejected
    ("duplicates", 1),  # a duplicate miscounted
    ("distinct_rows", -1),
])
def test_summary_says_when_a_count_is_off(ingested, truth, key, change):
    _, manifest = ingested
    broken = {name: dict(entry) for name, entry in manifest.items()}
    broken["orders"][key] += change
    frame = summary_frame(broken, truth)
    assert not frame.loc["orders", "as MANIFEST.json says"]
    assert frame.drop(index="orders")["as MANIFEST.json says"].all()


def test_summary_without_duplicate_counting_still_checks_the_rows(ingested, truth):
    _, manifest = ingested
    off = {name: {**e, "duplicates": None, "distinct_rows": None} for name, e in manifest.items()}
    assert summary_frame(off, truth)["as MANIFEST.json says"].all()


def test_file_rows_agree_per_file_and_a_miscount_shows(ingested, truth):
    _, manifest = ingested
    frame = file_rows_frame(manifest, truth)
    assert frame["agree"].all()
    assert len(frame) == sum(len(d["files"]) for d in truth["datasets"].values())
    broken = {name: {**e, "files": [dict(f) for f in e["files"]]} for name, e in manifest.items()}
    broken["tracks"]["files"][0]["rows"] -= 1
    frame = file_rows_frame(broken, truth)
    assert frame["agree"].sum() == len(frame) - 1
    assert not frame.loc[("tracks", "tracks_0.csv"), "agree"]


# --- read-back -----------------------------------------------------------------------------

PLAYLIST = DATASETS["playlist_track"].fields
TRACK_FACTS = DATASETS["track_facts"].fields
TRACKS = DATASETS["tracks"].fields


@pytest.mark.parametrize(("line", "fields", "problem"), [
    (b'{"PlaylistId":1,"TrackId":2}\n', PLAYLIST, ""),
    (b'{"PlaylistId":1,"TrackId":2}', PLAYLIST, "the last line has no line ending"),
    (b'{"PlaylistId":1,"TrackId":\n', PLAYLIST, "not JSON"),
    (b'[1,2]\n', PLAYLIST, "not a JSON object"),
    (b'{"TrackId":2,"PlaylistId":1}\n', PLAYLIST, "keys ['TrackId', 'PlaylistId'] are not"),
    (b'{"PlaylistId":1}\n', PLAYLIST, "keys ['PlaylistId'] are not"),
    (b'{"PlaylistId":1,"TrackId":2,"Extra":3}\n', PLAYLIST,
     "keys ['PlaylistId', 'TrackId', 'Extra'] are not"),
    (b'{"PlaylistId":null,"TrackId":2}\n', PLAYLIST, "PlaylistId is null"),
    (b'{"PlaylistId":"1","TrackId":2}\n', PLAYLIST, "PlaylistId is '1', not integer"),
    (b'{"PlaylistId":1.0,"TrackId":2}\n', PLAYLIST, "PlaylistId is 1.0, not integer"),
    (b'{"PlaylistId":true,"TrackId":2}\n', PLAYLIST, "PlaylistId is True, not integer"),
    (b'{"TrackId":1,"Milliseconds":2,"Bytes":null}\n', TRACK_FACTS, ""),  # nullable
    (b'{"TrackId":1,"Name":"x","AlbumId":null,"MediaTypeId":1,"GenreId":null,"Composer":null,'
     b'"Milliseconds":1,"Bytes":null,"UnitPrice":1}\n', TRACKS, ""),  # an integer is a number
    (b'{"TrackId":1,"Name":7,"AlbumId":null,"MediaTypeId":1,"GenreId":null,"Composer":null,'
     b'"Milliseconds":1,"Bytes":null,"UnitPrice":0.99}\n', TRACKS, "Name is 7, not text"),
])
def test_line_problem_names_what_breaks_the_contract(line, fields, problem):
    found = line_problem(line, fields)
    assert found.startswith(problem) if problem else found == ""


def test_drifted_keys_are_allowed_only_when_the_manifest_lists_them():
    line = b'{"PlaylistId":1,"TrackId":2,"Added":"2024"}\n'
    assert line_problem(line, PLAYLIST, {"Added"}) == ""
    assert line_problem(line, PLAYLIST, {"Other"}) != ""


def write_gz(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(gzip.compress(b"".join(lines)))
    return path


def test_read_back_counts_lines_and_weighs_bad_lines_by_their_copies(tmp_path):
    good, bad = b'{"PlaylistId":1,"TrackId":2}\n', b'{"PlaylistId":"x","TrackId":2}\n'
    path = write_gz(tmp_path / "playlist_track.json.gz", [good] * 5 + [bad] * 3 + [good])
    back = read_back(path, "playlist_track")
    assert (back.lines, back.distinct_lines, back.bad_lines) == (9, 2, 3)
    assert back.first_problem == "PlaylistId is 'x', not integer"
    assert back.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_read_back_of_the_real_output_agrees_with_both_manifests(ingested, truth):
    out, manifest = ingested
    frame = read_back_frame(out, manifest, truth)
    assert (frame["lines not fitting the schema"] == 0).all()
    assert frame["sha256 as in _manifest.json"].all()
    assert frame["lines as MANIFEST.json says"].all()
    assert frame.loc["playlist_track", "lines"] == 10 * 8715
    assert frame.loc["playlist_track", "distinct lines"] == 8715


def test_read_back_catches_a_line_added_to_an_output(processed_copy, truth):
    out, manifest = processed_copy
    path = out / "orders.json.gz"
    with gzip.open(path, "ab") as f:  # one more gzip member, as a careless append would write
        f.write(b'{"InvoiceLineId":"1"}\n')
    frame = read_back_frame(out, manifest, truth)
    assert frame.loc["orders", "lines not fitting the schema"] == 1
    assert not frame.loc["orders", "sha256 as in _manifest.json"]
    assert not frame.loc["orders", "lines as MANIFEST.json says"]
    assert frame.drop(index="orders")["lines as MANIFEST.json says"].all()


def test_first_lines_reads_the_start_of_a_processed_file(tmp_path):
    path = write_gz(tmp_path / "x.json.gz", [b'{"a":1}\n', b'{"a":2}\n', b'{"a":3}\n'])
    assert first_lines(path, 2) == ['{"a":1}', '{"a":2}']


# --- rejects -------------------------------------------------------------------------------


def test_every_reject_matches_an_injected_fault(ingested, truth):
    out, manifest = ingested
    frame = rejects_frame(out, manifest, truth)
    assert frame["matched"].all(), frame
    assert len(frame) == sum(len(d["faults"]) for d in truth["datasets"].values())
    assert set(frame["fault injected"]) == {"truncated_json", "too_many_fields",
                                            "non_numeric_id", "missing_required"}


def test_a_fault_that_got_through_and_an_uninjected_reject_both_show(processed_copy, truth):
    out, manifest = processed_copy
    path = out / "_rejects" / "orders.jsonl.gz"
    rejects = [orjson.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    kept, dropped = rejects[1:], rejects[0]
    stray = {"file": "orders_0.csv", "line": 2, "reason": "made up", "raw": "1,2,3"}
    path.write_bytes(gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in [*kept, stray])))
    frame = rejects_frame(out, ["orders"], truth)
    unmatched = frame[~frame["matched"]]
    assert len(unmatched) == 2
    assert pd.isna(unmatched.loc[("orders", dropped["file"], dropped["line"]), "reason"])
    assert pd.isna(unmatched.loc[("orders", "orders_0.csv", 2), "fault injected"])


# --- load and reconcile --------------------------------------------------------------------


def test_reconcile_frames_show_loaded_and_copied_tables(ingested, chinook_db, tmp_path):
    out, _ = ingested
    report = load(out, tmp_path / "warehouse.db", chinook_db)
    frame = reconcile_frame(report)
    assert frame.loc["tracks", "source"] == "tracks.json.gz"
    assert frame.loc["tracks", "file rows"] == 10 * 3503
    assert frame.loc["tracks", "rows loaded"] == frame.loc["tracks", "rows in base"] == 3503
    assert frame.loc["albums", "source"] == "copied from the base"
    assert frame.loc["albums", "file rows"] == "-"
    assert (frame[["missing", "extra", "mismatched"]] == 0).all().all()
    checks = checks_frame(report)
    assert len(checks) == len(report.checks)
    assert (checks["failing rows"] == 0).all()

