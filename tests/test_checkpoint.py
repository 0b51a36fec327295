"""Checkpoints on their own: round trip, versions, and when a run may resume."""

from __future__ import annotations

import os

from helpers.ingest import checkpoint
from helpers.ingest.checkpoint import Checkpoint


def test_a_checkpoint_round_trips_through_its_file(tmp_path):
    saved = Checkpoint([["a.csv", 10, 1]], {"chunk_rows": 5}, file_index=1, record=7,
                       part_bytes=123, stats={"files": [{"name": "a.csv"}]})
    checkpoint.write(tmp_path / "ds.json", saved)
    assert checkpoint.read(tmp_path / "ds.json") == saved
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed into place


def test_an_unreadable_or_older_checkpoint_is_no_checkpoint(tmp_path):
    (tmp_path / "torn.json").write_bytes(b'{"inputs": [')
    assert checkpoint.read(tmp_path / "torn.json") is None
    assert checkpoint.read(tmp_path / "missing.json") is None
    (tmp_path / "old.json").write_text('{"version": 1, "inputs": [], "options": {}}')
    assert checkpoint.read(tmp_path / "old.json") is None


def test_resuming_needs_the_same_options_and_the_same_inputs(tmp_path):
    data = tmp_path / "a.csv"
    data.write_text("id\n1\n")
    inputs = checkpoint.input_signature([data])
    saved = Checkpoint(inputs, {"chunk_rows": 5, "level": 1})
    assert checkpoint.why_not_resumable(saved, inputs, {"chunk_rows": 5, "level": 1}) is None
    why = checkpoint.why_not_resumable(saved, inputs, {"chunk_rows": 9, "level": 1})
    assert why and "chunk_rows" in why
    data.write_text("id\n1\n2\n")
    os.utime(data, ns=(1, 1))
    why = checkpoint.why_not_resumable(saved, checkpoint.input_signature([data]),
                                       {"chunk_rows": 5, "level": 1})
    assert why and "a.csv" in why
