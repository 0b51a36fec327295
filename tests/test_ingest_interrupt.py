"""Ctrl-C: the whole process group gets SIGINT, as from a terminal. The run stops within a few
seconds, says in one line how to resume, and the same command then finishes with the outputs of
a clean run. Its work runs on threads of the one process, so nothing is left running."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil

from tests.crash_util import (
    RUN_TIMEOUT,
    cli,
    ingest_args,
    inside_a_file,
    kill_group,
    outputs,
    run_to_completion,
    wait_until,
)
from tests.crash_util import clean_run as clean_run  # a fixture
from tests.crash_util import raw as raw  # a fixture


def test_ctrl_c_stops_the_run_at_once_and_the_rerun_resumes(raw, clean_run, tmp_path):
    out = tmp_path / "out"
    args = ingest_args(raw, out, "--jobs", "2")
    proc = subprocess.Popen(cli(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        wait_until(proc, inside_a_file(out), "a checkpoint inside a file")
        workers = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        interrupted = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        stderr = proc.communicate(timeout=RUN_TIMEOUT)[1]
        took = time.monotonic() - interrupted
    finally:
        kill_group(proc)
    assert proc.returncode == 130
    assert stderr.strip().splitlines()[-1].startswith("interrupted:"), stderr[-2000:]
    assert "Traceback" not in stderr and "run the same command again" in stderr
    assert took < 2, f"the run took {took:.1f} s to stop"  # was 7-13 s, workers still going
    assert workers == []  # threads, not worker processes: no process to leave behind
    assert not still_running(workers, grace=5.0)
    run_to_completion(args)
    assert outputs(out) == outputs(clean_run[0])


def still_running(pids: list[int], grace: float) -> list[str]:
    """The command lines of the processes that are still alive after `grace` seconds."""
    deadline = time.monotonic() + grace
    while True:
        alive = []
        for pid in pids:
            try:
                process = psutil.Process(pid)
                if process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(" ".join(process.cmdline())[:120])
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)

