"""The Spark engine writes what the local engine writes: same lines, rejects and counts.

One local-mode SparkSession serves the module. Both engines read the same generated messy data
(every format, faults included) and a small hand-made folder for what the generator never makes:
new JSON keys half-way through, and a gzip file cut short. Last, the output commit, with a
stand-in for Spark's writer: a crash at any step leaves the previous output or the new one whole,
and the next run starts from whichever it is.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from helpers.chinook.datasets import DATASETS
from helpers.cli import main
from helpers.errors import HelpersError
from helpers.fs import exchange
from helpers.ingest import spark as spark_module
from helpers.ingest.dataset_pass import Options
from helpers.ingest.engine import ingest
from helpers.ingest.spark import (
    _write_parts,
    check_java,
    ingest_spark,
    java_major,
    spark_session,
)
from tests.spark_cluster_util import SHARED_KEYS, local_lines, parts, shared, spark_lines
from tests.spark_cluster_util import local_run as local_run  # a fixture
from tests.spark_cluster_util import messy_raw as messy_raw  # a fixture

if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
    pytest.skip("the Spark engine needs Java 17 or newer, and no java was found on PATH or in "
                "JAVA_HOME: install openjdk-17-jre-headless to run these tests",
                allow_module_level=True)

# pyspark warns about pandas 3 on every mapInArrow, which never touches pandas.
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")


@pytest.fixture(scope="module")
def spark():
    session = spark_session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def spark_run(spark, messy_raw, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("spark")
    return out, ingest_spark(messy_raw, out, spark=spark)


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))


@pytest.fixture(scope="module")
def drift_and_damage_raw(tmp_path_factory) -> Path:
    """A dataset without a declared schema whose JSON files add keys after their first record
    (keys of a first record are known up front, like a CSV header), and a gzip file whose end
    is missing."""
    raw = tmp_path_factory.mktemp("edge") / "raw"
    events = raw / "events"
    events.mkdir(parents=True)
    (events / "a_header.csv").write_text("id,name\n1,x\n2,y\n")
    _write_jsonl(events / "b_new_key.jsonl", [
        {"id": 3, "name": "z"}, {"id": 4, "name": "w"}, {"id": 5, "name": "q", "colour": "red"}])
    (events / "c_after.json").write_text('[\n  {"id": 6, "Name": "v"}\n]\n')
    _write_jsonl(events / "d_more_keys.jsonl", [
        {"id": 7}, {"id": 8, "shape": "round", "colour": "blue"}])
    (events / "e_late_header.csv").write_text("id,name,size\n9,u,3\n")
    (events / "f_empty.csv").write_bytes(b"")
    (events / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    cut = raw / "cut"
    cut.mkdir()
    whole = gzip.compress(b"".join(orjson.dumps({"id": i, "name": f"name {i * 7919}"}) + b"\n"
                                   for i in range(20_000)))
    (cut / "cut_short.jsonl.gz").write_bytes(whole[: len(whole) * 4 // 5])
    return raw


# Two records per chunk, so that a key first met in a file's second chunk is missing from the
# lines of its first chunk, as the local engine writes them.
SMALL_CHUNKS = Options(chunk_rows=2)


@pytest.fixture(scope="module")
def edge_runs(spark, drift_and_damage_raw, tmp_path_factory) -> tuple[dict, dict, Path, Path]:
    local_out, spark_out = tmp_path_factory.mktemp("edge_local"), tmp_path_factory.mktemp("edge")
    local = ingest(drift_and_damage_raw, local_out, options=SMALL_CHUNKS, progress=False,
                   log_dir=None, jobs=1)
    done = ingest_spark(drift_and_damage_raw, spark_out, options=SMALL_CHUNKS, spark=spark)
    return local, done, local_out, spark_out


# --- the generated messy data ---------------------------------------------------------------


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_spark_writes_the_same_lines_as_the_local_engine(dataset, local_run, spark_run):
    local = local_lines(local_run[0] / f"{dataset}.json.gz")
    assert local
    assert Counter(spark_lines(spark_run[0] / dataset)) == Counter(local)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_spark_rejects_the_same_records_for_the_same_reasons(dataset, messy_raw, local_run,
                                                             spark_run):
    local = local_lines(local_run[0] / "_rejects" / f"{dataset}.jsonl.gz")
    rejected = spark_lines(spark_run[0] / "_rejects" / dataset)
    assert Counter(rejected) == Counter(local)
    faults = orjson.loads((messy_raw / "MANIFEST.json").read_bytes())["datasets"][dataset]
    assert sorted((r["file"], r["line"]) for r in map(orjson.loads, rejected)) == sorted(
        (f["file"], f["line"]) for f in faults["faults"])


@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("key", SHARED_KEYS)
def test_spark_manifest_counts_match_the_local_engine(dataset, key, local_run, spark_run):
    assert shared(spark_run[1][dataset], key) == local_run[1][dataset][key]


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_spark_output_is_gzip_parts_with_a_success_marker(dataset, local_run, spark_run):
    out, manifest = spark_run
    for folder, suffix in ((out / dataset, ".json.gz"), (out / "_rejects" / dataset, ".jsonl.gz")):
        assert (folder / "_SUCCESS").is_file()
        assert parts(folder) and all(p.name.endswith(suffix) for p in parts(folder))
        assert {p.name for p in folder.iterdir()} == {"_SUCCESS", *(p.name for p in parts(folder))}
    assert not [p for p in out.iterdir() if p.name.endswith((".spark-new", ".spark-old"))]
    # One part per input file, in file order: the parts end to end are the local engine's file.
    joined = b"".join(p.read_bytes() for p in parts(out / dataset))
    assert gzip.decompress(joined) == gzip.decompress(
        (local_run[0] / f"{dataset}.json.gz").read_bytes())
    entry = manifest[dataset]
    assert entry["bytes"] == len(joined)
    assert len(parts(out / dataset)) == len(entry["files"])
    assert {f["splits"] for f in entry["files"]} == {1}  # all far below 128 MiB
    on_disk = orjson.loads((out / "_manifest.json").read_bytes())
    run = on_disk.pop("_run")
    assert on_disk == manifest
    assert run["engine"] == "spark" and run["status"] == "complete"
    assert entry["output"] == dataset and entry["rejects"] == f"_rejects/{dataset}"


def test_drop_mode_writes_each_distinct_line_once(spark, messy_raw, local_run, tmp_path):
    manifest = ingest_spark(messy_raw, tmp_path, datasets=["orders", "tracks"],
                            options=Options(dedupe="drop"), spark=spark)
    for dataset in ("orders", "tracks"):
        local = local_run[1][dataset]
        written = spark_lines(tmp_path / dataset)
        assert Counter(written) == Counter(set(local_lines(local_run[0] / f"{dataset}.json.gz")))
        assert manifest[dataset]["rows_written"] == local["distinct_rows"] == len(written)
        assert manifest[dataset]["rows_dropped"] == local["duplicates"] > 0


# --- what the generator never makes ---------------------------------------------------------


def test_new_json_keys_give_the_same_lines_and_columns_as_the_local_engine(edge_runs):
    local, done, local_out, spark_out = edge_runs
    lines = spark_lines(spark_out / "events")
    # The files read again are the last ones, so the parts keep the local engine's order.
    assert lines == local_lines(local_out / "events.json.gz")
    assert done["events"]["columns"] == local["events"]["columns"] == [
        "id", "name", "size", "colour", "shape"]
    assert {b'{"id":3,"name":"z","size":null}',  # before its file's second chunk met colour
            b'{"id":6,"name":"v","size":null,"colour":null}'} <= set(lines)
    assert any("again" in event for event in done["events"]["events"])


@pytest.mark.parametrize("dataset", ["events", "cut"])
def test_edge_cases_count_and_reject_as_the_local_engine(dataset, edge_runs):
    local, done, local_out, spark_out = edge_runs
    for key in SHARED_KEYS:
        assert shared(done[dataset], key) == local[dataset][key], key
    assert Counter(spark_lines(spark_out / "_rejects" / dataset)) == Counter(
        local_lines(local_out / "_rejects" / f"{dataset}.jsonl.gz"))


def test_a_gzip_file_cut_short_keeps_its_first_rows_and_rejects_the_rest(edge_runs):
    _, done, _, spark_out = edge_runs
    (reject,) = map(orjson.loads, spark_lines(spark_out / "_rejects" / "cut"))
    assert reject["file"] == "cut_short.jsonl.gz" and "could not be read" in reject["reason"]
    assert 0 < done["cut"]["rows_written"] < 20_000


# --- the command line and the Java check --------------------------------------------------


def test_cli_engine_spark_prints_the_summary_table(spark, drift_and_damage_raw, tmp_path,
                                                   capsys):
    code = main(["ingest", "--engine", "spark", "--raw", str(drift_and_damage_raw),
                 "--out", str(tmp_path), "--dataset", "events", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["dataset", "files", "read"]
    assert out.splitlines()[1].split()[:3] == ["events", "5", "9"]
    assert orjson.loads((tmp_path / "_manifest.json").read_bytes())["events"]["engine"] == "spark"


def test_under_spark_submit_the_command_runs_on_its_master(edge_runs, drift_and_damage_raw,
                                                          tmp_path):
    """README's cluster recipe on a local master: spark-submit runs our `__main__.py`, which,
    given no --master of its own, runs on spark-submit's and writes what the local engine
    writes."""
    local, _, local_out, _ = edge_runs
    import pyspark

    home = Path(pyspark.__file__).parent  # pip's pyspark is a whole Spark installation
    main_py = Path(__file__).parents[1] / "helpers" / "__main__.py"
    done = subprocess.run(
        ["bash", str(home / "bin" / "spark-submit"), "--master", "local[1]",
         "--conf", f"spark.pyspark.python={sys.executable}", "--conf", "spark.ui.enabled=false",
         str(main_py), "ingest", "--engine", "spark", "--raw", str(drift_and_damage_raw),
         "--out", str(tmp_path), "--dataset", "events", "--chunk-rows",
         str(SMALL_CHUNKS.chunk_rows), "--no-progress"],
        env=os.environ | {"SPARK_HOME": str(home), "PYSPARK_PYTHON": sys.executable,
                          "PYSPARK_DRIVER_PYTHON": sys.executable},
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    entry = orjson.loads((tmp_path / "_manifest.json").read_bytes())["events"]
    assert entry["engine"] == "spark" and entry["spark_master"] == "local[1]"
    assert spark_lines(tmp_path / "events") == local_lines(local_out / "events.json.gz")
    assert entry["rows_rejected"] == local["events"]["rows_rejected"]


def test_a_session_on_another_master_is_refused_while_one_runs(spark):
    # getOrCreate would return the running local[2] session, and the run would not be where
    # it was asked to be.
    with pytest.raises(HelpersError, match="a Spark session on local.2. is already running in "
                                           "this process, so one on spark://elsewhere:7077"):
        spark_session("spark://elsewhere:7077")
    assert spark_session("local[2]") is spark  # the same master: the running session


def test_missing_java_is_reported_with_what_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HelpersError, match="needs Java 17 or newer, and no java was found"):
        check_java()


def test_an_old_java_is_refused_by_name(monkeypatch, tmp_path):
    fake = tmp_path / "java"
    fake.write_text('#!/bin/sh\necho \'java version "1.8.0_292"\' >&2\n')
    fake.chmod(0o755)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HelpersError, match="needs Java 17 or newer, found 8 at"):
        check_java()


@pytest.mark.parametrize(("text", "major"), [
    ('openjdk version "17.0.15" 2025-04-15', 17),
    ('openjdk version "21" 2023-09-19', 21),
    ('java version "1.8.0_292"', 8),
    ("no version here", None),
])
def test_java_major_reads_the_version_line(text, major):
    assert java_major(text) == major


# --- the output commit: the previous output survives any crash ----------------------------


class FakeFrame:
    """Stands for a DataFrame's text writer: writes what Spark's would (a part named .txt.gz,
    Hadoop's .crc files, _SUCCESS), or dies half-way as a crashed job would."""

    def __init__(self, lines: list[bytes], crash: bool = False) -> None:
        self.lines, self.crash, self.write = lines, crash, self

    def option(self, key: str, value: str) -> FakeFrame:
        return self

    def text(self, uri: str) -> None:
        folder = Path(uri.removeprefix("file://"))
        folder.mkdir(parents=True)
        (folder / "part-00000-x.txt.gz").write_bytes(gzip.compress(b"\n".join(self.lines)))
        (folder / ".part-00000-x.txt.gz.crc").write_bytes(b"crc")
        if self.crash:
            raise RuntimeError("the job died")
        (folder / "_SUCCESS").write_bytes(b"")


@pytest.fixture
def previous(tmp_path) -> Path:
    """An output folder written once, holding the lines old-1 and old-2."""
    folder = tmp_path / "out" / "orders"
    _write_parts(FakeFrame([b"old-1", b"old-2"]), folder, ".json.gz", 1)
    return folder


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.name)


def test_a_new_output_takes_the_place_of_the_previous_one_whole(previous):
    paths = _write_parts(FakeFrame([b"new"]), previous, ".json.gz", 1)
    assert spark_lines(previous) == [b"new"]
    assert [p.name for p in paths] == ["part-00000-x.json.gz"]
    assert sorted(p.name for p in previous.iterdir()) == ["_SUCCESS", "part-00000-x.json.gz"]
    assert leftovers(previous) == []


def test_a_crash_while_spark_writes_leaves_the_previous_output_in_place(previous):
    with pytest.raises(RuntimeError, match="the job died"):
        _write_parts(FakeFrame([b"new"], crash=True), previous, ".json.gz", 1)
    assert spark_lines(previous) == [b"old-1", b"old-2"]
    assert leftovers(previous) == [".orders.spark-new"]  # half written, never swapped in
    _write_parts(FakeFrame([b"next"]), previous, ".json.gz", 1)
    assert spark_lines(previous) == [b"next"] and leftovers(previous) == []


def crash_on_call(monkeypatch, name: str, call: int) -> None:
    """Make `spark.<name>` raise on its `call`-th call, as if the process died there."""
    real, calls = getattr(spark_module, name), []

    def dying(*args):
        calls.append(args)
        if len(calls) == call:
            raise KeyboardInterrupt("killed")
        return real(*args)

    monkeypatch.setattr(spark_module, name, dying)


def test_a_crash_between_the_two_renames_loses_nothing(previous, monkeypatch):
    """Where the system cannot exchange two folders, the swap takes two renames: a crash
    between them leaves the previous output aside, and the next run puts it back first."""
    monkeypatch.setattr(spark_module, "exchange", lambda a, b: False)
    crash_on_call(monkeypatch, "replace_durably", 2)  # the folder is aside, the new not in
    with pytest.raises(KeyboardInterrupt):
        _write_parts(FakeFrame([b"new"]), previous, ".json.gz", 1)
    assert not previous.exists()
    assert spark_lines(previous.with_name(".orders.spark-old")) == [b"old-1", b"old-2"]
    monkeypatch.undo()
    # The next run crashes too, inside Spark: the previous output is back in place.
    with pytest.raises(RuntimeError):
        _write_parts(FakeFrame([b"again"], crash=True), previous, ".json.gz", 1)
    assert spark_lines(previous) == [b"old-1", b"old-2"]
    assert leftovers(previous) == [".orders.spark-new"]


def test_a_crash_right_after_the_exchange_leaves_the_new_output_complete(previous,
                                                                        monkeypatch):
    def exchange_then_die(a: Path, b: Path) -> bool:
        if not exchange(a, b):
            pytest.skip("this file system cannot exchange two folders")
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(spark_module, "exchange", exchange_then_die)
    with pytest.raises(KeyboardInterrupt):
        _write_parts(FakeFrame([b"new"]), previous, ".json.gz", 1)
    assert spark_lines(previous) == [b"new"]
    assert spark_lines(previous.with_name(".orders.spark-new")) == [b"old-1", b"old-2"]
    monkeypatch.undo()
    _write_parts(FakeFrame([b"next"]), previous, ".json.gz", 1)
    assert spark_lines(previous) == [b"next"] and leftovers(previous) == []


def test_exchange_swaps_two_folders_in_one_step(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        (folder / folder.name).write_text(folder.name)
    if not exchange(a, b):
        pytest.skip("this file system cannot exchange two folders")
    assert [p.name for p in a.iterdir()] == ["b"] and [p.name for p in b.iterdir()] == ["a"]
