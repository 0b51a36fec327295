"""Count (or drop) exact duplicate records in bounded memory.

Each output line is reduced to a 64-bit fingerprint (Polars' hash of the line, taken without the
GIL: `native.fingerprints`) kept in a Python set: about `BYTES_PER_FINGERPRINT` bytes per distinct
record (an int object plus its share of the set's
table). With 2**64 fingerprints, two different records collide with probability about
n**2 / 2**65: one in 3,000 for 100 million distinct records. Past the memory budget no new
fingerprints are kept; the run says so and the duplicate count becomes a lower bound.

New fingerprints are also appended to a log file at each checkpoint, so a resumed run starts
with exactly the set the interrupted one had.

While the set is small (`KNOWN_MAX`), a copy of it is kept as a Polars Series (`known`), replaced
whole when it grows: a worker thread drops the fingerprints it already holds from a block's
distinct ones in Polars, so that neither it nor the writing thread turns them into Python ints
and sets (in data that repeats, that was most of what counting duplicates cost).
"""

from __future__ import annotations

import operator
import os
import struct
from itertools import compress
from pathlib import Path
from typing import Any

from helpers.ingest.native import _pl, fingerprints

BYTES_PER_FINGERPRINT = 90  # measured: a set of n ints grows by about 70-110 bytes per int
# Past this many, `known` is given up: each block's search would build a table of all of them.
KNOWN_MAX = 1 << 16
MODES = ("count", "drop", "off")


class Fingerprints:
    def __init__(self, mode: str = "count", budget_bytes: int = 64 << 20) -> None:
        if mode not in MODES:
            raise ValueError(f"dedupe mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.capacity = max(budget_bytes // BYTES_PER_FINGERPRINT, 1)
        self.seen: set[int] = set()
        self.duplicates = 0
        self.exact = True
        self._pending: list[int] = []
        self.known: Any = None  # the set as a Polars Series while it is small, else None
        self._sync_known([])

    def filter(self, lines: list[bytes]) -> list[bytes]:
        """Count the duplicates among `lines`; in drop mode return only first occurrences."""
        if self.mode == "off" or not lines:
            return lines
        blob, n = self.filter_blob(b"\n".join(lines) + b"\n", len(lines))
        return lines if n == len(lines) else blob.split(b"\n")[:n]

    def count(self, n: int, hashes: Any, unique: list[int] | None = None) -> None:
        """Count the duplicates among n lines from their fingerprints alone (`hashes`, and the
        distinct ones, `unique`, less any that a snapshot of `known` held: see `unknown`): what
        `filter` counts, without the lines."""
        if self.mode == "off" or n == 0 or self._count_all(n, hashes, unique):
            return
        self._filter_one_by_one(None, hashes.to_list())

    def _count_all(self, n: int, hashes: Any, unique: list[int] | None) -> bool:
        """Count a whole batch from its distinct fingerprints, when the set is exact and they
        all fit; False (nothing done) when the batch must go line by line."""
        if not self.exact:
            return False
        distinct = unique if unique is not None else ascending(hashes)
        seen = self.seen
        new = [h for h in distinct if h not in seen]  # in order: the log needs no sort
        if len(seen) + len(new) > self.capacity:
            return False
        seen.update(new)
        self._pending.extend(new)
        self.duplicates += n - len(new)
        self._sync_known(new)
        return True

    def _sync_known(self, new: Any) -> None:
        """Keep `known` equal to the set, or drop it once the set outgrows `KNOWN_MAX`. Replaced,
        never changed in place: a worker may be searching the one it read."""
        if self.mode != "count" or len(self.seen) > KNOWN_MAX:
            self.known = None
        elif self.known is None:
            self.known = _pl().Series("h", sorted(self.seen), dtype=_pl().UInt64)
        elif new:
            added = _pl().Series("h", new, dtype=_pl().UInt64)
            self.known = _pl().concat([self.known, added], rechunk=True)

    def filter_blob(self, blob: bytes, n: int, hashes: Any = None,
                    unique: list[int] | None = None) -> tuple[bytes, int]:
        """The same for `blob`, n lines each ending in a newline: (the lines kept, how many).

        `hashes`: the lines' fingerprints when already taken (`native.fingerprints`, which a
        worker thread takes without the GIL), `unique` the distinct ones among them."""
        if self.mode == "off" or n == 0:
            return blob, n
        if hashes is None:
            hashes = fingerprints(blob, n)
        if self.mode == "count" and self._count_all(n, hashes, unique):
            return blob, n
        lines = blob.split(b"\n")[:n]
        kept = self._filter_one_by_one(lines, hashes.to_list())
        return (blob, n) if kept is lines else (b"".join(x + b"\n" for x in kept), len(kept))

    def _filter_one_by_one(self, lines: list[bytes] | None, hashes: list[int]) -> Any:
        """Past the budget, in line order: a line whose fingerprint is kept is a duplicate; a
        new one is kept while there is room. `lines` None: count only."""
        if len(self.seen) >= self.capacity:
            return self._filter_when_full(lines, hashes)
        keep, seen = [], self.seen
        for line, h in zip(lines if lines is not None else hashes, hashes):
            if h in seen:
                self.duplicates += 1
                continue
            if len(seen) < self.capacity:
                seen.add(h)
                self._pending.append(h)
            else:
                self.exact = False
            keep.append(line)
        return keep if self.mode == "drop" else lines

    def _filter_when_full(self, lines: list[bytes] | None, hashes: list[int]) -> Any:
        """What `_filter_one_by_one` does once the set is full, when nothing more is added: a
        line is a duplicate if and only if the set holds its fingerprint. Looked up by `map`,
        in C: a loop in Python took ~1 us a line, which in data with more distinct records
        than the budget holds was most of every block's cost."""
        held = list(map(self.seen.__contains__, hashes))
        found = sum(held)
        self.duplicates += found
        if found < len(held):
            self.exact = False
        if self.mode != "drop" or lines is None:
            return lines
        return list(compress(lines, map(operator.not_, held)))

    @property
    def distinct(self) -> int:
        return len(self.seen)

    def save(self, log: Path) -> int:
        """Append the fingerprints added since the last save; return the log's durable size."""
        with open(log, "ab") as f:
            if self._pending:
                f.write(struct.pack(f"<{len(self._pending)}Q", *self._pending))
                self._pending.clear()
                f.flush()
                os.fsync(f.fileno())
            return f.tell()

    def restore(self, log: Path, size: int, duplicates: int, exact: bool) -> None:
        """Load the set as it was at a checkpoint, dropping whatever was logged after it."""
        with open(log, "r+b") as f:
            f.truncate(size)
            data = f.read()
        self.seen = set(struct.unpack(f"<{len(data) // 8}Q", data))
        self.duplicates, self.exact = duplicates, exact
        self.known = None
        self._sync_known([])


def unknown(hashes: Any, known: Any) -> list[int]:
    """The distinct fingerprints among `hashes` less those in `known` (a snapshot of a set's
    fingerprints, or None), in ascending order: what `Fingerprints.count` needs of a block.
    Taken by a worker thread, in Polars, without the GIL.

    The known ones are dropped first: in data that repeats, few are left to make distinct
    (a block of 20,000 lines with 3,500 distinct, all known: 0.83 -> 0.43 ms)."""
    if known is not None:
        hashes = hashes.filter(~hashes.is_in(known.implode()))
    return ascending(hashes)


def ascending(hashes: Any) -> list[int]:
    """The distinct fingerprints, in ascending order: the order the log keeps new ones in, so
    that the writing thread, which holds the GIL, need not sort them (sorting 20,000 distinct
    ones took it ~2 ms; Polars sorts them without the GIL in a tenth of that)."""
    return hashes.unique().sort().to_list()
