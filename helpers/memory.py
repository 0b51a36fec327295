"""Peak memory of a whole process tree: this process and the workers it starts.

`%memit` measures the process it runs in. The ingestion runs its datasets in worker processes,
so the notebook process only waits; `TreeMemory` samples every process of the tree in a
background thread and keeps each one's peak resident memory (for workers on Linux also the
kernel's own high-water mark, which no sample can miss), plus the largest sum over the tree at
one moment: a sampled figure, so a spike shorter than the interval can escape it.

Forks of this process (memory_profiler's monitor is one) share its pages, so adding their
resident memory would count this process twice; they are listed but not added. Spawned workers
are fresh interpreters whose memory is their own, except for the pages of shared libraries,
which every process's resident size counts again: the tree's sum errs high, never low.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MIB = 1 << 20


@dataclass
class ProcessPeak:
    pid: int
    role: str  # "this process", "worker", "other" or "fork" (not added to the tree's total)
    peak_bytes: int = 0


@dataclass
class TreeMemory:
    """Use as a context manager around the code to measure: `with TreeMemory() as tree: ...`."""

    interval: float = 0.05  # seconds between samples
    processes: dict[int, ProcessPeak] = field(default_factory=dict)
    peak_total_bytes: int = 0  # the largest sum over this process and its workers at one moment
    samples: int = 0

    def __post_init__(self) -> None:
        self._root = psutil.Process()
        self._cmdline = _cmdline(self._root)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)

    def __enter__(self) -> TreeMemory:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Take one sample of every process in the tree."""
        total = 0
        for proc in [self._root, *self._children()]:
            try:
                peak = self.processes.get(proc.pid) or ProcessPeak(proc.pid, self._role(proc))
                rss = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue  # it ended between the listing and the reading
            self.processes[proc.pid] = peak
            # A worker starts inside the measured code, so its lifetime high-water mark is a
            # peak of that code; this process's own one may come from earlier work.
            hwm = _high_water_mark(proc.pid) if peak.role == "worker" else 0
            peak.peak_bytes = max(peak.peak_bytes, rss, hwm)
            if peak.role != "fork":
                total += rss
        self.peak_total_bytes = max(self.peak_total_bytes, total)
        self.samples += 1

    def _children(self) -> list[psutil.Process]:
        try:
            return self._root.children(recursive=True)
        except psutil.Error:
            return []

    def _role(self, proc: psutil.Process) -> str:
        if proc.pid == self._root.pid:
            return "this process"
        cmdline = _cmdline(proc)
        if cmdline == self._cmdline:
            return "fork"
        # multiprocessing's spawned workers run `spawn_main`; anything else (its resource
        # tracker, a subprocess) is still part of the tree and counts in its total.
        return "worker" if any("spawn_main" in arg for arg in cmdline) else "other"

    def peak_of(self, role: str) -> int:
        """The largest peak among the processes of one role (0 when there were none)."""
        return max((p.peak_bytes for p in self.processes.values() if p.role == role), default=0)

    def count(self, role: str) -> int:
        return sum(p.role == role for p in self.processes.values())

    def report(self) -> str:
        """The peaks in MiB, one per line, each figure last on its line so a mask can hide it."""
        lines = [f"this process (the notebook's kernel), peak: {mib(self.peak_of('this process'))}"]
        if self.count("worker"):
            lines.append(f"largest peak of one worker: {mib(self.peak_of('worker'))}")
        else:
            lines.append("no worker processes: the work ran in this process, as %memit saw it")
        lines.append("whole tree (this process and its children at one moment), peak: "
                     f"{mib(self.peak_total_bytes)}")
        return "\n".join(lines)


def mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _high_water_mark(pid: int) -> int:
    """The kernel's record of the process's peak resident memory (VmHWM), where there is one."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
