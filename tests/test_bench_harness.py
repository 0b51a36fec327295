"""The benchmark harness runs the peers, counts their rows and flags a wrong count: the results
JSON has every peer's counts matching the manifest, the naive peer's output is flagged, the table
and chart are written, each wrong count is flagged and reported rather than hidden, runs of other
ingestion code are named, the code digest follows the ingestion modules only, the targets say
which one is missed, outputs are scanned, and a peer whose library is missing is reported as
skipped. Speed is never asserted here; the harness runs at scale 1 (tests/bench_util.py).
"""

from __future__ import annotations

import importlib.util
import json
import re
from datetime import date
from pathlib import Path

import pytest

from benchmarks import bench, checks, report
from tests.bench_util import run_bench, write_gz


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


@pytest.mark.parametrize("wall_d, wall_c, wall_e, peak, missed", [
    (3.0, 30.0, 2.5, 90.0, []),
    (1.0, 30.0, 2.5, 90.0, ["(d) DuckDB"]),
    (3.0, 9.0, 2.5, 90.0, ["naive"]),
    (3.0, 30.0, 1.5, 90.0, ["Polars + isal"]),
    (3.0, 30.0, 2.5, 120.0, ["100 MiB"]),
])
def test_targets_say_which_one_is_missed(wall_d, wall_c, wall_e, peak, missed):
    ours = report.summarize_peer([fake_run("a", {"tracks": 20}, 2.0)], 20)
    ours["peak_tree_mib"] = peak
    summary = {"a": ours, "c": {"wall_s": wall_c, "wall_min_s": wall_c},
               "d": {"wall_s": wall_d, "wall_min_s": wall_d},
               "e": {"wall_s": wall_e, "wall_min_s": wall_e}}
    found = report.targets(500, summary, ours)
    missed_targets = [t["target"] for t in found if not t["met"]]
    assert len(missed_targets) == len(missed)
    for word in missed:
        assert any(word in t for t in missed_targets)


@pytest.mark.parametrize("one, two, same, same_bytes, met", [
    (10.0, 5.5, True, True, True), (10.0, 5.5, True, False, True),
    (10.0, 6.5, True, True, False), (10.0, 5.0, False, False, False)])
def test_the_jobs_target_needs_the_speed_up_and_the_same_output(one, two, same, same_bytes, met):
    jobs = {"dataset": "tracks", "runs": 1, "speedup": round(one / two, 2), "same_output": same,
            "same_bytes": same_bytes,
            "jobs_1": {"wall_s": one, "wall_min_s": one, "cpu_s": one, "peak_tree_mib": 90},
            "jobs_2": {"wall_s": two, "wall_min_s": two, "cpu_s": one, "peak_tree_mib": 95}}
    (target,) = report.jobs_targets(jobs)
    assert target["met"] is met
    assert f"{one / two:.2f}x" in target["figure"]
    assert ("bytes identical" if same_bytes else "bytes differ") in target["figure"]
    text = "\n".join(report._jobs_section(jobs))
    assert "| --jobs 2 |" in text and ("the same" if same else "**differs**") in text


def test_the_jobs_figure_is_the_median_of_several_pairs_even_with_one_rep(tiny_run):
    tmp, results = tiny_run  # run with --reps 1
    jobs = results["scales"]["1"]["jobs"]
    assert jobs["runs"] == bench.JOBS_PAIRS >= 3
    assert len(jobs["pair_speedups"]) == bench.JOBS_PAIRS
    # Medians of each side, not one pair; each pair's own ratio is shown beside them.
    assert jobs["speedup"] == round(jobs["jobs_1"]["wall_s"] / jobs["jobs_2"]["wall_s"], 2)
    assert jobs["jobs_1"]["wall_min_s"] <= jobs["jobs_1"]["wall_s"]
    assert jobs["same_output"]
    table = (tmp / "results" / "latest.md").read_text()
    assert "each pair: " + ", ".join(f"{r:.2f}x" for r in jobs["pair_speedups"]) in table


@pytest.mark.parametrize("small, large, met", [(9.0, 39.0, True), (9.0, 40.5, False)])
def test_the_growth_target_compares_the_largest_scale_with_the_smallest(small, large, met):
    def scale(wall: float) -> dict:
        return {"summary": {"a": {"wall_s": wall}}}

    found = report.growth({"500": scale(small), "2000": scale(large)})
    assert (found["small"], found["large"]) == (500, 2000)
    assert found["target"]["met"] is met
    assert "4.4x" in found["target"]["target"]
    assert report.growth({"500": scale(small)}) == {}


@pytest.mark.parametrize("text, rows, problems", [
    (b'{"a": 1}\n{"a": 2}\n', 2, []),
    (b'{"a": 1}\n{"a": 2}', 2, []),  # no newline after the last line
    (b"", 0, []),
    (b'{"a": NaN}\n', 1, ["not strict JSON (NaN?)"]),
    (b'{"A": 1}\n', 1, ["keys differ from canonical (missing a; extra A)"]),
])
def test_scan_output_counts_lines_and_checks_the_sample(tmp_path, text, rows, problems):
    assert checks.scan_output(write_gz(tmp_path / "x.json.gz", text), ["a"]) == (rows, problems)


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

