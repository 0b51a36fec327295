"""make-raw's reruns, interruptions, errors and memory: the same arguments give the same
files and another seed moves the faults, a rerun with the same arguments is a no-op that says so
while --force or other arguments regenerate, a damaged file is regenerated, stale files go and
files outside the datasets stay, an interrupted generation leaves no manifest, a missing database
or a scale below one is refused with the fix, the command line generates then keeps, and a large
scale streams in bounded memory.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.chinook.datasets import DATASETS
from helpers.cli import main
from helpers.errors import HelpersError, InputError
from helpers.rawgen.generate import MANIFEST, make_raw
from tests.rawgen_util import faulty_raw as faulty_raw  # a fixture

ROOT = Path(__file__).resolve().parent.parent


# --- determinism, reruns, interruptions -------------------------------------------------------


def _snapshot(out: Path) -> dict[str, bytes]:
    """Every file's bytes; a gzip file's text (its compressed bytes could differ: see
    helpers/ingest/writer.py)."""
    return {str(p.relative_to(out)): gzip.decompress(p.read_bytes()) if p.suffix == ".gz"
            else p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_same_arguments_give_the_same_files(chinook_db, tmp_path):
    make_raw(chinook_db, tmp_path / "a", 2, seed=3, faults=True)
    make_raw(chinook_db, tmp_path / "b", 2, seed=3, faults=True)
    assert _snapshot(tmp_path / "a") == _snapshot(tmp_path / "b")
    assert gzip.open(tmp_path / "a" / "track_facts" / "track_facts_1.json.gz").read()


def test_another_seed_moves_the_faults(chinook_db, faulty_raw, tmp_path):
    other = make_raw(chinook_db, tmp_path, 2, seed=8, faults=True)
    ours = json.loads((faulty_raw / MANIFEST).read_text(encoding="utf-8"))
    lines = [[f["line"] for d in m["datasets"].values() for f in d["faults"]]
             for m in (ours, other)]
    assert lines[0] != lines[1]


def test_rerun_with_the_same_arguments_is_a_noop_that_says_so(chinook_db, tmp_path):
    make_raw(chinook_db, tmp_path, 1, faults=True)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    said: list[str] = []
    make_raw(chinook_db, tmp_path, 1, faults=True, say=said.append)
    assert said == [f"{tmp_path} already holds scale 1, seed 0, faults True: kept "
                    "(use --force to regenerate)"]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


@pytest.mark.parametrize("change", [
    {"force": True}, {"scale": 2}, {"seed": 1}, {"faults": False},
])
def test_force_or_other_arguments_regenerate(chinook_db, tmp_path, change):
    make_raw(chinook_db, tmp_path, 1, faults=True)
    said: list[str] = []
    args = {"scale": 1, "faults": True, **change}
    manifest = make_raw(chinook_db, tmp_path, say=said.append, **args)
    assert len(said) == len(DATASETS) and not any("kept" in line for line in said)
    assert manifest == json.loads((tmp_path / MANIFEST).read_text(encoding="utf-8"))


def test_a_damaged_file_is_regenerated_not_kept(chinook_db, tmp_path):
    make_raw(chinook_db, tmp_path, 1)
    target = tmp_path / "orders" / "orders_0.csv"
    good = target.read_bytes()
    target.write_bytes(good[:100])
    make_raw(chinook_db, tmp_path, 1)
    assert target.read_bytes() == good


def test_stale_files_go_and_files_outside_the_datasets_stay(chinook_db, tmp_path):
    (tmp_path / "tracks").mkdir()
    stale = [tmp_path / "tracks" / "tracks_9.csv", tmp_path / "tracks" / ".tracks_0.csv.tmp"]
    for path in stale:
        path.write_text("old")
    (tmp_path / "README.md").write_text("ours")
    make_raw(chinook_db, tmp_path, 1)
    assert not any(p.exists() for p in stale)
    assert (tmp_path / "README.md").read_text() == "ours"


def test_an_interrupted_generation_leaves_no_manifest(chinook_db, tmp_path, monkeypatch):
    import helpers.rawgen.generate as rawgen

    make_raw(chinook_db, tmp_path, 1)
    calls = 0
    real = rawgen._write_data_file

    def crash_on_the_third_file(*args):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(rawgen, "_write_data_file", crash_on_the_third_file)
    with pytest.raises(KeyboardInterrupt):
        make_raw(chinook_db, tmp_path, 2)
    assert not (tmp_path / MANIFEST).exists()
    monkeypatch.undo()
    said: list[str] = []
    make_raw(chinook_db, tmp_path, 2, say=said.append)
    assert not any("kept" in line for line in said)
    assert not list(tmp_path.rglob("*.tmp"))


# --- errors and the command line --------------------------------------------------------------


def test_a_missing_database_names_it_and_says_how_to_build_it(tmp_path):
    with pytest.raises(InputError) as error:
        make_raw(tmp_path / "none.db", tmp_path / "out", 1)
    assert error.value.message == (f"{tmp_path / 'none.db'}: database not found. "
                                   "Build it with `python -m helpers build-db` or pass --db")


def test_scale_below_one_is_refused(chinook_db, tmp_path):
    with pytest.raises(HelpersError, match="scale must be at least 1, got 0. Pass --scale 1"):
        make_raw(chinook_db, tmp_path, 0)


def test_command_line_generates_then_keeps(chinook_db, tmp_path, capsys):
    argv = ["make-raw", "--scale", "1", "--out", str(tmp_path), "--db", str(chinook_db)]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "tracks: 3503 rows in 6 files, 0 faults" in first
    assert main(argv) == 0
    assert "kept" in capsys.readouterr().out


# --- memory -----------------------------------------------------------------------------------

PEAK_GROWTH = """
import resource, sys
from helpers.rawgen.generate import make_raw
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
manifest = make_raw(sys.argv[1], sys.argv[2], int(sys.argv[3]))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
written = sum(f["bytes"] for d in manifest["datasets"].values() for f in d["files"])
print((after - before) * 1024, written)
"""


def test_a_large_scale_streams_in_bounded_memory(chinook_db, tmp_path):
    argv = [sys.executable, "-c", PEAK_GROWTH, str(chinook_db), str(tmp_path), "100"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=True)
    growth, written = map(int, done.stdout.split())
    assert written > 70_000_000
    assert growth < 20_000_000 and growth < written / 4
