"""The happy path of the warehouse load: three shuffled copies of every processed file load into a
warehouse equal to the Chinook base, table for table and row for row, with the base's schema and
indexes; the report counts every line and finds no difference (and is written as JSON equal to the
returned one), the wrangling questions get the same answers on the warehouse as on the base, and
duplicates already dropped upstream load the same. Processed files come from tests/load_util.py.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from helpers.chinook.tables import TABLES
from helpers.warehouse.load import load
from tests.load_util import dataset_rows, table_rows, write_processed
from tests.load_util import warehouse as warehouse  # a fixture


@pytest.fixture(scope="module")
def three_shuffled_copies(chinook_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_processed(chinook_db, tmp_path_factory.mktemp("processed"), copies=3)


@pytest.fixture(scope="module")
def loaded_from_copies(chinook_db, three_shuffled_copies, tmp_path_factory):
    db = tmp_path_factory.mktemp("warehouse") / "warehouse.db"
    report = load(three_shuffled_copies, db, chinook_db, chunk_rows=4000)
    return db, report


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


def test_report_is_written_as_json_equal_to_the_returned_one(chinook_db, three_shuffled_copies,
                                                            warehouse, tmp_path):
    path = tmp_path / "out" / "_reconcile.json"
    report = load(three_shuffled_copies, warehouse, chinook_db, report=path)
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(report.to_dict()))
    assert written["ok"] is True and written["rows_per_second"] > 0
