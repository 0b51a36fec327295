"""Count (or drop) exact duplicate records in bounded memory.

Each output line is reduced to a 64-bit fingerprint (Polars' hash of the line, taken without the
GIL: `native.fingerprints`). The set of fingerprints seen is kept as a few sorted Polars arrays
of UInt64 ("levels", as in a log-structured merge tree): 8 bytes a fingerprint, where a Python
set of ints took about 90. A block's new fingerprints become a level of their own; a level is
merged into the one before it once it is at least a quarter of that one's size: each level is
more than four times the next, there are at most about log4(n / block) of them, and a
fingerprint is looked up by a binary search in each (`search_sorted`, which Polars runs without
the GIL). While the set is small (`SMALL`), it is also kept whole in one Series, and a block's
lines are looked up in it by hash instead.

With 2**64 fingerprints, two different records collide with probability about n**2 / 2**65:
one in 3,000 for 100 million distinct records. Past the memory budget no new fingerprints are
kept; the run says so and the duplicate count becomes a lower bound. The set is then final: its
levels are merged into one, and a worker finds a block's duplicates (lines whose fingerprint it
holds) by itself.

New fingerprints are also appended to a log file at each checkpoint, so a resumed run starts
with exactly the set the interrupted one had.

The levels are never changed in place, only replaced: a worker thread searches the levels it
read (`known`) for a block's distinct fingerprints, without the GIL, and the writing thread then
searches only what was added since (`RECENT` additions are kept aside for that). In data that
repeats, nearly every block's fingerprints are known already and the writing thread has nothing
left to do.
"""

from __future__ import annotations

import array
import operator
import os
import sys
from itertools import compress
from pathlib import Path
from typing import Any, NamedTuple

from helpers.ingest.native import _pl, fingerprints

# 8 bytes in a level, as many again while levels are merged into one, and 4 for the pages the
# allocator has not handed back yet and the ones added since the last checkpoint (held twice, 8
# bytes more each, until `save` logs them): measured, 3 million distinct rows a file
# (`benchmarks.distinct`) peaked 49-66 MiB above `--dedupe off` within a 64 MiB budget; at 16
# bytes, 81-94.
BYTES_PER_FINGERPRINT = 20
MODES = ("count", "drop", "off")
_RESTORE_CHUNK = 1 << 20  # fingerprints read from the log at a time: 8 MiB of it
# Additions kept aside for the writing thread to search, as well as merged into the levels: a
# worker's snapshot is rarely more than a few blocks old (those in flight).
RECENT = 16
# A level is merged into the one before it once it is at least a quarter of that one's size: on
# two million distinct fingerprints, 4 gave 0.83x the worker's search time of 2 (more levels to
# search) for 1.15x the merging; 8 saved little more.
MERGE_RATIO = 4
# Up to this many, the set is also kept whole in one Series, which a block's lines are looked up
# in by one hash lookup each: in data that repeats, cheaper than sorting the block's
# fingerprints to search each level (scale 500: 1.07x CPU without it).
SMALL = 1 << 16


class Snapshot(NamedTuple):
    """The levels, how many additions they hold, and whether the set is full (nothing will be
    added again): what a worker reads, in one reference."""

    levels: tuple[Any, ...]
    added: int
    full: bool = False
    small: Any = None  # the levels as one Series, while they hold at most `SMALL`


class Unknown(NamedTuple):
    """What a worker found of a block's fingerprints: the distinct ones (ascending) that none
    of the levels it searched holds, and how many additions those levels held; or, once the set
    is full, which of the block's lines it holds (`held_lines`, a Boolean Series: the block's
    duplicates, since nothing joins a full set)."""

    fingerprints: Any
    added: int
    held_lines: Any = None


class Fingerprints:
    def __init__(self, mode: str = "count", budget_bytes: int = 64 << 20) -> None:
        if mode not in MODES:
            raise ValueError(f"dedupe mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.capacity = max(budget_bytes // BYTES_PER_FINGERPRINT, 1)
        self.distinct = 0
        self.duplicates = 0
        self.exact = True
        self._pending: list[Any] = []  # added since the last save
        self._recent: list[Any] = []  # the last `RECENT` additions
        self._snapshot = Snapshot((), 0)

    @property
    def levels(self) -> tuple[Any, ...]:
        """Sorted, disjoint UInt64 Series: together, the set."""
        return self._snapshot.levels

    @property
    def known(self) -> Snapshot | None:
        """The levels, for a worker to search (`unknown`); None when nothing is counted."""
        return self._snapshot if self.mode != "off" else None

    def filter(self, lines: list[bytes]) -> list[bytes]:
        """Count the duplicates among `lines`; in drop mode return only first occurrences."""
        if self.mode == "off" or not lines:
            return lines
        blob, n = self.filter_blob(b"\n".join(lines) + b"\n", len(lines))
        return lines if n == len(lines) else blob.split(b"\n")[:n]

    def count(self, n: int, hashes: Any, unique: Unknown | None = None) -> None:
        """Count the duplicates among n lines from their fingerprints alone (`hashes`, and what
        a worker found unknown among them, `unique`): what `filter` counts, without the lines."""
        if self.mode == "off" or n == 0 or self._count_all(n, unique):
            return
        self._apply(hashes, unique)

    def filter_blob(self, blob: bytes, n: int, hashes: Any = None,
                    unique: Unknown | None = None) -> tuple[bytes, int]:
        """The same for `blob`, n lines each ending in a newline: (the lines kept, how many).

        `hashes`: the lines' fingerprints when already taken (`native.fingerprints`, which a
        worker thread takes without the GIL)."""
        if self.mode == "off" or n == 0:
            return blob, n
        if hashes is None:
            hashes = fingerprints(blob, n)
        if self.mode == "count":
            if not self._count_all(n, unique):
                self._apply(hashes, unique)
            return blob, n
        duplicate = self._apply(hashes, unique)
        if not duplicate.any():
            return blob, n
        kept = list(compress(blob.split(b"\n")[:n], map(operator.not_, duplicate.to_list())))
        return b"".join(x + b"\n" for x in kept), len(kept)

    def _count_all(self, n: int, unique: Unknown | None) -> bool:
        """Count a whole batch from its distinct unknown fingerprints, when the set is exact and
        the new ones all fit; False (nothing done) when the batch must go line by line."""
        if unique is None:
            return False
        if unique.held_lines is not None:  # the set was full: the worker found them all
            self.duplicates += unique.held_lines.sum()
            return True
        if not self.exact:
            return False
        new = self._new(unique)
        if self.distinct + len(new) > self.capacity:
            return False
        self.duplicates += n - len(new)
        self._add(new)
        return True

    def _new(self, unique: Unknown) -> Any:
        """The distinct fingerprints a worker found unknown, less those added since the levels
        it searched."""
        new = unique.fingerprints
        behind = self._snapshot.added - unique.added  # additions the worker did not search
        if 0 < behind <= len(self._recent):  # one hash lookup: a binary search each costs more
            since = _pl().concat(self._recent[-behind:]).implode()
            new = new.filter(~new.is_in(since))
        elif behind:
            new = new.filter(~held_by(self.levels, new))
        return new

    def _apply(self, hashes: Any, unique: Unknown | None = None) -> Any:
        """The rule, line after line, for a block at once: a line whose fingerprint the set
        holds is a duplicate; a new one joins while there is room, and once it has joined, its
        later lines are duplicates too; one that finds no room makes the count a lower bound.
        Returns which lines are duplicates. `unique`: what a worker found unknown among them,
        which spares this thread the search of the levels."""
        if unique is not None and unique.held_lines is not None:
            old = unique.held_lines
        elif unique is not None:
            old = ~hashes.is_in(self._new(unique).implode())
        else:
            old = lines_held(self._snapshot, hashes)
        first = hashes.is_first_distinct()
        new = hashes.filter(first & ~old)  # in the order they first come
        joined = new.head(max(self.capacity - self.distinct, 0))
        duplicate = old | (~first & hashes.is_in(joined.implode()))
        self.duplicates += duplicate.sum()
        self._add(joined.sort())
        if len(joined) < len(new):
            self.exact = False
            self._freeze()
        return duplicate

    def _freeze(self) -> None:
        """Full: nothing is added again, so the levels become one, which a worker searches
        once a block and then counts the block's duplicates itself (`unknown`)."""
        levels = list(self.levels)
        while len(levels) > 1:  # smallest first: at most the levels and their merge held at once
            _merge_last(levels)
        self._snapshot = self._snapshot._replace(levels=tuple(levels), full=True)

    def _add(self, new: Any) -> None:
        """Add `new` (sorted, distinct, none held yet) as a level, merging the smallest levels
        while one is at least a quarter of the size of the one before it (`MERGE_RATIO`)."""
        if not len(new):
            return
        new = new.rename("h")
        self._pending.append(new)
        self._recent = [*self._recent, new][-RECENT:]
        self.distinct += len(new)
        levels = [*self.levels, new]
        while len(levels) > 1 and MERGE_RATIO * len(levels[-1]) >= len(levels[-2]):
            _merge_last(levels)
        small = _pl().concat(levels) if self.distinct <= SMALL else None
        self._snapshot = Snapshot(tuple(levels), self._snapshot.added + 1, small=small)

    def save(self, log: Path) -> int:
        """Append the fingerprints added since the last save; return the log's durable size."""
        with open(log, "ab") as f:
            if self._pending:
                for added in self._pending:
                    f.write(_little_endian(array.array("Q", added.to_list())).tobytes())
                self._pending.clear()
                f.flush()
                os.fsync(f.fileno())
            return f.tell()

    def restore(self, log: Path, size: int, duplicates: int, exact: bool) -> None:
        """Load the set as it was at a checkpoint, dropping whatever was logged after it."""
        pl = _pl()
        chunks = []
        with open(log, "r+b") as f:
            f.truncate(size)
            f.seek(0)
            while data := f.read(8 * _RESTORE_CHUNK):
                values = _little_endian(array.array("Q", data))
                chunks.append(pl.Series("h", values, dtype=pl.UInt64))
        self.distinct, self._pending, self._recent = 0, [], []
        self._snapshot = Snapshot((), 0)
        if chunks:
            self._add(pl.concat(chunks).sort().unique())  # a log written twice: once
            self._pending, self._recent = [], []  # logged already; no worker saw less
        self.duplicates, self.exact = duplicates, exact
        # A lower bound with no room left. A checkpoint made under a smaller budget (or by a
        # version that held fewer a megabyte) leaves room: new fingerprints join it again.
        if not exact and self.distinct >= self.capacity:
            self._freeze()


def held(level: Any, hashes: Any) -> Any:
    """Which of `hashes` the sorted `level` holds: a binary search each."""
    at = level.search_sorted(hashes, side="left")
    at = at - at // len(level)  # one past the end: the last, which is smaller
    return level.gather(at) == hashes


def unknown(hashes: Any, known: Snapshot | None) -> Unknown:
    """The distinct fingerprints among `hashes` less those in `known` (a snapshot of a set's
    levels, or None), in ascending order; once the set is full, which lines it holds instead.
    What `Fingerprints.count` and `filter_blob` need of a block, taken by a worker thread, in
    Polars, without the GIL."""
    known = known or Snapshot((), 0)
    if known.full:  # the levels are final: a line is a duplicate if and only if they hold it
        return Unknown(None, known.added, lines_held(known, hashes))
    if known.small is not None:
        distinct = hashes.filter(~lines_held(known, hashes)).sort().unique()
        return Unknown(distinct, known.added)
    distinct, old = _distinct_held(known.levels, hashes)
    return Unknown(distinct.filter(~old), known.added)


def lines_held(known: Snapshot, hashes: Any) -> Any:
    """Which of a block's lines (`hashes`, in line order) `known` holds the fingerprint of."""
    if known.small is not None:
        return hashes.is_in(known.small.implode())
    distinct, old = _distinct_held(known.levels, hashes)
    return hashes.is_in(distinct.filter(old).implode())


def _distinct_held(levels: tuple[Any, ...], hashes: Any) -> tuple[Any, Any]:
    """A block's distinct fingerprints, ascending, and which of them `levels` hold: each
    searched once, in order, which is cheaper than line by line. Sorted first, then made
    distinct: half the time of the other way round."""
    distinct = hashes.sort().unique()
    return distinct, held_by(levels, distinct)


def _merge_last(levels: list[Any]) -> None:
    """Merge the last of `levels` into the one before it, in one pass over both."""
    last = levels.pop()
    levels[-1] = levels[-1].to_frame().merge_sorted(last.to_frame(), "h").to_series()


def held_by(levels: tuple[Any, ...], hashes: Any) -> Any:
    """Which of `hashes` (sorted: the searches then run in cache) any of `levels` holds."""
    old = hashes.is_null()  # all False: a fingerprint is never null
    for level in levels:
        old = old | held(level, hashes)
    return old


def _little_endian(values: array.array) -> array.array:
    """The log holds fingerprints as little-endian 64-bit integers, whatever the machine."""
    if sys.byteorder != "little":
        values.byteswap()
    return values

