"""A kill after a file went row by row part-way (a JSON array its blocks miscount, a line over
the limit), then the same command again: the resumed run reads on row by row from where the
killed one did, so it writes the same members, lines, rejects and counts as a clean run.

The lines before a resume point are not read again, so a resumed run cannot find the switch by
itself: it cut an array by its own (wrong) count of items and wrote one twice, or dropped two,
and it went back to whole blocks after a long line. The runners are in tests/crash_util.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.crash_util import ingest_args, kill_on_call, outputs, run_to_completion

CHECKPOINT = "helpers.ingest.dataset_pass:_Run._checkpoint"
# Small chunks and checkpoints, so that several checkpoints fall after the switch.
OPTIONS = ["--chunk-rows", "7", "--checkpoint-rows", "21", "--jobs", "1",
           "--max-record-bytes", "1024"]


def _array_with(odd_item: str, at: int, items: int = 120) -> bytes:
    texts = [json.dumps({"id": i, "name": f"n{i}"}) for i in range(items)]
    texts[at] = odd_item
    return ("[" + ", ".join(texts) + "]").encode()


CASES = {
    # A string holding the separator the blocks are cut at: they count one item too many.
    "array-separator-in-a-string": ("a.json", _array_with(
        json.dumps({"id": 5, "name": "a}, {b"}), 5)),
    # An item that is no object: the blocks count one too few.
    "array-item-not-an-object": ("a.json", _array_with("null", 30)),
    "json-lines-long-line": ("a.jsonl", b"".join(
        json.dumps({"id": i, "name": "J" * (1100 if i == 10 else 3)}).encode() + b"\n"
        for i in range(100))),
    "csv-long-line": ("a.csv", b"id,name\n" + b"".join(
        f"{i},{'x' * 1100 if i == 11 else f'n{i}'}\n".encode() for i in range(150))),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("nth", [3, 5])
def test_a_run_killed_after_a_file_went_row_by_row_resumes_to_a_clean_runs_output(
        case, nth, tmp_path):
    name, body = CASES[case]
    raw = tmp_path / "raw" / "things"
    raw.mkdir(parents=True)
    (raw / name).write_bytes(body)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    run_to_completion(ingest_args(raw.parent, clean, *OPTIONS))
    kill_on_call(CHECKPOINT, nth, ingest_args(raw.parent, killed, *OPTIONS))
    resumed = run_to_completion(ingest_args(raw.parent, killed, *OPTIONS))
    assert "resuming" in resumed.stdout + resumed.stderr
    assert outputs(killed) == outputs(clean)


def test_the_checkpoint_says_where_the_file_went_row_by_row(tmp_path: Path):
    raw = tmp_path / "raw" / "things"
    raw.mkdir(parents=True)
    (raw / "a.json").write_bytes(CASES["array-separator-in-a-string"][1])
    out = tmp_path / "out"
    kill_on_call(CHECKPOINT, 3, ingest_args(raw.parent, out, *OPTIONS))
    saved = json.loads((out / ".ingest" / "state" / "things.json").read_bytes())
    assert (saved["record"], saved["rows_from"]) == (42, 0)
