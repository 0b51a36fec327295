"""Checkpoints: how much of a dataset's output is durable, and whether it may be resumed.

A checkpoint is written only after the output, the rejects and the fingerprint log are synced,
so it never claims more than the disk holds. It also records the inputs (names, sizes, mtimes)
and the options that shape the output; if either changed, resuming would mix two different runs,
so the run starts over and says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from helpers.fs import write_atomic

VERSION = 2  # 2: positions are physical lines, and files carry more counts


@dataclass
class Checkpoint:
    inputs: list[list[Any]]  # [name, size, mtime_ns] of every file, in processing order
    options: dict[str, Any]
    file_index: int = 0  # the file being read
    record: int = 0  # where to resume in that file: a line index, or a JSON array item index
    part_bytes: int = 0
    rejects_bytes: int = 0
    fingerprint_bytes: int = 0
    duplicates: int = 0
    exact: bool = True
    done: bool = False
    stats: dict[str, Any] = field(default_factory=dict)  # counters and per-file results so far
    columns: list[list[Any]] = field(default_factory=list)  # [name, kind, nullable], drift too
    version: int = VERSION


def input_signature(paths: list[Path]) -> list[list[Any]]:
    signature = []
    for path in paths:
        st = path.stat()
        signature.append([path.name, st.st_size, st.st_mtime_ns])
    return signature


def write(path: Path, checkpoint: Checkpoint) -> None:
    write_atomic(path, orjson.dumps(asdict(checkpoint), option=orjson.OPT_INDENT_2))


def read(path: Path) -> Checkpoint | None:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if data.get("version") != VERSION:
        return None
    return Checkpoint(**data)


def why_not_resumable(saved: Checkpoint, inputs: list[list[Any]], options: dict) -> str | None:
    """None when `saved` may be resumed with these inputs and options; else the reason."""
    if saved.options != options:
        changed = sorted(k for k in options.keys() | saved.options.keys()
                         if options.get(k) != saved.options.get(k))
        return f"options changed since the checkpoint ({', '.join(changed)})"
    if saved.inputs != inputs:
        before = {name: (size, mtime) for name, size, mtime in saved.inputs}
        now = {name: (size, mtime) for name, size, mtime in inputs}
        changed = sorted(n for n in before.keys() | now.keys() if before.get(n) != now.get(n))
        return f"inputs changed since the checkpoint ({', '.join(changed[:5])})"
    return None
