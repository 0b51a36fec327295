r"""The physical lines of a raw file: decompressed, split at any line ending, decoded, bounded.

Everything format-specific (quotes, JSON) happens above this module. Below it, a file is bytes:
gzip members are decompressed one after another (trailing zero padding is ignored, damage stops
the stream with the byte offset); UTF-16 and UTF-32 files (known by their BOM) are transcoded to
UTF-8; lines end at `\n`, `\r\n` or a lone `\r`, each kept with its ending so that a quoted
value spanning lines is rebuilt exactly. A line longer than the limit is never held: it becomes a
`TooLong` marker and the bytes up to the next line ending are skipped.

Decoding is per byte sequence, never per file: valid UTF-8 stays what it is, and only a sequence
that is not UTF-8 is read as Windows-1252 (a value pasted from a spreadsheet); the lines where that
happened are counted.
"""

from __future__ import annotations

import codecs
import io
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from isal import isal_zlib

from helpers.ingest.location import open_raw

GZIP_WBITS = 16 + isal_zlib.MAX_WBITS
GZIP_MAGIC = b"\x1f\x8b"
BLOCK_BYTES = 1 << 18  # 256 KiB: a block of short lines is many small objects
FALLBACK_ERRORS = "helpers-cp1252"
# The encodings a BOM identifies; utf-32 first: its little-endian BOM starts like utf-16's.
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"))
TRANSCODED = ("utf-16", "utf-32")


def _decode_as_cp1252(exc: UnicodeDecodeError) -> tuple[str, int]:
    bad = exc.object[exc.start:exc.end]
    return bytes(bad).decode("cp1252", errors="replace"), exc.end


codecs.register_error(FALLBACK_ERRORS, _decode_as_cp1252)
# The same, noting where each sequence it decodes starts (in a list of the calling thread's):
# a block's lines that needed it are counted from those, not by comparing every line.
FALLBACK_ERRORS_NOTED = "helpers-cp1252-noted"
fallback_starts = threading.local()


def _decode_as_cp1252_noted(exc: UnicodeDecodeError) -> tuple[str, int]:
    fallback_starts.found.append(exc.start)
    return _decode_as_cp1252(exc)


codecs.register_error(FALLBACK_ERRORS_NOTED, _decode_as_cp1252_noted)


class DamagedInput(Exception):
    """Reading stopped part-way; `offset` is the byte offset in the file where it stopped."""

    def __init__(self, reason: str, offset: int | None = None, line: int = 0) -> None:
        super().__init__(reason)
        self.reason, self.offset, self.line = reason, offset, line


@dataclass(frozen=True)
class TooLong:
    """Stands for a physical line over the length limit; only its first bytes are kept."""

    head: bytes
    size: int

    def reject(self, line: int, limit: int) -> tuple[int, str, str]:
        """The (line, reason, raw) a reader reports for it."""
        return (line, f"the line is {self.size:,} bytes long, over the limit of {limit:,}",
                self.head.decode("utf-8", "replace"))


def bom_encoding(head: bytes) -> str | None:
    for bom, encoding in BOMS:
        if head.startswith(bom):
            return encoding
    return None


class GzipStream(io.RawIOBase):
    """Decompress a gzip file member after member, with isal (several times zlib's speed).

    A file cut short hands over every byte it could decompress before raising, so the records
    before the damage are kept; zero bytes after the last member (tape and block padding) end the
    stream quietly, as gzip itself treats them; anything else that is not a gzip member raises
    DamagedInput with the offset where it starts.
    """

    def __init__(self, path: Path) -> None:
        self._file = open_raw(path)
        self._inflate = isal_zlib.decompressobj(GZIP_WBITS)
        self._member_start = 0
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
            try:
                self._pending = self._inflate_more()
            except isal_zlib.error as exc:
                self._error = self._corrupt(exc)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def _inflate_more(self) -> bytes:
        data = self._file.read(1 << 16)
        if not data:
            if self._inflate.eof or self._file.tell() == 0:
                self._done = True
            else:
                self._error = DamagedInput("the gzip stream ends before its end-of-stream "
                                           "marker (the file was cut short)", self._file.tell())
            return b""
        out = self._inflate.decompress(data)
        while self._inflate.eof and self._inflate.unused_data:  # the next member begins
            rest = self._inflate.unused_data
            self._member_start = self._file.tell() - len(rest)
            if not rest.strip(b"\x00"):
                self._end_of_padding()
                return out
            self._inflate = isal_zlib.decompressobj(GZIP_WBITS)
            try:
                out += self._inflate.decompress(rest)
            except isal_zlib.error as exc:  # hand over the members before it first
                self._error = self._corrupt(exc)
                return out
        return out

    def _corrupt(self, exc: Exception) -> DamagedInput:
        return DamagedInput(f"corrupt gzip data in the member that starts at byte "
                            f"{self._member_start} ({exc})", self._member_start)

    def _end_of_padding(self) -> None:
        """Zeros after the last member end the stream; anything after zeros is damage."""
        for block in iter(lambda: self._file.read(1 << 16), b""):
            if block.strip(b"\x00"):
                offset = self._file.tell() - len(block) + (len(block) - len(block.lstrip(b"\x00")))
                self._error = DamagedInput(f"unexpected bytes after the zero padding that "
                                           f"follows the last gzip member, at byte {offset}",
                                           offset)
                return
        self._done = True

    def close(self) -> None:
        self._file.close()
        super().close()


class Transcoder(io.RawIOBase):
    """UTF-16 or UTF-32 bytes in, UTF-8 bytes out, so that one line splitter serves every file."""

    def __init__(self, raw: IO[bytes], encoding: str) -> None:
        self._raw = raw
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._pending = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._eof:
            data = self._raw.read(BLOCK_BYTES)
            self._eof = not data
            self._pending = self._decoder.decode(data, final=self._eof).encode("utf-8")
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_binary(path: Path, compression: str | None, encoding: str = "utf-8") -> IO[bytes]:
    """The file's bytes, decompressed, and in UTF-8 when the file is UTF-16 or UTF-32."""
    raw: IO[bytes] = (io.BufferedReader(GzipStream(path), buffer_size=1 << 16)
                      if compression == "gzip" else open_raw(path))
    if encoding in TRANSCODED:
        return io.BufferedReader(Transcoder(raw, encoding), buffer_size=1 << 16)
    return raw


def split_lines(stream: IO[bytes], max_line_bytes: int, block_bytes: int = BLOCK_BYTES,
                text: bool = False) -> Iterator[Lines]:
    """Lists of physical lines, in order, each with its ending; an over-long line as TooLong.

    With `text`, the lines come decoded (see `decode_block`), which spares a bytes object per
    line. A UTF-8 BOM at the start is dropped. Reading errors propagate; the lines yielded
    before them are complete and final.
    """
    carry = b""
    first = True
    skipping: TooLong | None = None  # inside an over-long line, waiting for its end
    split = decode_block if text else _split_bytes
    # read1: one raw read at a time, so the bytes before a damaged stretch are handed over
    # before its error (read() would drop a whole block of them with the exception).
    read = getattr(stream, "read1", stream.read)
    while True:
        block = read(block_bytes)
        if first:
            block = block.removeprefix(codecs.BOM_UTF8)
            first = False
        if not block:
            break
        data = carry + block if carry else block
        # Complete lines end at the last line ending; a final \r may be half of a \r\n.
        end = len(data) - 1 if data.endswith(b"\r") else len(data)
        cut = max(data.rfind(b"\n", 0, end), data.rfind(b"\r", 0, end)) + 1
        head, carry = data[:cut], data[cut:]
        prefix: list[TooLong] = []
        if skipping is not None:
            if not head:
                skipping = TooLong(skipping.head, skipping.size + len(carry))
                carry = b""
                continue
            stop = _first_line_end(head)
            prefix = [TooLong(skipping.head, skipping.size + stop)]
            head, skipping = head[stop:], None
        if len(carry) > max_line_bytes:
            skipping, carry = TooLong(carry[:200], len(carry)), b""
        lines = split(head)
        if prefix or (lines and max(map(len, lines)) > max_line_bytes):
            lines = _mark_too_long(prefix + lines, lines, max_line_bytes, len(prefix))
        if lines:
            yield lines
    if skipping is not None:
        yield Lines([skipping], long=True)
    elif carry:
        if len(carry) > max_line_bytes:
            yield Lines([TooLong(carry[:200], len(carry))], long=True)
        else:
            yield split(carry)


class Lines(list):
    """One block's lines. `long`: some are TooLong markers, so readers check the list, not each
    line; `fallbacks`: indices of the lines that held bytes read as cp1252."""

    def __init__(self, items: Any = (), long: bool = False,
                 fallbacks: tuple[int, ...] = ()) -> None:
        super().__init__(items)
        self.long, self.fallbacks = long, fallbacks


def _split_bytes(head: bytes) -> Lines:
    return Lines(head.splitlines(keepends=True))


def _first_line_end(data: bytes) -> int:
    ends = [i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0]
    at = min(ends)
    return at + 2 if data[at:at + 2] == b"\r\n" else at + 1


def _mark_too_long(all_lines: list, lines: Lines, max_line_bytes: int, shift: int) -> Lines:
    """Over-long lines become TooLong markers (their text is not kept); indices shift too."""
    marked = [TooLong(_head_bytes(x), len(x)) if not isinstance(x, TooLong)
              and len(x) > max_line_bytes else x for x in all_lines]
    return Lines(marked, long=True, fallbacks=tuple(i + shift for i in lines.fallbacks))


def mark_too_long(lines: Lines, max_line_bytes: int) -> Lines:
    """`lines` with each line over the limit made a TooLong marker, as `split_lines` yields
    them (for lines read in one piece elsewhere)."""
    if not lines or max(map(len, lines)) <= max_line_bytes:
        return lines
    return _mark_too_long(list(lines), lines, max_line_bytes, 0)


def _head_bytes(line: bytes | str) -> bytes:
    return line[:200] if isinstance(line, bytes) else line[:200].encode("utf-8", "replace")


EXOTIC_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def decode_block(head: bytes) -> Lines:
    """Complete lines as text: UTF-8 where it is valid, cp1252 for each sequence that is not.

    One decode and one split for the whole block in the usual case; line by line only where
    some byte is not UTF-8, or where a character that str.splitlines takes for a line break
    (\x0b, \x0c, \x1c-\x1e, \x85, \u2028, \u2029, all data to CSV) appears.
    """
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and not EXOTIC_BREAKS.search(text):
        return Lines(text.splitlines(keepends=True))
    lines, fallbacks = [], []
    for i, line in enumerate(head.splitlines(keepends=True)):
        decoded, fell_back = decode_line(line)
        lines.append(decoded)
        if fell_back:
            fallbacks.append(i)
    return Lines(lines, fallbacks=tuple(fallbacks))


def decode_line(line: bytes) -> tuple[str, bool]:
    """One line as text, and whether it needed the cp1252 fallback."""
    try:
        return line.decode("utf-8"), False
    except UnicodeDecodeError:
        return line.decode("utf-8", FALLBACK_ERRORS), True
