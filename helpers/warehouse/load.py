"""Load processed_data/ into a new SQLite warehouse shaped like Chinook, and reconcile it.

Each processed file is streamed line by line; every `chunk_rows` lines its distinct lines are
parsed, staged in a temporary table, checked for types, and merged into a deduplicated staging
table keyed on the primary key. A row whose key was already kept with other values is a
conflicting duplicate: it is recorded, never silently dropped. The warehouse is built in a
temporary file beside the target and renamed into place only when complete.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path

import orjson
from filelock import FileLock, Timeout
from isal import igzip

from helpers.chinook.datasets import DATASETS, Dataset
from helpers.chinook.tables import TABLES, TABLES_BY_NAME
from helpers.errors import HelpersError, InputError
from helpers.fs import replace_durably, write_atomic
from helpers.warehouse.build import create_table_sql
from helpers.warehouse.reconcile import (
    EXAMPLES,
    Check,
    FileStats,
    Report,
    count_and_examples,
    reconcile,
)

# Where each processed dataset goes, and the key it is deduplicated on. track_facts fills no
# table: it repeats three columns of tracks, so it only cross-checks them.
LOADS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "tracks": ("tracks", TABLES_BY_NAME["tracks"].primary_key),
    "track_facts": (None, TABLES_BY_NAME["tracks"].primary_key),
    "playlist_track": ("playlist_track", TABLES_BY_NAME["playlist_track"].primary_key),
    "orders": ("invoice_items", TABLES_BY_NAME["invoice_items"].primary_key),
}
LOADED_TABLES = [table for table, _ in LOADS.values() if table]
REFERENCE_TABLES = [t.name for t in TABLES if t.name not in LOADED_TABLES]

SQL_TYPE = {"integer": "INTEGER", "number": "NUMERIC", "text": "TEXT"}
# The SQLite storage classes each JSON kind may arrive as; the staging table has no column
# affinity, so typeof() there shows exactly what the file held.
ALLOWED = {"integer": ("integer",), "number": ("integer", "real"), "text": ("text",)}
JSON_NAME = {"integer": "an integer", "real": "a float", "text": "a string", "null": "null",
             "blob": "binary"}
FIX_RERUN = "Re-run the ingestion (python -m helpers ingest) to rewrite the processed file"


class RecordError(HelpersError):
    """A processed file breaks its contract on one line; the message names the file and line."""


def load(processed: str | Path, db: str | Path, base: str | Path,
         chunk_rows: int = 50_000, report: str | Path | None = None,
         force: bool = False) -> Report:
    """Build the warehouse at `db` from `processed` and the base's reference tables.

    Returns the reconciliation report and, when `report` is given, writes it there as JSON.
    When the processed files, the base and the warehouse are those of the last load (by name,
    size and mtime), nothing is loaded again: the earlier report comes back, marked
    `up_to_date`. `force` loads anyway.
    """
    processed, db, base = Path(processed), Path(db), Path(base)
    _check_inputs(processed, db, base)
    earlier = None if force else _earlier_report(processed, db, base)
    if earlier is not None:
        if report is not None:
            earlier.write_json(report)
        return earlier
    started = time.perf_counter()
    with _atomic_target(db) as tmp:
        con = _connect(tmp, base)
        try:
            files, checks = _build(con, processed, base, max(1, chunk_rows))
        finally:
            con.close()
    seconds = time.perf_counter() - started
    result = Report(
        processed=str(processed), db=str(db), base=str(base), files=files,
        tables=reconcile(db, base), checks=checks,
        rows_read=sum(f.rows for f in files.values()), seconds=seconds,
    )
    if report is not None:
        result.write_json(report)
    _remember(result, processed, db, base)
    return result


def _record_path(db: Path) -> Path:
    """Beside the warehouse: what it was built from, and the report of that load."""
    return db.with_name(f"{db.name}.load.json")


def _signature(processed: Path, db: Path, base: Path) -> list[list]:
    paths = [processed / f"{name}.json.gz" for name in LOADS] + [base, db]
    found = []
    for path in paths:
        st = path.stat()
        found.append([str(path.resolve()), st.st_size, st.st_mtime_ns])
    return found


def _remember(result: Report, processed: Path, db: Path, base: Path) -> None:
    record = {"signature": _signature(processed, db, base), "report": result.to_dict()}
    write_atomic(_record_path(db), orjson.dumps(record, option=orjson.OPT_INDENT_2))


def _earlier_report(processed: Path, db: Path, base: Path) -> Report | None:
    """The report of the last load, if it was made from these very files."""
    try:
        record = orjson.loads(_record_path(db).read_bytes())
        if not db.is_file() or record["signature"] != _signature(processed, db, base):
            return None
        return Report.from_dict(record["report"] | {"up_to_date": True})
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return None  # no record, or one we cannot read: load again


def _check_inputs(processed: Path, db: Path, base: Path) -> None:
    if not base.is_file():
        raise InputError("base database not found", path=base,
                         fix="Build it first: python -m helpers build-db")
    if db.resolve() == base.resolve():
        raise InputError("the warehouse would replace its own base", path=db,
                         fix="Choose another --db, such as db/sqlite/warehouse.db")
    for name in LOADS:
        path = processed / f"{name}.json.gz"
        if not path.exists():
            raise InputError("processed file not found", path=path,
                             fix="Run the ingestion first: python -m helpers ingest")


def _build(con: sqlite3.Connection, processed: Path, base: Path,
           chunk_rows: int) -> tuple[dict[str, FileStats], dict[str, Check]]:
    for table in TABLES:
        con.executescript(create_table_sql(table))
    _copy_reference_tables(con, base)
    files = {}
    for name, (table, keys) in LOADS.items():
        files[name] = stage_file(con, processed / f"{name}.json.gz", DATASETS[name], keys,
                                 table, chunk_rows)
        if table:
            _fill(con, name, table)
    checks = _cross_checks(con)
    con.execute("DETACH DATABASE base")
    # ANALYZE as the base was built, so the query planner sees the same statistics.
    con.execute("ANALYZE main")
    return files, checks


def _connect(tmp: Path, base: Path) -> sqlite3.Connection:
    con = sqlite3.connect(tmp.resolve().as_uri(), uri=True, isolation_level=None)
    # The file is thrown away on any failure, so a rollback journal and fsync per commit buy
    # nothing here; _atomic_target fsyncs once before the rename.
    con.execute("PRAGMA journal_mode = OFF")
    con.execute("PRAGMA synchronous = OFF")
    con.execute("PRAGMA temp_store = FILE")  # staging tables spill to disk, not to RAM
    con.execute("PRAGMA cache_size = -16000")
    con.execute("ATTACH DATABASE ? AS base", (f"{base.resolve().as_uri()}?mode=ro",))
    return con


def _copy_reference_tables(con: sqlite3.Connection, base: Path) -> None:
    con.execute("BEGIN")
    for name in REFERENCE_TABLES:
        cols = ", ".join(f'"{c}"' for c in TABLES_BY_NAME[name].column_names)
        try:
            con.execute(f'INSERT INTO main."{name}" ({cols}) SELECT {cols} FROM base."{name}"')
        except sqlite3.OperationalError as exc:
            raise InputError(f"cannot copy table {name} ({exc})", path=base,
                             fix="Rebuild it: python -m helpers build-db --force") from exc
    con.execute("COMMIT")


# --- streaming one file into a deduplicated staging table --------------------------------------


def stage_file(con: sqlite3.Connection, path: Path, dataset: Dataset, keys: tuple[str, ...],
               table: str | None, chunk_rows: int) -> FileStats:
    """Stream `path` into temp.stage_<dataset>, one key kept per first occurrence."""
    stats = FileStats(dataset.name, path.name, table)
    stage, chunk, conflicts = (f"temp.{p}_{dataset.name}" for p in ("stage", "chunk", "conflicts"))
    cols = ", ".join(f'"{c}"' for c in dataset.columns)
    key_list = ", ".join(f'"{k}"' for k in keys)
    typed = ", ".join(f'"{f.name}" {SQL_TYPE[f.kind]}' for f in dataset.fields)
    con.execute(f"CREATE TABLE {stage} ({typed}, PRIMARY KEY ({key_list}))")
    con.execute(f"CREATE TABLE {chunk} (line INTEGER PRIMARY KEY, copies INTEGER, {cols})")
    con.execute(f"CREATE TABLE {conflicts} (line INTEGER, copies INTEGER, {cols})")
    on = " AND ".join(f'c."{k}" = s."{k}"' for k in keys)
    same = " AND ".join(f'c."{c}" IS s."{c}"' for c in dataset.columns if c not in keys) or "1"
    merge = [
        f"INSERT INTO {stage} ({cols}) SELECT {cols} FROM {chunk} WHERE true ORDER BY line "
        f"ON CONFLICT ({key_list}) DO NOTHING",
        # Rows whose key is kept with other values; usually none, so this table stays tiny.
        f"INSERT INTO {conflicts} SELECT c.* FROM {chunk} c JOIN {stage} s ON {on} "
        f"WHERE NOT ({same})",
        f"DELETE FROM {chunk}",
    ]
    insert = f"INSERT INTO {chunk} VALUES ({', '.join('?' * (len(dataset.columns) + 2))})"
    for rows in read_row_batches(path, dataset, chunk_rows, stats):
        con.execute("BEGIN")
        _insert_rows(con, insert, rows, path, dataset)
        _check_types(con, chunk, path, dataset)
        for sql in merge:
            con.execute(sql)
        con.execute("COMMIT")
    stats.distinct_keys = con.execute(f"SELECT count(*) FROM {stage}").fetchone()[0]
    _count_conflicts(con, stats, stage, conflicts, keys, dataset.columns)
    return stats


def read_row_batches(path: Path, dataset: Dataset, chunk_rows: int,
                stats: FileStats) -> Iterator[list[tuple]]:
    """Yield lists of (line, copies, *values), one per distinct line in each run of lines.

    Identical lines are parsed once: at scale 500 each row appears 500 times, and two identical
    lines cannot be a conflicting duplicate of each other.
    """
    pending: dict[bytes, list[int]] = {}  # raw line -> [first line number, copies]
    try:
        with igzip.open(path, "rb") as lines:
            for number, raw in enumerate(lines, 1):
                seen = pending.get(raw)
                if seen is None:
                    pending[raw] = [number, 1]
                else:
                    seen[1] += 1
                if number % chunk_rows == 0:
                    rows = parse_lines(pending, path, dataset, stats)
                    pending = {}  # let the raw lines go before the rows are inserted
                    yield rows
    except (OSError, EOFError) as exc:  # BadGzipFile is an OSError; a cut file ends in EOFError
        raise InputError(f"cannot read the gzip stream ({exc or 'it ends early'})", path=path,
                         fix=FIX_RERUN) from exc
    if pending:
        yield parse_lines(pending, path, dataset, stats)


def parse_lines(pending: dict[bytes, list[int]], path: Path, dataset: Dataset,
                stats: FileStats) -> list[tuple]:
    columns = dataset.columns
    pick = itemgetter(*columns)
    width = len(columns)
    rows = []
    for raw, (number, copies) in pending.items():
        try:
            record = orjson.loads(raw)
            values = pick(record)
        except orjson.JSONDecodeError as exc:
            if not raw.strip():
                continue  # a blank line holds no record
            raise RecordError(f"not valid JSON ({exc})", path=path, line=number,
                              fix=FIX_RERUN) from exc
        except KeyError as exc:
            raise RecordError(f"the record has no {exc.args[0]!r} key", path=path, line=number,
                              fix=FIX_RERUN) from exc
        except TypeError as exc:
            raise RecordError("the line is not a JSON object", path=path, line=number,
                              fix=FIX_RERUN) from exc
        if len(record) != width:
            for key in record:
                if key not in columns:
                    stats.extra_columns[key] = stats.extra_columns.get(key, 0) + copies
        stats.rows += copies
        rows.append((number, copies, *values))
    return rows


def _insert_rows(con: sqlite3.Connection, insert: str, rows: list[tuple], path: Path,
                 dataset: Dataset) -> None:
    try:
        con.executemany(insert, rows)
    except sqlite3.ProgrammingError as exc:  # a nested object or array cannot be bound
        number, name = next((r[0], dataset.columns[i]) for r in rows
                            for i, v in enumerate(r[2:]) if isinstance(v, dict | list))
        raise RecordError(f"{name} is a JSON object or array, expected a plain value",
                          path=path, line=number, fix=FIX_RERUN) from exc


def _check_types(con: sqlite3.Connection, chunk: str, path: Path, dataset: Dataset) -> None:
    """Fail on the first line whose values are not of their declared kind."""
    def allowed(f) -> tuple[str, ...]:
        return ALLOWED[f.kind] + (("null",) if f.nullable else ())

    types = ", ".join(f'typeof("{c}")' for c in dataset.columns)
    wrong = " OR ".join(
        f'typeof("{f.name}") NOT IN ({", ".join(repr(t) for t in allowed(f))})'
        for f in dataset.fields)
    found = con.execute(f"SELECT line, {types} FROM {chunk} WHERE {wrong} "
                        "ORDER BY line LIMIT 1").fetchone()
    if found is None:
        return
    number, *types = found
    name, got, f = next((f.name, t, f) for f, t in zip(dataset.fields, types, strict=True)
                        if t not in allowed(f))
    expected = " or ".join(JSON_NAME[t] for t in allowed(f))
    raise RecordError(f"{name} is {JSON_NAME[got]}, expected {expected}", path=path,
                      line=number, fix=FIX_RERUN)


def _count_conflicts(con: sqlite3.Connection, stats: FileStats, stage: str, conflicts: str,
                     keys: tuple[str, ...], columns: list[str]) -> None:
    key_list = ", ".join(f'"{k}"' for k in keys)
    rows, distinct = con.execute(
        f"SELECT coalesce(sum(copies), 0), (SELECT count(*) FROM "
        f"(SELECT DISTINCT {key_list} FROM {conflicts})) FROM {conflicts}").fetchone()
    stats.conflicting_duplicates, stats.conflicting_keys = rows, distinct
    on = " AND ".join(f'c."{k}" = s."{k}"' for k in keys)
    kept = ", ".join(f's."{c}"' for c in columns)
    other = ", ".join(f'c."{c}"' for c in columns)
    cur = con.execute(f"SELECT c.line, c.copies, {kept}, {other} FROM {conflicts} c "
                      f"JOIN {stage} s ON {on} ORDER BY c.line LIMIT {EXAMPLES}")
    n = len(columns)
    for line, copies, *values in cur:
        stats.conflict_examples.append({
            "line": line, "copies": copies,
            "kept": dict(zip(columns, values[:n], strict=True)),
            "conflicting": dict(zip(columns, values[n:], strict=True)),
        })


# --- warehouse tables and cross-checks ---------------------------------------------------------


def _fill(con: sqlite3.Connection, dataset: str, table: str) -> None:
    cols = ", ".join(f'"{c}"' for c in TABLES_BY_NAME[table].column_names)
    keys = ", ".join(f'"{k}"' for k in TABLES_BY_NAME[table].primary_key)
    con.execute("BEGIN")
    con.execute(f'INSERT INTO main."{table}" ({cols}) SELECT {cols} FROM temp.stage_{dataset} '
                f"ORDER BY {keys}")
    con.execute("COMMIT")


CROSS_CHECKS: dict[str, tuple[str, str]] = {
    "track_facts_differ": (
        "track_facts rows whose Milliseconds or Bytes differ from tracks",
        "SELECT f.TrackId, t.Milliseconds AS tracks_Milliseconds, f.Milliseconds AS "
        "facts_Milliseconds, t.Bytes AS tracks_Bytes, f.Bytes AS facts_Bytes "
        "FROM temp.stage_track_facts f JOIN main.tracks t ON t.TrackId = f.TrackId "
        "WHERE NOT (f.Milliseconds IS t.Milliseconds AND f.Bytes IS t.Bytes)",
    ),
    "track_facts_only": (
        "TrackIds in track_facts but not in tracks",
        "SELECT f.TrackId FROM temp.stage_track_facts f "
        "WHERE NOT EXISTS (SELECT 1 FROM main.tracks t WHERE t.TrackId = f.TrackId)",
    ),
    "tracks_only": (
        "TrackIds in tracks but not in track_facts",
        "SELECT t.TrackId FROM main.tracks t "
        "WHERE NOT EXISTS (SELECT 1 FROM temp.stage_track_facts f WHERE f.TrackId = t.TrackId)",
    ),
    "orders_customer_differs": (
        "orders rows whose CustomerId differs from their invoice's",
        "SELECT o.InvoiceLineId, o.InvoiceId, i.CustomerId AS invoice_CustomerId, "
        "o.CustomerId AS orders_CustomerId FROM temp.stage_orders o "
        "JOIN main.invoices i ON i.InvoiceId = o.InvoiceId WHERE o.CustomerId IS NOT i.CustomerId",
    ),
}


def _cross_checks(con: sqlite3.Connection) -> dict[str, Check]:
    checks = {name: Check(text, *count_and_examples(con, sql))
              for name, (text, sql) in CROSS_CHECKS.items()}
    count, examples = 0, []
    for table, rowid, parent, _ in con.execute("PRAGMA main.foreign_key_check"):
        count += 1
        if len(examples) < EXAMPLES:
            examples.append({"table": table, "rowid": rowid, "parent": parent})
    checks["foreign_keys"] = Check("rows breaking a foreign key (PRAGMA foreign_key_check)",
                                   count, examples)
    return checks


# --- writing atomically ------------------------------------------------------------------------


@contextmanager
def _atomic_target(db: Path) -> Iterator[Path]:
    """Yield a locked temporary file beside `db`; rename it over `db` only if the body succeeds.

    The lock tells a later run that the file is in use; a file left by a killed run is unlocked,
    so the next run removes it.
    """
    db.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(db)
    fd, name = tempfile.mkstemp(prefix=f"{db.name}.", suffix=".tmp", dir=db.parent)
    tmp = Path(name)
    lock = FileLock(f"{tmp}.lock", timeout=0)
    try:
        with lock:
            yield tmp
            os.fsync(fd)  # the same file as SQLite wrote, which ran with synchronous = OFF
            replace_durably(tmp, db)
    finally:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.lock").unlink(missing_ok=True)


def _remove_abandoned(db: Path) -> None:
    for path in db.parent.glob(f"{db.name}.*.tmp"):
        try:
            with FileLock(f"{path}.lock", timeout=0):
                path.unlink(missing_ok=True)
        except Timeout:
            continue  # another load is writing it right now
        Path(f"{path}.lock").unlink(missing_ok=True)
