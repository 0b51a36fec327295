"""Duplicate fingerprints on their own: counting, dropping, the budget, the log and restore."""

from __future__ import annotations

from unittest import mock

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.ingest import dedupe
from helpers.ingest.dedupe import BYTES_PER_FINGERPRINT, Fingerprints, unknown


def test_count_mode_keeps_every_line_and_counts_repeats_across_calls():
    fp = Fingerprints("count")
    assert fp.filter([b"a", b"b", b"a"]) == [b"a", b"b", b"a"]
    assert fp.filter([b"b", b"c"]) == [b"b", b"c"]
    assert (fp.duplicates, fp.distinct, fp.exact) == (2, 3, True)


def test_drop_mode_keeps_first_occurrences_in_order():
    fp = Fingerprints("drop")
    assert fp.filter([b"x", b"y", b"x", b"z", b"y"]) == [b"x", b"y", b"z"]
    assert fp.filter([b"z", b"w"]) == [b"w"]
    assert fp.duplicates == 3


def test_off_mode_neither_hashes_nor_counts():
    fp = Fingerprints("off")
    assert fp.filter([b"a", b"a"]) == [b"a", b"a"]
    assert (fp.duplicates, fp.distinct) == (0, 0)


def test_past_the_budget_the_count_becomes_a_lower_bound_and_memory_stops_growing():
    fp = Fingerprints("count", budget_bytes=3 * BYTES_PER_FINGERPRINT)
    fp.filter([b"1", b"2", b"3", b"4", b"5", b"1", b"5"])
    assert fp.distinct == 3 and fp.exact is False
    assert fp.duplicates == 1  # "1" is remembered; "5" came after the budget ran out


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="count, drop, off"):
        Fingerprints("maybe")


def test_the_log_restores_the_set_as_it_was_at_a_checkpoint(tmp_path):
    log = tmp_path / "fp"
    fp = Fingerprints("count")
    fp.filter([b"a", b"b"])
    size = fp.save(log)
    fp.filter([b"c"])
    fp.save(log)  # logged after the checkpoint: a crash came before the next one
    again = Fingerprints("count")
    again.restore(log, size, duplicates=0, exact=True)
    assert again.distinct == 2
    assert again.filter([b"a", b"c"]) == [b"a", b"c"] and again.duplicates == 1
    assert log.stat().st_size == size  # the tail past the checkpoint was cut


def series(values: list[int]) -> pl.Series:
    return pl.Series("h", values, dtype=pl.UInt64)


def test_unknown_keeps_the_distinct_fingerprints_a_snapshot_does_not_hold():
    assert unknown(series([5, 1, 5, 2, 9]), None) == [1, 2, 5, 9]  # ascending: the log order
    assert unknown(series([5, 1, 5, 2, 9]), series([1, 9, 7])) == [2, 5]


def test_known_mirrors_the_set_while_it_is_small(monkeypatch, tmp_path):
    monkeypatch.setattr(dedupe, "KNOWN_MAX", 4)
    fp = Fingerprints("count")
    fp.count(3, series([1, 2, 1]), [1, 2])
    assert sorted(fp.known.to_list()) == [1, 2]
    fp.count(2, series([3, 4]), [3, 4])
    assert sorted(fp.known.to_list()) == [1, 2, 3, 4]
    fp.save(tmp_path / "fp")
    fp.count(1, series([5]), [5])
    assert fp.known is None  # five is past the limit: every block goes to the set again
    again = Fingerprints("count")
    again.restore(tmp_path / "fp", (tmp_path / "fp").stat().st_size, 1, True)
    assert sorted(again.known.to_list()) == [1, 2, 3, 4]  # as saved, before five
    assert Fingerprints("drop").known is None and Fingerprints("off").known is None


@settings(max_examples=200, deadline=None)
@given(blocks=st.lists(st.lists(st.integers(0, 30), min_size=1, max_size=12), max_size=12),
       lag=st.integers(0, 3), limit=st.integers(0, 20))
def test_counts_are_exact_whatever_snapshot_the_workers_read(blocks, lag, limit):
    """Workers read `known` while the writer replaces it: a snapshot `lag` blocks old must give
    the counts that plain set arithmetic gives, and `known` must never hold what the set does
    not."""
    with mock.patch.object(dedupe, "KNOWN_MAX", limit):
        fp = Fingerprints("count")
        snapshots = [fp.known]
        for block in blocks:
            stale = snapshots[max(0, len(snapshots) - 1 - lag)]
            fp.count(len(block), series(block), unknown(series(block), stale))
            snapshots.append(fp.known)
            assert fp.known is None or set(fp.known.to_list()) == fp.seen
        seen = {x for block in blocks for x in block}
        assert (fp.duplicates, fp.seen) == (sum(len(b) for b in blocks) - len(seen), seen)


def one_by_one(mode: str, capacity: int, blocks: list[list[int]]) -> tuple:
    """The rule in its plainest form, line after line: a duplicate is a fingerprint the set
    holds; a new one joins while there is room (the set's count is then a lower bound)."""
    seen: set[int] = set()
    duplicates, exact, kept = 0, True, []
    for block in blocks:
        for h in block:
            if h in seen:
                duplicates += 1
                continue
            if len(seen) < capacity:
                seen.add(h)
            else:
                exact = False
            kept.append(h)
    return duplicates, exact, seen, kept if mode == "drop" else None


@settings(max_examples=200, deadline=None)
@given(blocks=st.lists(st.lists(st.integers(0, 40), min_size=1, max_size=15), max_size=12),
       capacity=st.integers(1, 12), mode=st.sampled_from(["count", "drop"]))
def test_past_the_budget_blocks_count_and_drop_as_line_after_line(blocks, capacity, mode):
    """However the lines come in blocks, before, across and after the set filling up: the
    same duplicates, exactness, kept set and (dropping) kept lines as the plain rule."""
    fp = Fingerprints(mode, budget_bytes=capacity * BYTES_PER_FINGERPRINT)
    kept = []
    for block in blocks:
        lines = [str(h).encode() for h in block]
        blob, n = fp.filter_blob(b"".join(x + b"\n" for x in lines), len(lines), series(block))
        kept += [int(x) for x in blob.split(b"\n")[:n]]
    duplicates, exact, seen, plain_kept = one_by_one(mode, capacity, blocks)
    assert (fp.duplicates, fp.exact, fp.seen) == (duplicates, exact, seen)
    if mode == "drop":
        assert kept == plain_kept
