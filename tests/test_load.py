"""Processed files load into a warehouse equal to the Chinook base, and every difference shows.

The processed files are written here from the base itself (each dataset's source_sql rows, k
times, shuffled, in several gzip members), so these tests do not depend on the ingestion code.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from helpers.chinook.datasets import DATASETS
from helpers.chinook.tables import TABLES
from helpers.cli import main
from helpers.errors import HelpersError, InputError
from helpers.warehouse.load import load
from helpers.warehouse.reconcile import reconcile

ROOT = Path(__file__).resolve().parent.parent
Row = dict[str, object]
Edit = Callable[[str, list[Row]], list[Row]]


# --- writing processed files -------------------------------------------------------------------


def dataset_rows(base: Path, name: str) -> list[Row]:
    with sqlite3.connect(base) as con:
        cur = con.execute(DATASETS[name].source_sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur]


def write_processed(base: Path, out: Path, copies: int = 1, seed: int = 0,
                    edit: Edit | None = None, member_rows: int = 1000) -> Path:
    """Write out/<dataset>.json.gz as ingestion would: `copies` of each row, shuffled, as NDJSON
    in gzip members of `member_rows` lines. `edit(dataset, rows)` may change the rows first."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for name in DATASETS:
        rows = dataset_rows(base, name) * copies
        if edit is not None:
            rows = edit(name, rows)
        rng.shuffle(rows)
        write_ndjson_gz(out / f"{name}.json.gz", rows, member_rows)
    return out


def write_ndjson_gz(path: Path, rows: list[Row], member_rows: int = 1000) -> None:
    with path.open("wb") as f:
        for start in range(0, len(rows), member_rows):
            lines = b"".join(orjson.dumps(r) + b"\n" for r in rows[start:start + member_rows])
            f.write(gzip.compress(lines, compresslevel=1, mtime=0))


def table_rows(db: Path, table: str) -> list[tuple]:
    """Every row of `table`, in key order, with each value's storage class beside it."""
    spec = next(t for t in TABLES if t.name == table)
    cols = ", ".join(f'"{c}", typeof("{c}")' for c in spec.column_names)
    keys = ", ".join(f'"{k}"' for k in spec.primary_key)
    with sqlite3.connect(db) as con:
        return con.execute(f'SELECT {cols} FROM "{table}" ORDER BY {keys}').fetchall()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return tmp_path / "db" / "warehouse.db"


@pytest.fixture(scope="module")
def three_shuffled_copies(chinook_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_processed(chinook_db, tmp_path_factory.mktemp("processed"), copies=3)


@pytest.fixture(scope="module")
def loaded_from_copies(chinook_db, three_shuffled_copies, tmp_path_factory):
    db = tmp_path_factory.mktemp("warehouse") / "warehouse.db"
    report = load(three_shuffled_copies, db, chinook_db, chunk_rows=4000)
    return db, report


def edited(chinook_db: Path, tmp_path: Path, edit: Edit, copies: int = 2) -> Path:
    return write_processed(chinook_db, tmp_path / "processed", copies=copies, edit=edit)


# --- the happy path: loaded equals the base ----------------------------------------------------


@pytest.mark.parametrize("table", [t.name for t in TABLES])
def test_every_table_equals_the_base_row_for_row(loaded_from_copies, chinook_db, table):
    db, _ = loaded_from_copies
    assert table_rows(db, table) == table_rows(chinook_db, table)


def test_schema_and_indexes_are_those_of_the_base(loaded_from_copies, chinook_db):
    sql = ("SELECT type, name, tbl_name, sql FROM sqlite_master "
           "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
    db, _ = loaded_from_copies
    with sqlite3.connect(db) as a, sqlite3.connect(chinook_db) as b:
        assert a.execute(sql).fetchall() == b.execute(sql).fetchall()
        seq = "SELECT name, seq FROM sqlite_sequence ORDER BY name"
        assert a.execute(seq).fetchall() == b.execute(seq).fetchall()


def test_report_counts_every_line_and_finds_no_difference(loaded_from_copies, chinook_db):
    _, report = loaded_from_copies
    assert report.ok
    for name, stats in report.files.items():
        distinct = len(dataset_rows(chinook_db, name))
        assert (stats.rows, stats.distinct_keys) == (3 * distinct, distinct)
        assert stats.conflicting_duplicates == 0 and stats.extra_columns == {}
    assert all(c.count == 0 for c in report.checks.values())
    for t in report.tables.values():
        assert t.rows_loaded == t.rows_in_base
        assert (t.missing_vs_base, t.extra_vs_base, t.value_mismatches) == (0, 0, 0)
    assert report.rows_read == sum(f.rows for f in report.files.values())


# The wrangling questions, asked of the base and of the warehouse: the answers must agree.
QUESTIONS = {
    "longest track": "SELECT Name, Milliseconds FROM tracks ORDER BY Milliseconds DESC LIMIT 1",
    "shortest genre": "SELECT g.Name, avg(t.Milliseconds) FROM tracks t JOIN genres g "
                      "USING (GenreId) GROUP BY g.GenreId ORDER BY 2 LIMIT 1",
    "artist in most playlists": "SELECT a.Name, count(DISTINCT pt.PlaylistId) FROM artists a "
                                "JOIN albums al USING (ArtistId) JOIN tracks t USING (AlbumId) "
                                "JOIN playlist_track pt USING (TrackId) GROUP BY a.ArtistId "
                                "ORDER BY 2 DESC, a.Name LIMIT 3",
    "album most purchased": "SELECT al.Title, count(*) FROM albums al JOIN tracks t "
                            "USING (AlbumId) JOIN invoice_items ii USING (TrackId) "
                            "GROUP BY al.AlbumId ORDER BY 2 DESC, al.Title LIMIT 3",
    "sales per customer": "SELECT i.CustomerId, round(sum(ii.UnitPrice * ii.Quantity), 2) "
                          "FROM invoice_items ii JOIN invoices i USING (InvoiceId) "
                          "GROUP BY i.CustomerId ORDER BY i.CustomerId",
}


@pytest.mark.parametrize("question", sorted(QUESTIONS))
def test_wrangling_answers_are_the_same_on_the_warehouse(loaded_from_copies, chinook_db,
                                                         question):
    db, _ = loaded_from_copies
    with sqlite3.connect(db) as a, sqlite3.connect(chinook_db) as b:
        answer = a.execute(QUESTIONS[question]).fetchall()
        assert answer and answer == b.execute(QUESTIONS[question]).fetchall()


def test_duplicates_dropped_upstream_load_the_same(chinook_db, tmp_path, warehouse):
    processed = write_processed(chinook_db, tmp_path / "p", copies=1, seed=7, member_rows=10**6)
    report = load(processed, warehouse, chinook_db)
    assert report.ok
    assert table_rows(warehouse, "invoice_items") == table_rows(chinook_db, "invoice_items")


# --- differences are found and reported --------------------------------------------------------


def rename_one_track(name: str, rows: list[Row]) -> list[Row]:
    """TrackId 1 appears with two Names: the copies after the first are the other version."""
    if name == "tracks":
        first = next(i for i, r in enumerate(rows) if r["TrackId"] == 1)
        rows.append({**rows[first], "Name": "Not The Real Name"})
    return rows


def test_conflicting_duplicates_are_counted_with_both_versions(chinook_db, tmp_path, warehouse):
    report = load(edited(chinook_db, tmp_path, rename_one_track, copies=4), warehouse, chinook_db)
    stats = report.files["tracks"]
    assert not report.ok
    assert (stats.conflicting_duplicates, stats.conflicting_keys) == (1, 1)
    [example] = stats.conflict_examples
    assert example["kept"]["TrackId"] == example["conflicting"]["TrackId"] == 1
    assert {example["kept"]["Name"], example["conflicting"]["Name"]} == {
        "For Those About To Rock (We Salute You)", "Not The Real Name"}
    # One version is kept, one row per key: never both, never neither.
    assert report.tables["tracks"].rows_loaded == report.tables["tracks"].rows_in_base


def test_each_conflicting_row_counts_once_and_its_key_once(chinook_db, tmp_path, warehouse):
    def twice_renamed(name, rows):
        return rename_one_track(name, rename_one_track(name, rows))

    report = load(edited(chinook_db, tmp_path, twice_renamed), warehouse, chinook_db,
                  chunk_rows=500)
    stats = report.files["tracks"]
    assert (stats.conflicting_duplicates, stats.conflicting_keys) == (2, 1)


def drop(dataset: str, where: Callable[[Row], bool]) -> Edit:
    return lambda name, rows: [r for r in rows if not (name == dataset and where(r))]


def add(dataset: str, row: Row) -> Edit:
    return lambda name, rows: rows + [row] * 3 if name == dataset else rows


def change(dataset: str, where: Callable[[Row], bool], **values) -> Edit:
    return lambda name, rows: [{**r, **values} if name == dataset and where(r) else r
                               for r in rows]


EXTRA_TRACK = {"TrackId": 9001, "Name": "Bonus", "AlbumId": 1, "MediaTypeId": 1, "GenreId": 1,
               "Composer": None, "Milliseconds": 1000, "Bytes": 10, "UnitPrice": 0.99}
EXTRA_ORDER = {"InvoiceLineId": 9001, "InvoiceId": 1, "CustomerId": 2, "TrackId": 2,
               "UnitPrice": 0.99, "Quantity": 1}


# (edit of the processed files, table, report field, expected count)
TABLE_DIFFERENCES = [
    (drop("playlist_track", lambda r: (r["PlaylistId"], r["TrackId"]) == (1, 3402)),
     "playlist_track", "missing_vs_base", 1),
    (drop("tracks", lambda r: r["TrackId"] > 3500), "tracks", "missing_vs_base", 3),
    (add("tracks", EXTRA_TRACK), "tracks", "extra_vs_base", 1),
    (add("orders", EXTRA_ORDER), "invoice_items", "extra_vs_base", 1),
    (change("tracks", lambda r: r["TrackId"] == 5, Composer=None), "tracks",
     "value_mismatches", 1),
    # No tolerance: a price one billionth off is a different price.
    (change("orders", lambda r: r["InvoiceLineId"] < 3, UnitPrice=0.990000001),
     "invoice_items", "value_mismatches", 2),
]


@pytest.mark.parametrize(("edit", "table", "field", "count"), TABLE_DIFFERENCES)
def test_table_differences_are_counted(chinook_db, tmp_path, warehouse, edit, table, field,
                                       count):
    report = load(edited(chinook_db, tmp_path, edit), warehouse, chinook_db)
    assert getattr(report.tables[table], field) == count
    assert report.tables[table].examples[field]
    assert not report.ok


# (edit, cross-check, expected count)
CROSS_CHECK_FAILURES = [
    (change("track_facts", lambda r: r["TrackId"] == 7, Milliseconds=1), "track_facts_differ", 1),
    (change("track_facts", lambda r: r["TrackId"] == 7, Bytes=None), "track_facts_differ", 1),
    (drop("track_facts", lambda r: r["TrackId"] in (1, 2)), "tracks_only", 2),
    (add("track_facts", {"TrackId": 9001, "Milliseconds": 1, "Bytes": 1}), "track_facts_only",
     1),
    (add("tracks", EXTRA_TRACK), "tracks_only", 1),
    (change("orders", lambda r: r["InvoiceId"] == 1, CustomerId=3), "orders_customer_differs",
     2),
    (add("orders", {**EXTRA_ORDER, "InvoiceId": 9999}), "foreign_keys", 1),
    (add("playlist_track", {"PlaylistId": 1, "TrackId": 9999}), "foreign_keys", 1),
]


@pytest.mark.parametrize(("edit", "check", "count"), CROSS_CHECK_FAILURES)
def test_cross_check_failures_are_counted(chinook_db, tmp_path, warehouse, edit, check, count):
    report = load(edited(chinook_db, tmp_path, edit), warehouse, chinook_db)
    assert report.checks[check].count == count
    assert len(report.checks[check].examples) == count
    assert not report.ok


def test_schema_drift_is_counted_but_does_not_change_the_tables(chinook_db, tmp_path, warehouse):
    def drift(name, rows):
        return [{**r, "Discount": 0.1} if name == "orders" and i % 2 else r
                for i, r in enumerate(rows)]

    report = load(edited(chinook_db, tmp_path, drift), warehouse, chinook_db)
    assert report.files["orders"].extra_columns == {"Discount": 2240}
    assert report.ok
    assert table_rows(warehouse, "invoice_items") == table_rows(chinook_db, "invoice_items")


@pytest.mark.parametrize(("mutation", "table", "field"), [
    ("DELETE FROM artists WHERE ArtistId = 3", "artists", "missing_vs_base"),
    ("INSERT INTO genres VALUES (99, 'Polka')", "genres", "extra_vs_base"),
    ("UPDATE invoices SET Total = Total + 0.01 WHERE InvoiceId = 9", "invoices",
     "value_mismatches"),
    ("UPDATE customers SET Company = 'Acme' WHERE CustomerId = 3", "customers",
     "value_mismatches"),
    ("UPDATE customers SET Fax = NULL WHERE CustomerId = 1", "customers", "value_mismatches"),
])
def test_reconcile_finds_each_kind_of_difference(chinook_db, tmp_path, mutation, table, field):
    copy = tmp_path / "copy.db"
    copy.write_bytes(chinook_db.read_bytes())
    with sqlite3.connect(copy) as con:
        con.execute("PRAGMA foreign_keys = OFF")
        con.execute(mutation)
    diffs = reconcile(copy, chinook_db)
    assert getattr(diffs[table], field) == 1
    others = [(n, f) for n, d in diffs.items()
              for f in ("missing_vs_base", "extra_vs_base", "value_mismatches")
              if getattr(d, f) and (n, f) != (table, field)]
    assert others == []


def test_report_is_written_as_json_equal_to_the_returned_one(chinook_db, three_shuffled_copies,
                                                            warehouse, tmp_path):
    path = tmp_path / "out" / "_reconcile.json"
    report = load(three_shuffled_copies, warehouse, chinook_db, report=path)
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(report.to_dict()))
    assert written["ok"] is True and written["rows_per_second"] > 0


# --- the command line ------------------------------------------------------------------------


def run_cli(processed: Path, db: Path, base: Path, *extra: str) -> int:
    return main(["load", "--processed", str(processed), "--db", str(db), "--base", str(base),
                 "--report", str(db.parent / "report.json"), *extra])


@pytest.mark.parametrize(("edit", "allow_diff", "code"), [
    (None, False, 0),
    (TABLE_DIFFERENCES[0][0], False, 1),  # a missing row
    (TABLE_DIFFERENCES[2][0], False, 1),  # an extra row
    (TABLE_DIFFERENCES[0][0], True, 0),
    (TABLE_DIFFERENCES[2][0], True, 0),
])
def test_cli_exit_code_says_whether_the_warehouse_differs(chinook_db, tmp_path, warehouse, capsys,
                                                          edit, allow_diff, code):
    processed = edited(chinook_db, tmp_path, edit or (lambda name, rows: rows))
    flags = ["--allow-diff"] if allow_diff else []
    assert run_cli(processed, warehouse, chinook_db, *flags) == code
    out = capsys.readouterr().out
    for table in TABLES:
        assert f"\n{table.name} " in out
    assert ("DIFFERENCES found" in out) == (edit is not None)
    assert (warehouse.parent / "report.json").is_file()


def test_cli_names_a_missing_processed_file_and_the_fix(chinook_db, tmp_path, warehouse, capsys):
    processed = write_processed(chinook_db, tmp_path / "p")
    (processed / "orders.json.gz").unlink()
    assert run_cli(processed, warehouse, chinook_db) == 1
    err = capsys.readouterr().err
    assert "orders.json.gz: processed file not found" in err
    assert "python -m helpers ingest" in err


def test_the_base_cannot_be_the_target(chinook_db, tmp_path):
    processed = write_processed(chinook_db, tmp_path / "p")
    with pytest.raises(InputError, match="replace its own base"):
        load(processed, chinook_db, chinook_db)


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
