"""Crash safety of `python -m helpers ingest`: SIGKILL at any moment (while starting, inside a
file, between datasets, at exact moments such as mid gzip member or between the rename and the
checkpoint's removal, twice in a row, or the main process alone), then the same command again,
gives the output of a run that was never interrupted (the same members holding the same lines),
resuming from the checkpoint; and clean runs give the same output every time. The runners and
fixtures are in tests/crash_util.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import zlib

import psutil
import pytest

from tests.crash_util import (
    TRACKS,
    _killpg,
    a_dataset_finished,
    checkpoints,
    clean_outputs_of,
    events,
    ingest_args,
    inside_a_file,
    kill_group,
    kill_on_call,
    leftovers,
    outputs,
    run_to_completion,
    start,
    wait_until,
)
from tests.crash_util import clean_run as clean_run  # a fixture
from tests.crash_util import raw as raw  # a fixture

# Kill this long after the first checkpoint inside a file, as a fraction of a clean run's time.
_rng = random.Random(4)
RANDOM_DELAYS = [round(_rng.uniform(0.0, 0.35), 3) for _ in range(3)]

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


EXACT_MOMENTS = [
    # target, nth call, extra options, whether the .part then holds bytes past the checkpoint
    pytest.param("helpers.ingest.checkpoint:write", 3, [], True,
                 id="before-the-third-checkpoint-is-saved"),
    pytest.param("helpers.ingest.dedupe:Fingerprints.save", 3, [], True,
                 id="outputs-synced-before-the-fingerprints-are-logged"),
    # Dropping, the lines kept depend on the fingerprints restored: those logged at the
    # checkpoint, and (with room for one) the set found full, which takes no new one again.
    pytest.param("helpers.ingest.dedupe:Fingerprints.save", 3, ["--dedupe", "drop"], True,
                 id="dropping-fingerprints-logged-after-the-outputs"),
    pytest.param("helpers.ingest.dedupe:Fingerprints.save", 3,
                 ["--dedupe", "drop", "--dedupe-budget-mb", "0"], True,
                 id="dropping-past-the-budget-fingerprints-logged-after-the-outputs"),
    # Each block is written as a whole gzip member: a kill as the third checkpoint starts
    # leaves that member on disk, past what the last checkpoint vouches for.
    pytest.param("helpers.ingest.writer:MemberWriter.end_member", 5, [], True,
                 id="a-member-written-before-its-checkpoint"),
    pytest.param("helpers.ingest.dataset_pass:_Run.finish", 1, [], False,
                 id="after-the-last-checkpoint-before-the-outputs-are-renamed"),
    pytest.param("helpers.ingest.dataset_pass:replace_durably", 3, [], False,
                 id="after-the-outputs-are-renamed-before-the-fingerprints-are-kept"),
    pytest.param("helpers.ingest.dataset_pass:sha256_of", 1, [], False,
                 id="after-the-checkpoint-is-kept-before-the-manifest-entry"),
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


def test_a_kill_inside_a_json_array_resumes_to_the_same_members(tmp_path):
    """Resumed inside a JSON array, the run cuts the array's blocks from its start again and
    drops those before the checkpoint: the same members as a run never interrupted (the
    row-by-row reader alone cut them by `--chunk-rows` instead)."""
    folder = tmp_path / "raw" / "track_facts"
    folder.mkdir(parents=True)
    items = [{"TrackId": i, "Milliseconds": 1000 + i, "Bytes": 2 * i} for i in range(1, 5001)]
    (folder / "facts.json").write_text(json.dumps(items, indent=2))
    args = lambda out: ingest_args(tmp_path / "raw", out, "--jobs", "1")  # noqa: E731
    run_to_completion(args(tmp_path / "clean"))
    out = tmp_path / "out"
    kill_on_call("helpers.ingest.dataset_pass:_Run._checkpoint", 2, args(out))
    assert 0 < checkpoints(out)["track_facts"].record < len(items)  # inside the array
    run_to_completion(args(out))
    assert outputs(out) == outputs(tmp_path / "clean")
    assert len(outputs(out)["track_facts.json.gz"]) > 3


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
