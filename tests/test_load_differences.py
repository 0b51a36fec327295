"""Every difference between the warehouse and the base shows in the load's report: conflicting
duplicates with both versions, rows missing, extra or changed in a table (with no tolerance on
values), failing cross-checks between the datasets, schema drift counted without changing the
tables, and reconcile finding each kind of difference alone; the `load` command's exit code says
whether the warehouse differs, and it names a missing processed file and the fix. Processed files
come from tests/load_util.py, edited per test.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.chinook.tables import TABLES
from helpers.cli import main
from helpers.errors import InputError
from helpers.warehouse.load import load
from helpers.warehouse.reconcile import reconcile
from tests.load_util import Edit, Row, edited, table_rows, write_processed
from tests.load_util import warehouse as warehouse  # a fixture

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

