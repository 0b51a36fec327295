"""Duplicate fingerprints on their own: counting, dropping, the budget, the log and restore."""

from __future__ import annotations

import struct
from unittest import mock

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.ingest import dedupe
from helpers.ingest.dedupe import BYTES_PER_FINGERPRINT, Fingerprints, Snapshot, held, unknown


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


def held_set(fp: Fingerprints) -> set[int]:
    return {h for level in fp.levels for h in level.to_list()}


def test_unknown_keeps_the_distinct_fingerprints_a_snapshot_does_not_hold():
    assert unknown(series([5, 1, 5, 2, 9]), None).fingerprints.to_list() == [1, 2, 5, 9]
    found = unknown(series([5, 1, 5, 2, 9, 10]), Snapshot((series([1, 7, 9]), series([0, 5])), 7))
    assert found.fingerprints.to_list() == [2, 10] and found.added == 7


@settings(max_examples=200, deadline=None)
@given(level=st.lists(st.integers(0, 2**64 - 1), unique=True, min_size=1),
       probes=st.lists(st.integers(0, 2**64 - 1)))
def test_held_is_membership_in_a_sorted_level(level, probes):
    probes += level[: len(level) // 2] + [min(level), max(level)]
    got = held(series(sorted(level)), series(probes)).to_list()
    assert got == [p in set(level) for p in probes]


def test_levels_stay_sorted_disjoint_and_few_as_the_set_grows(tmp_path):
    fp = Fingerprints("count")
    for start in range(0, 300_000, 1_000):
        fp.count(1_000, series(list(range(start, start + 1_000))))
        assert all(level.is_sorted() for level in fp.levels)
    assert fp.distinct == sum(len(level) for level in fp.levels) == 300_000
    assert len(set().union(*(level.to_list() for level in fp.levels))) == 300_000
    # Each level more than four times the next: 1 + log4(300) levels at most for 300 blocks.
    sizes = [len(level) for level in fp.levels]
    assert all(a > 4 * b for a, b in zip(sizes, sizes[1:])) and len(sizes) <= 5
    # 8 bytes a fingerprint, where a Python set of ints took about 90.
    assert sum(level.estimated_size() for level in fp.levels) == 8 * 300_000
    size = fp.save(tmp_path / "fp")
    assert size == 8 * 300_000
    again = Fingerprints("count")
    again.restore(tmp_path / "fp", size, fp.duplicates, True)
    assert len(again.levels) == 1 and held_set(again) == held_set(fp)
    assert again.save(tmp_path / "fp") == size  # what was restored is not logged twice


def test_the_log_is_little_endian_whatever_the_order_fingerprints_came_in(tmp_path):
    fp = Fingerprints("drop")
    fp.filter_blob(b"a\nb\n", 2, series([2**64 - 1, 1]))
    fp.save(tmp_path / "fp")
    data = (tmp_path / "fp").read_bytes()
    assert sorted(struct.unpack("<2Q", data)) == [1, 2**64 - 1]


def test_workers_search_the_levels_unless_nothing_is_counted():
    fp = Fingerprints("count")
    fp.count(2, series([1, 2]))
    assert fp.known.levels is fp.levels and len(fp.levels) == 1 and fp.known.added == 1
    assert Fingerprints("drop").known == Snapshot((), 0) and Fingerprints("off").known is None


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
    assert (fp.duplicates, fp.exact, held_set(fp)) == (duplicates, exact, seen)
    if mode == "drop":
        assert kept == plain_kept

def test_once_full_the_workers_count_a_blocks_duplicates_themselves(tmp_path):
    fp = Fingerprints("count", budget_bytes=2 * BYTES_PER_FINGERPRINT)
    fp.count(3, series([1, 2, 1]), unknown(series([1, 2, 1]), fp.known))
    assert fp.exact and not fp.known.full
    fp.count(4, series([3, 2, 3, 2]), unknown(series([3, 2, 3, 2]), fp.known))
    assert (fp.duplicates, fp.exact, fp.known.full) == (3, False, True)  # 2 twice; 3 no room
    found = unknown(series([2, 3, 2, 1, 4]), fp.known)
    assert found.held_lines.to_list() == [True, False, True, True, False]  # the set is final
    fp.count(5, series([2, 3, 2, 1, 4]), found)
    assert fp.duplicates == 6
    size = fp.save(tmp_path / "fp")
    again = Fingerprints("count", budget_bytes=2 * BYTES_PER_FINGERPRINT)
    again.restore(tmp_path / "fp", size, fp.duplicates, fp.exact)
    assert again.known.full and unknown(series([1, 3]), again.known).held_lines.sum() == 1



def test_a_lower_bound_with_room_left_takes_new_fingerprints_again(tmp_path):
    """A checkpoint's count can be a lower bound with room left now: made under a smaller
    budget, or by a version that held fewer fingerprints a megabyte."""
    small = Fingerprints("count", budget_bytes=2 * BYTES_PER_FINGERPRINT)
    small.count(3, series([1, 2, 3]))
    size = small.save(tmp_path / "fp")
    fp = Fingerprints("count", budget_bytes=10 * BYTES_PER_FINGERPRINT)
    fp.restore(tmp_path / "fp", size, small.duplicates, small.exact)
    assert not fp.exact and not fp.known.full
    fp.count(4, series([3, 3, 1, 4]), unknown(series([3, 3, 1, 4]), fp.known))
    assert (fp.distinct, fp.duplicates, fp.exact) == (4, 2, False)  # 3 joins, then repeats


def test_once_full_the_levels_become_one():
    fp = Fingerprints("count", budget_bytes=100 * BYTES_PER_FINGERPRINT)
    for start in range(0, 100, 10):
        fp.count(10, series(list(range(start, start + 10))))
    assert fp.exact and len(fp.levels) > 1
    fp.count(2, series([100, 5]))
    assert (fp.exact, len(fp.levels), fp.distinct, fp.duplicates) == (False, 1, 100, 1)
    assert fp.levels[0].to_list() == list(range(100)) and fp.known.full


@settings(max_examples=300, deadline=None)
@given(blocks=st.lists(st.lists(st.integers(0, 30), min_size=1, max_size=12), max_size=12),
       lag=st.integers(0, 5), capacity=st.sampled_from([1, 3, 8, 20, 1000]),
       recent=st.integers(1, 4), mode=st.sampled_from(["count", "drop"]),
       small=st.sampled_from([0, 5, 1 << 16]))
def test_blocks_are_exact_whatever_snapshot_the_workers_read(blocks, lag, capacity, recent, mode,
                                                             small):
    """Workers search the levels they read while the writer replaces them: a snapshot `lag`
    blocks old (older, at times, than the additions kept aside for the writer) must count and
    drop as the plain rule does, before, across and after the set fills, whether the set is
    looked up whole (`SMALL`) or level by level."""
    fp = Fingerprints(mode, budget_bytes=capacity * BYTES_PER_FINGERPRINT)
    snapshots, kept = [fp.known], []
    with mock.patch.object(dedupe, "RECENT", recent), mock.patch.object(dedupe, "SMALL", small):
        for block in blocks:
            stale = snapshots[max(0, len(snapshots) - 1 - lag)]
            found = unknown(series(block), stale)
            if mode == "count":
                fp.count(len(block), series(block), found)
            else:
                blob = b"".join(b"%d\n" % h for h in block)
                blob, n = fp.filter_blob(blob, len(block), series(block), found)
                kept += [int(x) for x in blob.split(b"\n")[:n]]
            snapshots.append(fp.known)
    duplicates, exact, seen, plain_kept = one_by_one(mode, capacity, blocks)
    assert (fp.duplicates, fp.exact, held_set(fp), fp.distinct) == (
        duplicates, exact, seen, len(seen))
    if mode == "drop":
        assert kept == plain_kept
