"""`make run`, as a newcomer types it, on a copy of the project: it ends with the answers and
every output's path, and a second `make run` does no ingestion or load work (issue #13).

The copy reuses this test run's environment (VENV=), so that nothing is installed twice; SCALE=2
keeps the raw data small. Everything else is the real thing: the database built from PyPI's
sdist, the raw data, the ingestion, the load, both notebooks under papermill, the summary.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    copy = tmp_path_factory.mktemp("make-run") / "project"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, target)
    cache = ROOT / "db" / "cache"  # the downloaded sdist, when this checkout has it
    if cache.is_dir():
        shutil.copytree(cache, copy / "db" / "cache")
    return copy


def make_run(project: Path) -> str:
    venv = Path(sys.prefix)
    for stamp in venv.glob(".installed-*"):  # this environment is set up: say so to make
        (venv / stamp.name).touch()
    done = subprocess.run(["make", "run", "SCALE=2", f"VENV={venv}",
                           f"PYTHON={sys.executable}"], cwd=project, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_make_run_ends_with_the_answers_and_a_second_run_redoes_nothing(project):
    first = make_run(project)
    tail = first[first.index("Answers (from reports/02_wrangling.ipynb):"):]
    assert "1. Different customers" in tail and "7. Customers with dollar sales over $40" in tail
    for path in ("processed_data/tracks.json.gz", "processed_data/_manifest.json",
                 "db/sqlite/warehouse.db: equals its base", "reports/01_processing.html",
                 "reports/02_wrangling.html"):
        assert path in tail, path
    produced = sorted(p.name for p in (project / "processed_data").iterdir())
    assert produced == [".ingest", "README.md", "_manifest.json", "_rejects",
                        "orders.json.gz", "playlist_track.json.gz", "track_facts.json.gz",
                        "tracks.json.gz"]
    # A log is written only by a run that ingests: `make process` did, the notebook found it done.
    logs = sorted((project / "processed_data" / ".ingest" / "logs").iterdir())
    assert len(logs) == 1
    manifest = (project / "processed_data" / "_manifest.json").read_bytes()
    warehouse = (project / "db" / "sqlite" / "warehouse.db").stat().st_mtime_ns

    second = make_run(project)
    assert "up to date: processed_data already holds orders, playlist_track" in second
    assert "up to date: db/sqlite/warehouse.db was loaded from these very files" in second
    assert (project / "processed_data" / "_manifest.json").read_bytes() == manifest
    assert (project / "db" / "sqlite" / "warehouse.db").stat().st_mtime_ns == warehouse
    assert sorted((project / "processed_data" / ".ingest" / "logs").iterdir()) == logs
    assert not (project / "logs").exists()
