"""The processing notebook's ground truth and investigation: a raw folder without MANIFEST.json is
an error naming it, the generation table counts what the generator wrote, the investigation lists
every file of every subfolder sniffed as written (delimiters and line endings shown readably),
the columns are a JSON file's first record's keys or a CSV's header as written, and sniff agrees
with the ground truth only when every detected property matches. Fixtures are in
tests/report_util.py.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from helpers.errors import InputError
from helpers.ingest.sniff import Format, sniff
from helpers.notebook.processing import (
    generation_frame,
    investigation_frames,
    read_ground_truth,
    sniff_agrees,
    sniffed_columns,
)
from tests.report_util import faulty_raw as faulty_raw  # a fixture
from tests.report_util import truth as truth  # a fixture

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

