"""Shared by the Spark tests: one standalone cluster (a master and two workers of one core each)
for the whole test session, sessions on it or in local mode, and the readers of both engines'
outputs with the manifest keys on which they must agree.

Test files import the fixture as `from tests.spark_cluster_util import spark_cluster as
spark_cluster` (the alias tells ruff the import is used). pytest makes one fixture per module
that imports it, so the cluster itself is kept here and started once: a cluster costs 10-15 s.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from helpers.ingest.engine import ingest
from helpers.ingest.spark import spark_session
from helpers.ingest.spark_cluster import Cluster, standalone_cluster
from helpers.rawgen.generate import make_raw

# Manifest keys whose values both engines must agree on.
SHARED_KEYS = ("rows_read", "rows_written", "rows_rejected", "rows_dropped", "duplicates",
               "distinct_rows", "blank_lines", "columns", "drifted_columns", "files", "skipped")

_RUNNING = ExitStack()
_CLUSTER: list[Cluster] = []


def skip_without_spark() -> None:
    """Skip, saying what to install, when this machine cannot run Spark; nothing else skips."""
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        pytest.skip("the Spark engine needs Java 17 or newer, and no java was found on PATH or "
                    "in JAVA_HOME: install openjdk-17-jre-headless to run these tests")
    if importlib.util.find_spec("pyspark") is None:
        pytest.skip("the Spark engine needs pyspark: pip install -e '.[spark]' to run these tests")


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A master and two one-core workers on 127.0.0.1, stopped at the end of the session."""
    skip_without_spark()
    if not _CLUSTER:
        logs = tmp_path_factory.mktemp("spark-cluster")
        _CLUSTER.append(_RUNNING.enter_context(standalone_cluster(2, logs=logs)))
    yield _CLUSTER[0]
    _RUNNING.close()  # the first module's teardown stops it; the others find it stopped


@contextmanager
def session_on(master: str) -> Iterator[Any]:
    """A SparkSession on `master`, stopped at the end; one per process at a time."""
    skip_without_spark()
    session = spark_session(master)
    try:
        assert session.sparkContext.master == master
        yield session
    finally:
        session.stop()


# The generated messy data with faults, and the local engine's run of it: what every Spark
# test compares with.
@pytest.fixture(scope="module")
def messy_raw(chinook_db, tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("messy") / "raw"
    make_raw(chinook_db, raw, scale=2, faults=True)
    return raw


@pytest.fixture(scope="module")
def local_run(messy_raw, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("local")
    return out, ingest(messy_raw, out, progress=False, log_dir=None, jobs=1)


def shared(entry: dict, key: str) -> Any:
    """A manifest value as the local engine has it: without the Spark engine's "splits"."""
    if key == "files":
        return [{k: v for k, v in f.items() if k != "splits"} for f in entry["files"]]
    return entry[key]


def parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*"))


def spark_lines(folder: Path) -> list[bytes]:
    """The lines of a Spark output folder, its parts end to end."""
    return [line for part in parts(folder) for line in gzip.decompress(part.read_bytes())
            .splitlines()]


def local_lines(path: Path) -> list[bytes]:
    return gzip.decompress(path.read_bytes()).splitlines()
