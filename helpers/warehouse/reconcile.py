"""Compare a loaded warehouse with the Chinook base, table by table, and report what differs.

`reconcile` needs only two database files, so it can check any warehouse; `load` adds what it
learned while reading the processed files (rows, duplicates, cross-checks) to the same `Report`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from helpers.chinook.tables import TABLES, TABLES_BY_NAME
from helpers.errors import InputError
from helpers.fs import write_atomic

EXAMPLES = 5  # differences shown per kind; the counts are always complete


@dataclass
class TableDiff:
    """One warehouse table against the same table in the base."""

    table: str
    rows_in_base: int
    rows_loaded: int
    missing_vs_base: int = 0  # keys in the base that the warehouse lacks
    extra_vs_base: int = 0  # keys in the warehouse that the base lacks
    value_mismatches: int = 0  # same key, some column differs in value or type
    examples: dict[str, list[dict]] = field(default_factory=dict)


@dataclass
class FileStats:
    """What one processed file held, as `load` read it."""

    dataset: str
    file: str
    table: str | None  # the warehouse table it fills; None for a file used only to cross-check
    rows: int = 0
    distinct_keys: int = 0
    conflicting_duplicates: int = 0  # rows whose key was seen first with other values
    conflicting_keys: int = 0
    extra_columns: dict[str, int] = field(default_factory=dict)  # drifted key -> rows holding it
    conflict_examples: list[dict] = field(default_factory=list)


@dataclass
class Check:
    """A cross-check between files or tables: how many rows fail it, and a few of them."""

    description: str
    count: int
    examples: list[dict] = field(default_factory=list)


@dataclass
class Report:
    processed: str
    db: str
    base: str
    files: dict[str, FileStats]
    tables: dict[str, TableDiff]
    checks: dict[str, Check]
    rows_read: int
    seconds: float
    up_to_date: bool = False  # True: this is the report of an earlier load of the same inputs

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        """The inverse of `to_dict`."""
        return cls(
            processed=data["processed"], db=data["db"], base=data["base"],
            files={k: FileStats(**v) for k, v in data["files"].items()},
            tables={k: TableDiff(**v) for k, v in data["tables"].items()},
            checks={k: Check(**v) for k, v in data["checks"].items()},
            rows_read=data["rows_read"], seconds=data["seconds"],
            up_to_date=data.get("up_to_date", False))

    @property
    def ok(self) -> bool:
        """True only when nothing differs; schema drift alone is reported, not a difference."""
        return (
            all(t.missing_vs_base == t.extra_vs_base == t.value_mismatches == 0
                for t in self.tables.values())
            and all(f.conflicting_duplicates == 0 for f in self.files.values())
            and all(c.count == 0 for c in self.checks.values())
        )

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"ok": self.ok, "rows_per_second": round(self.rows_per_second), **asdict(self)}

    def write_json(self, path: str | Path) -> None:
        """Write the report as JSON, atomically, so a reader never sees half of it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        write_atomic(path, text.encode("utf-8"))

    def summary(self) -> str:
        """The per-table table the CLI prints."""
        return format_summary(self)


def reconcile(db: str | Path, base: str | Path,
              tables: Iterable[str] | None = None) -> dict[str, TableDiff]:
    """Compare each table of `db` with the same table in `base` (all Chinook tables by default)."""
    db, base = Path(db), Path(base)
    for path in (db, base):
        if not path.is_file():
            raise InputError("database not found", path=path,
                             fix="Check the path, or build it first (python -m helpers load)")
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        con.execute("ATTACH DATABASE ? AS base", (f"{base.resolve().as_uri()}?mode=ro",))
        names = list(tables) if tables is not None else [t.name for t in TABLES]
        return {name: compare_table(con, name) for name in names}
    finally:
        con.close()


def compare_table(con: sqlite3.Connection, name: str) -> TableDiff:
    """Compare main.<name> with base.<name> on a connection where both are visible."""
    table = TABLES_BY_NAME[name]
    keys = table.primary_key
    values = [c for c in table.column_names if c not in keys]
    on = " AND ".join(f'a."{k}" = b."{k}"' for k in keys)
    key_list = ", ".join(f'a."{k}"' for k in keys)
    diff = TableDiff(
        name,
        rows_in_base=_scalar(con, f'SELECT count(*) FROM base."{name}"'),
        rows_loaded=_scalar(con, f'SELECT count(*) FROM main."{name}"'),
    )
    for kind, outer, inner in (("missing_vs_base", "base", "main"),
                               ("extra_vs_base", "main", "base")):
        sql = (f'SELECT {key_list} FROM {outer}."{name}" a WHERE NOT EXISTS '
               f'(SELECT 1 FROM {inner}."{name}" b WHERE {on})')
        count, examples = count_and_examples(con, sql)
        setattr(diff, kind, count)
        if examples:
            diff.examples[kind] = examples
    if values:
        # IS compares NULLs as values; typeof keeps 1 (integer) apart from 1.0 (real) or '1'
        # (text), and there is no tolerance: 0.99 equals 0.99 only when it is stored as 0.99.
        same = " AND ".join(f'a."{c}" IS b."{c}" AND typeof(a."{c}") = typeof(b."{c}")'
                            for c in values)
        picked = ", ".join([key_list] + [f'b."{c}" AS "base.{c}", a."{c}" AS "loaded.{c}"'
                                         for c in values])
        sql = (f'SELECT {picked} FROM main."{name}" a JOIN base."{name}" b ON {on} '
               f"WHERE NOT ({same})")
        diff.value_mismatches, examples = count_and_examples(con, sql)
        if examples:
            diff.examples["value_mismatches"] = [_only_differences(e) for e in examples]
    return diff


def count_and_examples(con: sqlite3.Connection, sql: str) -> tuple[int, list[dict]]:
    """How many rows `sql` returns, and the first few of them as dicts."""
    count = _scalar(con, f"SELECT count(*) FROM ({sql})")
    if count == 0:
        return 0, []
    cur = con.execute(f"{sql} LIMIT {EXAMPLES}")
    names = [d[0] for d in cur.description]
    return count, [dict(zip(names, row, strict=True)) for row in cur]


def _scalar(con: sqlite3.Connection, sql: str) -> int:
    return con.execute(sql).fetchone()[0]


def _only_differences(example: dict) -> dict:
    """Keep the key and the columns that differ, so an example reads at a glance."""
    kept = {k: v for k, v in example.items() if not k.startswith(("base.", "loaded."))}
    for k, v in example.items():
        if k.startswith("base."):
            loaded = example["loaded." + k[5:]]
            if v != loaded or type(v) is not type(loaded):
                kept[k], kept["loaded." + k[5:]] = v, loaded
    return kept


def format_summary(report: Report) -> str:
    """A fixed-width table: one line per warehouse table, one per cross-check-only file."""
    by_table = {f.table: f for f in report.files.values() if f.table}
    head = ("table", "source", "file rows", "distinct", "loaded", "missing", "extra",
            "mismatched", "conflicts")
    rows = []
    for name, t in report.tables.items():
        f = by_table.get(name)
        source = f.file if f else f"{Path(report.base).name} (copied)"
        rows.append((name, source, *_file_cells(f), t.rows_loaded, t.missing_vs_base,
                     t.extra_vs_base, t.value_mismatches, f.conflicting_duplicates if f else "-"))
    for f in report.files.values():
        if not f.table:
            rows.append((f"({f.dataset})", f.file, *_file_cells(f), "-", "-", "-", "-",
                         f.conflicting_duplicates))
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in [head, *rows]]
    lines.append("cross-checks:")
    lines += [f"  {c.count:>8}  {c.description}" for c in report.checks.values()]
    for f in report.files.values():
        if f.extra_columns:
            drift = ", ".join(f"{k} ({n} rows)" for k, n in f.extra_columns.items())
            lines.append(f"schema drift in {f.file} (ignored for loading): {drift}")
    verdict = "ok: the warehouse equals the base" if report.ok else "DIFFERENCES found"
    lines.append(f"{verdict}; {report.rows_read:,} rows read in {report.seconds:.1f} s "
                 f"({report.rows_per_second:,.0f} rows/s) -> {report.db}")
    return "\n".join(lines)


def _file_cells(f: FileStats | None) -> tuple:
    return (f.rows, f.distinct_keys) if f else ("-", "-")
