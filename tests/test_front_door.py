"""The front door (issue #13): each stage does its work once and says when it is up to date; the
output folder holds only the deliverables; an interrupt never costs a finished dataset; warnings
and errors are one line each on the terminal."""

from __future__ import annotations

import errno
import gzip
import json
import os
from pathlib import Path

import orjson
import pytest

from helpers.cli import main
from helpers.ingest import engine
from helpers.ingest.dataset_pass import Options
from helpers.ingest.engine import Interrupted, ingest
from helpers.ingest.manifest import read_manifest
from helpers.notebook.run_summary import run_summary
from helpers.warehouse import load as load_module
from helpers.warehouse.load import load
from tests.ingest_util import write_raw

TRACKS = (b"TrackId,Name,AlbumId,MediaTypeId,GenreId,Composer,Milliseconds,Bytes,UnitPrice\n"
          b"1,A,1,1,1,x,100,200,0.99\n2,B,1,1,1,,100,200,0.99\n3,bad,1,1,1,,oops,200,0.99\n")
THINGS = b"id,name\n1,a\n2,b\n"


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    write_raw(tmp_path, "tracks", {"tracks_0.csv": TRACKS})
    return write_raw(tmp_path, "things", {"a.csv": THINGS, "b.csv": THINGS})


def cli_ingest(raw: Path, out: Path, *extra: str) -> list[str]:
    return ["ingest", "--raw", str(raw), "--out", str(out), "--no-progress", "--jobs", "1",
            *extra]


def refuse_to_ingest(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(folder, *args, **kwargs):
        raise AssertionError(f"{folder.name} was read again")

    monkeypatch.setattr(engine, "ingest_dataset", refuse)


# --- idempotent ingestion --------------------------------------------------------------------


def test_a_second_ingest_reads_nothing_and_says_it_is_up_to_date(raw, tmp_path, monkeypatch,
                                                                  capsys):
    out = tmp_path / "out"
    assert main(cli_ingest(raw, out)) == 0
    before = (out / "_manifest.json").read_bytes()
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json.gz")}
    capsys.readouterr()
    refuse_to_ingest(monkeypatch)
    assert main(cli_ingest(raw, out)) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"up to date: {out} already holds things, tracks")
    assert len(printed.splitlines()) == 1
    assert (out / "_manifest.json").read_bytes() == before  # it keeps the run that did the work
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json.gz")} == stamps


def test_a_changed_file_reingests_its_dataset_only(raw, tmp_path):
    out = tmp_path / "out"
    ingest(raw, out, jobs=1, progress=False)
    (raw / "things" / "b.csv").write_bytes(THINGS + b"3,c\n")
    manifest = ingest(raw, out, jobs=1, progress=False)
    assert manifest.run["ingested"] == ["things"] and manifest.run["up_to_date"] == ["tracks"]
    assert manifest["things"]["rows_written"] == 5
    on_disk = read_manifest(out)[1]
    assert sorted(on_disk) == ["things", "tracks"] and on_disk["things"]["rows_written"] == 5


@pytest.mark.parametrize("change", ["a file added", "a file removed", "options",
                                    "output truncated", "rejects removed", "--fresh"])
def test_what_makes_a_dataset_stale(raw, tmp_path, change):
    out = tmp_path / "out"
    ingest(raw, out, jobs=1, progress=False)
    options, fresh = Options(), False
    if change == "a file added":
        (raw / "tracks" / "tracks_1.csv").write_bytes(TRACKS)
    elif change == "a file removed":
        (raw / "things" / "b.csv").unlink()
    elif change == "options":
        options = Options(level=2)
    elif change == "output truncated":
        (out / "tracks.json.gz").write_bytes(gzip.compress(b""))
    elif change == "rejects removed":
        (out / "_rejects" / "tracks.jsonl.gz").unlink()
    else:
        fresh = True
    manifest = ingest(raw, out, jobs=1, progress=False, options=options, fresh=fresh)
    expected = {"a file added": ["tracks"], "a file removed": ["things"],
                "output truncated": ["tracks"], "rejects removed": ["tracks"]}
    assert manifest.run["ingested"] == expected.get(change, ["things", "tracks"])


def test_the_cli_and_the_notebook_defaults_give_the_same_options():
    """So that the processing notebook finds `make process`'s output up to date."""
    notebook = json.loads((Path(__file__).parents[1] / "notebooks" / "01_processing.ipynb")
                          .read_text())
    [cell] = [c for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", [])]
    values: dict = {}
    exec("".join(cell["source"]), values)
    from_notebook = Options(chunk_rows=values["chunk_rows"],
                            checkpoint_rows=values["checkpoint_rows"], level=values["gzip_level"],
                            dedupe=values["dedupe"], dedupe_budget_mb=values["dedupe_budget_mb"])
    assert from_notebook == Options()
    assert (values["raw_dir"], values["out_dir"]) == ("../raw_data", "../processed_data")


# --- a tidy output folder --------------------------------------------------------------------


def test_the_output_folder_holds_the_deliverables_and_one_hidden_folder(raw, tmp_path):
    out = tmp_path / "out"
    assert main(cli_ingest(raw, out)) == 0
    top = sorted(p.name for p in out.iterdir())
    assert top == [".ingest", "_manifest.json", "_rejects", "things.json.gz", "tracks.json.gz"]
    hidden = sorted(p.relative_to(out).as_posix() for p in (out / ".ingest").rglob("*")
                    if p.is_file())
    logs = [h for h in hidden if h.startswith(".ingest/logs/ingest-")]
    assert len(logs) == 1  # and no lock, no working checkpoint:
    assert sorted(set(hidden) - set(logs)) == [  # only what a later run may append to
        ".ingest/done/things.fp", ".ingest/done/things.json", ".ingest/done/tracks.fp",
        ".ingest/done/tracks.json"]
    run, datasets = read_manifest(out)
    assert {"started", "finished", "options", "version", "status", "engine"} <= set(run)
    assert run["status"] == "complete" and run["options"]["chunk_rows"] == Options().chunk_rows
    for entry in datasets.values():  # relative to the output folder
        assert not Path(entry["output"]).is_absolute() and (out / entry["output"]).is_file()
        assert (out / entry["rejects"]).is_file()


def test_a_lock_left_by_a_killed_run_does_not_stop_the_next(raw, tmp_path):
    out = tmp_path / "out"
    (out / ".ingest").mkdir(parents=True)
    (out / ".ingest" / "lock").write_text("")  # a dead run's file: the OS dropped its lock
    (out / ".ingest" / "lock.owner").write_text("pid 99999")
    ingest(raw, out, jobs=1, progress=False)
    assert not (out / ".ingest" / "lock").exists()
    assert not (out / ".ingest" / "lock.owner").exists()


# --- interrupts ------------------------------------------------------------------------------


def test_an_interrupt_keeps_the_datasets_that_finished(raw, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = engine.ingest_dataset

    def interrupted_on_tracks(folder, *args, **kwargs):
        if folder.name == "tracks":
            raise KeyboardInterrupt
        return real(folder, *args, **kwargs)

    monkeypatch.setattr(engine, "ingest_dataset", interrupted_on_tracks)
    with pytest.raises(Interrupted) as stopped:
        ingest(raw, out, jobs=1, progress=False)
    message = str(stopped.value)
    assert message.startswith("interrupted: things finished, 4 records read; tracks kept")
    assert message.endswith("run the same command again to resume")
    run, datasets = read_manifest(out)
    assert run["status"] == "interrupted" and list(datasets) == ["things"]
    monkeypatch.setattr(engine, "ingest_dataset", real)
    again = ingest(raw, out, jobs=1, progress=False)
    assert again.run["ingested"] == ["tracks"] and again.run["up_to_date"] == ["things"]


def test_the_cli_prints_the_interrupt_in_one_line(raw, tmp_path, monkeypatch, capsys):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "ingest_dataset", interrupt)
    assert main(cli_ingest(raw, tmp_path / "out")) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("interrupted: no dataset finished")


# --- warnings and errors on the terminal -----------------------------------------------------


def test_warnings_follow_the_table_one_line_each(raw, tmp_path, capsys):
    (raw / "empty").mkdir()
    (raw / "things" / "notes.bin").write_bytes(b"\x00\x01\x02" * 100)
    out = tmp_path / "out"
    assert main(cli_ingest(raw, out)) == 0
    lines = capsys.readouterr().out.splitlines()
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert lines[-len(warnings):] == warnings  # all of them after the table
    assert "warning: empty: no data files: the output is an empty file" in warnings
    assert any(w.startswith("warning: things: skipped notes.bin: ") for w in warnings)
    assert (f"warning: tracks: 1 record rejected, with the reason for each in "
            f"{out / '_rejects' / 'tracks.jsonl.gz'}") in warnings


@pytest.mark.parametrize("limit, status", [(0, 1), (1, 0)])
def test_max_rejects_fails_the_run_past_the_limit(raw, tmp_path, capsys, limit, status):
    assert main(cli_ingest(raw, tmp_path / "out", "--max-rejects", str(limit))) == status
    err = capsys.readouterr().err
    if status:
        assert err == ("error: 1 record rejected, more than --max-rejects 0; the outputs "
                       "are written, the reasons are in each dataset's rejects file\n")
    else:
        assert err == ""
    assert (tmp_path / "out" / "tracks.json.gz").exists()


def test_a_full_disk_is_one_line_naming_the_path_and_what_to_do(raw, tmp_path, monkeypatch,
                                                                capsys):
    out = tmp_path / "out"

    def full(path, manifest, run=None):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path / "_manifest.json"))

    monkeypatch.setattr(engine, "write_manifest", full)
    assert main(cli_ingest(raw, out)) == 1
    err = capsys.readouterr().err
    assert err == (f"error: {out / '_manifest.json'}: No space left on device. Free some "
                   "space, or write to another disk, and run the same command again: an "
                   "ingestion resumes from its last checkpoint\n")
    with pytest.raises(OSError) as raised:  # --debug: the traceback instead of the line
        main(cli_ingest(raw, out, "--debug"))
    assert raised.value.errno == errno.ENOSPC


# --- load and the closing summary ------------------------------------------------------------


def test_a_second_load_reads_nothing_and_a_changed_file_loads_again(ingested_outputs, chinook_db,
                                                                    tmp_path, monkeypatch):
    processed = ingested_outputs
    db = tmp_path / "warehouse.db"
    first = load(processed, db, chinook_db)
    assert not first.up_to_date
    real = load_module._build

    def refuse(*args, **kwargs):
        raise AssertionError("loaded again")

    monkeypatch.setattr(load_module, "_build", refuse)
    again = load(processed, db, chinook_db)
    assert again.up_to_date and again.to_dict() | {"up_to_date": False} == first.to_dict()
    os.utime(processed / "tracks.json.gz")
    with pytest.raises(AssertionError, match="loaded again"):
        load(processed, db, chinook_db)
    monkeypatch.setattr(load_module, "_build", real)
    assert not load(processed, db, chinook_db).up_to_date


@pytest.fixture
def ingested_outputs(chinook_db, tmp_path) -> Path:
    from helpers.rawgen.generate import make_raw

    make_raw(chinook_db, tmp_path / "raw", 1)
    ingest(tmp_path / "raw", tmp_path / "processed", progress=False)
    return tmp_path / "processed"


def test_the_summary_shows_the_answers_cell_and_every_output(raw, tmp_path):
    out = tmp_path / "out"
    ingest(raw, out, jobs=1, progress=False)
    reports = tmp_path / "reports"
    reports.mkdir()
    answers = "question  answer\nQ1        AC/DC"
    cells = [{"cell_type": "code", "metadata": {}, "outputs": [], "source": ""},
             {"cell_type": "code", "metadata": {"tags": ["answers"]}, "source": "",
              "outputs": [{"output_type": "execute_result",
                           "data": {"text/plain": answers.splitlines(keepends=True)}}]}]
    (reports / "02_wrangling.ipynb").write_bytes(orjson.dumps({"cells": cells}))
    (reports / "02_wrangling.html").write_text("<html></html>")
    text = run_summary(out, tmp_path / "missing.db", reports)
    assert "  question  answer\n  Q1        AC/DC\n" in text
    assert f"  {out / 'tracks.json.gz'}: 2 rows, 1 rejected, see " \
           f"{out / '_rejects' / 'tracks.jsonl.gz'}" in text
    assert f"  {out / 'things.json.gz'}: 4 rows, 0 rejected\n" in text
    assert f"  {tmp_path / 'missing.db'}: not loaded (run `make load`)" in text
    assert text.endswith(str(reports / "02_wrangling.html"))
