"""Incremental ingestion, shown: a folder gains a file, the rerun reads only that file and appends.

Like the crash demo it works on a small copy of one dataset in a temporary folder, removed
afterwards, so that it neither reads the real raw data again nor touches the real outputs.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from isal import igzip

from helpers.ingest.dataset_pass import Options
from helpers.ingest.engine import ingest
from helpers.rawgen.generate import make_raw

COUNTS = {"rows written": "rows_written", "rejected": "rows_rejected",
          "duplicates": "duplicates", "distinct rows": "distinct_rows"}


@dataclass
class AppendDemo:
    added: str  # the new file's name
    read: list[str]  # the files the second run read
    first_bytes: int  # the output's size after the first run
    prefix_kept: bool  # whether those bytes start the output after the append
    history: pd.DataFrame  # the manifest's history of the output: one row per run
    comparison: pd.DataFrame  # the appended output beside a clean run over all the files


def append_demo(db: str | Path, dataset: str, options: Options, scale: int = 5,
                seed: int = 0) -> AppendDemo:
    """Ingest a small copy of `dataset`, add a file (the first one exported again, under a new
    name, so every row of it is a duplicate), ingest again, and compare with a clean run."""
    with tempfile.TemporaryDirectory(prefix="append-demo-") as scratch:
        root = Path(scratch)
        make_raw(db, root / "raw", scale, seed=seed)
        run = lambda out: ingest(root / "raw", root / out, datasets=[dataset],  # noqa: E731
                                 options=options, jobs=1, progress=False)
        run("out")
        output = root / "out" / f"{dataset}.json.gz"
        first = output.read_bytes()
        source = min(p for p in (root / "raw" / dataset).iterdir()
                     if p.name.startswith(dataset) and p.stat().st_size)
        added = f"{dataset}_export_2{''.join(source.suffixes)}"
        shutil.copyfile(source, root / "raw" / dataset / added)
        appended = run("out")
        clean = run("clean")
        last = appended[dataset]["history"][-1]
        return AppendDemo(
            added=added, read=last["files"] if last["kind"] == "append" else [],
            first_bytes=len(first), prefix_kept=output.read_bytes().startswith(first),
            history=pd.DataFrame(appended[dataset]["history"]).drop(columns="finished"),
            comparison=compare(appended[dataset], clean[dataset], output,
                               root / "clean" / f"{dataset}.json.gz"))


def compare(appended: dict, clean: dict, appended_file: Path, clean_file: Path) -> pd.DataFrame:
    """Counts, and a digest of the sorted lines: the same multiset of lines, whatever the order."""
    values = {label: {**{row: entry[key] for row, key in COUNTS.items()},
                      "sorted lines, sha256": sorted_lines_digest(path)[:16] + "…"}
              for label, entry, path in (("appended", appended, appended_file),
                                         ("clean run", clean, clean_file))}
    frame = pd.DataFrame(values)
    frame["equal"] = frame["appended"] == frame["clean run"]
    return frame


def sorted_lines_digest(path: Path) -> str:
    with igzip.open(path, "rb") as f:
        lines = sorted(f.read().splitlines())
    return hashlib.sha256(b"\n".join(lines)).hexdigest()
