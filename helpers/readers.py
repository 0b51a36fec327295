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

from isal import isal_zlib

from helpers.sniff import Format
from helpers.writer import GZIP_WBITS

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


class DamagedInput(Exception):
    """Reading stopped part-way (a cut gzip stream, say); `line` is where it stopped."""

    def __init__(self, reason: str, line: int) -> None:
        super().__init__(reason)
        self.reason, self.line = reason, line


READ_ERRORS = (OSError, EOFError, ValueError)


def _take(iterator: Any, count: int) -> tuple[list[Any], Exception | None]:
    """Up to `count` items; on a read error, the items read before it and the error."""
    batch: list[Any] = []
    try:
        batch.extend(islice(iterator, count))  # extend keeps what came before an error
    except READ_ERRORS as exc:
        return batch, exc
    return batch, None


@dataclass
class Chunk:
    """Records in file order: csv rows (list[str]), JSON Lines (bytes) or array items."""

    records: list[Any]
    first_record: int  # index of the first record in the file, from 0
    first_line: int  # physical line where the first record starts, from 1
    lines: list[int] | None = None  # each record's line, where the reader knows it cheaply


def open_binary(path: Path, fmt: Format) -> IO[bytes]:
    if fmt.compression == "gzip":
        return io.BufferedReader(GzipStream(path), buffer_size=1 << 16)
    return open(path, "rb")


class GzipStream(io.RawIOBase):
    """Decompress a gzip file, member after member, with isal (several times zlib's speed).

    Unlike gzip.open, a file cut short hands over every byte it could decompress before it
    raises EOFError, so the records before the damage are kept rather than a block of them lost.
    """

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")
        self._inflate = isal_zlib.decompressobj(GZIP_WBITS)
        self._pending = b""
        self._error: Exception | None = None
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            if self._error is not None:
                raise self._error
            if self._done:
                return 0
            self._pending = self._inflate_more()
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def _inflate_more(self) -> bytes:
        data = self._file.read(1 << 16)
        if not data:
            if self._inflate.eof or not self._started:
                self._done = True
            else:
                self._error = EOFError("the gzip stream ends before its end-of-stream marker")
            return b""
        out = self._inflate.decompress(data)
        while self._inflate.eof and self._inflate.unused_data:  # the next member begins
            rest = self._inflate.unused_data
            self._inflate = isal_zlib.decompressobj(GZIP_WBITS)
            out += self._inflate.decompress(rest)
        return out

    @property
    def _started(self) -> bool:
        return self._file.tell() > 0

    def close(self) -> None:
        self._file.close()
        super().close()


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
            rows, error = _take(reader, chunk_rows)
            if rows:
                yield Chunk(rows, record, first_line)
                record += len(rows)
            if error is not None:
                raise DamagedInput(str(error), reader.line_num + 1)
            if len(rows) < chunk_rows:
                return


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
            lines, error = _take(f, chunk_rows)
            if lines:
                if record == 0 and lines[0].startswith(b"\xef\xbb\xbf"):
                    lines[0] = lines[0][3:]
                if fmt.encoding == "cp1252":
                    lines = [line.decode("cp1252", errors="replace") for line in lines]
                yield Chunk(lines, record, record + 1)
                record += len(lines)
            if error is not None:
                raise DamagedInput(str(error), record + 1)
            if len(lines) < chunk_rows:
                return


def read_json_array(path: Path, fmt: Format, chunk_rows: int, skip: int = 0) -> Iterator[Chunk]:
    with open_text(path, fmt) as f:
        items = _array_items(f)
        record = _skip(items, skip)
        last_line = 1
        while True:
            batch, error = _take(items, chunk_rows)
            if batch:
                lines = [line for line, _ in batch]
                yield Chunk([item for _, item in batch], record, lines[0], lines)
                record += len(batch)
                last_line = lines[-1]
            if error is not None:
                raise DamagedInput(str(error), last_line)
            if len(batch) < chunk_rows:
                return


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
