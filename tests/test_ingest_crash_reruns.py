"""What a second `python -m helpers ingest` does with the checkpoint of a killed one: inputs
changed since (a file touched, a row appended, a file added) or options changed start over and say
which, --fresh ignores the checkpoint, and a start-over killed before its first checkpoint is not
resumed later from the stale one; and the lock keeps a second run out of a folder that a first is
writing, failing fast and leaving the first intact. The runners and fixtures are in
tests/crash_util.py.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.crash_util import (
    RUN_TIMEOUT,
    TRACKS,
    clean_outputs_of,
    cli,
    events,
    ingest_args,
    kill_group,
    kill_on_call,
    outputs,
    run_to_completion,
    start,
    wait_until,
)
from tests.crash_util import clean_run as clean_run  # a fixture
from tests.crash_util import raw as raw  # a fixture
from tests.crash_util import tracks_raw as tracks_raw  # a fixture

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
    assert (out / ".ingest" / "state" / "tracks.json").exists()
    if start_over == "--fresh":
        again = args + ["--fresh"]
    else:
        (out / "tracks.json.gz.part").unlink()
        again = args
    kill_on_call("helpers.ingest.normalize:Normalizer.chunk", 2, again)  # 3 chunks per checkpoint
    # the old checkpoint went as it started over
    assert not (out / ".ingest" / "state" / "tracks.json").exists()
    run_to_completion(args)
    assert outputs(out, ["tracks"]) == outputs(clean_run[0], ["tracks"])


# --- the lock -------------------------------------------------------------------------------


def test_a_second_run_fails_fast_while_the_lock_is_held(raw, tmp_path):
    out = tmp_path / "out"
    (out / ".ingest").mkdir(parents=True)
    (out / ".ingest" / "lock.owner").write_text("pid 4242")  # what a holder leaves for others
    with open(out / ".ingest" / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = subprocess.run(cli(ingest_args(raw, out)), capture_output=True, text=True,
                                timeout=RUN_TIMEOUT)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {out}: another ingest (pid 4242) holds this folder. "
        "Wait for it to finish, or use another --out"]
    assert [p.relative_to(out).as_posix() for p in sorted(out.rglob("*"))] == [
        ".ingest", ".ingest/lock", ".ingest/lock.owner"]


def test_a_second_run_fails_while_a_first_is_running_and_leaves_it_intact(
        raw, clean_run, tmp_path):
    out = tmp_path / "out"
    args = ingest_args(raw, out, "--jobs", "2")
    first = start(args)
    try:
        owner = out / ".ingest" / "lock.owner"
        wait_until(first, lambda: owner.exists() and owner.read_text() == f"pid {first.pid}",
                   "it took the lock")
        second = subprocess.run(cli(args), capture_output=True, text=True, timeout=RUN_TIMEOUT)
        still_running = first.poll() is None
        assert first.wait(timeout=RUN_TIMEOUT) == 0
    finally:
        kill_group(first)
    assert second.returncode == 1
    assert second.stderr.splitlines() == [
        f"error: {out}: another ingest (pid {first.pid}) holds this folder. "
        "Wait for it to finish, or use another --out"]
    assert still_running, "the second run waited for the first instead of failing fast"
    assert outputs(out) == outputs(clean_run[0])

