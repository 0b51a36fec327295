"""The core installs and runs without the notebook stack.

A fresh virtualenv gets `pip install .` with no extras, then runs build-db, make-raw, ingest and
load for real. pandas, IPython, jupyter and matplotlib are not installed there, so importing any
of them would fail the command; a driver also checks that none was even attempted, and that the
CLI imports nothing from the notebook room.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("pandas", "IPython", "jupyter", "jupyterlab", "matplotlib", "psutil",
             "helpers.notebook", "helpers.memory")

# The installed copy, not this checkout: no PYTHONPATH leaks into the venv's processes.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

DRIVER = """
import json, sys
from helpers.cli import main
codes = [main(args) for args in json.loads(sys.argv[1])]
loaded = sorted({m.split(".")[0] if not m.startswith("helpers") else m for m in sys.modules})
import helpers
print(json.dumps({"codes": codes, "modules": loaded, "package": helpers.__file__}))
"""


@pytest.fixture(scope="module")
def core_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(ROOT)],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    return python


def test_the_core_install_has_none_of_the_notebook_stack(core_python):
    probe = ("import importlib.util as u; print([m for m in ('pandas', 'IPython', 'matplotlib', "
             "'jupyterlab', 'papermill', 'pytest') if u.find_spec(m)])")
    out = subprocess.run([str(core_python), "-c", probe], check=True, capture_output=True,
                         text=True, cwd="/", env=CLEAN_ENV)
    assert out.stdout.strip() == "[]"


def test_build_db_make_raw_ingest_and_load_run_on_the_core(core_python, tmp_path):
    db, raw, out = tmp_path / "chinook.db", tmp_path / "raw", tmp_path / "out"
    commands = [
        ["build-db", "--db", str(db), "--cache", str(ROOT / "db" / "cache")],
        ["make-raw", "--scale", "2", "--out", str(raw), "--db", str(db), "--faults"],
        ["ingest", "--raw", str(raw), "--out", str(out), "--no-progress",
         "--log-dir", str(tmp_path / "logs")],
        ["load", "--processed", str(out), "--db", str(tmp_path / "warehouse.db"),
         "--base", str(db), "--report", str(tmp_path / "reconcile.json")],
    ]
    run = subprocess.run([str(core_python), "-c", DRIVER, json.dumps(commands)],
                         capture_output=True, text=True, cwd=tmp_path, env=CLEAN_ENV)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["codes"] == [0, 0, 0, 0]
    loaded = set(result["modules"])
    assert not {m for m in loaded for f in FORBIDDEN if m == f or m.startswith(f + ".")}
    assert (out / "tracks.json.gz").stat().st_size > 0
    assert "helpers.ingest.engine" in loaded and "helpers.warehouse.load" in loaded
    assert "site-packages" in result["package"]  # the installed copy ran, not this checkout


def test_the_core_imports_where_there_is_no_fcntl():
    # Windows has no fcntl: locks go through filelock, so the core must import without it.
    probe = ("import sys; sys.modules['fcntl'] = None\n"
             "import helpers.cli, helpers.fs, helpers.ingest.engine, helpers.ingest.spark, "
             "helpers.warehouse.load, helpers.warehouse.build, helpers.rawgen.generate\n"
             "print('ok')")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=ROOT)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
