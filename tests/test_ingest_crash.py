"""Crash safety of `python -m helpers ingest`: SIGKILL at any moment, then the same command again,
gives the bytes of a run that was never interrupted; changed inputs or options start over and say
why; the lock keeps a second run out; a damaged file costs its tail, not the run; same input, same
bytes.

Every run is the real CLI in a subprocess, with small chunks and checkpoints so that a kill lands
inside files. Random kills hit the whole process group (the CLI spawns worker processes); kills at
exact moments come from a tiny driver that SIGKILLs its own process on the nth call of a function.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
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
import psutil
import pytest

from helpers.ingest import checkpoint
from helpers.rawgen.generate import make_raw

SCALE = 10  # about 8 MB: a second or two per run, with dozens of checkpoints
SMALL_CHUNKS = ["--chunk-rows", "500", "--checkpoint-rows", "1500"]
TRACKS = ["--dataset", "tracks", "--jobs", "1"]
RUN_TIMEOUT = 180
# Kill this long after the first checkpoint inside a file, as a fraction of a clean run's time.
_rng = random.Random(4)
RANDOM_DELAYS = [round(_rng.uniform(0.0, 0.35), 3) for _ in range(3)]

# Runs the CLI (argv after the target and n) and SIGKILLs itself on the nth call of the target,
# "module:attribute.path": a kill at an exact moment, in the one process that writes (--jobs 1).
KILL_ON_CALL = """
import importlib, os, signal, sys
from helpers.cli import main
target, nth, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
module, _, attribute = target.partition(":")
owner = importlib.import_module(module)
*path, name = attribute.split(".")
for part in path:
    owner = getattr(owner, part)
original, calls = getattr(owner, name), [0]
def killer(*a, **kw):
    calls[0] += 1
    if calls[0] == nth:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*a, **kw)
setattr(owner, name, killer)
sys.exit(main(args))
"""


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
    result = subprocess.run([sys.executable, "-c", KILL_ON_CALL, target, str(nth), *args],
                            capture_output=True, text=True, timeout=RUN_TIMEOUT)
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
    found = {p.stem: checkpoint.read(p) for p in sorted((out / "_state").glob("*.json"))}
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
    """sha256 of every output and each manifest field, flat so that a failure names the field;
    minus what differs between two good runs: timing, events (they say whether it resumed) and
    the folder's own path."""
    manifest = orjson.loads((out / "_manifest.json").read_bytes())
    found = {}
    for name in datasets or sorted(manifest):
        entry = manifest[name]
        for key in ("output", "rejects"):
            entry[key] = Path(entry[key]).relative_to(out).as_posix()
        found |= {f"manifest {name} {key}": value for key, value in entry.items()
                  if key not in ("seconds", "events")}
        for path in (out / f"{name}.json.gz", out / "_rejects" / f"{name}.jsonl.gz"):
            found[path.relative_to(out).as_posix()] = hashlib.sha256(
                path.read_bytes()).hexdigest()
    return found


def leftovers(out: Path) -> list[str]:
    """Temporary files and checkpoints a finished run should not leave behind."""
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and (
        p.suffix in (".part", ".tmp") or p.parent.name == "_state"))


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


# --- SIGKILL, then the same command again ---------------------------------------------------


KILL_MOMENTS = [
    pytest.param(None, 0.0, id="while-starting"),
    pytest.param(inside_a_file, 0.0, id="at-the-first-checkpoint-inside-a-file"),
    pytest.param(a_dataset_finished, 0.0, id="once-a-dataset-is-finished"),
    *[pytest.param(inside_a_file, d, id=f"{d}-of-a-run-after-the-first-checkpoint")
      for d in RANDOM_DELAYS],
]


@pytest.mark.parametrize("moment, delay", KILL_MOMENTS)
def test_sigkill_then_rerun_equals_a_clean_run(raw, clean_run, tmp_path, moment, delay):
    reference, seconds = clean_run
    out = tmp_path / "out"
    args = ingest_args(raw, out, "--jobs", "2")
    proc = start(args)
    if moment is None:
        time.sleep(0.05)
    else:
        wait_until(proc, moment(out), "the kill moment")
        time.sleep(delay * seconds)
    assert proc.poll() is None, "the run finished before the kill; shorten the delay"
    kill_group(proc)
    run_to_completion(args)
    assert outputs(out) == outputs(reference)
    assert leftovers(out) == []


def test_two_kills_in_a_row_then_rerun_equals_a_clean_run(raw, clean_run, tmp_path):
    out = tmp_path / "out"
    args = ingest_args(raw, out, "--jobs", "2")
    first = start(args)
    wait_until(first, inside_a_file(out), "a checkpoint inside a file")
    kill_group(first)
    killed_at = {name: (c.file_index, c.record) for name, c in checkpoints(out).items()}
    second = start(args)
    wait_until(second, lambda: any(
        (c.file_index, c.record) != killed_at.get(name) for name, c in checkpoints(out).items()),
        "a checkpoint later than the first kill's")
    kill_group(second)
    run_to_completion(args)
    assert outputs(out) == outputs(clean_run[0])
    assert leftovers(out) == []


LONG_MEMBERS = ["--checkpoint-rows", "10000"]  # 20 chunks a member: some reach the disk
EXACT_MOMENTS = [
    # target, nth call, extra options, whether the .part then holds bytes past the checkpoint
    pytest.param("helpers.ingest.checkpoint:write", 3, [], True,
                 id="before-the-third-checkpoint-is-saved"),
    pytest.param("helpers.ingest.dedupe:Fingerprints.save", 3, [], True,
                 id="outputs-synced-before-the-fingerprints-are-logged"),
    pytest.param("helpers.ingest.writer:MemberWriter.write", 30, LONG_MEMBERS, True,
                 id="in-the-middle-of-a-gzip-member"),
    pytest.param("helpers.ingest.dataset_pass:_Run.finish", 1, [], False,
                 id="after-the-last-checkpoint-before-the-outputs-are-renamed"),
    pytest.param("helpers.ingest.dataset_pass:sha256_of", 1, [], False,
                 id="after-the-outputs-are-renamed-before-the-checkpoint-is-removed"),
]


@pytest.mark.parametrize("target, nth, extra, ahead", EXACT_MOMENTS)
def test_sigkill_at_an_exact_moment_then_rerun_equals_a_clean_run(
        raw, clean_run, tmp_path, target, nth, extra, ahead):
    out = tmp_path / "out"
    args = ingest_args(raw, out, *TRACKS, *extra)
    kill_on_call(target, nth, args)
    if ahead:  # the kill left bytes the checkpoint does not vouch for: resuming must cut them
        part = out / "tracks.json.gz.part"
        assert part.stat().st_size > checkpoints(out)["tracks"].part_bytes
    run_to_completion(args)
    expected = (clean_outputs_of(raw, tmp_path / "clean", *extra) if extra
                else outputs(clean_run[0], ["tracks"]))
    assert outputs(out, ["tracks"]) == expected
    assert leftovers(out) == []


def test_a_rerun_after_a_kill_resumes_from_the_checkpoint(raw, clean_run, tmp_path):
    out = tmp_path / "out"
    args = ingest_args(raw, out, *TRACKS)
    proc = start(args)
    wait_until(proc, inside_a_file(out, "tracks", file_index=2), "a checkpoint in the third file")
    kill_group(proc)
    saved = checkpoints(out)["tracks"]
    run_to_completion(args)
    resumed = f"resuming at file {saved.file_index}, record {saved.record}"
    assert resumed in events(out, "tracks")
    assert not [e for e in events(out, "tracks") if e.startswith("starting over")]
    logs = (out.parent / "out-logs").glob("ingest-*.log")
    assert any(f"tracks: {resumed}" in log.read_text() for log in logs)
    assert outputs(out, ["tracks"]) == outputs(clean_run[0], ["tracks"])


def test_killing_only_the_main_process_leaves_no_worker_running(raw, clean_run, tmp_path):
    """`kill -9 <pid>` (the pid the lock error names) or the OOM killer takes the main process
    alone; its workers must not go on writing into a folder the next run now holds."""
    out = tmp_path / "out"
    args = ingest_args(raw, out, "--jobs", "2")
    proc = start(args)
    try:
        wait_until(proc, inside_a_file(out), "a checkpoint inside a file")
        children = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while (alive := [p.pid for p in children if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive, f"processes {alive} outlived the killed ingest, still writing to {out}"
    finally:
        _killpg(proc.pid)  # the orphans keep the group's id: end them, whatever the outcome
        proc.wait()
    run_to_completion(args)
    assert outputs(out) == outputs(clean_run[0])


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- starting over --------------------------------------------------------------------------


def _touch(folder: Path) -> str:
    path = folder / "tracks_2.csv"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    return path.name


def _append_a_row(folder: Path) -> str:
    path = folder / "tracks_0.csv"
    lines = path.read_bytes().splitlines(keepends=True)
    assert lines[-1].endswith(b"\n")
    with open(path, "ab") as f:
        f.write(lines[1])
    return path.name


def _add_a_file(folder: Path) -> str:
    shutil.copy(folder / "tracks_5.jsonl", folder / "tracks_7.jsonl")
    return "tracks_7.jsonl"


@pytest.mark.parametrize("change", [_touch, _append_a_row, _add_a_file],
                         ids=["touched", "a-row-appended", "a-file-added"])
def test_changed_inputs_start_over_and_say_which(tracks_raw, tmp_path, change):
    out = tmp_path / "out"
    args = ingest_args(tracks_raw, out, *TRACKS)
    kill_on_call("helpers.ingest.checkpoint:write", 4, args)
    name = change(tracks_raw / "tracks")
    run_to_completion(args)
    assert f"starting over: inputs changed since the checkpoint ({name})" in events(out, "tracks")
    assert not [e for e in events(out, "tracks") if e.startswith("resuming")]
    assert outputs(out, ["tracks"]) == clean_outputs_of(tracks_raw, tmp_path / "clean")


@pytest.mark.parametrize("option, value, key", [
    ("--level", "2", "level"),
    ("--checkpoint-rows", "3000", "checkpoint_rows"),
    ("--dedupe", "drop", "dedupe"),
])
def test_changed_options_start_over_and_say_which(tracks_raw, tmp_path, option, value, key):
    out = tmp_path / "out"
    kill_on_call("helpers.ingest.checkpoint:write", 4, ingest_args(tracks_raw, out, *TRACKS))
    run_to_completion(ingest_args(tracks_raw, out, *TRACKS, option, value))
    reason = f"starting over: options changed since the checkpoint ({key})"
    assert reason in events(out, "tracks")
    assert outputs(out, ["tracks"]) == clean_outputs_of(
        tracks_raw, tmp_path / "clean", option, value)


def test_fresh_ignores_a_checkpoint(raw, clean_run, tmp_path):
    out = tmp_path / "out"
    args = ingest_args(raw, out, *TRACKS)
    kill_on_call("helpers.ingest.checkpoint:write", 4, args)
    # Spoil the checkpointed output: a run that resumed would carry these bytes into the result.
    part = out / "tracks.json.gz.part"
    with open(part, "r+b") as f:
        f.write(b"\0" * 64)
    run_to_completion(args + ["--fresh"])
    assert not [e for e in events(out, "tracks") if e.startswith("resuming")]
    assert outputs(out, ["tracks"]) == outputs(clean_run[0], ["tracks"])


@pytest.mark.parametrize("start_over", ["--fresh", "the .part deleted"])
def test_a_start_over_killed_before_its_first_checkpoint_is_not_resumed_later(
        raw, clean_run, tmp_path, start_over):
    """The stale checkpoint of the run before must not be applied to the new, shorter .part."""
    out = tmp_path / "out"
    args = ingest_args(raw, out, *TRACKS)
    kill_on_call("helpers.ingest.checkpoint:write", 4, args)
    assert (out / "_state" / "tracks.json").exists()
    if start_over == "--fresh":
        again = args + ["--fresh"]
    else:
        (out / "tracks.json.gz.part").unlink()
        again = args
    kill_on_call("helpers.ingest.normalize:Normalizer.chunk", 2, again)  # 3 chunks per checkpoint
    assert not (out / "_state" / "tracks.json").exists()  # the old one went as it started over
    run_to_completion(args)
    assert outputs(out, ["tracks"]) == outputs(clean_run[0], ["tracks"])


# --- the lock -------------------------------------------------------------------------------


def test_a_second_run_fails_fast_while_the_lock_is_held(raw, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".ingest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("pid 4242")
        lock.flush()
        result = subprocess.run(cli(ingest_args(raw, out)), capture_output=True, text=True,
                                timeout=RUN_TIMEOUT)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {out}: another ingest (pid 4242) is writing to this folder. "
        "Wait for it to finish, or use another --out"]
    assert sorted(p.name for p in out.iterdir()) == [".ingest.lock"]


def test_a_second_run_fails_while_a_first_is_running_and_leaves_it_intact(
        raw, clean_run, tmp_path):
    out = tmp_path / "out"
    args = ingest_args(raw, out, "--jobs", "2")
    first = start(args)
    try:
        wait_until(first, lambda: (out / ".ingest.lock").exists() and (
            out / ".ingest.lock").read_text() == f"pid {first.pid}", "it took the lock")
        second = subprocess.run(cli(args), capture_output=True, text=True, timeout=RUN_TIMEOUT)
        still_running = first.poll() is None
        assert first.wait(timeout=RUN_TIMEOUT) == 0
    finally:
        kill_group(first)
    assert second.returncode == 1
    assert second.stderr.splitlines() == [
        f"error: {out}: another ingest (pid {first.pid}) is writing to this folder. "
        "Wait for it to finish, or use another --out"]
    assert still_running, "the second run waited for the first instead of failing fast"
    assert outputs(out) == outputs(clean_run[0])


# --- a damaged input ------------------------------------------------------------------------

CUT_FILE = "playlist_track_2.csv.gz"


@pytest.fixture
def cut_gzip(raw: Path, tmp_path: Path) -> tuple[Path, int]:
    """playlist_track with one .csv.gz cut in half; and the rows that are whole before the cut."""
    copy = tmp_path / "raw"
    shutil.copytree(raw / "playlist_track", copy / "playlist_track")
    path = copy / "playlist_track" / CUT_FILE
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    readable = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[:len(data) // 2])
    return copy, readable.count(b"\n") - 1  # whole lines, less the header


def _file_entry(out: Path, name: str) -> tuple[int, dict]:
    """Where the file's rows start in the output, and its manifest entry."""
    files = orjson.loads((out / "_manifest.json").read_bytes())["playlist_track"]["files"]
    index = [f["name"] for f in files].index(name)
    return sum(f["rows"] for f in files[:index]), files[index]


def test_a_cut_gzip_is_one_reject_and_the_run_goes_on(cut_gzip, clean_run, tmp_path):
    raw, whole_rows = cut_gzip
    out = tmp_path / "out"
    run_to_completion(ingest_args(raw, out, "--dataset", "playlist_track"))
    rejects = [orjson.loads(line) for line in gunzip_all(
        out / "_rejects" / "playlist_track.jsonl.gz").splitlines()]
    cut = [r for r in rejects if r["file"] == CUT_FILE]
    assert len(cut) == 1
    assert "could not be read" in cut[0]["reason"]
    assert "ends before its end-of-stream marker" in cut[0]["reason"]
    assert cut[0]["line"] == whole_rows + 2  # the header, the whole rows, then the cut line
    _, entry = _file_entry(out, CUT_FILE)
    assert entry["rejected"] == 1
    manifest = orjson.loads((out / "_manifest.json").read_bytes())["playlist_track"]
    reference = orjson.loads((clean_run[0] / "_manifest.json").read_bytes())["playlist_track"]
    assert [f for f in manifest["files"] if f["name"] != CUT_FILE] == [
        f for f in reference["files"] if f["name"] != CUT_FILE]
    assert manifest["rows_read"] == manifest["rows_written"] + manifest["rows_rejected"]
    assert leftovers(out) == []


def test_a_cut_gzip_keeps_every_whole_row_before_the_cut(cut_gzip, clean_run, tmp_path):
    raw, whole_rows = cut_gzip
    out = tmp_path / "out"
    run_to_completion(ingest_args(raw, out, "--dataset", "playlist_track"))
    start_at, entry = _file_entry(out, CUT_FILE)
    assert entry["rows"] == whole_rows
    # The same rows, as the intact file gives them.
    rows = slice(start_at, start_at + whole_rows)
    kept = gunzip_all(out / "playlist_track.json.gz").splitlines()[rows]
    intact = gunzip_all(clean_run[0] / "playlist_track.json.gz").splitlines()[rows]
    assert kept == intact


# --- determinism ----------------------------------------------------------------------------


@pytest.mark.parametrize("jobs", ["2", "1"])
def test_clean_runs_give_identical_bytes(raw, clean_run, tmp_path, jobs):
    out = tmp_path / "out"
    run_to_completion(ingest_args(raw, out, "--jobs", jobs))
    assert outputs(out) == outputs(clean_run[0])


def test_no_gzip_member_carries_a_timestamp(clean_run):
    for path in sorted(clean_run[0].rglob("*.gz")):
        data, start, members = path.read_bytes(), 0, 0
        while start < len(data):
            assert data[start:start + 2] == b"\x1f\x8b", f"{path}: no gzip member at {start}"
            assert data[start + 4:start + 8] == b"\0\0\0\0", f"{path}: mtime at {start}"
            rest = zlib.decompressobj(16 + zlib.MAX_WBITS)
            rest.decompress(data[start:])
            start, members = len(data) - len(rest.unused_data), members + 1
        assert members >= 1
