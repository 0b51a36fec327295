"""Shared by the crash-safety tests of `python -m helpers ingest` (tests/test_ingest_crash_*.py).

Every run is the real CLI in a subprocess, with small chunks and checkpoints so that a kill lands
inside files. Random kills hit the whole process group (the CLI spawns worker processes); kills at
exact moments come from `python -m helpers.signal_on_call`, which SIGKILLs its own process on the
nth call of a function.
Here are those runners, the readers of checkpoints and outputs that the tests compare, and the
module-scoped fixtures (a raw folder and a clean run of it, a few seconds each) that the test files
import: each file builds its own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from helpers.fs import sha256_of
from helpers.ingest import checkpoint
from helpers.ingest.writer import member_digests
from helpers.rawgen.generate import make_raw

SCALE = 10  # about 8 MB: a second or two per run, with dozens of checkpoints
SMALL_CHUNKS = ["--chunk-rows", "500", "--checkpoint-rows", "1500"]
TRACKS = ["--dataset", "tracks", "--jobs", "1"]
RUN_TIMEOUT = 180


# --- running the CLI ------------------------------------------------------------------------


def ingest_args(raw: Path, out: Path, *extra: str) -> list[str]:
    return ["ingest", "--raw", str(raw), "--out", str(out), "--no-progress",
            "--log-dir", str(out.parent / f"{out.name}-logs"), *SMALL_CHUNKS, *extra]


def cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "helpers", *args]


def run_to_completion(args: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(cli(args), capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def start(args: list[str]) -> subprocess.Popen:
    # A session of its own, so that one killpg reaches the workers too.
    return subprocess.Popen(cli(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        _killpg(proc.pid)
    proc.wait()


def _killpg(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass


def kill_on_call(target: str, nth: int, args: list[str]) -> None:
    """Run the CLI with `args`, SIGKILLed on the nth call of `target` ("module:attribute"): a
    kill at an exact moment, in the one process that writes (--jobs 1)."""
    result = subprocess.run([sys.executable, "-m", "helpers.signal_on_call", "SIGKILL", target,
                             str(nth), *args], capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert result.returncode == -signal.SIGKILL, (
        f"the run was not killed at call {nth} of {target}: {result.stderr[-2000:]}")


def wait_until(proc: subprocess.Popen, condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.002)
    kill_group(proc)
    pytest.fail(f"the run ended before {what}: the kill would not have landed mid-run")


def checkpoints(out: Path) -> dict[str, checkpoint.Checkpoint]:
    found = {p.stem: checkpoint.read(p) for p in sorted((out / ".ingest" / "state").glob("*.json"))}
    return {name: ckpt for name, ckpt in found.items() if ckpt is not None}


def inside_a_file(out: Path, dataset: str | None = None, file_index: int = 0):
    """A checkpoint exists in the middle of a file (of `dataset`, at `file_index` or later)."""
    def condition() -> bool:
        return any(c.record > 0 and c.file_index >= file_index and not c.done
                   for name, c in checkpoints(out).items() if dataset in (None, name))
    return condition


def a_dataset_finished(out: Path):
    return lambda: any(out.glob("*.json.gz"))


# --- comparing outputs ----------------------------------------------------------------------


def outputs(out: Path, datasets: list[str] | None = None) -> dict[str, Any]:
    """Each output's members (the sha256 of each one's lines) and each manifest field, flat so
    that a failure names the field; minus what differs between two good runs: timing (seconds,
    and when each run in the history finished), events (they say whether it resumed) and the
    compressed bytes (ISA-L may encode the same lines another way: helpers/ingest/writer.py),
    which the manifest must describe as they are."""
    manifest = orjson.loads((out / "_manifest.json").read_bytes())
    manifest.pop("_run")
    found = {}
    for name in datasets or sorted(manifest):
        entry = manifest[name]
        output = out / entry["output"]
        assert (entry["bytes"], entry["sha256"]) == (output.stat().st_size, sha256_of([output]))
        entry["history"] = [{k: v for k, v in h.items() if k != "finished"}  # a timestamp
                            for h in entry["history"]]
        found |= {f"manifest {name} {key}": value for key, value in entry.items()
                  if key not in ("seconds", "events", "bytes", "sha256")}
        for path in (output, out / "_rejects" / f"{name}.jsonl.gz"):
            found[path.relative_to(out).as_posix()] = member_digests(path)
    return found


def leftovers(out: Path) -> list[str]:
    """Temporary files and checkpoints a finished run should not leave behind."""
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and (
        p.suffix in (".part", ".tmp") or p.parent.name == "state"))


def events(out: Path, dataset: str) -> list[str]:
    return orjson.loads((out / "_manifest.json").read_bytes())[dataset]["events"]


def gunzip_all(path: Path) -> bytes:
    """All members of a multi-member gzip file."""
    data, text = path.read_bytes(), b""
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        text += d.decompress(data)
        data = d.unused_data
    return text


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw(chinook_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("raw") / "raw_data"
    make_raw(chinook_db, path, SCALE, seed=0, faults=True)
    return path


@pytest.fixture(scope="module")
def clean_run(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """An uninterrupted run of every dataset, and how long it took."""
    out = tmp_path_factory.mktemp("clean") / "out"
    started = time.monotonic()
    run_to_completion(ingest_args(raw, out, "--jobs", "2"))
    return out, time.monotonic() - started


@pytest.fixture
def tracks_raw(raw: Path, tmp_path: Path) -> Path:
    """A private copy of the tracks folder, to change between runs."""
    copy = tmp_path / "raw"
    shutil.copytree(raw / "tracks", copy / "tracks")
    return copy


def clean_outputs_of(raw: Path, out: Path, *extra: str) -> dict[str, Any]:
    run_to_completion(ingest_args(raw, out, *TRACKS, *extra))
    return outputs(out, ["tracks"])
