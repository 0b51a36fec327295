"""(e) Polars: scan every file, rename to canonical, concat diagonally, sink NDJSON, gzip it.

The help it needs on our files: `scan_csv` with the sniffed separator; the cp1252 file read
eagerly with `read_csv(encoding="cp1252")` (the lazy reader decodes UTF-8 only); gzip-compressed
input decompressed eagerly (`read_csv` / `read_ndjson` on the bytes); JSON arrays read whole with
`read_json` (Polars has no streaming reader for them); columns renamed to canonical names.
`how="diagonal_relaxed"` lets a column typed Int64 in one file and Float64 or String in another
meet in their supertype. The NDJSON is sunk uncompressed and compressed with isal's threaded igzip
at level 1, our own default level, as in (d2). Polars runs on 2 threads, the machine's cores.
"""

from __future__ import annotations

import os

os.environ.setdefault("POLARS_MAX_THREADS", "2")  # before polars is imported

import gzip  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import polars as pl  # noqa: E402
from isal import igzip_threaded  # noqa: E402

from benchmarks.common import (  # noqa: E402
    data_files,
    dataset_folders,
    main_args,
    ordered,
    rename_map,
)


def scan(path: Path, fmt) -> pl.LazyFrame:
    """One file as a LazyFrame, lazily where Polars can, eagerly where it cannot."""
    if fmt.kind == "json_array":
        return pl.read_json(path).lazy()
    if fmt.compression:
        with gzip.open(path, "rb") as f:
            data = f.read()
        if fmt.kind == "jsonl":
            return pl.read_ndjson(data).lazy()
        return pl.read_csv(data, separator=fmt.delimiter, encoding=_encoding(fmt)).lazy()
    if fmt.kind == "jsonl":
        return pl.scan_ndjson(path)
    if fmt.encoding == "cp1252":
        return pl.read_csv(path, separator=fmt.delimiter, encoding="cp1252").lazy()
    return pl.scan_csv(path, separator=fmt.delimiter)


def _encoding(fmt) -> str:
    return "utf8" if fmt.encoding.startswith("utf-8") else fmt.encoding


def dataset_frame(folder: Path) -> pl.LazyFrame:
    frames, columns = [], []
    for path, fmt in data_files(folder):
        frame = scan(path, fmt)
        renames = rename_map(folder.name, frame.collect_schema().names())
        frames.append(frame.rename(renames))
        columns += [c for c in renames.values() if c not in columns]
    return pl.concat(frames, how="diagonal_relaxed").select(ordered(folder.name, columns))


def main() -> None:
    raw, out = main_args("benchmarks.peers.polars_peer")
    for folder in dataset_folders(raw):
        plain, final = out / f"{folder.name}.json", out / f"{folder.name}.json.gz"
        dataset_frame(folder).sink_ndjson(plain)
        with open(plain, "rb") as src, igzip_threaded.open(final, "wb", compresslevel=1,
                                                           threads=2) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.unlink(plain)


if __name__ == "__main__":
    main()
