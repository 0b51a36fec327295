"""Peak memory of a whole process tree: one sampler for the notebooks, the tests and the benchmarks.

`%memit` measures the process it runs in, and what is measured often starts others (the CLI
run as a child, Spark's JVM and its Python workers, a benchmark's peer). `TreeMemory` samples a
process and all its descendants in a background thread: each process's peak resident memory (for
workers on Linux also the kernel's own high-water mark, which no sample can miss), the largest
sum of RSS over the tree at one moment, and optionally the largest sum of PSS (shared pages
divided among their sharers). The sums are sampled, so a spike shorter than the interval can
escape them.

Summed RSS counts the pages processes share (the interpreter, libraries) once per process, so it
errs high, never low; PSS does not. A fork of the root that has not exec'd (memory_profiler's
monitor, a JVM's vfork helper) shares its parent's pages: it is listed but not added.

Needs psutil (the `notebooks`, `test` and `bench` extras); the ingestion never imports it.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MIB = 1 << 20
# kcmp's number, from asm/unistd.h; None where unknown (and on Windows, which has no uname).
SYS_KCMP = {"x86_64": 312, "aarch64": 272}.get(os.uname().machine) if hasattr(os, "uname") else None
KCMP_VM = 1


@dataclass
class ProcessPeak:
    pid: int
    role: str  # "this process" (the root), "worker", "other" or "fork" (not added to the total)
    name: str = ""  # what it runs, in short
    peak_bytes: int = 0


@dataclass
class TreeMemory:
    """Sample the tree under `pid` (default: this process) while the `with` body runs.

    `with TreeMemory() as tree: ...` for code in this process; `TreeMemory(pid=child.pid)` with
    `start()` and `stop()` for a command run as a subprocess.
    """

    interval: float = 0.05  # seconds between samples
    pid: int | None = None
    pss: bool = False  # PSS is costlier to read: only when asked
    processes: dict[int, ProcessPeak] = field(default_factory=dict)
    peak_total_bytes: int = 0  # the largest sum of RSS over the tree at one moment
    peak_pss_bytes: int = 0
    at_peak: list[dict] = field(default_factory=list)  # each process's RSS at that moment
    max_processes: int = 0
    samples: int = 0

    def __post_init__(self) -> None:
        self._root = psutil.Process(self.pid)
        self._cmdline = _cmdline(self._root)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)

    def __enter__(self) -> TreeMemory:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Take one sample of every process in the tree."""
        seen = []
        for proc in [self._root, *self._children()]:
            if proc.pid != self._root.pid and _shares_parent_memory(proc):
                continue  # a vfork child before its exec: its parent's memory, once more
            try:
                peak = self.processes.get(proc.pid) or ProcessPeak(proc.pid, self._role(proc))
                peak.name = describe(proc)  # again each time: a launcher script may exec java
                mem = proc.memory_full_info() if self.pss else proc.memory_info()
            except psutil.Error:
                continue  # it ended between the listing and the reading
            self.processes[proc.pid] = peak
            # A worker starts inside the measured code, so its lifetime high-water mark is a
            # peak of that code; the root's own one may come from earlier work.
            hwm = _high_water_mark(proc.pid) if peak.role == "worker" else 0
            peak.peak_bytes = max(peak.peak_bytes, mem.rss, hwm)
            if peak.role != "fork":
                seen.append((peak, mem.rss, getattr(mem, "pss", 0)))
        total = sum(rss for _, rss, _ in seen)
        self.peak_pss_bytes = max(self.peak_pss_bytes, sum(pss for *_, pss in seen))
        self.max_processes = max(self.max_processes, len(seen))
        if total > self.peak_total_bytes:
            self.peak_total_bytes = total
            self.at_peak = [{"pid": p.pid, "role": p.name, "rss_mib": round(rss / MIB, 1)}
                            for p, rss, _ in sorted(seen, key=lambda s: -s[1])]
        self.samples += 1

    def _children(self) -> list[psutil.Process]:
        try:
            return self._root.children(recursive=True)
        except psutil.Error:
            return []

    def _role(self, proc: psutil.Process) -> str:
        if proc.pid == self._root.pid:
            return "this process"
        if self.pid is None and _cmdline(proc) == self._cmdline:
            return "fork"  # a fork of this process (memory_profiler's monitor): shared pages
        return "worker" if describe(proc) == "worker" else "other"

    def peak_of(self, role: str) -> int:
        """The largest peak among the processes of one role (0 when there were none)."""
        return max((p.peak_bytes for p in self.processes.values() if p.role == role), default=0)

    def count(self, role: str) -> int:
        return sum(p.role == role for p in self.processes.values())

    def largest(self) -> ProcessPeak | None:
        counted = [p for p in self.processes.values() if p.role != "fork"]
        return max(counted, key=lambda p: p.peak_bytes, default=None)

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


def describe(proc: psutil.Process) -> str:
    """A short name for a process: "worker" for multiprocessing's, else what it runs."""
    cmd = _cmdline(proc)
    text = " ".join(cmd)
    if "spawn_main" in text or "multiprocessing.spawn" in text:
        return "worker"
    if "resource_tracker" in text:
        return "resource tracker"
    if cmd and Path(cmd[0]).name == "java":
        return "JVM"
    if "-m" in cmd and cmd.index("-m") + 1 < len(cmd):
        return " ".join(cmd[cmd.index("-m") + 1:cmd.index("-m") + 3])
    return cmd[-1][:40] if cmd else "?"


def mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _shares_parent_memory(proc: psutil.Process) -> bool:
    """True for a vfork child that has not exec'd yet: the same memory as its parent."""
    try:
        parent = proc.ppid()
    except psutil.Error:
        return False
    return parent > 1 and same_memory(parent, proc.pid)


def same_memory(pid: int, other: int) -> bool:
    """Whether two tasks share one address space (False where `kcmp` is unknown or refused)."""
    return SYS_KCMP is not None and libc().syscall(SYS_KCMP, pid, other, KCMP_VM, 0, 0) == 0


@functools.cache
def libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _high_water_mark(pid: int) -> int:
    """The kernel's record of the process's peak resident memory (VmHWM), where there is one."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
