"""On a real cluster, the Spark engine writes what the local engine writes.

A standalone master and two one-core workers (tests/spark_cluster_util.py, once per test
session) run `ingest_spark(..., master="spark://...")` and the command line over the generated
messy data, every format and fault included: the same lines in the same order, the same rejects,
the same counts, and tasks that really ran in the workers' executors. The cluster launcher
itself stops everything it started, on Ctrl-C and when its own process is killed outright.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from helpers.chinook.datasets import DATASETS
from helpers.cli import main
from helpers.errors import HelpersError
from helpers.ingest import spark_cluster as cluster_module
from helpers.ingest.spark import ingest_spark
from tests.spark_cluster_util import (
    SHARED_KEYS,
    local_lines,
    session_on,
    shared,
    skip_without_spark,
    spark_lines,
)
from tests.spark_cluster_util import local_run as local_run  # a fixture
from tests.spark_cluster_util import messy_raw as messy_raw  # a fixture
from tests.spark_cluster_util import spark_cluster as spark_cluster

pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")


@pytest.fixture(scope="module")
def cluster_session(spark_cluster) -> Iterator[Any]:
    """One session on the cluster for the module: each new one costs 15 s, and its first job
    as much again while the executors start their Python workers."""
    with session_on(spark_cluster.master) as session:
        yield session


@pytest.fixture(scope="module")
def cluster_run(cluster_session, spark_cluster, messy_raw, tmp_path_factory) -> tuple[Path, dict]:
    """The library call on the cluster's URL (which finds the module's session there)."""
    out = tmp_path_factory.mktemp("cluster")
    return out, ingest_spark(messy_raw, out, master=spark_cluster.master)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_the_cluster_writes_the_local_engines_lines_in_its_order(dataset, local_run, cluster_run):
    local = local_lines(local_run[0] / f"{dataset}.json.gz")
    assert local
    assert spark_lines(cluster_run[0] / dataset) == local


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_the_cluster_rejects_the_same_records_at_the_same_lines(dataset, local_run, cluster_run):
    local = local_lines(local_run[0] / "_rejects" / f"{dataset}.jsonl.gz")
    assert local  # the faults are there to be rejected
    assert spark_lines(cluster_run[0] / "_rejects" / dataset) == local


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_the_cluster_counts_as_the_local_engine(dataset, local_run, cluster_run):
    for key in SHARED_KEYS:
        assert shared(cluster_run[1][dataset], key) == local_run[1][dataset][key], key


def test_the_tasks_ran_in_executors_on_both_workers(spark_cluster, cluster_run):
    assert {e["spark_master"] for e in cluster_run[1].values()} == {spark_cluster.master}
    (app,) = [a for a in spark_cluster.state()["activeapps"] if a["name"] == "helpers-ingest"]
    assert app["cores"] == 2  # one executor on each worker
    for worker in ("worker-0", "worker-1"):
        logs = (spark_cluster.logs / worker).glob("app-*/*/stderr")
        assert any("Finished task" in log.read_text() for log in logs), worker


def test_cli_ingests_on_the_cluster_as_the_local_engine(cluster_session, spark_cluster, messy_raw,
                                                         local_run, tmp_path, capsys):
    code = main(["ingest", "--engine", "spark", "--master", spark_cluster.master,
                 "--raw", str(messy_raw), "--out", str(tmp_path), "--dataset", "orders",
                 "--no-progress"])
    assert code == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == "orders"
    done = orjson.loads((tmp_path / "_manifest.json").read_bytes())["orders"]
    assert done["spark_master"] == spark_cluster.master
    for key in SHARED_KEYS:
        assert shared(done, key) == local_run[1]["orders"][key], key
    assert spark_lines(tmp_path / "orders") == local_lines(local_run[0] / "orders.json.gz")


# --- the launcher ---------------------------------------------------------------------------


def _cluster_processes(logs: Path) -> list[int]:
    """Processes whose command line names `logs` (the workers' --work-dir is inside it)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(logs).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:  # it ended meanwhile
            pass
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_the_launcher_leaves_no_process_behind(stop, tmp_path):
    """`python -m helpers.ingest.spark_cluster` prints the master URL; after Ctrl-C, or when it
    is killed outright, every JVM it started is gone."""
    skip_without_spark()
    logs = tmp_path / "logs"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "helpers.ingest.spark_cluster", "--workers", "1", "--logs",
         str(logs)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = launcher.stdout.readline()
        assert first.startswith("master: spark://127.0.0.1:"), first + launcher.stdout.read()
        assert len(_cluster_processes(logs)) >= 2  # the master and the worker
        os.kill(launcher.pid, stop)
        launcher.wait(timeout=60)
        if stop == signal.SIGINT:
            assert launcher.returncode == 0 and "stopped" in launcher.stdout.read()
        deadline = time.monotonic() + 30
        while _cluster_processes(logs):
            assert time.monotonic() < deadline, _cluster_processes(logs)
            time.sleep(0.5)
    finally:
        launcher.kill()
        launcher.wait()


def test_a_cluster_that_cannot_start_shows_its_logs(monkeypatch, tmp_path):
    fake = tmp_path / "spark-class"  # a launcher that fails as a port in use would
    fake.write_text("#!/bin/sh\necho \"Failed to bind to 127.0.0.1: Address already in use\"\n"
                    "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(cluster_module, "spark_class", lambda: fake)
    monkeypatch.setattr(cluster_module, "check_java", lambda: 17)
    with pytest.raises(HelpersError) as failed:
        with cluster_module.standalone_cluster(1, logs=tmp_path / "logs", timeout=30):
            pass
    message = failed.value.message
    assert message.startswith(f"{tmp_path / 'logs'}: a cluster process exited (status 1) "
                              "while waiting for the master to start")
    assert "--- master.log\nFailed to bind to 127.0.0.1: Address already in use" in message
    assert "The logs are in that folder" in message
