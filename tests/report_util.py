"""Shared by the processing notebook's tests (tests/test_processing_report_*.py): a faulty raw
folder at scale 10 (every file variation and every kind of damaged record), its ground truth, the
folder ingested once in this process with small chunks and frequent checkpoints, and a copy of that
output that a test may damage. These are module-scoped fixtures (a few seconds each): each test
file that imports them builds its own. Test files import them as `from tests.report_util import
truth as truth`: the redundant alias tells ruff that the import is used (pytest finds fixtures by
name), and a fixture's own fixtures must be imported too.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.ingest.dataset_pass import Options
from helpers.ingest.engine import ingest
from helpers.notebook.processing import read_ground_truth
from helpers.rawgen.generate import make_raw

# Small chunks and frequent checkpoints: a run slow enough to be killed between checkpoints.
CRASH_OPTIONS = Options(chunk_rows=500, checkpoint_rows=500)


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Iterator[Path]:
    """An empty folder that `tempfile` uses for the test, to see what a demo leaves there."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None  # so that tempfile reads TMPDIR again
    try:
        yield tmp_path
    finally:
        tempfile.tempdir = None


@pytest.fixture(scope="module")
def faulty_raw(chinook_db, tmp_path_factory) -> Path:
    """Scale 10 with faults: every file variation and every kind of damaged record."""
    raw = tmp_path_factory.mktemp("raw")
    make_raw(chinook_db, raw, 10, seed=3, faults=True)
    return raw


@pytest.fixture(scope="module")
def truth(faulty_raw) -> dict:
    return read_ground_truth(faulty_raw)


@pytest.fixture(scope="module")
def ingested(faulty_raw, tmp_path_factory) -> tuple[Path, dict]:
    """The raw folder ingested once, in this process: (output folder, manifest)."""
    out = tmp_path_factory.mktemp("processed")
    manifest = ingest(faulty_raw, out, options=CRASH_OPTIONS, jobs=1, progress=False,
                      log_dir=None)
    return out, manifest


@pytest.fixture
def processed_copy(ingested, tmp_path) -> tuple[Path, dict]:
    """A copy of the ingested output that a test may damage."""
    out, manifest = ingested
    copy = tmp_path / "processed"
    shutil.copytree(out, copy)
    return copy, manifest
