"""The benchmark's end to end measure, `make run` in a fresh clone: make's steps are timed from
the commands it echoes, the environment is a newcomer's (no activated venv, no make flags), and
HEAD is cloned and `make run` timed until it fails, with the runs in the report.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from benchmarks import e2e, report

# --- end to end: make run in a fresh clone ------------------------------------------------


def echoed(*lines: tuple[float, str]) -> list[tuple[float, str]]:
    return [(at, text + "\n") for at, text in lines]


@pytest.mark.parametrize("lines, wall, steps", [
    (echoed((0.1, "python3 -m venv .venv"), (0.2, ".venv/bin/python -m pip install -q -e ."),
            (30.0, ".venv/bin/python -m helpers build-db --db db/sqlite/chinook.db"),
            (31.0, ".venv/bin/python -m helpers make-raw --scale 500"),
            (32.5, "wrote 9 files"), (40.0, ".venv/bin/python -m helpers ingest --raw r"),
            (50.0, ".venv/bin/python -m helpers load --processed p"),
            (55.0, ".venv/bin/python -m helpers run-notebooks --reports reports")), 90.0,
     [("setup", 30.0), ("db", 1.0), ("data", 9.0), ("process", 10.0), ("load", 5.0),
      ("notebooks", 35.0)]),
    # The repeat run: setup is up to date; output that quotes a command is not a step.
    (echoed((0.5, ".venv/bin/python -m helpers build-db --db x"),
            (1.0, ".venv/bin/python -m helpers ingest --raw r"),
            (2.0, "next: python -m helpers load --processed p")), 4.0,
     [("db", 1.0), ("process", 3.0)]),
    ([], 3.0, []),
])
def test_make_steps_are_timed_from_makes_echoed_commands(lines, wall, steps):
    assert [(s["step"], s["seconds"]) for s in e2e.parse_steps(lines, wall)] == steps


def test_newcomer_env_drops_an_activated_venv_and_make_flags(tmp_path, monkeypatch):
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (tmp_path / "venv" / "pyvenv.cfg").touch()
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}/usr/bin")
    monkeypatch.setenv("VIRTUAL_ENV", str(tmp_path / "venv"))
    monkeypatch.setenv("MAKEFLAGS", "-j2")
    env = e2e.newcomer_env()
    assert env["PATH"] == "/usr/bin"
    assert "VIRTUAL_ENV" not in env and "MAKEFLAGS" not in env


FAKE_MAKEFILE = """SCALE ?= 7
run:
\tpython3 -m venv --help > /dev/null
\tsleep 0.3
\tpython3 -m helpers make-raw --scale $(SCALE) 2> /dev/null || true
\tsleep 0.3
\ttest ! -e fail
"""


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org",
                    *args], cwd=cwd, check=True, capture_output=True)


@pytest.mark.parametrize("fail, runs", [(False, 2), (True, 1)])
def test_end_to_end_clones_head_and_times_make_run_until_it_fails(tmp_path, fail, runs):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "Makefile").write_text(FAKE_MAKEFILE)
    (repo / "uncommitted").write_text("not in the clone")
    git("init", "-q", cwd=repo)
    git("add", "Makefile", cwd=repo)
    if fail:
        (repo / "fail").touch()
        git("add", "fail", cwd=repo)
    git("commit", "-q", "-m", "fake", cwd=repo)
    found = e2e.time_make_run(repo, tmp_path / "work" / "e2e", say=lambda _line: None)
    assert found["scale"] == "7" and found["ok"] is not fail
    assert len(found["runs"]) == runs
    assert not (tmp_path / "work" / "e2e" / "uncommitted").exists()
    first = found["runs"][0]
    assert first["returncode"] == (2 if fail else 0)
    assert [s["step"] for s in first["steps"]] == ["setup", "data"]
    assert all(s["seconds"] >= 0.3 for s in first["steps"])
    results = {"date": "2000-01-01", "machine": "test", "reps": 1, "versions": {}, "peers": {},
               "scales": {}, "end_to_end": found}
    table = report.markdown(results)
    assert "| run | wall s | exit | CPU s | peak RSS, tree MiB | setup s | data s |" in table
    assert ("**Run 1 failed** (exit 2)" in table) is fail
