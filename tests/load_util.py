"""Shared by the warehouse load tests (tests/test_load_*.py): processed files written from the
Chinook base itself (each dataset's source_sql rows, k times, shuffled, in several gzip members,
optionally edited first), so that those tests do not depend on the ingestion code; a table's rows
as stored; and the `warehouse` fixture, a path for the database under test. Test files import the
fixture as `from tests.load_util import warehouse as warehouse`: the redundant alias tells ruff
that the import is used (pytest finds fixtures by name).
"""

from __future__ import annotations

import gzip
import hashlib
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from helpers.chinook.datasets import DATASETS
from helpers.chinook.tables import TABLES

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


def edited(chinook_db: Path, tmp_path: Path, edit: Edit, copies: int = 2) -> Path:
    return write_processed(chinook_db, tmp_path / "processed", copies=copies, edit=edit)
