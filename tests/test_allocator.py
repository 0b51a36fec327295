"""The run's threads share one malloc arena (`native.use_threads`): memory a worker frees is
reused by the others, which glibc's arena per thread would keep apart (about 8 MiB at scale 500).
glibc reports its arenas (`malloc_info`): a process whose threads allocate large buffers shows
one heap after the call, several without it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.ingest import native

ROOT = Path(__file__).parent.parent

# Four threads allocate and free buffers of 256 KiB (below glibc's mmap threshold after the
# first frees, so they come from an arena), then glibc lists its arenas on stdout.
THREADS_THEN_ARENAS = """
import ctypes, sys, threading
from helpers.ingest import native
if sys.argv[1] == "shared":
    native.use_threads(2)
def work():
    for _ in range(200):
        kept = [bytes(256 << 10) for _ in range(4)]
        del kept
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(None)
libc.fdopen.restype = ctypes.c_void_p
out = libc.fdopen(1, b"w")
libc.malloc_info(0, ctypes.c_void_p(out))
libc.fflush(ctypes.c_void_p(out))
"""


def heaps(mode: str) -> int:
    ran = subprocess.run([sys.executable, "-c", THREADS_THEN_ARENAS, mode], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True)
    return ran.stdout.count("<heap nr=")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_info")
def test_the_threads_of_a_run_share_one_malloc_arena():
    assert heaps("own") > 1  # what the call changes: glibc's default, an arena per thread
    assert heaps("shared") == 1


ALLOCATOR_AFTER_IMPORT = """
import os
from helpers.ingest import native
native.use_threads(2)
import polars
print(os.environ["_RJEM_MALLOC_CONF"])
"""


@pytest.mark.parametrize("inherited, wins", [
    (None, "ours"),
    # A parent process that imported Polars left its default in the environment: ours still
    # applies (without it a CLI run from such a process held 160-190 MiB instead of 125).
    ("dirty_decay_ms:500,muzzy_decay_ms:1000", "ours"),
    ("dirty_decay_ms:0", "theirs"),  # a user's own setting is kept
])
def test_the_run_sets_up_polars_allocator_unless_the_user_did(inherited, wins):
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    if inherited is not None:
        env["_RJEM_MALLOC_CONF"] = inherited
    ran = subprocess.run([sys.executable, "-c", ALLOCATOR_AFTER_IMPORT], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    expected = native.ALLOCATOR if wins == "ours" else inherited
    assert ran.stdout.strip().endswith(expected), ran.stdout
