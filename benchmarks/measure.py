"""Run one command in its own process and measure it: wall, CPU and memory of its whole tree.

Peak memory is sampled every `interval` seconds as the sum of the RSS of the process and all its
descendants (our ingestion runs a worker process per core), and the largest single process is the
kernel's own high-water mark, from `wait4`'s rusage (it covers every descendant that was waited
for). CPU time is user + system of the whole tree, from the same rusage. A summed RSS counts the
pages that processes share (the interpreter, libraries) once per process, so it errs high; the
summed PSS (each shared page divided among its sharers) is sampled alongside and does not.

A descendant whose parent exits without waiting for it would go to init, its CPU time uncounted:
pyspark's JVM outlives its Python driver (it stops when the driver's pipe closes). So this
process makes itself the subreaper of the run (Linux `PR_SET_CHILD_SUBREAPER`): such orphans
come to it, and it waits for them after the command exits and adds their rusage.

A child that still shares its parent's address space (`vfork` before `exec`: the JVM starts every
helper process that way) is not counted: its RSS is its parent's, a second time. `kcmp` tells.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from helpers.memory import MIB, TreeMemory, libc

PR_SET_CHILD_SUBREAPER = 36  # from linux/prctl.h
ORPHAN_WAIT_S = 60.0  # how long orphans may take to exit after the command, before SIGKILL


@dataclass
class Measurement:
    wall_s: float
    cpu_s: float  # user + system, the process and its waited-for descendants
    peak_tree_mib: float  # sampled: largest sum of RSS over the process tree
    peak_tree_pss_mib: float  # sampled: largest sum of PSS (shared pages split, not repeated)
    at_peak: list[dict]  # each process's RSS when the RSS sum peaked, largest first
    peak_largest_mib: float  # exact: the kernel's maxrss over the tree's processes
    max_processes: int  # most processes seen alive at once in the tree
    adopted: int  # descendants that outlived the command, waited for and counted afterwards
    after_exit_s: float  # how long they lived after it (not in wall_s)
    returncode: int
    stderr_tail: str

    def to_dict(self) -> dict:
        return asdict(self)


def run_measured(argv: list[str], cwd: Path | None = None, env: dict | None = None,
                 interval: float = 0.025, timeout: float | None = None,
                 on_line: Callable[[float, str], None] | None = None) -> Measurement:
    """Run `argv` to completion and measure it; stderr's tail is kept. stdout is discarded, or
    each of its lines is given to `on_line` with the seconds since the start."""
    with tempfile.TemporaryFile() as err, _Subreaper() as reaper:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stderr=err,
                                stdout=subprocess.PIPE if on_line else subprocess.DEVNULL)
        reader = _LineReader(proc, started, on_line) if on_line else None
        sampler = TreeMemory(interval, pid=proc.pid, pss=True)
        sampler.start()
        deadline = None if timeout is None else started + timeout
        status, usage = _wait(proc, deadline)
        wall = time.perf_counter() - started
        sampler.stop()
        orphans = reaper.reap(exclude=proc.pid)
        after = time.perf_counter() - started - wall
        if reader:
            reader.join()
        err.seek(0)
        tail = err.read()[-2000:].decode("utf-8", "replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    usages = [usage, *orphans]
    return Measurement(
        wall_s=round(wall, 3),
        cpu_s=round(sum(u.ru_utime + u.ru_stime for u in usages), 3),
        peak_tree_mib=round(sampler.peak_total_bytes / MIB, 1),
        peak_tree_pss_mib=round(sampler.peak_pss_bytes / MIB, 1),
        at_peak=sampler.at_peak,
        # ru_maxrss is in KiB
        peak_largest_mib=round(max(u.ru_maxrss for u in usages) * 1024 / MIB, 1),
        max_processes=sampler.max_processes,
        adopted=len(orphans),
        after_exit_s=round(after, 3) if orphans else 0.0,
        returncode=proc.returncode,
        stderr_tail=tail,
    )


def _wait(proc: subprocess.Popen, deadline: float | None):
    """wait4 the child (rusage covers its reaped descendants); kill it past the deadline."""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG if deadline else 0)
        if pid:
            return status, usage
        if time.perf_counter() > deadline:
            proc.kill()
            deadline = None
        else:
            time.sleep(0.05)


class _Subreaper:
    """This process as the subreaper of the runs it starts, for the duration of one run.

    Children it had before the run are left alone; any other child after the command exits was
    adopted from the command's tree, and is waited for (killed after ORPHAN_WAIT_S)."""

    def __enter__(self) -> _Subreaper:
        self.before = {c.pid for c in psutil.Process().children()}
        self.active = _set_subreaper(True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            _set_subreaper(False)

    def reap(self, exclude: int) -> list:
        """Wait for every adopted orphan, and for those adopted as they exit; their rusage."""
        if not self.active:
            return []
        usages, deadline = [], time.perf_counter() + ORPHAN_WAIT_S
        while adopted := [c.pid for c in psutil.Process().children()
                          if c.pid not in self.before and c.pid != exclude]:
            for pid in adopted:
                if time.perf_counter() > deadline:
                    _kill(pid)
                try:
                    done, _, usage = os.wait4(pid, os.WNOHANG)
                except ChildProcessError:
                    self.before.add(pid)  # someone else's to wait for
                    continue
                if done:
                    usages.append(usage)
            time.sleep(0.02)
        return usages


def _set_subreaper(on: bool) -> bool:
    try:
        return libc().prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux: orphans go uncounted, as before
        return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class _LineReader(threading.Thread):
    """Hands each line of the child's stdout, with its time since `started`, to `on_line`."""

    def __init__(self, proc: subprocess.Popen, started: float,
                 on_line: Callable[[float, str], None]) -> None:
        super().__init__(daemon=True)
        self.proc, self.started, self.on_line = proc, started, on_line
        self.start()

    def run(self) -> None:
        for raw in self.proc.stdout:
            self.on_line(time.perf_counter() - self.started, raw.decode("utf-8", "replace"))
        self.proc.stdout.close()
