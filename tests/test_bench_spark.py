"""The benchmark's peer (f), our engine on Spark: its rows are summed over its parts and match the
manifest, its JVM is in the sampled process tree and its CPU counted, it is skipped with the reason
when Java or pyspark is missing, and a folder of parts is counted whole and checked against its
manifest. One Spark run at scale 1 serves the whole module (a Spark session costs 10-20 s).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from benchmarks import bench, checks
from tests.bench_util import run_bench, write_gz

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
