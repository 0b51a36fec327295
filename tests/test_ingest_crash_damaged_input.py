"""A damaged input during `python -m helpers ingest`: a .csv.gz cut in half costs one reject for
its unreadable tail, not the run; every whole row before the cut is kept, as the intact file gives
it, and the other files' results are those of a clean run. The runners and fixtures are in
tests/crash_util.py.
"""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import orjson
import pytest

from tests.crash_util import clean_run as clean_run  # a fixture
from tests.crash_util import gunzip_all, ingest_args, leftovers, run_to_completion
from tests.crash_util import raw as raw  # a fixture

# --- a damaged input ------------------------------------------------------------------------

CUT_FILE = "playlist_track_2.csv.gz"


@pytest.fixture
def cut_gzip(raw: Path, tmp_path: Path) -> tuple[Path, int]:
    """playlist_track with one .csv.gz cut in half; and the rows that are whole before the cut."""
    copy = tmp_path / "raw"
    shutil.copytree(raw / "playlist_track", copy / "playlist_track")
    path = copy / "playlist_track" / CUT_FILE
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    readable = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[:len(data) // 2])
    return copy, readable.count(b"\n") - 1  # whole lines, less the header


def _file_entry(out: Path, name: str) -> tuple[int, dict]:
    """Where the file's rows start in the output, and its manifest entry."""
    files = orjson.loads((out / "_manifest.json").read_bytes())["playlist_track"]["files"]
    index = [f["name"] for f in files].index(name)
    return sum(f["rows"] for f in files[:index]), files[index]


def test_a_cut_gzip_is_one_reject_and_the_run_goes_on(cut_gzip, clean_run, tmp_path):
    raw, whole_rows = cut_gzip
    out = tmp_path / "out"
    run_to_completion(ingest_args(raw, out, "--dataset", "playlist_track"))
    rejects = [orjson.loads(line) for line in gunzip_all(
        out / "_rejects" / "playlist_track.jsonl.gz").splitlines()]
    cut = [r for r in rejects if r["file"] == CUT_FILE]
    assert len(cut) == 1
    assert "could not be read" in cut[0]["reason"]
    assert "ends before its end-of-stream marker" in cut[0]["reason"]
    assert cut[0]["line"] == whole_rows + 2  # the header, the whole rows, then the cut line
    _, entry = _file_entry(out, CUT_FILE)
    assert entry["rejected"] == 1
    manifest = orjson.loads((out / "_manifest.json").read_bytes())["playlist_track"]
    reference = orjson.loads((clean_run[0] / "_manifest.json").read_bytes())["playlist_track"]
    assert [f for f in manifest["files"] if f["name"] != CUT_FILE] == [
        f for f in reference["files"] if f["name"] != CUT_FILE]
    assert manifest["rows_read"] == manifest["rows_written"] + manifest["rows_rejected"]
    assert leftovers(out) == []


def test_a_cut_gzip_keeps_every_whole_row_before_the_cut(cut_gzip, clean_run, tmp_path):
    raw, whole_rows = cut_gzip
    out = tmp_path / "out"
    run_to_completion(ingest_args(raw, out, "--dataset", "playlist_track"))
    start_at, entry = _file_entry(out, CUT_FILE)
    assert entry["rows"] == whole_rows
    # The same rows, as the intact file gives them.
    rows = slice(start_at, start_at + whole_rows)
    kept = gunzip_all(out / "playlist_track.json.gz").splitlines()[rows]
    intact = gunzip_all(clean_run[0] / "playlist_track.json.gz").splitlines()[rows]
    assert kept == intact

