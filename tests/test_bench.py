"""The benchmark harness: it runs the peers, counts their rows and flags a wrong count.

Speed is never asserted here; the harness runs at scale 1 so these tests stay fast.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
from datetime import date
from pathlib import Path

import pytest
from isal import igzip

from benchmarks import bench, checks, e2e, profile, report
from benchmarks.measure import run_measured
from helpers import memory

QUIET = {"say": lambda _line: None, "load": False, "profile_when": "never"}


def run_bench(tmp_path: Path, db: Path, peers: list[str]) -> dict:
    return bench.bench([1], peers, reps=1, work=tmp_path / "work",
                       results_dir=tmp_path / "results", db=db, **QUIET)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, chinook_db: Path) -> tuple[Path, dict]:
    """Ours (both forms) and the naive baseline at scale 1, one run each."""
    tmp = tmp_path_factory.mktemp("bench")
    return tmp, run_bench(tmp, chinook_db, ["a", "b", "c"])


def test_results_json_has_every_peers_counts_matching_the_manifest(tiny_run):
    tmp, _ = tiny_run
    results = json.loads((tmp / "results" / f"{date.today().isoformat()}.json").read_text())
    manifest = json.loads((tmp / "work" / "raw-1" / "MANIFEST.json").read_text())
    want = {name: d["rows"] for name, d in manifest["datasets"].items()}
    scale = results["scales"]["1"]
    assert {r["peer"] for r in scale["runs"]} == {"a", "b", "c"}
    for run in scale["runs"]:
        assert run["rows"] == want, run["peer"]
        assert run["row_problems"] == []
        # Which ingestion code ran (others may edit helpers/ meanwhile, so not compared to now).
        assert re.fullmatch(r"[0-9a-f]{12}( \(changed during run\))?", run["code"])
    assert all(scale["summary"][k]["rows_ok"] for k in ("a", "b", "c"))


def test_naive_output_is_flagged_for_nan_and_raw_key_spelling(tiny_run):
    _, results = tiny_run
    problems = results["scales"]["1"]["summary"]["c"]["sample_problems"]
    assert "tracks: not strict JSON (NaN?)" in problems
    assert any(p.startswith("track_facts: keys differ from canonical") for p in problems)
    assert results["scales"]["1"]["summary"]["a"]["sample_problems"] == []


def test_table_and_chart_are_written(tiny_run):
    tmp, _ = tiny_run
    table = (tmp / "results" / "latest.md").read_text()
    for row in ("| (a) ours |", "| (b) ours --dedupe off |", "| (c) naive |"):
        assert row in table
    assert "naive / ours = " in table
    assert (tmp / "results" / "latest.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("got, flagged", [
    ({"orders": 10, "tracks": 20}, []),
    ({"orders": 10, "tracks": 19}, ["tracks: 19 rows, manifest says 20 (-1)"]),
    ({"orders": 10, "tracks": None}, ["tracks: no output file"]),
    ({"orders": 10}, ["tracks: no output file"]),
    ({"orders": 10, "tracks": 20, "stray": 1}, ["stray: not in the manifest"]),
])
def test_check_rows_flags_each_wrong_count(got, flagged):
    assert checks.check_rows({"orders": 10, "tracks": 20}, got) == flagged


def fake_run(peer: str, rows: dict, wall: float) -> dict:
    return {"peer": peer, "wall_s": wall, "cpu_s": wall, "peak_tree_mib": 100.0,
            "peak_tree_pss_mib": 80.0, "at_peak": [{"pid": 1, "role": "x", "rss_mib": 60.0}],
            "peak_largest_mib": 60.0, "returncode": 0, "rows": rows, "output_bytes": 1000,
            "row_problems": checks.check_rows({"tracks": 20}, rows), "sample_problems": {}}


def test_a_peer_with_a_wrong_count_is_reported_not_hidden():
    summary = {"a": report.summarize_peer([fake_run("a", {"tracks": 20}, 2.0)], 20),
               "d": report.summarize_peer([fake_run("d", {"tracks": 19}, 3.0)], 20)}
    assert summary["a"]["rows_ok"] and not summary["d"]["rows_ok"]
    results = {"date": "2000-01-01", "machine": "test", "reps": 1, "versions": {},
               "peers": {"a": "ours", "d": "DuckDB"},
               "scales": {"1": {"total_rows": 20, "raw_mb": 0.1, "summary": summary,
                                "ratios": report.ratios(summary), "targets": []}}}
    table = report.markdown(results)
    assert "**NO**: tracks: 19 rows, manifest says 20 (-1)" in table
    assert "DuckDB / ours = 1.50x" in table


@pytest.mark.parametrize("codes, odd", [
    (["aaa", "aaa", "aaa"], []),
    (["aaa", "bbb", "bbb"], ["scale 5 (a) rep 1: aaa"]),
    (["aaa (changed during run)", "aaa", "aaa"], ["scale 5 (a) rep 1: aaa (changed during run)"]),
])
def test_runs_of_other_ingestion_code_are_named_in_a_warning(codes, odd):
    runs = [{"peer": "a", "scale": 5, "rep": i + 1, "code": c} for i, c in enumerate(codes)]
    assert report.odd_code_runs(runs) == odd
    results = {"date": "2000-01-01", "machine": "test", "reps": 1, "versions": {},
               "peers": {}, "code": sorted(set(codes)), "odd_code_runs": odd, "scales": {}}
    table = report.markdown(results)
    assert ("ingestion code changed" in table) is bool(odd)
    for name in odd:
        assert name in table


def test_code_digest_follows_the_ingestion_modules_only(tmp_path):
    modules = bench.ingest_modules()
    names = {f"{p.parent.name}/{p.name}" for p in modules}
    assert {"ingest/engine.py", "ingest/dataset_pass.py", "helpers/cli.py",
            "ingest/spark.py"} <= names
    assert "rawgen/generate.py" not in names  # make-raw's generator is not part of an ingest run
    assert not any(n.startswith("notebook/") for n in names)
    copies = []
    for path in modules:
        copies.append(tmp_path / path.parent.name / path.name)
        copies[-1].parent.mkdir(exist_ok=True)
        copies[-1].write_bytes(path.read_bytes())
    before = bench.code_digest(copies)
    copies[0].write_bytes(copies[0].read_bytes() + b"# edited\n")
    assert bench.code_digest(copies) != before


@pytest.mark.parametrize("wall_d, wall_c, peak, missed", [
    (3.0, 30.0, 100.0, []),
    (1.0, 30.0, 100.0, ["(d) DuckDB"]),
    (3.0, 9.0, 100.0, ["naive"]),
    (3.0, 30.0, 200.0, ["150 MiB"]),
])
def test_targets_say_which_one_is_missed(wall_d, wall_c, peak, missed):
    ours = report.summarize_peer([fake_run("a", {"tracks": 20}, 2.0)], 20)
    ours["peak_tree_mib"] = peak
    summary = {"a": ours, "c": {"wall_s": wall_c, "wall_min_s": wall_c},
               "d": {"wall_s": wall_d, "wall_min_s": wall_d}}
    found = report.targets(500, summary, ours)
    missed_targets = [t["target"] for t in found if not t["met"]]
    assert len(missed_targets) == len(missed)
    for word in missed:
        assert any(word in t for t in missed_targets)


def write_gz(path: Path, text: bytes) -> Path:
    with igzip.open(path, "wb") as f:
        f.write(text)
    return path


@pytest.mark.parametrize("text, rows, problems", [
    (b'{"a": 1}\n{"a": 2}\n', 2, []),
    (b'{"a": 1}\n{"a": 2}', 2, []),  # no newline after the last line
    (b"", 0, []),
    (b'{"a": NaN}\n', 1, ["not strict JSON (NaN?)"]),
    (b'{"A": 1}\n', 1, ["keys differ from canonical (missing a; extra A)"]),
])
def test_scan_output_counts_lines_and_checks_the_sample(tmp_path, text, rows, problems):
    assert checks.scan_output(write_gz(tmp_path / "x.json.gz", text), ["a"]) == (rows, problems)


CHILD = "import time; x = b'x' * (64 << 20); time.sleep(1.0)"


def test_measured_memory_covers_the_whole_process_tree():
    parent = ("import subprocess, sys, time; "
              f"p = subprocess.Popen([sys.executable, '-c', {CHILD!r}]); "
              "x = b'x' * (64 << 20); p.wait()")
    m = run_measured([sys.executable, "-c", parent], interval=0.02)
    assert m.returncode == 0
    assert m.max_processes == 2
    assert m.peak_largest_mib >= 64
    assert m.peak_tree_mib >= 128  # both processes' 64 MiB, summed
    # At the sampled peak the tree's sum exceeds each of its processes. (peak_largest_mib comes
    # from the kernel's high-water marks, not from that sample, so it is no bound on the sum.)
    assert m.peak_tree_mib > max(p["rss_mib"] for p in m.at_peak)


def test_profile_summary_reads_subprocess_stacks():
    collapsed = (
        'process 1:"python -m helpers ingest";main (helpers/cli.py:9);'
        "chunk (helpers/ingest/normalize.py:80);loads (json/__init__.py:3) 3\n"
        'process 2:"python -c from multiprocessing.spawn import spawn_main; spawn_main(8)";'
        "chunk (/x/helpers/ingest/normalize.py:81) 1\n"
        'process 3:"python -c idle; idle" 4\n')
    summary = profile.summarize(collapsed)
    assert summary["samples"] == 4
    assert summary["self_top"][0] == {"function": "loads (__init__.py)", "percent": 75.0}
    inclusive = {f["function"]: f["percent"] for f in summary["helpers_inclusive"]}
    assert inclusive == {"helpers.ingest.normalize.chunk": 100.0, "helpers.cli.main": 75.0}


def test_a_peer_whose_library_is_missing_is_reported_as_skipped(tmp_path, chinook_db,
                                                                 monkeypatch):
    missing = bench.Peer("z", "missing", bench.PEERS["a"].argv, ("no_such_module_for_bench",))
    monkeypatch.setitem(bench.PEERS, "z", missing)
    results = run_bench(tmp_path, chinook_db, ["a", "z"])
    assert "no_such_module_for_bench not installed" in results["scales"]["1"]["summary"]["z"][
        "skipped"]
    assert "| (z) missing | skipped:" in (tmp_path / "results" / "latest.md").read_text()


@pytest.mark.parametrize("peer", ["d", "d2", "e"])
def test_library_peers_write_the_manifests_rows(tmp_path, chinook_db, peer):
    for module in bench.PEERS[peer].needs:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is in the bench extra, not installed here")
    summary = run_bench(tmp_path, chinook_db, [peer])["scales"]["1"]["summary"][peer]
    assert summary["rows_ok"], summary["row_problems"]
    assert summary["sample_problems"] == []


# --- (f) our engine on Spark --------------------------------------------------------------


@pytest.fixture(scope="module")
def spark_run(tmp_path_factory: pytest.TempPathFactory, chinook_db: Path) -> tuple[Path, dict]:
    """(f) at scale 1, once: a Spark session costs 10-20 s, so the module shares this run."""
    reason = bench.PEERS["f"].skip_reason()
    if reason:
        pytest.skip(f"the Spark peer cannot run on this machine: {reason}")
    tmp = tmp_path_factory.mktemp("bench-spark")
    return tmp, run_bench(tmp, chinook_db, ["f"])


def test_spark_peer_rows_are_summed_over_its_parts_and_match_the_manifest(spark_run):
    tmp, results = spark_run
    manifest = json.loads((tmp / "work" / "raw-1" / "MANIFEST.json").read_text())
    want = {name: d["rows"] for name, d in manifest["datasets"].items()}
    (run,) = results["scales"]["1"]["runs"]
    assert run["returncode"] == 0, run["stderr_tail"]
    assert run["rows"] == want and run["row_problems"] == []
    assert results["scales"]["1"]["summary"]["f"]["rows_ok"]
    assert run["sample_problems"] == {ds: [] for ds in want}
    parts = list((tmp / "work" / "out-f").glob("*/part-*.json.gz"))
    assert len(parts) > len(want)  # Spark wrote several parts, and every one was counted
    assert run["output_bytes"] == sum(p.stat().st_size for p in parts)


def test_spark_peers_jvm_is_in_the_sampled_tree_and_its_cpu_counted(spark_run):
    _, results = spark_run
    (run,) = results["scales"]["1"]["runs"]
    jvm = [p for p in run["at_peak"] if p["role"] == "JVM"]
    assert len(jvm) == 1 and jvm[0]["rss_mib"] > 100
    # Most of the work happens in the JVM and the Python workers, not in the driver we start.
    assert run["cpu_s"] > 5


@pytest.mark.parametrize("break_it, reason", [
    (lambda mp, tmp: mp.setenv("JAVA_HOME", str(tmp / "no-java")), "needs Java 17 or newer"),
    (lambda mp, tmp: mp.setitem(bench.PEERS, "f", dataclasses.replace(
        bench.PEERS["f"], needs=("no_such_pyspark_for_bench",))),
     "no_such_pyspark_for_bench not installed (pip install -e '.[spark]')"),
])
def test_spark_peer_without_java_or_pyspark_is_skipped_with_the_reason(
        tmp_path, chinook_db, monkeypatch, break_it, reason):
    break_it(monkeypatch, tmp_path)
    results = run_bench(tmp_path, chinook_db, ["f"])
    assert reason in results["scales"]["1"]["summary"]["f"]["skipped"]
    assert results["scales"]["1"]["runs"] == []
    table = (tmp_path / "results" / "latest.md").read_text()
    assert "| (f) ours --engine spark (local[2]) | skipped: " in table


def write_parts(out: Path, dataset: str, *texts: bytes) -> None:
    (out / dataset).mkdir(parents=True)
    for i, text in enumerate(texts):
        write_gz(out / dataset / f"part-{i:05d}.json.gz", text)
    (out / dataset / "_SUCCESS").touch()


@pytest.mark.parametrize("written, flagged", [
    (3, []),
    (4, ["_manifest.json tracks: 4 rows, manifest says 3 (+1)"]),
])
def test_a_folder_of_parts_is_counted_whole_and_checked_against_its_manifest(
        tmp_path, written, flagged):
    write_parts(tmp_path, "tracks", b'{"a": 1}\n{"a": 2}\n', b'{"a": 3}\n')
    (tmp_path / "_manifest.json").write_text(json.dumps({"tracks": {"rows_written": written}}))
    rows, problems = checks.scan_outputs(tmp_path, {"tracks": ["a"]})
    assert rows == {"tracks": 3} and problems == {"tracks": []}
    assert bench.ours_manifest_problems(tmp_path, {"tracks": 3}) == flagged
    assert checks.output_bytes(tmp_path, ["tracks"]) == sum(
        p.stat().st_size for p in (tmp_path / "tracks").glob("part-*"))


def test_an_empty_folder_of_parts_is_zero_rows_and_a_missing_one_no_output(tmp_path):
    (tmp_path / "orders").mkdir()
    rows, _ = checks.scan_outputs(tmp_path, {"orders": [], "tracks": []})
    assert rows == {"orders": 0, "tracks": None}


# --- measuring processes that outlive their parent ----------------------------------------

BURN = "import time\nstart = time.process_time()\nwhile time.process_time() - start < 0.6: pass"


def test_cpu_of_a_child_that_outlives_its_parent_is_counted():
    # As pyspark's JVM does: the parent exits without waiting, the child works on.
    parent = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {BURN!r}])"
    m = run_measured([sys.executable, "-c", parent], interval=0.02)
    assert m.returncode == 0
    assert m.adopted == 1
    assert m.cpu_s >= 0.6
    assert m.after_exit_s > 0.3  # the orphan's time is reported apart from the wall time


def test_same_memory_tells_a_thread_from_a_child_process():
    if memory.SYS_KCMP is None:
        pytest.skip("kcmp's syscall number is not known for this machine")
    ready, done, tid = threading.Event(), threading.Event(), []
    thread = threading.Thread(target=lambda: (tid.append(threading.get_native_id()),
                                              ready.set(), done.wait()))
    thread.start()
    ready.wait()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    try:
        assert memory.same_memory(os.getpid(), tid[0])
        assert not memory.same_memory(os.getpid(), child.pid)
    finally:
        done.set()
        thread.join()
        child.wait()


# --- end to end: make run in a fresh clone ------------------------------------------------


def echoed(*lines: tuple[float, str]) -> list[tuple[float, str]]:
    return [(at, text + "\n") for at, text in lines]


@pytest.mark.parametrize("lines, wall, steps", [
    (echoed((0.1, "python3 -m venv .venv"), (0.2, ".venv/bin/python -m pip install -q -e ."),
            (30.0, ".venv/bin/python -m helpers build-db --db db/sqlite/chinook.db"),
            (31.0, ".venv/bin/python -m helpers make-raw --scale 500"),
            (32.5, "wrote 9 files"), (40.0, ".venv/bin/python -m helpers ingest --raw r"),
            (50.0, ".venv/bin/python -m helpers load --processed p"),
            (55.0, ".venv/bin/python -m helpers run-notebooks --reports reports")), 90.0,
     [("setup", 30.0), ("db", 1.0), ("data", 9.0), ("process", 10.0), ("load", 5.0),
      ("notebooks", 35.0)]),
    # The repeat run: setup is up to date; output that quotes a command is not a step.
    (echoed((0.5, ".venv/bin/python -m helpers build-db --db x"),
            (1.0, ".venv/bin/python -m helpers ingest --raw r"),
            (2.0, "next: python -m helpers load --processed p")), 4.0,
     [("db", 1.0), ("process", 3.0)]),
    ([], 3.0, []),
])
def test_make_steps_are_timed_from_makes_echoed_commands(lines, wall, steps):
    assert [(s["step"], s["seconds"]) for s in e2e.parse_steps(lines, wall)] == steps


def test_newcomer_env_drops_an_activated_venv_and_make_flags(tmp_path, monkeypatch):
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (tmp_path / "venv" / "pyvenv.cfg").touch()
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}/usr/bin")
    monkeypatch.setenv("VIRTUAL_ENV", str(tmp_path / "venv"))
    monkeypatch.setenv("MAKEFLAGS", "-j2")
    env = e2e.newcomer_env()
    assert env["PATH"] == "/usr/bin"
    assert "VIRTUAL_ENV" not in env and "MAKEFLAGS" not in env


FAKE_MAKEFILE = """SCALE ?= 7
run:
\tpython3 -m venv --help > /dev/null
\tsleep 0.3
\tpython3 -m helpers make-raw --scale $(SCALE) 2> /dev/null || true
\tsleep 0.3
\ttest ! -e fail
"""


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org",
                    *args], cwd=cwd, check=True, capture_output=True)


@pytest.mark.parametrize("fail, runs", [(False, 2), (True, 1)])
def test_end_to_end_clones_head_and_times_make_run_until_it_fails(tmp_path, fail, runs):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "Makefile").write_text(FAKE_MAKEFILE)
    (repo / "uncommitted").write_text("not in the clone")
    git("init", "-q", cwd=repo)
    git("add", "Makefile", cwd=repo)
    if fail:
        (repo / "fail").touch()
        git("add", "fail", cwd=repo)
    git("commit", "-q", "-m", "fake", cwd=repo)
    found = e2e.time_make_run(repo, tmp_path / "work" / "e2e", say=lambda _line: None)
    assert found["scale"] == "7" and found["ok"] is not fail
    assert len(found["runs"]) == runs
    assert not (tmp_path / "work" / "e2e" / "uncommitted").exists()
    first = found["runs"][0]
    assert first["returncode"] == (2 if fail else 0)
    assert [s["step"] for s in first["steps"]] == ["setup", "data"]
    assert all(s["seconds"] >= 0.3 for s in first["steps"])
    results = {"date": "2000-01-01", "machine": "test", "reps": 1, "versions": {}, "peers": {},
               "scales": {}, "end_to_end": found}
    table = report.markdown(results)
    assert "| run | wall s | exit | CPU s | peak RSS, tree MiB | setup s | data s |" in table
    assert ("**Run 1 failed** (exit 2)" in table) is fail
