"""One small generator per format: read a batch of lines (or array items), yield it as a chunk.

A chunk carries its records with the line each starts on, plus what the reader itself set aside:
blank lines, comment lines, and records it could not read (an unterminated quote, a line over the
length limit), each with its line and reason. Batches are cut at fixed positions in the file
(multiples of `chunk_rows` lines, or items for a JSON array), and `resume_at` says where the next
read must start, so a resumed run reads exactly the records an uninterrupted run would.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

from helpers.ingest.lines import (
    FALLBACK_ERRORS,
    DamagedInput,
    Lines,
    TooLong,
    open_binary,
    split_lines,
)
from helpers.ingest.records import Assembler
from helpers.ingest.schema import parse_json_int
from helpers.ingest.sniff import Format

BLOCK_CHARS = 1 << 20
READ_ERRORS = (OSError, EOFError, ValueError, DamagedInput)


@dataclass(frozen=True)
class Limits:
    """How far one record may run before it is rejected (a quote that never closes)."""

    max_record_lines: int = 10_000
    max_record_bytes: int = 1 << 20


@dataclass
class Chunk:
    """Records in file order: csv rows (list[str]), JSON Lines (bytes) or array items."""

    records: list[Any]
    first_line: int  # physical line where the first record starts, from 1
    starts: list[int] | None = None  # each record's first line, where not consecutive
    resume_at: int = 0  # where a run resumed after this chunk starts reading
    batch_end: int = 0  # the fixed position that closed this batch
    bad: list[tuple[int, str, str]] = field(default_factory=list)  # (line, reason, raw)
    blank: int = 0
    comments: int = 0
    fallbacks: int = 0  # lines where a byte sequence was not UTF-8


@dataclass(frozen=True)
class Damage:
    """Where and why a file could not be read to its end."""

    line: int
    offset: int | None
    reason: str


def until_damaged(chunks: Iterable[Chunk], on_damage: Callable[[Damage], None]) -> Iterator[Chunk]:
    """A file's chunks; a damaged file (a cut or corrupt gzip stream, an unreadable block)
    loses its tail, not the run: every record read before the damage is kept, and the damage
    is handed to `on_damage` with the line and byte offset where reading stopped. Whatever a
    reader raises counts as damage to its file: only writing, which happens outside this
    generator, can stop a run."""
    try:
        yield from chunks
    except Exception as exc:  # noqa: BLE001 - no file's content may stop the run
        on_damage(describe_damage(exc))


def describe_damage(exc: Exception, lines_read: int = -1) -> Damage:
    """What a reader's error means for its file: where reading stopped, after `lines_read`
    lines (-1: as the error says, or line 0, unknown)."""
    found = exc if isinstance(exc, DamagedInput) and lines_read < 0 else _damage(exc, lines_read)
    line, offset = found.line, found.offset
    where = f"line {line}" + (f" (byte {offset:,} of the file)" if offset is not None else "")
    return Damage(line, offset, f"the file could not be read past {where}: "
                                f"{found.reason}; the records before it were kept")


def read_chunks(path: Path, fmt: Format, chunk_rows: int, skip: int = 0,
                limits: Limits = Limits()) -> Iterator[Chunk]:
    """Chunks of at most `chunk_rows` lines (or items), starting at position `skip`."""
    readers = {"csv": read_csv, "jsonl": read_jsonl, "json_array": read_json_array,
               "json_stream": read_json_array}
    return readers[fmt.kind](path, fmt, chunk_rows, skip, limits)


def read_line_range(f: IO[bytes], fmt: Format, chunk_rows: int, first: int,
                    limits: Limits = Limits()) -> Iterator[Chunk]:
    """Chunks of a stretch of a CSV or JSON Lines file (one split of it), whose first line is
    line index `first` of the file: what `read_chunks` yields for those lines, in other chunks.

    `f` starts at a line's start and ends at one; for CSV no record may span its end."""
    batches = _line_batches(f, 0, chunk_rows, limits.max_record_bytes, text=fmt.kind == "csv")
    if fmt.kind == "jsonl":
        for start, lines, _ in batches:
            yield _jsonl_chunk(first + start, lines, limits.max_record_bytes)
        return
    assembler = Assembler(fmt.dialect, limits.max_record_lines, limits.max_record_bytes)
    state = {"header": fmt.has_header and first < fmt.data_line}
    done = first
    for start, lines, fallbacks in batches:
        done = first + start + len(lines)
        yield _csv_chunk(assembler, first + start, lines, fmt, state, False, fallbacks)
    if assembler.pending:  # a quote open at the stretch's end, which the caller rules out
        yield _csv_chunk(assembler, done, Lines(), fmt, state, True, 0)


def _line_batches(f: IO[bytes], start: int, size: int, max_bytes: int,
                  text: bool = False) -> Iterator[tuple[int, Lines, int]]:
    """(first index, lines, fallback lines) cut where the line index is a multiple of `size`,
    from line `start` on. A batch that may hold TooLong markers has `long` set."""
    index, batch, batch_start = 0, Lines(), start
    fallbacks: list[int] = []  # absolute indices of lines read partly as cp1252, not yet counted
    try:
        for lines in split_lines(f, max_bytes, text=text):
            fallbacks += [index + i for i in lines.fallbacks if index + i >= start]
            if index + len(lines) <= start:
                index += len(lines)
                continue
            if index < start:
                lines, index = Lines(lines[start - index:], lines.long), start
            pos = 0
            while pos < len(lines):
                if not batch:
                    batch_start = index
                take = lines[pos:pos + size - index % size]
                batch += take
                batch.long = batch.long or lines.long
                index += len(take)
                pos += len(take)
                if index % size == 0:
                    yield batch_start, batch, _count_below(fallbacks, index)
                    batch = Lines()
    except READ_ERRORS:
        if batch:  # the complete lines before the damage are records like any others
            yield batch_start, batch, _count_below(fallbacks, index)
        raise
    if batch:
        yield batch_start, batch, _count_below(fallbacks, index)


def _count_below(fallbacks: list[int], end: int) -> int:
    """How many pending fallback lines come before `end`; those are removed."""
    n = sum(1 for i in fallbacks if i < end)
    del fallbacks[:n]
    return n


def read_csv(path: Path, fmt: Format, chunk_rows: int, skip: int = 0,
             limits: Limits = Limits()) -> Iterator[Chunk]:
    dialect = fmt.dialect
    assembler = Assembler(dialect, limits.max_record_lines, limits.max_record_bytes)
    state = {"header": fmt.has_header and skip < fmt.data_line}
    end = skip
    with open_binary(path, fmt.compression, fmt.encoding) as f:
        try:
            for first, raw, fallbacks in _line_batches(f, skip, chunk_rows,
                                                       limits.max_record_bytes, text=True):
                end = first + len(raw)
                yield _csv_chunk(assembler, first, raw, fmt, state, False, fallbacks)
        except READ_ERRORS as exc:
            if assembler.pending:
                yield _csv_chunk(assembler, end, Lines(), fmt, state, True, 0)
            raise _damage(exc, end) from exc
        if assembler.pending:
            yield _csv_chunk(assembler, end, Lines(), fmt, state, True, 0)


class CsvFeed:
    """A CSV file's records from its lines, fed in file order: `read_csv`'s loop, for callers
    that read the lines themselves (see `blocks.FileSource`)."""

    def __init__(self, fmt: Format, limits: Limits, skip: int) -> None:
        self.fmt = fmt
        self.assembler = Assembler(fmt.dialect, limits.max_record_lines, limits.max_record_bytes)
        self.state = {"header": fmt.has_header and skip < fmt.data_line}

    @property
    def clean(self) -> bool:
        """No record is open and the header is behind: the next line starts a record."""
        return not self.assembler.pending and not self.state["header"]

    def feed(self, first: int, lines: Lines, fallbacks: int) -> Chunk:
        return _csv_chunk(self.assembler, first, lines, self.fmt, self.state, False, fallbacks)

    def finish(self, end: int) -> Chunk | None:
        """The record still open at the end of the file (or of what could be read), if any."""
        if not self.assembler.pending:
            return None
        return _csv_chunk(self.assembler, end, Lines(), self.fmt, self.state, True, 0)


def _damage(exc: Exception, lines_read: int) -> DamagedInput:
    """The error as DamagedInput, with the line where reading stopped."""
    reason = exc.reason if isinstance(exc, DamagedInput) else f"{type(exc).__name__}: {exc}"
    return DamagedInput(reason, getattr(exc, "offset", None), lines_read + 1)


def _csv_chunk(assembler: Assembler, first: int, texts: Lines, fmt: Format,
               state: dict, final: bool, fallbacks: int) -> Chunk:
    batch_end = first + len(texts)
    preamble = texts[:max(0, fmt.skip_lines - first)]
    if preamble:  # blank lines, comments and notes before the header: never records
        texts, first = Lines(texts[len(preamble):], texts.long), first + len(preamble)
    out = None
    if not final and not texts.long:
        out = assembler.feed_plain(texts, first)
    if out is None:
        out = assembler.feed(list(enumerate(texts, start=first)), final)
    rows, starts = out.rows, out.starts
    if state["header"] and rows and starts[0] <= fmt.data_line:
        rows, starts = rows[1:], starts[1:]
        state["header"] = False
    if preamble:
        blank = sum(1 for x in preamble if isinstance(x, str) and not x.strip("\r\n"))
        out.blank += blank
        out.comments += len(preamble) - blank
    resume = assembler.resume_line
    return Chunk(rows, starts[0] if starts else first + 1, starts,
                 resume if resume is not None else batch_end, batch_end, out.bad,
                 out.blank, out.comments, fallbacks)


def read_jsonl(path: Path, fmt: Format, chunk_rows: int, skip: int = 0,
               limits: Limits = Limits()) -> Iterator[Chunk]:
    end = skip
    with open_binary(path, fmt.compression, fmt.encoding) as f:
        try:
            for first, raw, _ in _line_batches(f, skip, chunk_rows, limits.max_record_bytes):
                end = first + len(raw)
                yield _jsonl_chunk(first, raw, limits.max_record_bytes)
        except READ_ERRORS as exc:
            raise _damage(exc, end) from exc


def _jsonl_chunk(first: int, raw: Lines, limit: int) -> Chunk:
    end = first + len(raw)
    if not raw.long:
        return Chunk(raw, first + 1, None, end, end)
    records, lines, bad = [], [], []
    for i, x in enumerate(raw, start=first + 1):
        if isinstance(x, TooLong):
            bad.append(x.reject(i, limit))
        else:
            records.append(x)
            lines.append(i)
    return Chunk(records, lines[0] if lines else first + 1, lines, end, end, bad)


def read_json_array(path: Path, fmt: Format, chunk_rows: int, skip: int = 0,
                    limits: Limits = Limits()) -> Iterator[Chunk]:
    """The items of a JSON array, or of a stream of JSON values (kind "json_stream")."""
    binary = open_binary(path, fmt.compression, fmt.encoding)
    with io.TextIOWrapper(binary, encoding="utf-8", errors=FALLBACK_ERRORS, newline="") as f:
        items = _array_items(f, limits.max_record_bytes, stream=fmt.kind == "json_stream")
        record = skip
        for _ in islice(items, skip):
            pass
        last_line = 1
        while True:
            batch: list[tuple[int, Any]] = []
            error = None
            try:
                batch.extend(islice(items, chunk_rows))  # extend keeps what came before an error
            except READ_ERRORS as exc:
                error = exc
            if batch:
                lines = [line for line, _ in batch]
                end = record + len(batch)
                yield Chunk([item for _, item in batch], lines[0], lines, end, end)
                record = end
                last_line = lines[-1]
            if error is not None:
                raise _damage(error, last_line - 1)
            if len(batch) < chunk_rows:
                return


class ArrayError:
    """Stands in the item stream for an item that cannot be read; the normalizer rejects it."""

    def __init__(self, reason: str, raw: str) -> None:
        self.reason, self.raw = reason, raw


def _array_items(f: IO[str], max_chars: int, stream: bool = False,
                 guess: bool = True) -> Iterator[tuple[int, Any]]:
    """(line, item) for each element of a top-level JSON array, holding one item at a time;
    with `stream`, for each of the JSON values that follow one another in the file (pretty-printed
    objects one after the other, as `jq` writes them, or a single one).

    The standard library's scanner decodes one value from a buffer; when the value runs past the
    buffer's end we read more and try again, so memory stays at one item plus one block. NaN and
    Infinity are not JSON: an item holding them is handed on as an ArrayError, as orjson does
    for JSON Lines. So is an item longer than `max_chars`, and one that is not JSON (a trailing
    comma, single quotes, a quote left unescaped): its end is found by its brackets and strings
    alone (`_item_end`) and reading goes on after it, so that a bad item costs itself only.
    With `guess` (reading a file, not a block of it), strings that are not JSON's are also
    tried (`_resync`); a block cut inside a string must come out as not complete instead.
    """
    constants: list[str] = []

    def not_json(name: str) -> None:
        constants.append(name)

    # Integers beyond 64 bits stay their digits: the standard library refuses to make an int
    # of over 4,300 digits, and the normalizer gives digits and numbers the same verdict.
    decoder = json.JSONDecoder(parse_constant=not_json, parse_int=parse_json_int)
    buf, pos, line = f.read(BLOCK_CHARS).lstrip("\ufeff"), 0, 1
    eof = False

    def read_more() -> None:
        nonlocal buf, pos, eof
        more = f.read(BLOCK_CHARS)
        eof = not more
        buf, pos = buf[pos:] + more, 0

    def next_token() -> str:
        nonlocal pos, line
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                if buf[pos] == "\n":
                    line += 1
                pos += 1
            if pos < len(buf) or eof:
                return buf[pos] if pos < len(buf) else ""
            read_more()

    if not stream:
        if next_token() != "[":
            yield line, ArrayError("the file does not start with '['", buf[pos:pos + 200])
            return
        pos += 1
    first = True
    while True:
        token = next_token()
        if token == ("" if stream else "]"):
            return
        if not first and not stream:
            if token != ",":
                yield line, ArrayError(f"expected ',' or ']' but found {token!r}; the rest "
                                       "of the file cannot be read", buf[pos:pos + 200])
                return
            pos += 1
            next_token()
        first = False
        error = None
        while True:
            try:
                item, end = decoder.raw_decode(buf, pos)
                break
            except json.JSONDecodeError as exc:
                if eof or len(buf) - pos > max_chars:
                    error = exc
                    break
                read_more()
        if error is not None:
            constants.clear()
            raw = buf[pos:pos + 200]
            # An item cut by the buffer's end (the error at the end, in an escape or a word cut
            # short, or a string running to it) is long, not bad: only its brackets, read on,
            # end it.
            cut = error.pos >= len(buf) - 8 or error.msg.startswith("Unterminated string")
            found = (_resync(buf, pos) if guess and not stream and not cut else None) \
                or _item_end(buf, pos, f)
            if found is None:  # (`FileSource` reads a block cut inside a string by this)
                yield line, ArrayError(f"malformed JSON ({error.msg}): the item is not complete "
                                       "at the end of the file; the rest of the file cannot be "
                                       "read", raw)
                return
            buf, pos, size, newlines = found
            yield line, ArrayError(_too_long(size, max_chars) if size > max_chars
                                   else f"malformed JSON ({error.msg})", raw)
            line += newlines
            continue
        if constants:
            yield line, ArrayError(f"invalid JSON: {constants[0]} is not a JSON value",
                                   buf[pos:end][:200])
            constants.clear()
        elif end - pos > max_chars:
            yield line, ArrayError(_too_long(end - pos, max_chars), buf[pos:pos + 200])
        else:
            yield line, item
        line += buf.count("\n", pos, end)
        pos = end
        if pos > BLOCK_CHARS:
            buf, pos = buf[pos:], 0


def _too_long(size: int, limit: int) -> str:
    return f"the item is {size:,} characters long, over the limit of {limit:,}"


# Per string quote: outside strings, what opens or closes a value, starts a string, or separates
# items; inside one, an escape (with what it escapes) or the closing quote.
_SCANNERS = {quote: (re.compile("[" + re.escape(quote) + r"{}\[\],]"),
                     re.compile(r"\\.|" + re.escape(quote or "\x00"), re.DOTALL))
             for quote in ('"', "'", "")}
# After an item: the array's end, or a comma and what starts a JSON value.
_NEXT_ITEM = re.compile(r'[ \t\r\n]*(?:\]|,[ \t\r\n]*[{\["0-9tfn-])')


def _resync(buf: str, pos: int) -> tuple[str, int, int, int] | None:
    """Where the bad item at buf[pos] ends, judged within `buf` (`_item_end`'s answer): by its
    brackets, strings read as JSON does, as single-quoted ones, or not at all (a quote left
    unescaped puts JSON's strings out of step for the rest of the file; in `{'a': 'x}y'}` the
    brace is in a string): the earliest of those ends after which the array ends or goes on
    with what starts a value. None when there is none (an item longer than `buf`)."""
    ends = []
    for quote in ('"', "'", ""):
        found = _item_end(buf, pos, None, quote)
        if found is not None and _NEXT_ITEM.match(buf, found[1]):
            ends.append(found)
    return min(ends, key=lambda found: found[1]) if ends else None


def _item_end(buf: str, pos: int, f: IO[str] | None,
              quote: str = '"') -> tuple[str, int, int, int] | None:
    """Where the item that starts at buf[pos] ends, found by its brackets and strings alone (it
    need not be JSON), strings delimited by `quote` (none if empty), reading on from `f` as
    needed and keeping only what is not scanned yet: (the buffer, the offset just past the item
    in it, the item's length in characters, the line breaks in it); None when the file ends
    first (or, without `f`, the buffer). An item that is no object or array ends before the
    next `,` or closing bracket outside brackets."""
    structure, in_string_marks = _SCANNERS[quote]
    # The brackets open, innermost last. Where strings are JSON's, a closing one closes through
    # any other opened after its own (`[1, 2}` ends the object), as a person reads a bracket
    # left open; read otherwise, a brace in a string would close too much.
    opened: list[str] = []
    through = quote == '"'
    at, in_string, size, newlines = pos, False, 0, 0

    def ending(end: int) -> tuple[str, int, int, int]:
        return buf, end, size + end - pos, newlines + buf.count("\n", pos, end)

    while True:
        found = (in_string_marks if in_string else structure).search(buf, at)
        if found is None:
            # All scanned: read on, keeping a last backslash whose escaped character is to come.
            keep = len(buf) - 1 if in_string and at < len(buf) and buf.endswith("\\") \
                else len(buf)
            size, newlines = size + keep - pos, newlines + buf.count("\n", pos, keep)
            more = f.read(BLOCK_CHARS) if f is not None else ""
            if not more:
                return None
            buf, pos, at = buf[keep:] + more, 0, 0
            continue
        mark, at = found.group(), found.end()
        if in_string:
            in_string = mark != quote
        elif mark == quote:
            in_string = True
        elif mark in "{[":
            opened.append(mark)
        elif not opened:  # no object or array: it ends where the array goes on (or ends)
            return ending(found.start())
        elif mark != ",":
            opener = "{" if mark == "}" else "["
            if through and opener in opened:
                del opened[len(opened) - 1 - opened[::-1].index(opener):]
            else:
                opened.pop()
            if not opened:
                return ending(at)
