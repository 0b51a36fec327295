"""The processing notebook's crash demo really kills and resumes: a killed run leaves a .part and a
checkpoint and resumes to the clean run's bytes, a run that fails before any checkpoint says why,
the comparison of two runs shows a difference, the scratch folder is cleared only when it holds
nothing but an ingestion's files, a checkpoint is described as it stands, and leftovers say what
each file is. Fixtures are in tests/report_util.py.
"""

from __future__ import annotations

import gzip
import shutil

import pytest

from helpers.errors import HelpersError, InputError
from helpers.ingest import checkpoint
from helpers.notebook.crash_demo import (
    clear_scratch,
    compare_runs,
    crash_and_resume,
    crash_demo,
    describe_checkpoint,
    list_leftovers,
)
from tests.report_util import CRASH_OPTIONS
from tests.report_util import faulty_raw as faulty_raw  # a fixture
from tests.report_util import ingested as ingested  # a fixture
from tests.report_util import private_tmp as private_tmp  # a fixture

# --- crash demo ----------------------------------------------------------------------------


def test_a_killed_run_resumes_to_the_clean_runs_bytes(faulty_raw, ingested, tmp_path):
    clean, _ = ingested
    demo = crash_and_resume(faulty_raw, tmp_path / "crash", "playlist_track", CRASH_OPTIONS,
                            log_dir=tmp_path / "logs")
    assert demo.killed_returncode == -9
    assert not demo.final_existed_after_kill
    assert not demo.checkpoint["finished"]
    assert demo.part_bytes_on_disk >= demo.checkpoint["output bytes vouched for"] > 0
    files = {row["file"] for row in demo.leftovers}
    assert {"playlist_track.json.gz.part", ".ingest/state/playlist_track.json"} <= files
    assert "playlist_track.json.gz" not in files
    assert demo.resumed["events"][0].startswith("resuming at file ")
    frame = compare_runs(clean, tmp_path / "crash", "playlist_track")
    assert frame["equal"].all(), frame


def test_the_kill_lands_at_the_same_place_on_every_run(faulty_raw, tmp_path):
    """Between the first and second checkpoints, wherever the threads are: the notebook's
    figures are the same on every run."""
    demos = [crash_and_resume(faulty_raw, tmp_path / f"crash{i}", "playlist_track",
                              CRASH_OPTIONS, log_dir=tmp_path / f"logs{i}") for i in range(2)]
    first, second = demos
    assert first.checkpoint == second.checkpoint
    assert first.part_bytes_on_disk == second.part_bytes_on_disk
    assert first.resumed["events"] == second.resumed["events"]


def test_the_whole_demo_runs_in_a_temporary_folder_and_leaves_nothing(chinook_db, private_tmp):
    demo = crash_demo(chinook_db, "playlist_track", CRASH_OPTIONS, scale=2)
    assert demo.killed_returncode == -9
    assert demo.comparison is not None and demo.comparison["equal"].all(), demo.comparison
    assert demo.comparison.loc["rows written", "clean run"] > 0
    assert demo.resumed["events"][0].startswith("resuming at file ")
    assert str(private_tmp) not in " ".join(demo.command)
    assert list(private_tmp.iterdir()) == []  # the scratch folder is gone


def test_a_run_that_fails_before_any_checkpoint_says_why(faulty_raw, tmp_path):
    with pytest.raises(HelpersError) as error:
        crash_and_resume(faulty_raw, tmp_path / "crash", "no_such_dataset", CRASH_OPTIONS,
                         log_dir=tmp_path / "logs")
    assert "before its second checkpoint" in error.value.message
    assert "no dataset folder named no_such_dataset" in error.value.message


def test_compare_runs_shows_a_difference(ingested, tmp_path):
    clean, _ = ingested
    other = tmp_path / "other"
    shutil.copytree(clean, other)
    rejects = other / "_rejects" / "tracks.jsonl.gz"
    rejects.write_bytes(gzip.compress(b""))
    frame = compare_runs(clean, other, "tracks")
    assert not frame.loc["rejects lines, sha256", "equal"]
    assert frame.drop(index="rejects lines, sha256")["equal"].all()
    assert frame.loc["output lines, sha256", "clean run"].endswith("…")
    assert frame.loc["gzip members", "clean run"] > 1


def test_clear_scratch_empties_an_ingestion_folder_and_refuses_any_other(tmp_path):
    scratch = tmp_path / "scratch"
    (scratch / ".ingest" / "state").mkdir(parents=True)
    (scratch / "tracks.json.gz.part").write_bytes(b"x")
    (scratch / ".ingest" / "lock").write_text("pid 1")
    clear_scratch(scratch)
    assert not scratch.exists()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(InputError) as error:
        clear_scratch(precious)
    assert error.value.message.startswith(f"{precious}: the scratch folder holds other files "
                                          "(notes.txt)")
    assert (precious / "notes.txt").exists()


def test_a_checkpoint_inside_a_file_does_not_count_that_file_as_finished():
    saved = checkpoint.Checkpoint(
        inputs=[["a.csv", 1, 1], ["b.csv", 1, 1], ["c.csv", 1, 1]], options={},
        file_index=1, record=500, part_bytes=10,
        stats={"files": [{"name": "a.csv"}, {"name": "b.csv"}], "rows_written": 900})
    described = describe_checkpoint(saved)
    assert described["files finished"] == "a.csv"
    assert described["file being read"] == "b.csv"
    assert described["records of it already written"] == 500
    assert described["rows written so far"] == 900


def test_leftovers_say_what_each_file_is_and_leave_out_the_logs(tmp_path):
    for rel in ("tracks.json.gz.part", ".ingest/state/tracks.json", ".ingest/logs/ingest.log",
                "odd.bin"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    found = {row["file"]: row["what it is"] for row in list_leftovers(tmp_path, "tracks")}
    assert set(found) == {"tracks.json.gz.part", ".ingest/state/tracks.json", "odd.bin"}
    assert "checkpoint" in found[".ingest/state/tracks.json"]
    assert found["odd.bin"] == ""
