"""The processing notebook's append demo really appends: the second run reads only the added
file, the first output's bytes stay its prefix, the counts and the multiset of lines equal a
clean run's, and the comparison would show a difference if there were one."""

from __future__ import annotations

import gzip

from helpers.ingest.dataset_pass import Options
from helpers.notebook.append_demo import append_demo, compare
from tests.report_util import private_tmp as private_tmp  # a fixture


def test_the_second_run_reads_only_the_new_file_and_matches_a_clean_run(chinook_db,
                                                                       private_tmp):
    demo = append_demo(chinook_db, "playlist_track", Options(chunk_rows=500), scale=2)
    assert demo.read == [demo.added] and demo.added.startswith("playlist_track_export_2")
    assert demo.prefix_kept and demo.first_bytes > 0
    assert list(demo.history["kind"]) == ["full", "append"]
    assert demo.history["files"].iloc[1] == [demo.added]
    assert demo.comparison["equal"].all(), demo.comparison
    assert demo.comparison.loc["duplicates", "appended"] > 0  # the re-export: all duplicates
    assert list(private_tmp.iterdir()) == []


def test_the_comparison_shows_a_different_line(tmp_path):
    entry = {"rows_written": 2, "rows_rejected": 0, "duplicates": 0, "distinct_rows": 2}
    a, b = tmp_path / "a.json.gz", tmp_path / "b.json.gz"
    a.write_bytes(gzip.compress(b'{"x": 1}\n{"x": 2}\n'))
    b.write_bytes(gzip.compress(b'{"x": 2}\n{"x": 1}\n'))
    assert compare(entry, entry, a, b)["equal"].all()  # order does not matter
    b.write_bytes(gzip.compress(b'{"x": 2}\n{"x": 3}\n'))
    frame = compare(entry, entry, a, b)
    assert not frame.loc["sorted lines, sha256", "equal"]
