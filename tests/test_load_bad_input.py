"""Bad input never half-replaces the warehouse: a bad record (broken JSON, not an object, a key
missing, a value of the wrong type) names its file and line and keeps the previous warehouse, a
blank line is no record, a truncated gzip file is named, and a load SIGKILLed midway leaves the
previous warehouse as it was and a rerun finishes the job. Processed files come from
tests/load_util.py.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.errors import HelpersError, InputError
from helpers.warehouse.load import load
from tests.load_util import leftovers, sha256, table_rows, write_processed
from tests.load_util import warehouse as warehouse  # a fixture

ROOT = Path(__file__).resolve().parent.parent


# --- bad input never half-replaces the warehouse -----------------------------------------------


def insert_line(path: Path, raw: bytes, at: int) -> None:
    with gzip.open(path, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    lines.insert(at, raw + b"\n")
    path.write_bytes(gzip.compress(b"".join(lines)))


GOOD_ORDER = b'"InvoiceLineId": 1, "InvoiceId": 1, "CustomerId": 2, "TrackId": 2, '

# (raw line put into orders.json.gz at line 3001, what the error must say)
BAD_RECORDS = [
    (b'{"InvoiceLineId": 1, "InvoiceId": ', "not valid JSON"),
    (b'{"InvoiceLineId": NaN}', "not valid JSON"),
    (b"[1, 2, 3]", "the line is not a JSON object"),
    (b'{"InvoiceLineId": 1}', "the record has no 'InvoiceId' key"),
    (b"{" + GOOD_ORDER + b'"UnitPrice": 0.99, "Quantity": "1"}',
     "Quantity is a string, expected an integer"),
    (b"{" + GOOD_ORDER + b'"UnitPrice": 0.99, "Quantity": 1.0}',
     "Quantity is a float, expected an integer"),
    (b"{" + GOOD_ORDER + b'"UnitPrice": null, "Quantity": 1}',
     "UnitPrice is null, expected an integer or a float"),
    (b"{" + GOOD_ORDER + b'"UnitPrice": [0.99], "Quantity": 1}',
     "UnitPrice is a JSON object or array, expected a plain value"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD_RECORDS)
def test_a_bad_record_names_its_line_and_keeps_the_previous_warehouse(
        chinook_db, tmp_path, warehouse, raw, reason):
    processed = write_processed(chinook_db, tmp_path / "p", copies=2)
    load(processed, warehouse, chinook_db)
    before = sha256(warehouse)
    insert_line(processed / "orders.json.gz", raw, at=3000)
    with pytest.raises(HelpersError) as info:
        load(processed, warehouse, chinook_db, chunk_rows=1000)
    assert str(info.value).startswith(f"{processed / 'orders.json.gz'}:3001: {reason}")
    assert "python -m helpers ingest" in str(info.value)
    assert sha256(warehouse) == before
    assert leftovers(warehouse.parent) == []


def test_a_blank_line_is_not_a_record(chinook_db, tmp_path, warehouse):
    processed = write_processed(chinook_db, tmp_path / "p")
    insert_line(processed / "tracks.json.gz", b"", at=10)
    report = load(processed, warehouse, chinook_db)
    assert report.ok and report.files["tracks"].rows == 3503


def test_a_truncated_gzip_file_is_named(chinook_db, tmp_path, warehouse):
    processed = write_processed(chinook_db, tmp_path / "p", member_rows=10**6)
    path = processed / "playlist_track.json.gz"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputError, match="playlist_track.json.gz: cannot read the gzip stream"):
        load(processed, warehouse, chinook_db)
    assert leftovers(warehouse.parent) == []


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, "the load ended before it could be interrupted"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def open_writer(fifo: Path, proc: subprocess.Popen) -> int:
    """Open the FIFO's writing end once the load has opened its reading end."""
    fds: list[int] = []

    def opened() -> bool:
        try:
            fds.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # ENXIO: no reader yet
            return False
        return True

    wait_for(opened, proc)
    os.set_blocking(fds[0], True)
    return fds[0]


def test_a_load_killed_midway_keeps_the_previous_warehouse(chinook_db, tmp_path, warehouse):
    processed = write_processed(chinook_db, tmp_path / "p", copies=2)
    load(processed, warehouse, chinook_db)
    before = sha256(warehouse)
    # tracks.json.gz becomes a pipe that we feed by hand: the load is surely mid-file when
    # it is killed, however fast the machine.
    tracks = processed / "tracks.json.gz"
    data = tracks.read_bytes()
    tracks.unlink()
    os.mkfifo(tracks)
    proc = subprocess.Popen(
        [sys.executable, "-m", "helpers", "load", "--processed", str(processed),
         "--db", str(warehouse), "--base", str(chinook_db), "--report", str(tmp_path / "r.json")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        fd = open_writer(tracks, proc)
        os.write(fd, data[: len(data) // 2])
        wait_for(lambda: any(p.stat().st_size for p in warehouse.parent.glob("*.tmp")), proc)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        os.close(fd)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert leftovers(warehouse.parent) != []  # the killed load's temporary file
    assert sha256(warehouse) == before
    assert table_rows(warehouse, "tracks") == table_rows(chinook_db, "tracks")
    tracks.unlink()
    tracks.write_bytes(data)
    assert load(processed, warehouse, chinook_db).ok
    assert leftovers(warehouse.parent) == []
