"""`--end-to-end`: what a newcomer waits for, `make run` in a fresh clone of HEAD, twice.

The first run is a newcomer's: the clone has no .venv, no database and no data, so `make run`
creates its own virtualenv (pip, with this machine's pip cache), downloads the Chinook sdist,
builds the database, generates the raw data at the Makefile's default scale, ingests, loads and
runs both notebooks. The second, in the same clone, is the repeat cost: installed and built
already. The clone lives under the benchmark's work folder, so the shared `raw_data/`,
`processed_data/` and `reports/` are never touched, and uncommitted edits are not measured.

Each step is timed from make's echo of its first command to the next step's echo.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from benchmarks.measure import run_measured

# make echoes each recipe line before it runs it: `python3 -m venv .venv` starts setup,
# `.venv/bin/python -m helpers make-raw ...` starts data, and so on.
ECHO = re.compile(r"^\S*python[\d.]* -m (venv|helpers [\w-]+)")
STEP_NAMES = {"venv": "setup", "helpers build-db": "db", "helpers make-raw": "data",
              "helpers ingest": "process", "helpers load": "load",
              "helpers run-notebooks": "notebooks"}
# What make (run from `make bench`) or an activated venv would pass down to the clone's make.
INHERITED = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")


def time_make_run(root: Path, clone: Path, runs: int = 2, timeout: float = 3600,
                  say: Callable[[str], None] = print) -> dict:
    """Clone `root` at HEAD into `clone` (replacing it) and time `make run` there `runs` times."""
    shutil.rmtree(clone, ignore_errors=True)
    clone.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "--quiet", str(root), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, check=True,
                            capture_output=True, text=True).stdout.strip()
    found = {"commit": commit, "clone": str(clone), "scale": makefile_scale(clone / "Makefile"),
             "pip_cache_mb": round(folder_bytes(Path.home() / ".cache" / "pip") / 1e6),
             "runs": []}
    env = newcomer_env()
    for run in range(runs):
        lines: list[tuple[float, str]] = []
        m = run_measured(["make", "run"], cwd=clone, env=env, timeout=timeout,
                         on_line=lambda t, line, into=lines: into.append((t, line)))
        found["runs"].append({"run": run + 1, "wall_s": m.wall_s, "cpu_s": m.cpu_s,
                              "peak_tree_mib": m.peak_tree_mib, "returncode": m.returncode,
                              "steps": parse_steps(lines, m.wall_s),
                              "stderr_tail": m.stderr_tail[-600:] if m.returncode else ""})
        say(f"end to end, make run #{run + 1}: {m.wall_s:.0f} s, exit {m.returncode}")
        if m.returncode:
            break
    found["ok"] = all(r["returncode"] == 0 for r in found["runs"])
    return found


def parse_steps(lines: list[tuple[float, str]], wall: float) -> list[dict]:
    """Seconds per make step, from make's echoed commands with the time each line arrived.

    The first step starts at 0 (make's own start-up is in it); a step ends where the next one's
    first command is echoed, the last one at `wall`. Output that is not a step's echo is ignored.
    """
    starts: list[tuple[str, float]] = []
    for at, line in lines:
        found = ECHO.match(line)
        if not found:
            continue
        name = STEP_NAMES.get(found.group(1), found.group(1).removeprefix("helpers "))
        if not starts or starts[-1][0] != name:
            starts.append((name, at if starts else 0.0))
    ends = [at for _, at in starts[1:]] + [wall]
    return [{"step": name, "seconds": round(end - at, 1)}
            for (name, at), end in zip(starts, ends)]


def newcomer_env() -> dict[str, str]:
    """This environment without an activated virtualenv or a parent make's flags."""
    env = {k: v for k, v in os.environ.items() if k not in INHERITED}
    path = [d for d in env.get("PATH", "").split(os.pathsep)
            if d and not (Path(d).parent / "pyvenv.cfg").is_file()]
    env["PATH"] = os.pathsep.join(path)
    return env


def makefile_scale(makefile: Path) -> str | None:
    """The `SCALE ?= N` default that `make run` generates its raw data at."""
    found = re.search(r"^SCALE\s*\?=\s*(\S+)", makefile.read_text(), re.MULTILINE)
    return found.group(1) if found else None


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
