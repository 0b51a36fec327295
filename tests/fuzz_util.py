"""What the property tests share: a memory cap, so a runaway allocation fails its test."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def memory_cap():
    """A runaway allocation fails its test with MemoryError instead of exhausting the machine."""
    if not sys.platform.startswith("linux"):
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    # Address space, not memory: allocators reserve more than they touch, hence the room. Not
    # for code that runs Polars (see test_fuzz_ingest.py).
    room = 4 << 30
    cap = used + room if hard == resource.RLIM_INFINITY else min(used + room, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
