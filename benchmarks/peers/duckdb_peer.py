"""(d) DuckDB, and (d2) its strongest form: COPY uncompressed, then gzip with isal.

One `COPY (SELECT ... UNION ALL BY NAME SELECT ...) TO '<dataset>.json.gz' (FORMAT json,
COMPRESSION gzip)` per dataset. The help it needs on our files: one `read_csv` per file with the
sniffed delimiter (a list of files shares one delimiter), `latin-1` for the cp1252 file (DuckDB
decodes only UTF-8, UTF-16 and Latin-1 without an extension, and this file has no byte where the
two differ), and each column renamed to its canonical name in SQL (the raw names differ in case
and carry `tracks.` prefixes). DuckDB runs on 2 threads, the machine's cores.

`--isal` (d2) writes plain NDJSON and compresses it with isal's threaded igzip at level 1, our own
default level, then deletes the plain file.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import duckdb
from isal import igzip_threaded

from benchmarks.common import data_files, dataset_folders, main_args, ordered, rename_map

THREADS = 2


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def reader_sql(path: Path, fmt) -> str:
    """A DuckDB table function reading one file with what sniffing found."""
    if fmt.kind == "csv":
        encoding = "latin-1" if fmt.encoding == "cp1252" else "utf-8"
        return (f"read_csv({quote_str(str(path))}, delim={quote_str(fmt.delimiter)}, "
                f"header=true, quote='\"', encoding={quote_str(encoding)})")
    layout = "newline_delimited" if fmt.kind == "jsonl" else "array"
    return f"read_json({quote_str(str(path))}, format={quote_str(layout)})"


def dataset_sql(con: duckdb.DuckDBPyConnection, folder: Path) -> str:
    """SELECT every file of the dataset, columns renamed to canonical, UNION ALL BY NAME."""
    selects, columns = [], []
    for path, fmt in data_files(folder):
        source = reader_sql(path, fmt)
        names = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
        renames = rename_map(folder.name, names)
        columns += [c for c in renames.values() if c not in columns]
        items = ", ".join(f"{quote_ident(raw)} AS {quote_ident(canon)}"
                          for raw, canon in renames.items())
        selects.append(f"SELECT {items} FROM {source}")
    union = "\nUNION ALL BY NAME\n".join(selects)
    keep = ", ".join(quote_ident(c) for c in ordered(folder.name, columns))
    return f"SELECT {keep} FROM (\n{union}\n)"


def copy_dataset(con, folder: Path, out: Path, isal: bool) -> None:
    final = out / f"{folder.name}.json.gz"
    query = dataset_sql(con, folder)
    if not isal:
        con.execute(f"COPY ({query}) TO {quote_str(str(final))} "
                    "(FORMAT json, COMPRESSION gzip)")
        return
    plain = out / f"{folder.name}.json"
    con.execute(f"COPY ({query}) TO {quote_str(str(plain))} (FORMAT json)")
    with open(plain, "rb") as src, igzip_threaded.open(final, "wb", compresslevel=1,
                                                       threads=THREADS) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    os.unlink(plain)


def main() -> None:
    isal = "--isal" in sys.argv
    if isal:
        sys.argv.remove("--isal")
    raw, out = main_args("benchmarks.peers.duckdb_peer [--isal]")
    con = duckdb.connect(config={"threads": THREADS})
    for folder in dataset_folders(raw):
        copy_dataset(con, folder, out, isal)


if __name__ == "__main__":
    main()
