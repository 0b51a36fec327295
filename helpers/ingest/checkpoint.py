"""Checkpoints: how much of a dataset's output is durable, and whether it may be resumed.

A checkpoint is written only after the output, the rejects and the fingerprint log are synced,
so it never claims more than the disk holds. It also records the inputs (names, sizes, mtimes,
and a hash of each file's head and tail) and the options that shape the output; if either
changed, resuming would mix two different runs, so the run starts over and says why.

When a dataset finishes, its last checkpoint is kept (as `done`): it describes the finished
output exactly, so a later run that finds only new files can append them to it (an `append`
checkpoint) instead of reading everything again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from xxhash import xxh3_64

from helpers.fs import write_atomic
from helpers.ingest.location import open_raw

VERSION = 3  # 3: inputs carry a head-and-tail hash; append checkpoints
EDGE_BYTES = 64 << 10  # how much of each end of a file the signature hashes


@dataclass
class Checkpoint:
    inputs: list[list[Any]]  # [name, size, mtime_ns, edge hash] of every file, in processing order
    options: dict[str, Any]
    file_index: int = 0  # the file being read
    record: int = 0  # where to resume in that file: a line index, or a JSON array item index
    # Where in that file the row-by-row reader took over from the blocks (`FileSource.rows_from`):
    # a resume past it reads on row by row, as the run it resumes did.
    rows_from: int | None = None
    part_bytes: int = 0
    rejects_bytes: int = 0
    fingerprint_bytes: int = 0
    duplicates: int = 0
    exact: bool = True
    done: bool = False
    stats: dict[str, Any] = field(default_factory=dict)  # counters and per-file results so far
    columns: list[list[Any]] = field(default_factory=list)  # [name, kind, nullable], drift too
    append: bool = False  # this run appends new files to a finished output
    version: int = VERSION


def input_signature(paths: list[Path]) -> list[list[Any]]:
    """Each file's name, size, mtime and a hash of its first and last 64 KiB: enough to notice a
    file rewritten in place, even with its size and mtime restored, at two small reads a file."""
    signature = []
    for path in paths:
        st = path.stat()
        signature.append([path.name, st.st_size, st.st_mtime_ns, edge_hash(path, st.st_size)])
    return signature


def edge_hash(path: Path, size: int) -> str:
    digest = xxh3_64()
    with open_raw(path) as f:
        digest.update(f.read(EDGE_BYTES))
        if size > EDGE_BYTES:
            f.seek(max(EDGE_BYTES, size - EDGE_BYTES))
            digest.update(f.read(EDGE_BYTES))
    return digest.hexdigest()


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


def _changed(before: dict, now: dict) -> list[str]:
    """The keys whose values differ (or that only one side has), sorted."""
    return sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))


def why_not_resumable(saved: Checkpoint, inputs: list[list[Any]], options: dict) -> str | None:
    """None when `saved` may be resumed with these inputs and options; else the reason."""
    if saved.options != options:
        changed = _changed(saved.options, options)
        return f"options changed since the checkpoint ({', '.join(changed)})"
    if saved.inputs != inputs:
        changed = _changed({name: rest for name, *rest in saved.inputs},
                           {name: rest for name, *rest in inputs})
        return f"inputs changed since the checkpoint ({', '.join(changed[:5])})"
    return None


def why_not_appendable(done: Checkpoint, inputs: list[list[Any]], options: dict) -> str | None:
    """None when the files `done` read are all still there, unchanged, first in `inputs` and
    under the same options, so that only the files after them need reading; else the reason."""
    if done.options != options:
        return f"options changed since the last run ({', '.join(_changed(done.options, options))})"
    now = {name: rest for name, *rest in inputs}
    gone = [name for name, *_ in done.inputs if name not in now]
    if gone:
        return f"{', '.join(gone[:5])} disappeared since it was ingested"
    changed = [name for name, *rest in done.inputs if now[name] != rest]
    if changed:
        return f"{', '.join(changed[:5])} changed since it was ingested"
    return None
