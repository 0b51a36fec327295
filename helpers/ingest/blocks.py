r"""A raw file as units of work in file order: blocks of whole lines in bytes, for the native path,
and the row-by-row reader's chunks for whatever the native path cannot take.

`FileSource.units()` reads; it runs in the one thread that writes, and stays cheap (reads, counts
of line endings). A `Block` holds lines [first, first + n) of the file exactly as
`lines.split_lines` counts them: that holds while no lone `\r` ends a line and no line is over the
limit, which the source checks as it reads; from the first block where either happens, the rest of
the file comes from `split_lines` itself (`Batch`es). A block never runs past a multiple of the
block size (itself a multiple of `chunk_rows` and a divisor of the checkpoint interval, so
checkpoints fall on the same lines as with the row-by-row reader alone), holds about
`BLOCK_BYTES` at most, and a CSV file's header lines make a block of their own. Where a block
ends depends on the content from its start only, so a resumed run cuts the same blocks.

A JSON array of objects is cut into `ArrayBlock`s between items in the same way (a resumed run
cuts from the array's start again and drops the blocks before its checkpoint); an array the
cuts cannot follow (not of objects, an item over the limit, `}, {` inside a string) goes to the
row-by-row reader from the first item they could not take.

`FileSource.chunks(unit)` turns any unit into the row-by-row reader's chunks, in order, through
the same CSV assembler for the whole file: what the normalizer reads when the native path did not
vouch for a block.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from helpers.ingest.lines import (
    FALLBACK_ERRORS,
    Lines,
    decode_block,
    mark_too_long,
    open_binary,
    split_lines,
)
from helpers.ingest.native import ITEM_BOUNDARY
from helpers.ingest.readers import (
    READ_ERRORS,
    Chunk,
    CsvFeed,
    Damage,
    Limits,
    _array_items,
    _jsonl_chunk,
    _line_batches,
    describe_damage,
    read_chunks,
)
from helpers.ingest.sniff import Format

READ_BYTES = 1 << 20
NATIVE_LINES = 20_000  # lines per block at most: Polars' cost per call is paid per block
BLOCK_BYTES = 1 << 19  # and about this many bytes, to bound the memory of blocks in flight
JSON_SPACE = b" \t\r\n"
LONE_CR = re.compile(rb"\r[^\n]")  # a \r ending the buffer waits for what follows it


@dataclass
class Block:
    first: int  # index of the block's first line in the file, from 0
    data: bytes  # exactly lines [first, first + n), each with its ending
    n: int


@dataclass
class ArrayBlock(Block):
    """Items [first, first + n) of a JSON array of objects: `data` runs from the first item's
    `{` to the last one's `}`, cut where `}`, a comma and `{` meet (with JSON's whitespace
    between), which is between two items unless a string holds that text; the native path and
    the fallback both find out when it does."""

    line: int = 1  # the physical line where the first item starts


@dataclass
class Batch:
    """Lines from `split_lines`, where the source stopped making blocks."""

    first: int
    lines: Lines
    fallbacks: int


@dataclass
class Stop:
    """Reading stopped at damage; every complete line before it was handed over already."""

    damage: Damage


def block_lines(chunk_rows: int, checkpoint_chunks: int) -> int:
    """Lines per block: `chunk_rows` times the largest divisor of `checkpoint_chunks` that keeps
    a block within NATIVE_LINES (so a checkpoint always falls between blocks)."""
    best = 1
    for k in range(1, checkpoint_chunks + 1):
        if checkpoint_chunks % k == 0 and chunk_rows * k <= NATIVE_LINES:
            best = k
    return chunk_rows * best


class FileSource:
    """One file's units and, for any of them, the row-by-row chunks; see the module's doc."""

    def __init__(self, path: Path, fmt: Format, chunk_rows: int, block: int, skip: int,
                 limits: Limits, rows_from: int | None = None) -> None:
        self.path, self.fmt, self.chunk_rows, self.block = path, fmt, chunk_rows, block
        self.skip, self.limits = skip, limits
        self.feed = CsvFeed(fmt, limits, skip) if fmt.kind == "csv" else None
        self.end = skip  # the line after the last one handed over
        self.damage: Damage | None = None
        self.exhausted = False  # the row-by-row reader takes the rest of the file over
        self.rest_from = 0
        # The line or item from which the row-by-row reader reads this file (a line over the
        # limit, a JSON array its blocks miscount), once found, or as a run before found it: the
        # lines before `skip` are not looked at again, so a resume past it must be told.
        self.rows_from = rows_from
        self.first_record = fmt.data_line if fmt.kind == "csv" else 0
        self._line_bytes = 0.0  # the average line length of the last block full of lines

    @property
    def lines_based(self) -> bool:
        return self.fmt.kind in ("csv", "jsonl")

    @property
    def clean(self) -> bool:
        """No record is open across the next unit's start (a quoted value with line breaks)."""
        return self.feed is None or self.feed.clean

    def units(self) -> Iterator[Block | Batch | Chunk | Stop]:
        if self.fmt.kind == "json_array":
            yield from self._array_units()
            return
        if not self.lines_based:  # JSON streams: the row-by-row reader's chunks
            try:
                yield from read_chunks(self.path, self.fmt, self.chunk_rows, self.skip,
                                       self.limits)
            except Exception as exc:  # noqa: BLE001 - no file's content may stop the run
                yield Stop(describe_damage(exc))
            return
        switch = self.skip
        try:
            if not self._resumed_by_rows():
                with open_binary(self.path, self.fmt.compression, self.fmt.encoding) as f:
                    switch = yield from self._blocks(f)
            if switch is not None:
                self._by_rows_from(switch)
                with open_binary(self.path, self.fmt.compression, self.fmt.encoding) as f:
                    for first, lines, fallbacks in _line_batches(
                            f, switch, self.chunk_rows, self.limits.max_record_bytes,
                            text=self.fmt.kind == "csv"):
                        self.end = first + len(lines)
                        yield Batch(first, lines, fallbacks)
        except READ_ERRORS as exc:
            yield Stop(describe_damage(exc, self.end))
        except Exception as exc:  # noqa: BLE001 - no file's content may stop the run
            yield Stop(describe_damage(exc))

    def _blocks(self, f: Any) -> Iterator[Block]:
        """Blocks from the file's start (skipping `skip` lines); returns the line index from which
        `split_lines` must take over, or None at the end of the file.

        `buf[at:]` is what is not handed over yet; it is copied only when more is read. Each
        block looks at most BLOCK_BYTES past its start (and one search beyond), never at the
        whole buffer: this thread reads for all the workers, so it counts each byte once."""
        read = getattr(f, "read1", f.read)
        buf, at, index, started = b"", 0, 0, False
        while True:
            try:
                data = read(READ_BYTES)
            except READ_ERRORS:
                if index >= self.skip:  # the complete lines before the damage are records
                    yield from self._complete_blocks(buf[at:buf.rfind(b"\n") + 1], index)
                raise
            if not started:
                data, started = data.removeprefix(codecs.BOM_UTF8), True
            eof = not data
            buf, at = buf[at:], 0
            if not eof:
                checked = max(len(buf) - 1, 0)  # a \r that ended the buffer may be half of \r\n
                buf += data
                if _lone_cr(buf, checked, eof):
                    return max(index, self.skip)
            elif buf.endswith(b"\r"):
                return max(index, self.skip)
            if index < self.skip:  # resuming: drop the lines read before
                complete = buf.count(b"\n")
                drop = min(complete, self.skip - index)
                if drop:
                    at, index = _nth_newline(buf, drop, complete) + 1, index + drop
                if index < self.skip:
                    if eof:
                        return None
                    if len(buf) > self.limits.max_record_bytes:
                        return self.skip
                    continue
            while (cut := self._block_end(buf, at, index, eof)) is not None:
                n, end = cut
                if _long_line(buf, at, end, self.limits.max_record_bytes):
                    return index  # split_lines makes it a marker without holding it
                yield self._block(index, buf[at:end], n)
                at, index = end, index + n
            if eof:
                if len(buf) > at:  # a last line with no line ending
                    if len(buf) - at > self.limits.max_record_bytes:
                        return index
                    yield self._block(index, buf[at:], 1)
                return None
            if len(buf) - (buf.rfind(b"\n") + 1) > self.limits.max_record_bytes:
                return index  # a line over the limit is under way: split_lines skips it

    def _block_end(self, buf: bytes, at: int, index: int, eof: bool) -> tuple[int, int] | None:
        """The next block of `buf[at:]` (it starts at line `index`) as (lines, end offset), or
        None until more is read: as many lines as end within BLOCK_BYTES of its start (at
        least one), up to the block boundary. Fixed by the content from the block's start, so a
        resumed run cuts the same blocks.

        A file of short lines fills its blocks' line counts long before their bytes: the lines
        are then counted only as far as the last such block's line length says the block ends,
        not over all BLOCK_BYTES (this thread holds the GIL while it counts)."""
        window = at + BLOCK_BYTES
        room = self._room(index)
        if self._line_bytes:
            near = at + int(room * self._line_bytes * 1.05) + 1
            if near < window and (within := buf.count(b"\n", at, near)) >= room:
                return self._full(buf, room, within, at, near)
        within = buf.count(b"\n", at, window)
        if within >= room:
            return self._full(buf, room, within, at, window)
        if within:
            if eof or buf.find(b"\n", window) >= 0:
                return within, buf.rfind(b"\n", at, window) + 1
            return None
        beyond = buf.find(b"\n", window)  # a line longer than BLOCK_BYTES: a block of its own
        return (1, beyond + 1) if beyond >= 0 else None

    def _full(self, buf: bytes, room: int, within: int, at: int, end: int) -> tuple[int, int]:
        """A block of `room` lines, the `within` lines of buf[at:end] being enough."""
        cut = _nth_newline(buf, room, within, at, end) + 1
        self._line_bytes = (cut - at) / room
        return room, cut

    def _room(self, index: int) -> int:
        """How many lines the block starting at line `index` takes: to the next multiple of the
        block size, or for a CSV file to its first record, so that the header and whatever
        precedes it make a block of their own and the blocks after can all be native."""
        room = self.block - index % self.block
        if index < self.first_record:
            room = min(room, self.first_record - index)
        return room

    def _block(self, first: int, data: bytes, n: int) -> Block:
        self.end = first + n
        return Block(first, data, n)

    def _complete_blocks(self, buf: bytes, index: int) -> Iterator[Block]:
        """Blocks of `buf`'s complete lines (reading stopped at damage), cut as all others are."""
        at = 0
        while (cut := self._block_end(buf, at, index, eof=True)) is not None:
            n, end = cut
            yield self._block(index, buf[at:end], n)
            at, index = end, index + n

    def _array_units(self) -> Iterator[Block | Chunk | Stop]:
        """ArrayBlocks, and the row-by-row reader's chunks from the first item they cannot be
        cut at (an array that is not of objects, an item over the limit, a malformed end).

        A resumed run cuts from the array's start too and drops the blocks before `skip`: its
        blocks, and so its gzip members, are then those of a run never interrupted (a
        checkpoint falls between blocks). Cutting is a scan for item boundaries, far cheaper
        than reading the items."""
        if self._resumed_by_rows():
            yield from self._rest_by_rows(self.skip)
            return
        try:
            with open_binary(self.path, self.fmt.compression, self.fmt.encoding) as f:
                switch = yield from self._from_skip(self._array_blocks(f))
        except Exception as exc:  # noqa: BLE001 - no file's content may stop the run
            yield Stop(describe_damage(exc, self.end))
            return
        if switch is not None:
            self._by_rows_from(max(switch, self.skip))
            yield from self._rest_by_rows(max(switch, self.skip))

    def _resumed_by_rows(self) -> bool:
        """Whether the run this one resumes read on row by row from before `skip`."""
        return self.rows_from is not None and self.skip >= self.rows_from

    def _by_rows_from(self, index: int) -> None:
        if self.rows_from is None:
            self.rows_from = index

    def _from_skip(self, units: Iterator[Any]) -> Iterator[Any]:
        """`units` less those wholly before item `skip`; returns what `units` returns, or `skip`
        if a block straddles it (the row-by-row reader then starts there)."""
        while True:
            try:
                unit = next(units)
            except StopIteration as end:
                return end.value
            if isinstance(unit, ArrayBlock) and unit.first < self.skip:
                if unit.first + unit.n <= self.skip:
                    continue
                units.close()
                return self.skip
            if isinstance(unit, Chunk) and unit.resume_at <= self.skip:
                continue
            yield unit

    def _array_blocks(self, f: Any) -> Iterator[ArrayBlock]:
        read = getattr(f, "read1", f.read)
        try:
            buf = read(READ_BYTES).removeprefix(codecs.BOM_UTF8)
        except READ_ERRORS:
            return 0
        start = len(buf) - len(buf.lstrip(JSON_SPACE))
        if buf[start:start + 1] != b"[":
            return 0
        item = start + 1 + len(buf[start + 1:]) - len(buf[start + 1:].lstrip(JSON_SPACE))
        if buf[item:item + 1] != b"{":
            return 0
        line = 1 + buf.count(b"\n", 0, item)
        index, eof = 0, False
        while True:
            window = item + BLOCK_BYTES
            if eof or len(buf) >= window:
                # The items whose separator ends within BLOCK_BYTES of the block's start (at
                # least one), up to the block boundary: fixed by the content, as for lines.
                need = self.block - index % self.block
                take, last = _separators(buf, item, window, need)
                if not take and (not eof or len(buf) > window):
                    found = ITEM_BOUNDARY.search(buf, item)
                    last, take = (found.start(), found.end()) if found else None, 1
                if last is not None:
                    yield self._array_block(index, buf[item:last[0] + 1], take, line)
                    line += buf.count(b"\n", item, last[1] - 1)
                    index, item = index + take, last[1] - 1
                    continue
                if eof:
                    tail = buf[item:].rstrip(JSON_SPACE)
                    body = tail[:-1].rstrip(JSON_SPACE)
                    if not tail.endswith(b"]") or not body.endswith(b"}"):
                        return index
                    yield self._array_block(index, body, 1, line)
                    return None
            if len(buf) - item > self.limits.max_record_bytes + BLOCK_BYTES \
                    and ITEM_BOUNDARY.search(buf, item) is None:
                return index  # an item over the limit: the row-by-row reader rejects it
            try:
                more = read(READ_BYTES)
            except READ_ERRORS as exc:
                yield from self._items_before_damage(buf[item:], index, line, exc)
                return None
            eof = not more
            buf = buf[item:] + more
            item = 0

    def _items_before_damage(self, rest: bytes, index: int, line: int,
                             exc: Exception) -> Iterator[Chunk | Stop]:
        """Reading stopped inside the array: the items that `rest` (from an item's start) holds
        whole, read by the row-by-row reader, then the damage where the cut item starts."""
        text = "[" + rest.decode("utf-8", FALLBACK_ERRORS)
        items = []
        for at, item in _array_items(io.StringIO(text), self.limits.max_record_bytes,
                                     guess=False):
            if getattr(item, "reason", "").endswith("cannot be read"):
                break
            items.append((line + at - 1, item))
        for start, stop in _aligned(index, len(items), self.chunk_rows):
            part = items[start:stop]
            end = index + stop
            yield Chunk([x for _, x in part], part[0][0], [at for at, _ in part], end, end)
        self.end = index + len(items)
        last = items[-1][0] if items else line
        yield Stop(describe_damage(exc, last - 1))

    def _array_block(self, first: int, data: bytes, n: int, line: int) -> ArrayBlock:
        self.end = first + n
        return ArrayBlock(first, data, n, line)

    def _rest_by_rows(self, first: int) -> Iterator[Chunk | Stop]:
        """The row-by-row reader's chunks from item `first` to the end of the file."""
        try:
            yield from read_chunks(self.path, self.fmt, self.chunk_rows, first, self.limits)
        except Exception as exc:  # noqa: BLE001 - no file's content may stop the run
            yield Stop(describe_damage(exc))

    def _array_chunks(self, unit: ArrayBlock) -> Iterator[Chunk]:
        """The items of `unit` as the row-by-row reader reads them; when the block was not cut
        between items after all, that reader takes the rest of the file over."""
        text = "[" + unit.data.decode("utf-8", FALLBACK_ERRORS) + "]"
        items = list(_array_items(io.StringIO(text), self.limits.max_record_bytes, guess=False))
        if len(items) != unit.n or any(getattr(x, "reason", "").endswith(
                "cannot be read") for _, x in items):
            self.exhausted, self.rest_from = True, unit.first  # see `rest`
            self._by_rows_from(unit.first)
            return
        for start, stop in _aligned(unit.first, unit.n, self.chunk_rows):
            part = items[start:stop]
            lines = [unit.line + at - 1 for at, _ in part]
            end = unit.first + start + len(part)
            yield Chunk([x for _, x in part], lines[0], lines, end, end)

    def rest(self) -> Iterator[Chunk]:
        """Once `exhausted`: the row-by-row reader's chunks from the block it could not take, to
        the end of the file (the units read ahead of it are dropped)."""
        for unit in self._rest_by_rows(self.rest_from):
            yield from self.chunks(unit)

    def chunks(self, unit: Block | Batch | Chunk | Stop) -> Iterator[Chunk]:
        """The row-by-row reader's chunks for `unit`, in order."""
        if isinstance(unit, ArrayBlock):
            yield from self._array_chunks(unit)
            return
        if isinstance(unit, Chunk):
            yield unit
            return
        if isinstance(unit, Stop):
            final = self.feed.finish(self.end) if self.feed is not None else None
            if final is not None:
                yield final
            self.damage = unit.damage
            return
        if isinstance(unit, Batch):
            yield self._chunk(unit.first, unit.lines, unit.fallbacks)
            return
        # A chunk's lines at a time: a whole block of decoded lines would be many objects.
        raw = unit.data.splitlines(keepends=True)
        for start, stop in _aligned(unit.first, unit.n, self.chunk_rows):
            piece = b"".join(raw[start:stop])
            lines = decode_block(piece) if self.fmt.kind == "csv" else Lines(raw[start:stop])
            if len(piece) > self.limits.max_record_bytes:  # as split_lines marks them
                lines = mark_too_long(lines, self.limits.max_record_bytes)
            yield self._chunk(unit.first + start, lines, len(lines.fallbacks))

    def finish(self) -> Iterator[Chunk]:
        """What is left at the end of the file: a record still open."""
        final = self.feed.finish(self.end) if self.feed is not None else None
        if final is not None:
            yield final

    def _chunk(self, first: int, lines: Lines, fallbacks: int) -> Chunk:
        if self.feed is not None:
            return self.feed.feed(first, lines, fallbacks)
        return _jsonl_chunk(first, lines, self.limits.max_record_bytes)


def _long_line(buf: bytes, begin: int, end: int, limit: int) -> bool:
    """Whether a line in buf[begin:end] (whole lines) is over `limit` bytes with its ending.
    Such a line spans a whole stretch of limit/2 bytes aligned to limit/2, so only a stretch
    without a line break needs a closer look: a few searches per block, however many lines it
    holds."""
    half = max(limit // 2, 1)
    for start in range(begin, end, half):
        if buf.find(b"\n", start, min(start + half, end)) < 0:
            lo, hi = max(buf.rfind(b"\n", begin, start) + 1, begin), buf.find(b"\n", start, end)
            if (hi if hi >= 0 else end) - lo + 1 > limit:
                return True
    return False


def _aligned(first: int, n: int, size: int) -> list[tuple[int, int]]:
    """(start, stop) offsets into n lines starting at line `first`, cut where the line index is
    a multiple of `size`, as the row-by-row reader cuts its chunks."""
    cuts = [0] + [i for i in range(-first % size or size, n, size)] + [n]
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def _separators(buf: bytes, start: int, end: int,
                most: int) -> tuple[int, tuple[int, int] | None]:
    """How many separators between array items (`ITEM_BOUNDARY`) lie wholly in buf[start:end],
    `most` at most, and where the last of them starts and ends.

    Arrays written by one program separate their items alike: the separator found first is
    counted with `bytes.count`, and the count holds when every `}` up to the last one found
    starts one (no `}` in a string, no separator written otherwise before it) and no other
    follows; else the regular expression finds them one by one, as it always did. Taking each
    match as an object was most of the time this thread spent on an array."""
    first = ITEM_BOUNDARY.search(buf, start, end)
    if first is None:
        return 0, None
    sep = first.group()
    last = buf.rfind(sep, start, end)
    after = last + len(sep)
    n = buf.count(sep, start, after)
    if n <= most and buf.count(b"}", start, after) == n \
            and ITEM_BOUNDARY.search(buf, after, end) is None:
        return n, (last, after)
    cuts = list(islice(ITEM_BOUNDARY.finditer(buf, start, end), most))
    return len(cuts), (cuts[-1].start(), cuts[-1].end())


def _lone_cr(buf: bytes, start: int, eof: bool) -> bool:
    """Whether a \\r not followed by \\n appears in buf[start:] (a last \\r may be half of one,
    unless the file ends there). Searched, not counted: in a file of \\r\\n lines, counting
    \\r and \\r\\n took three times as long, holding the GIL."""
    if buf.find(b"\r", start) < 0:
        return False
    return LONE_CR.search(buf, start) is not None or (eof and buf.endswith(b"\r"))


def _nth_newline(buf: bytes, n: int, total: int, start: int = 0, end: int | None = None) -> int:
    """The offset of the n-th newline in buf[start:end], which holds `total` of them
    (n <= total). `end` may lie past the buffer's end (a block's byte budget reaching beyond
    what was read so far): the average line length is taken over the bytes there are, or the
    guess overshoots and the walk back takes one `rfind` per line."""
    end = len(buf) if end is None else min(end, len(buf))
    if n == total:
        return buf.rfind(b"\n", start, end)
    width = (end - start) / total  # lines are near their average length: guess, then correct
    pos = min(end, start + int(n * width))
    seen = buf.count(b"\n", start, pos)
    while seen < n:
        step = min(end, pos + max(1, int((n - seen) * width)))
        seen += buf.count(b"\n", pos, step)
        pos = step
    while True:
        last = buf.rfind(b"\n", start, pos)
        if seen == n:
            return last
        seen, pos = seen - 1, last


__all__ = ["Batch", "Block", "FileSource", "Stop", "block_lines", "split_lines"]
