"""Write a gzip file as a series of members, each closed and synced at a checkpoint.

A gzip file may hold several members back to back and every reader decompresses them as one
stream. Closing a member at each checkpoint makes the file's durable prefix a valid gzip file, so
after a crash we cut the `.part` back to the last checkpoint's size and carry on appending. The
members end at boundaries the input fixes (a block of lines, a file's end, a checkpoint), never
at times or at the number of threads, so a resumed run writes the same members, holding the same
lines, as a run that was never interrupted, whatever `--jobs` says (`member_digests` compares
two outputs so).

Not always the same compressed bytes: ISA-L's level 1 has, about once in 60,000 members on our
machines, compressed the same lines to another valid member, one match shorter (a missed match
near the start, so a Huffman table one or two bytes longer; found by running one ingestion 190
times and decoding both members). Two outputs are therefore compared by their members' contents,
and the sha256 in `_manifest.json` describes the file as written.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from isal import isal_zlib

GZIP_WBITS = 16 + isal_zlib.MAX_WBITS  # a gzip header (mtime 0: no timestamp) and trailer


class MemberWriter:
    """Appends gzip members to `path`; `resume_at` truncates it to a checkpointed size first."""

    def __init__(self, path: Path, level: int = 1, resume_at: int | None = None) -> None:
        self.path, self.level = path, level
        if resume_at is None:
            self._file = open(path, "wb")
        else:
            self._file = open(path, "r+b")
            self._file.truncate(resume_at)
            self._file.seek(resume_at)
        self._compressor = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._compressor is None:
            self._compressor = isal_zlib.compressobj(self.level, isal_zlib.DEFLATED, GZIP_WBITS)
        self._file.write(self._compressor.compress(data))

    def write_member(self, member: bytes) -> None:
        """Append a whole gzip member (`gzip_member`), compressed elsewhere: in a worker thread,
        whose compression is thereby off the writing thread."""
        if self._compressor is not None:  # the open member ends first, to keep the order
            self._file.write(self._compressor.flush())
            self._compressor = None
        self._file.write(member)

    def end_member(self, complete: bool = False) -> int:
        """Close the open member, make everything durable and return the file's size.

        `complete`: the file is finished; an empty one gets an empty member, so that even a file
        with no records is valid gzip for every tool."""
        if complete and self._compressor is None and self._file.tell() == 0:
            self._compressor = isal_zlib.compressobj(self.level, isal_zlib.DEFLATED, GZIP_WBITS)
        if self._compressor is not None:
            self._file.write(self._compressor.flush())
            self._compressor = None
        self._file.flush()
        os.fsync(self._file.fileno())
        return self._file.tell()

    def close(self) -> int:
        size = self.end_member(complete=True)
        self._file.close()
        return size


def gzip_member(data: bytes, level: int = 1, tail: bytes = b"") -> bytes:
    """`data` and then `tail` as one complete gzip member (the same header and trailer
    `MemberWriter` writes), without joining them first; isal releases the GIL while it
    compresses."""
    if not data and not tail:
        return b""
    compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, GZIP_WBITS)
    return compressor.compress(data) + compressor.compress(tail) + compressor.flush()


def member_digests(path: Path) -> list[str]:
    """The sha256 of each gzip member's lines, in file order: two outputs with equal lists hold
    the same lines cut into the same members, however the compressor encoded them."""
    digests: list[str] = []
    inflate, digest, fed = isal_zlib.decompressobj(GZIP_WBITS), hashlib.sha256(), False
    with open(path, "rb") as f:
        data = f.read(1 << 20)
        while data:
            try:
                digest.update(inflate.decompress(data))
            except isal_zlib.error as exc:
                raise ValueError(f"{path}: gzip member {len(digests) + 1} is damaged "
                                 f"({exc})") from exc
            fed, data = True, b""
            if inflate.eof:  # the next member starts in what it left
                digests.append(digest.hexdigest())
                data = inflate.unused_data
                inflate, digest, fed = isal_zlib.decompressobj(GZIP_WBITS), hashlib.sha256(), False
            data = data or f.read(1 << 20)
    if fed:
        raise ValueError(f"{path}: the last gzip member is cut short")
    return digests
