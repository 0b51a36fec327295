"""The warehouse load streams: its peak memory, measured in a child process, does not grow with the
input (a processed folder eight times larger, every row distinct, so nothing shrinks before it is
stored). Processed files come from tests/load_util.py.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

from tests.load_util import Edit, Row, write_processed

# --- memory --------------------------------------------------------------------------------------

KEYS = {"tracks": "TrackId", "track_facts": "TrackId", "orders": "InvoiceLineId",
        "playlist_track": "TrackId"}


def all_distinct(copies: int) -> Edit:
    """Give each copy its own keys: no duplicates, so nothing shrinks before it is stored."""
    def edit(name: str, rows: list[Row]) -> list[Row]:
        n = len(rows) // copies
        return [{**r, KEYS[name]: r[KEYS[name]] + (i // n) * 100_000} for i, r in enumerate(rows)]
    return edit


def peak_rss_of_load(processed: Path, db: Path, base: Path, chunk_rows: int) -> int:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child started from this
    # (large) test process would report the parent's peak.
    code = ("import sys; from helpers.warehouse.load import load; "
            "load(sys.argv[1], sys.argv[2], sys.argv[3], chunk_rows=int(sys.argv[4])); "
            "status = open('/proc/self/status').read(); "
            "print(int(status.split('VmHWM:')[1].split()[0]) * 1024)")
    done = subprocess.run([sys.executable, "-c", code, str(processed), str(db), str(base),
                           str(chunk_rows)], capture_output=True, text=True, check=True)
    return int(done.stdout)


def unpacked_size(folder: Path) -> int:
    total = 0
    for path in folder.glob("*.json.gz"):
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                total += len(chunk)
    return total


def test_memory_does_not_grow_with_the_input(chinook_db, tmp_path):
    small, large = (write_processed(chinook_db, tmp_path / f"p{k}", copies=k,
                                    edit=all_distinct(k), member_rows=50_000) for k in (6, 48))
    growth = unpacked_size(large) - unpacked_size(small)
    peaks = [peak_rss_of_load(p, tmp_path / f"{p.name}.db", chinook_db, 5000)
             for p in (small, large)]
    mib = 1 << 20
    assert growth > 50 * mib
    # SQLite's page cache (16 MiB) may fill as the tables grow; the rows themselves never pile up.
    assert peaks[1] - peaks[0] < 20 * mib, [p / mib for p in peaks]
    assert peaks[1] < 100 * mib
