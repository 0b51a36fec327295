"""Reading one large file in several pieces: where each split's lines begin, and reading them.

A file cut at fixed byte offsets is read by several tasks, each from the first line that starts
in its stretch to the first that starts after it, so every line is read exactly once. Only an
uncompressed file in an ASCII-compatible encoding can be cut like that, and a CSV file only when
no line ends inside quotes (a quoted value holding a line break could straddle a cut):
`scan_split` counts a stretch's lines, so that rejects keep the file's line numbers, and says
whether one of them ends inside quotes. The Spark engine plans and runs the splits; nothing here
needs Spark.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from typing import IO, Any

from helpers.ingest.lines import TRANSCODED, Lines, TooLong, split_lines
from helpers.ingest.location import open_raw, raw_location
from helpers.ingest.readers import Chunk, Limits, read_line_range
from helpers.ingest.records import CLOSED, Dialect, line_state
from helpers.ingest.sniff import Format


def splittable(fmt: Format) -> bool:
    """Files whose line boundaries can be found from any byte offset."""
    return (fmt.kind in ("csv", "jsonl") and fmt.compression is None
            and fmt.encoding not in TRANSCODED)


def scan_split(scan: dict) -> dict:
    """Executor side of `plan_splits`: one split's line boundaries, its line count, and whether
    one of its CSV lines ends inside quotes."""
    fmt, size = Format(**scan["format"]), scan["size"]
    with open_raw(raw_location(scan["path"])) as f:
        begin, end = line_start(f, scan["from"], size), line_start(f, scan["to"], size)
        f.seek(begin)
        blocks = split_lines(ByteRange(f, end - begin), scan["max_bytes"])
        lines, open_quote = count_lines(blocks, fmt.dialect if fmt.kind == "csv" else None)
    return {"file": scan["file"], "begin": begin, "end": end, "lines": lines,
            "open_quote": open_quote}


def line_start(f: IO[bytes], offset: int, size: int) -> int:
    """The first position at or after `offset` where a line starts, `size` if none does.

    A line starts after `\\n`, `\\r\\n` or a lone `\\r`, as `lines.split_lines` reads them. One
    that starts with a BOM is passed over: the splitter drops a BOM at the start of what it
    reads, which is right only at the start of the file."""
    if offset <= 0:
        return 0
    pos = offset - 1  # the byte before a line's start ends the line before it
    while pos < size:
        f.seek(pos)
        block = f.read(1 << 16)
        if not block:
            break
        ends = [i for i in (block.find(b"\n"), block.find(b"\r")) if i >= 0]
        if not ends:
            pos += len(block)
            continue
        at = pos + min(ends)
        f.seek(at)
        start = at + (2 if f.read(2) == b"\r\n" else 1)
        f.seek(start)
        if start >= size or f.read(3) != codecs.BOM_UTF8:
            return min(start, size)
        pos = start
    return size


def count_lines(blocks: Iterator[Lines], dialect: Dialect | None) -> tuple[int, bool]:
    """How many lines `blocks` hold, and, with a CSV dialect, whether one of them, read from
    a record's start, ends inside quotes.

    Only a line with a quote or escape character can. Those lines go through one csv reader
    (13 times as fast as `line_state` line by line), which runs an open line into the next one
    and so returns fewer records than it was given lines."""
    specials = [c.encode() for c in dialect.specials] if dialect else []
    if not specials:
        return sum(map(len, blocks)), False
    seen = {"lines": 0, "given": 0, "last": ""}

    def suspects() -> Iterator[str]:
        for block in blocks:
            seen["lines"] += len(block)
            for line in block:
                if not isinstance(line, TooLong) and any(c in line for c in specials):
                    seen["given"] += 1
                    seen["last"] = line.decode("latin-1")  # the specials are ASCII: one byte
                    yield seen["last"]

    options = {**dialect.reader_options(), "strict": False}  # the parser line_state follows
    try:
        records = sum(1 for _ in csv.reader(suspects(), **options))
    except csv.Error:
        return seen["lines"], True
    # At the end of its input, the reader closes an open value instead of reading on.
    ends_open = line_state(seen["last"], CLOSED, dialect) != CLOSED
    return seen["lines"], records != seen["given"] or ends_open


class ByteRange(io.RawIOBase):
    """The next `size` bytes of an open file, as a stream of their own: one split's lines."""

    def __init__(self, f: io.BufferedReader, size: int) -> None:
        self._file, self._left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        read = self._file.readinto(memoryview(buffer)[:self._left]) or 0
        self._left -= read
        return read


def read_split(path: Any, fmt: Format, chunk_rows: int, limits: Limits,
               span: list[int]) -> Iterator[Chunk]:
    """`read_chunks` for the lines in bytes [begin, end) of a file, the first of them being
    line index `first`: what the whole file's reader yields for them, in other chunks."""
    begin, end, first = span
    with open_raw(path) as f:
        f.seek(begin)
        yield from read_line_range(ByteRange(f, end - begin), fmt, chunk_rows, first, limits)
