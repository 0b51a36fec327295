"""Run one command in its own process and measure it: wall, CPU and memory of its whole tree.

Peak memory is sampled every `interval` seconds as the sum of the RSS of the process and all its
descendants (our ingestion runs a worker process per core), and the largest single process is the
kernel's own high-water mark, from `wait4`'s rusage (it covers every descendant that was waited
for). CPU time is user + system of the whole tree, from the same rusage. A summed RSS counts the
pages that processes share (the interpreter, libraries) once per process, so it errs high; the
summed PSS (each shared page divided among its sharers) is sampled alongside and does not.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

MIB = 1 << 20


@dataclass
class Measurement:
    wall_s: float
    cpu_s: float  # user + system, the process and its waited-for descendants
    peak_tree_mib: float  # sampled: largest sum of RSS over the process tree
    peak_tree_pss_mib: float  # sampled: largest sum of PSS (shared pages split, not repeated)
    at_peak: list[dict]  # each process's RSS when the RSS sum peaked, largest first
    peak_largest_mib: float  # exact: the kernel's maxrss over the tree's processes
    max_processes: int  # most processes seen alive at once in the tree
    returncode: int
    stderr_tail: str

    def to_dict(self) -> dict:
        return asdict(self)


class _TreeSampler(threading.Thread):
    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = psutil.Process(pid), interval
        self.peak, self.peak_pss, self.processes = 0, 0, 0
        self.at_peak: list[dict] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)

    def sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        seen = []
        for proc in procs:
            try:
                mem = proc.memory_full_info()
                seen.append((proc.pid, _role(proc), mem.rss, mem.pss))
            except psutil.Error:
                pass  # exited between listing and reading
        total = sum(rss for _, _, rss, _ in seen)
        self.peak_pss = max(self.peak_pss, sum(pss for *_, pss in seen))
        self.processes = max(self.processes, len(seen))
        if total > self.peak:
            self.peak = total
            self.at_peak = [{"pid": pid, "role": role, "rss_mib": round(rss / MIB, 1)}
                            for pid, role, rss, _ in sorted(seen, key=lambda s: -s[2])]


def _role(proc: psutil.Process) -> str:
    """A short name for a process of the tree: its module, or multiprocessing's role."""
    try:
        cmd = proc.cmdline()
    except psutil.Error:
        return "?"
    text = " ".join(cmd)
    if "multiprocessing.spawn" in text:
        return "worker (spawn)"
    if "resource_tracker" in text:
        return "resource tracker"
    if "-m" in cmd and cmd.index("-m") + 1 < len(cmd):
        return " ".join(cmd[cmd.index("-m") + 1:cmd.index("-m") + 3])
    return cmd[-1][:40] if cmd else "?"


def run_measured(argv: list[str], cwd: Path | None = None, env: dict | None = None,
                 interval: float = 0.025, timeout: float | None = None) -> Measurement:
    """Run `argv` to completion and measure it; stdout is discarded, stderr's tail is kept."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        sampler = _TreeSampler(proc.pid, interval)
        sampler.start()
        deadline = None if timeout is None else started + timeout
        status, usage = _wait(proc, deadline)
        wall = time.perf_counter() - started
        sampler.stop.set()
        sampler.join()
        err.seek(0)
        tail = err.read()[-2000:].decode("utf-8", "replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measurement(
        wall_s=round(wall, 3),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 3),
        peak_tree_mib=round(sampler.peak / MIB, 1),
        peak_tree_pss_mib=round(sampler.peak_pss / MIB, 1),
        at_peak=sampler.at_peak,
        peak_largest_mib=round(usage.ru_maxrss * 1024 / MIB, 1),  # ru_maxrss is in KiB
        max_processes=sampler.processes,
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
