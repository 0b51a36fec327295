"""One small generator per format: open, fill a chunk of records, yield it, yield the tail.

Each chunk remembers where it starts (record index and physical line), so a bad record can be
reported with its line and a resumed run can skip exactly the records already written.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Any

from isal import igzip

from helpers.sniff import Format

# csv refuses fields over 128 KiB by default; a long free-text value is still a value.
csv.field_size_limit(64 * 1024 * 1024)
BLOCK_CHARS = 1 << 20
FALLBACK_ERRORS = "helpers-cp1252"


def _decode_as_cp1252(exc: UnicodeDecodeError) -> tuple[str, int]:
    # A UTF-8 file with a few Windows-1252 bytes (a value pasted from a spreadsheet) keeps its
    # characters instead of stopping the run; the sniffed sample decides the file's encoding.
    bad = exc.object[exc.start:exc.end]
    return bytes(bad).decode("cp1252", errors="replace"), exc.end


codecs.register_error(FALLBACK_ERRORS, _decode_as_cp1252)
MAX_JSON_ITEM_CHARS = 64 * 1024 * 1024


@dataclass
class Chunk:
    """Records in file order: csv rows (list[str]), JSON Lines (bytes) or array items."""

    records: list[Any]
    first_record: int  # index of the first record in the file, from 0
    first_line: int  # physical line where the first record starts, from 1
    lines: list[int] | None = None  # each record's line, where the reader knows it cheaply


def open_binary(path: Path, fmt: Format) -> IO[bytes]:
    # isal's gzip reader is several times faster than the standard library's and reads
    # multi-member files the same way.
    return igzip.open(path, "rb") if fmt.compression == "gzip" else open(path, "rb")


def open_text(path: Path, fmt: Format) -> IO[str]:
    # newline="" keeps \r\n inside quoted fields as written; csv handles line endings itself.
    return io.TextIOWrapper(open_binary(path, fmt), encoding=fmt.encoding,
                            errors=FALLBACK_ERRORS, newline="")


def read_chunks(path: Path, fmt: Format, chunk_rows: int, skip: int = 0) -> Iterator[Chunk]:
    """Chunks of at most `chunk_rows` records, after skipping the first `skip` records."""
    readers = {"csv": read_csv, "jsonl": read_jsonl, "json_array": read_json_array}
    return readers[fmt.kind](path, fmt, chunk_rows, skip)


def read_csv(path: Path, fmt: Format, chunk_rows: int, skip: int = 0) -> Iterator[Chunk]:
    with open_text(path, fmt) as f:
        reader = csv.reader(f, delimiter=fmt.delimiter or ",", quotechar=fmt.quotechar or '"')
        next(reader, None)  # the header, already known from sniffing
        record = _skip(reader, skip)
        while True:
            first_line = reader.line_num + 1
            rows = list(islice(reader, chunk_rows))
            if not rows:
                return
            yield Chunk(rows, record, first_line)
            record += len(rows)


def csv_row_lines(chunk: Chunk) -> list[int]:
    """Each row's starting line: a quoted newline makes a row span several lines."""
    lines, line = [], chunk.first_line
    for row in chunk.records:
        lines.append(line)
        line += 1 + sum(field.count("\n") for field in row)
    return lines


def read_jsonl(path: Path, fmt: Format, chunk_rows: int, skip: int = 0) -> Iterator[Chunk]:
    with open_binary(path, fmt) as f:
        record = _skip(f, skip)
        while True:
            lines = list(islice(f, chunk_rows))
            if not lines:
                return
            if record == 0 and lines[0].startswith(b"\xef\xbb\xbf"):
                lines[0] = lines[0][3:]
            if fmt.encoding == "cp1252":
                lines = [line.decode("cp1252", errors="replace") for line in lines]
            yield Chunk(lines, record, record + 1)
            record += len(lines)


def read_json_array(path: Path, fmt: Format, chunk_rows: int, skip: int = 0) -> Iterator[Chunk]:
    with open_text(path, fmt) as f:
        items = _array_items(f)
        record = _skip(items, skip)
        while True:
            batch = list(islice(items, chunk_rows))
            if not batch:
                return
            lines = [line for line, _ in batch]
            yield Chunk([item for _, item in batch], record, lines[0], lines)
            record += len(batch)


class ArrayError:
    """Stands in the item stream where a JSON array stops parsing; the normalizer rejects it."""

    def __init__(self, reason: str, raw: str) -> None:
        self.reason, self.raw = reason, raw


def _array_items(f: IO[str]) -> Iterator[tuple[int, Any]]:
    """(line, item) for each element of a top-level JSON array, holding one item at a time.

    The standard library's scanner decodes one value from a buffer; when the value runs past the
    buffer's end we read more and try again, so memory stays at one item plus one block.
    """
    decoder = json.JSONDecoder()
    buf, pos, line = f.read(BLOCK_CHARS).lstrip("\ufeff"), 0, 1
    eof = False

    def next_token() -> str:
        nonlocal buf, pos, line, eof
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                if buf[pos] == "\n":
                    line += 1
                pos += 1
            if pos < len(buf) or eof:
                return buf[pos] if pos < len(buf) else ""
            more = f.read(BLOCK_CHARS)
            eof = not more
            buf, pos = buf[pos:] + more, 0

    if next_token() != "[":
        yield line, ArrayError("the file does not start with '['", buf[pos:pos + 200])
        return
    pos += 1
    first = True
    while True:
        token = next_token()
        if token == "]":
            return
        if not first:
            if token != ",":
                yield line, ArrayError(f"expected ',' or ']' but found {token!r}",
                                       buf[pos:pos + 200])
                return
            pos += 1
            next_token()
        first = False
        while True:
            try:
                item, end = decoder.raw_decode(buf, pos)
                break
            except json.JSONDecodeError as exc:
                if eof or len(buf) - pos > MAX_JSON_ITEM_CHARS:
                    yield line, ArrayError(f"malformed JSON ({exc.msg}); the rest of the "
                                           "file cannot be read", buf[pos:pos + 200])
                    return
                more = f.read(BLOCK_CHARS)
                eof = not more
                buf, pos = buf[pos:] + more, 0
        yield line, item
        line += buf.count("\n", pos, end)
        pos = end
        if pos > BLOCK_CHARS:
            buf, pos = buf[pos:], 0


def _skip(iterator: Any, count: int) -> int:
    for _ in islice(iterator, count):
        pass
    return count
