"""The benchmark's measurements of processes: memory covers the whole process tree, the CPU of a
child that outlives its parent is counted (as pyspark's JVM does), same_memory tells a thread from
a child process, and the profile summary reads the stacks of subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from benchmarks import profile
from benchmarks.measure import run_measured
from helpers import memory

CHILD = "import time; x = b'x' * (64 << 20); time.sleep(1.0)"


def test_measured_memory_covers_the_whole_process_tree():
    parent = ("import subprocess, sys, time; "
              f"p = subprocess.Popen([sys.executable, '-c', {CHILD!r}]); "
              "x = b'x' * (64 << 20); p.wait()")
    m = run_measured([sys.executable, "-c", parent], interval=0.02)
    assert m.returncode == 0
    assert m.max_processes == 2
    assert m.peak_largest_mib >= 64
    assert m.peak_tree_mib >= 128  # both processes' 64 MiB, summed
    # At the sampled peak the tree's sum exceeds each of its processes. (peak_largest_mib comes
    # from the kernel's high-water marks, not from that sample, so it is no bound on the sum.)
    assert m.peak_tree_mib > max(p["rss_mib"] for p in m.at_peak)


def test_profile_summary_reads_subprocess_stacks():
    collapsed = (
        'process 1:"python -m helpers ingest";main (helpers/cli.py:9);'
        "chunk (helpers/ingest/normalize.py:80);loads (json/__init__.py:3) 3\n"
        'process 2:"python -c from multiprocessing.spawn import spawn_main; spawn_main(8)";'
        "chunk (/x/helpers/ingest/normalize.py:81) 1\n"
        'process 3:"python -c idle; idle" 4\n')
    summary = profile.summarize(collapsed)
    assert summary["samples"] == 4
    assert summary["self_top"][0] == {"function": "loads (__init__.py)", "percent": 75.0}
    inclusive = {f["function"]: f["percent"] for f in summary["helpers_inclusive"]}
    assert inclusive == {"helpers.ingest.normalize.chunk": 100.0, "helpers.cli.main": 75.0}


# --- measuring processes that outlive their parent ----------------------------------------

BURN = "import time\nstart = time.process_time()\nwhile time.process_time() - start < 0.6: pass"


def test_cpu_of_a_child_that_outlives_its_parent_is_counted():
    # As pyspark's JVM does: the parent exits without waiting, the child works on.
    parent = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {BURN!r}])"
    m = run_measured([sys.executable, "-c", parent], interval=0.02)
    assert m.returncode == 0
    assert m.adopted == 1
    assert m.cpu_s >= 0.6
    assert m.after_exit_s > 0.3  # the orphan's time is reported apart from the wall time


def test_same_memory_tells_a_thread_from_a_child_process():
    if memory.SYS_KCMP is None:
        pytest.skip("kcmp's syscall number is not known for this machine")
    ready, done, tid = threading.Event(), threading.Event(), []
    thread = threading.Thread(target=lambda: (tid.append(threading.get_native_id()),
                                              ready.set(), done.wait()))
    thread.start()
    ready.wait()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    try:
        assert memory.same_memory(os.getpid(), tid[0])
        assert not memory.same_memory(os.getpid(), child.pid)
    finally:
        done.set()
        thread.join()
        child.wait()
