"""Shared by the benchmark harness tests (tests/test_bench_*.py): a quiet run of the harness at
scale 1 for the given peers (speed is never asserted; scale 1 keeps these tests fast), and a
writer of small gzip outputs for the output checks.
"""

from __future__ import annotations

from pathlib import Path

from isal import igzip

from benchmarks import bench

QUIET = {"say": lambda _line: None, "load": False, "profile_when": "never"}


def run_bench(tmp_path: Path, db: Path, peers: list[str]) -> dict:
    return bench.bench([1], peers, reps=1, work=tmp_path / "work",
                       results_dir=tmp_path / "results", db=db, **QUIET)


def write_gz(path: Path, text: bytes) -> Path:
    with igzip.open(path, "wb") as f:
        f.write(text)
    return path
