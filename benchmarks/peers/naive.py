"""(c) The naive baseline: the reference submission's approach, kept as it was where it can be.

Kept: pandas `read_csv` in chunks of 50,000 turned into one dict per row, JSON read line by line
with `json.loads`, a `table.` prefix cut from each key, a SHA-1 of every row's sorted-key JSON kept
in a Python set, one `json.dumps` per row written to gzip at its default level 9 in text mode, a
checkpoint file after each raw file, the output renamed into place at the end.

The only help it gets (without which it skips or misreads most of our files): files are chosen by
their sniffed content instead of their extension; CSV is read with the sniffed delimiter and
encoding (so cp1252 and a BOM decode) and gzip is decompressed; a JSON array is read with
`json.load`. Keys keep the spelling of their file (`trackid`, `TRACKID`), and missing values are
written as `NaN`, as the reference did.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from hashlib import sha1
from pathlib import Path

import pandas as pd

from benchmarks.common import data_files, dataset_folders, main_args

log = logging.getLogger("naive")


def clean_cols(rec: dict) -> dict:
    return {k.split(".")[-1]: v for k, v in rec.items()}


def row_hash(rec: dict) -> bytes:
    return sha1(json.dumps(rec, sort_keys=True).encode()).digest()


def csv_rows(path: Path, fmt, cols: set):
    compression = "gzip" if fmt.compression else None
    for chunk in pd.read_csv(path, chunksize=50_000, sep=fmt.delimiter, encoding=fmt.encoding,
                             compression=compression):
        for r in chunk.to_dict(orient="records"):
            r = clean_cols(r)
            cols.update(r)
            yield r


def _open_text(path: Path, fmt):
    if fmt.compression:
        return gzip.open(path, "rt", encoding=fmt.encoding)
    return path.open(encoding=fmt.encoding)


def json_rows(path: Path, fmt, cols: set, stats: dict):
    with _open_text(path, fmt) as fh:
        if fmt.kind == "json_array":  # help: the reference read JSON Lines only
            for r in json.load(fh):
                r = clean_cols(r)
                cols.update(r)
                yield r
            return
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                r = clean_cols(json.loads(line))
            except json.JSONDecodeError:
                stats["bad_json"] += 1
                log.warning("bad json in %s", path)
                continue
            cols.update(r)
            yield r


def process(folder: Path, out: Path) -> int:
    ds = folder.name
    ckpt, part, final = out / f"{ds}.ckpt", out / f"{ds}.json.gz.part", out / f"{ds}.json.gz"
    stats = {"rows": 0, "bad_json": 0, "dup_seen": False}
    cols_seen: set = set()
    hashes: set = set()
    with gzip.open(part, "wt", encoding="utf-8") as gz:
        for src, fmt in data_files(folder):
            if fmt.kind == "csv":
                reader = csv_rows(src, fmt, cols_seen)
            else:
                reader = json_rows(src, fmt, cols_seen, stats)
            for rec in reader:
                h = row_hash(rec)
                if not stats["dup_seen"] and h in hashes:
                    stats["dup_seen"] = True
                    log.info("duplicate rows detected in %s", ds)
                hashes.add(h)
                new_cols = [c for c in rec if c not in cols_seen]
                if new_cols:
                    cols_seen.update(new_cols)
                    log.info("new columns in %s: %s", ds, ", ".join(new_cols))
                gz.write(json.dumps(rec) + "\n")
                stats["rows"] += 1
            ckpt.write_text(f"{src.name}\n{stats['rows']}\n")
    os.replace(part, final)
    ckpt.unlink(missing_ok=True)
    return stats["rows"]


def main() -> None:
    raw, out = main_args("benchmarks.peers.naive")
    for folder in dataset_folders(raw):
        print(folder.name, process(folder, out))


if __name__ == "__main__":
    main()
