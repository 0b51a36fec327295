"""Duplicate fingerprints on their own: counting, dropping, the budget, the log and restore."""

from __future__ import annotations

import pytest

from helpers.ingest.dedupe import BYTES_PER_FINGERPRINT, Fingerprints


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
