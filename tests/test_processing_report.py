"""The processing notebook's helpers: tables that agree with the generator's ground truth and
say so when they do not, a read-back that catches every broken line, a crash demo that really
kills and resumes, and memory figures for the whole process tree."""

from __future__ import annotations

import configparser
import csv
import gzip
import hashlib
import json
import multiprocessing
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pandas as pd
import pytest

from helpers.chinook.datasets import DATASETS
from helpers.errors import HelpersError, InputError
from helpers.ingest import checkpoint
from helpers.ingest.dataset_pass import Options
from helpers.ingest.engine import ingest
from helpers.ingest.sniff import Format, sniff
from helpers.memory import TreeMemory
from helpers.notebook.crash_demo import (
    clear_scratch,
    compare_runs,
    crash_and_resume,
    describe_checkpoint,
    list_leftovers,
)
from helpers.notebook.processing import (
    checks_frame,
    file_rows_frame,
    first_lines,
    generation_frame,
    investigation_frames,
    line_problem,
    read_back,
    read_back_frame,
    read_ground_truth,
    reconcile_frame,
    rejects_frame,
    sniff_agrees,
    sniffed_columns,
    summary_frame,
)
from helpers.rawgen.generate import make_raw
from helpers.warehouse.load import load

ROOT = Path(__file__).resolve().parent.parent
SANITIZE_CFG = ROOT / "notebooks" / "nbval_sanitize.cfg"
MIB = 1 << 20
# Small chunks and frequent checkpoints: a run slow enough to be killed between checkpoints.
CRASH_OPTIONS = Options(chunk_rows=500, checkpoint_rows=500)


@pytest.fixture(scope="module")
def faulty_raw(chinook_db, tmp_path_factory) -> Path:
    """Scale 10 with faults: every file variation and every kind of damaged record."""
    raw = tmp_path_factory.mktemp("raw")
    make_raw(chinook_db, raw, 10, seed=3, faults=True)
    return raw


@pytest.fixture(scope="module")
def truth(faulty_raw) -> dict:
    return read_ground_truth(faulty_raw)


@pytest.fixture(scope="module")
def ingested(faulty_raw, tmp_path_factory) -> tuple[Path, dict]:
    """The raw folder ingested once, in this process: (output folder, manifest)."""
    out = tmp_path_factory.mktemp("processed")
    manifest = ingest(faulty_raw, out, options=CRASH_OPTIONS, jobs=1, progress=False,
                      log_dir=None)
    return out, manifest


@pytest.fixture
def processed_copy(ingested, tmp_path) -> tuple[Path, dict]:
    """A copy of the ingested output that a test may damage."""
    out, manifest = ingested
    copy = tmp_path / "processed"
    shutil.copytree(out, copy)
    return copy, manifest


# --- ground truth and investigation --------------------------------------------------------


def test_a_raw_folder_without_ground_truth_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(InputError) as error:
        read_ground_truth(tmp_path)
    assert error.value.message == (f"{tmp_path / 'MANIFEST.json'}: no ground truth in the raw "
                                   "folder. Generate the raw data with "
                                   "`python -m helpers make-raw`")


def test_generation_frame_counts_what_the_generator_wrote(truth):
    frame = generation_frame(truth)
    for name, d in truth["datasets"].items():
        assert frame.loc[name, "rows"] == d["rows"]
        assert frame.loc[name, "damaged records"] == len(d["faults"])
    assert frame.loc["tracks", "rows"] == 10 * 3503


def test_investigation_lists_every_file_of_every_subfolder_sniffed_as_written(faulty_raw, truth):
    frames = investigation_frames(faulty_raw, truth)
    assert list(frames) == sorted(truth["datasets"])
    for name, frame in frames.items():
        on_disk = sorted(p.name for p in (faulty_raw / name).iterdir())
        assert sorted(frame.index) == on_disk
        assert frame["sniffed as written"].all(), frame
        written = {f["name"]: f["rows"] for f in truth["datasets"][name]["files"]}
        for file, rows in written.items():
            assert frame.loc[file, "rows (MANIFEST.json)"] == rows


def test_investigation_shows_delimiters_and_line_endings_readably(faulty_raw, truth):
    tracks = investigation_frames(faulty_raw, truth)["tracks"]
    assert tracks.loc["tracks_4.txt", ["format", "delimiter", "encoding", "line ending"]].tolist() \
        == ["csv", "|", "cp1252", "CRLF"]
    facts = investigation_frames(faulty_raw, truth)["track_facts"]
    assert facts.loc["track_facts_0.csv", "delimiter"] == "tab"
    assert facts.loc["track_facts_1.json.gz", "compression"] == "gzip"


def test_investigation_without_ground_truth_has_no_truth_columns(faulty_raw):
    frame = investigation_frames(faulty_raw)["orders"]
    assert not [c for c in frame.columns if "MANIFEST" in c or "written" in c]
    assert frame.loc["orders_0.csv", "format"] == "csv"


def first_record_keys(path: Path) -> list[str]:
    """An independent reading: the whole (small) file parsed by the standard library."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    text = data.decode("utf-8-sig")
    if text.lstrip().startswith("["):
        return list(json.loads(text)[0])
    return list(json.loads(text.splitlines()[0]))


@pytest.mark.parametrize(("dataset", "file"), [
    ("tracks", "tracks_5.jsonl"),  # JSON Lines, keys reversed, null keys left out
    ("tracks", "tracks_3.json"),  # a pretty-printed array, keys shuffled
    ("track_facts", "track_facts_3.json"),  # an array with lower-case keys
    ("track_facts", "track_facts_1.json.gz"),  # gzip
])
def test_json_columns_are_the_first_records_keys_as_written(faulty_raw, dataset, file):
    path = faulty_raw / dataset / file
    assert sniffed_columns(path, sniff(path)) == first_record_keys(path)


@pytest.mark.parametrize(("file", "expected"), [
    ("tracks_2.csv", "header"),  # a CSV: its header as written, prefixes and all
    ("tracks_6.csv", []),  # empty
    (".DS_Store", []),  # not data
])
def test_csv_columns_are_the_header_and_non_data_has_none(faulty_raw, file, expected):
    path = faulty_raw / "tracks" / file
    columns = sniffed_columns(path, sniff(path))
    if expected == "header":
        first = path.read_bytes().decode("utf-8-sig").splitlines()[0]
        expected = next(csv.reader([first], delimiter=";"))
        assert expected[0].startswith("tracks.")
    assert columns == expected


WRITTEN_CSV = {"format": "csv", "compression": None, "encoding": "utf-8", "line_ending": "\n",
               "delimiter": ";", "header": ["a", "b"]}
SNIFFED_CSV = Format("csv", None, "utf-8", ";", '"', "\n", ["a", "b"])


@pytest.mark.parametrize(("sniffed", "written", "agrees"), [
    (SNIFFED_CSV, WRITTEN_CSV, True),
    (Format("csv", None, "utf-8", ",", '"', "\n", ["a", "b"]), WRITTEN_CSV, False),
    (Format("csv", None, "cp1252", ";", '"', "\n", ["a", "b"]), WRITTEN_CSV, False),
    (Format("csv", None, "utf-8", ";", '"', "\r\n", ["a", "b"]), WRITTEN_CSV, False),
    (Format("csv", "gzip", "utf-8", ";", '"', "\n", ["a", "b"]), WRITTEN_CSV, False),
    (Format("csv", None, "utf-8", ";", '"', "\n", ["b", "a"]), WRITTEN_CSV, False),
    (Format("jsonl", None, "utf-8", None, None, "\n"), WRITTEN_CSV, False),
    (Format("empty", note="no records"), {"format": None}, True),
    (SNIFFED_CSV, {"format": None}, False),  # a stray file read as data
    (SNIFFED_CSV, None, None),  # a file the generator did not write
])
def test_sniff_agrees_only_when_every_detected_property_matches(sniffed, written, agrees):
    assert sniff_agrees(sniffed, written) is agrees


# --- counts --------------------------------------------------------------------------------


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


# --- crash demo ----------------------------------------------------------------------------


def test_a_killed_run_resumes_to_the_clean_runs_bytes(faulty_raw, ingested, tmp_path):
    clean, _ = ingested
    demo = crash_and_resume(faulty_raw, tmp_path / "crash", "playlist_track", CRASH_OPTIONS,
                            log_dir=tmp_path / "logs")
    assert demo.killed_returncode == -9
    assert not demo.final_existed_after_kill
    assert not demo.checkpoint["finished"]
    assert demo.part_bytes_on_disk >= demo.checkpoint["output bytes vouched for"] > 0
    files = {row["file"] for row in demo.leftovers}
    assert {"playlist_track.json.gz.part", "_state/playlist_track.json"} <= files
    assert "playlist_track.json.gz" not in files
    assert demo.resumed["events"][0].startswith("resuming at file ")
    frame = compare_runs(clean, tmp_path / "crash", "playlist_track")
    assert frame["equal"].all(), frame


def test_a_run_that_fails_before_any_checkpoint_says_why(faulty_raw, tmp_path):
    with pytest.raises(HelpersError) as error:
        crash_and_resume(faulty_raw, tmp_path / "crash", "no_such_dataset", CRASH_OPTIONS,
                         log_dir=tmp_path / "logs")
    assert "before its first checkpoint" in error.value.message
    assert "no dataset folder named no_such_dataset" in error.value.message


def test_compare_runs_shows_a_difference(ingested, tmp_path):
    clean, _ = ingested
    other = tmp_path / "other"
    shutil.copytree(clean, other)
    rejects = other / "_rejects" / "tracks.jsonl.gz"
    rejects.write_bytes(gzip.compress(b""))
    frame = compare_runs(clean, other, "tracks")
    assert not frame.loc["rejects sha256", "equal"]
    assert frame.drop(index="rejects sha256")["equal"].all()
    assert frame.loc["output sha256", "clean run"].endswith("…")


def test_clear_scratch_empties_an_ingestion_folder_and_refuses_any_other(tmp_path):
    scratch = tmp_path / "scratch"
    (scratch / "_state").mkdir(parents=True)
    (scratch / "tracks.json.gz.part").write_bytes(b"x")
    (scratch / ".ingest.lock").write_text("pid 1")
    clear_scratch(scratch)
    assert not scratch.exists()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(InputError) as error:
        clear_scratch(precious)
    assert error.value.message.startswith(f"{precious}: the scratch folder holds other files "
                                          "(notes.txt)")
    assert (precious / "notes.txt").exists()


def test_a_checkpoint_inside_a_file_does_not_count_that_file_as_finished():
    saved = checkpoint.Checkpoint(
        inputs=[["a.csv", 1, 1], ["b.csv", 1, 1], ["c.csv", 1, 1]], options={},
        file_index=1, record=500, part_bytes=10,
        stats={"files": [{"name": "a.csv"}, {"name": "b.csv"}], "rows_written": 900})
    described = describe_checkpoint(saved)
    assert described["files finished"] == "a.csv"
    assert described["file being read"] == "b.csv"
    assert described["records of it already written"] == 500
    assert described["rows written so far"] == 900


def test_leftovers_say_what_each_file_is_and_leave_out_the_logs(tmp_path):
    for rel in ("tracks.json.gz.part", "_state/tracks.json", "_logs/ingest.log", "odd.bin"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    found = {row["file"]: row["what it is"] for row in list_leftovers(tmp_path, "tracks")}
    assert set(found) == {"tracks.json.gz.part", "_state/tracks.json", "odd.bin"}
    assert "checkpoint" in found["_state/tracks.json"]
    assert found["odd.bin"] == ""


# --- memory of the process tree ------------------------------------------------------------


def hold_memory(mib: int, seconds: float) -> None:
    block = b"x" * (mib * MIB)  # written, so resident, unlike a fresh zeroed allocation
    time.sleep(seconds)
    del block


def test_tree_memory_sees_a_spawned_worker_and_adds_it_to_the_tree():
    context = multiprocessing.get_context("spawn")
    with TreeMemory(interval=0.02) as tree:
        worker = context.Process(target=hold_memory, args=(150, 1.0))
        worker.start()
        worker.join()
    assert tree.count("worker") == 1
    assert tree.peak_of("worker") >= 150 * MIB
    assert tree.peak_total_bytes >= tree.peak_of("worker") + 0.5 * tree.peak_of("this process")


def test_tree_memory_counts_other_children_but_not_forks_of_this_process():
    ballast = b"y" * (200 * MIB)  # so that a fork of this process is visibly large
    fork = multiprocessing.get_context("fork").Process(target=time.sleep, args=(1.5,))
    with TreeMemory(interval=0.02) as tree:
        fork.start()
        child = subprocess.Popen([sys.executable, "-c",
                                  "import time; b = b'z' * (120 << 20); time.sleep(1)"])
        child.wait()
        fork.join()
    del ballast
    # "other" may also hold multiprocessing's resource tracker, left by an earlier spawn.
    assert tree.count("fork") == 1 and tree.count("other") >= 1
    assert tree.peak_of("other") >= 120 * MIB
    assert tree.peak_of("fork") >= 200 * MIB
    # The fork's pages are this process's: adding them would count 200 MiB twice.
    assert tree.peak_total_bytes < tree.peak_of("this process") + tree.peak_of("fork")
    assert tree.peak_total_bytes >= 120 * MIB + 200 * MIB


def masked(text: str) -> str:
    """The text as nbval compares it, after the notebooks' sanitize patterns."""
    config = configparser.ConfigParser()
    config.read(SANITIZE_CFG)
    for section in config.sections():
        text = re.sub(config[section]["regex"], config[section]["replace"], text)
    return text


def test_the_nbval_masks_hide_every_figure_of_the_report():
    context = multiprocessing.get_context("spawn")
    with TreeMemory(interval=0.02) as tree:
        worker = context.Process(target=hold_memory, args=(1, 0.3))
        worker.start()
        worker.join()
    text = masked(tree.report())
    assert not re.search(r"\d", text), text
    assert text.count("<MEMORY> MiB") == 3


def test_a_tree_without_workers_says_the_work_ran_in_this_process():
    with TreeMemory() as tree:
        pass
    text = tree.report()
    assert "no worker processes" in text
    assert "worker:" not in text
    assert not re.search(r"\d", masked(text))
