"""`ingest` on Apache Spark: the same rules as the local engine, spread one file per task.

Why not Spark's own CSV and JSON readers? They would need a second copy of every rule the local
engine already has: header spelling, the loose integer and number patterns, nulls in required
columns, rows with too many fields (PERMISSIVE mode does not flag those), line numbers for
rejects, cp1252 bytes inside UTF-8, JSON arrays that break half-way, and orjson's exact float and
text encoding. Two copies drift apart, and then a laptop and a cluster disagree about the same
file. So Spark here distributes and stores, and our code decides:

1. The driver sniffs every file (`dataset.list_files`) and fixes each dataset's columns from the
   headers (a JSON file's first keys count as its header), as the local engine does before its
   first row.
2. Each file becomes one task. In the executors `mapInArrow` runs `readers.read_chunks` and
   `normalize.Normalizer`, chunk by chunk, and streams Arrow batches of (file, kind, text) back:
   output lines, reject records and one line of counts per file.
3. The JVM does the rest without Python: the batches are cached, duplicates are counted with
   `countDistinct` (or removed with `dropDuplicates`), and the lines are written with Spark's
   text writer and gzip codec into `<out>/<dataset>/part-*.json.gz` with `_SUCCESS`.

A JSON key first met after a file's first record (schema drift mid-file) is the one place where
files depend on each other: the local engine adds it when it meets it, so every later file's rows
carry it too. Tasks report
the keys they met; when one is new, the files after it run again with the columns the local
engine would have had when it reached them, so the lines match it exactly.

What this costs: a file is never split between tasks, so one huge file runs on one core; and
every executor must see the raw folder at the same path (a shared mount), since our readers are
plain Python file reads. There is no checkpoint: a dataset's folder appears whole or not at all.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from helpers.errors import HelpersError
from helpers.fs import sha256_of
from helpers.ingest.dataset_pass import (
    Options,
    add_counts,
    add_damage,
    dataset_counts,
    new_counts,
)
from helpers.ingest.folders import (
    dataset_folders,
    list_files,
    make_output_folder,
    output_lock,
)
from helpers.ingest.manifest import write_manifest
from helpers.ingest.normalize import Normalizer
from helpers.ingest.readers import Damage, Limits, read_chunks, until_damaged
from helpers.ingest.schema import OutputColumn, Schema, map_header, schema_for
from helpers.ingest.sniff import DATA_KINDS, Format

LINE, REJECT, COUNTS = 0, 1, 2  # the kinds of text a task sends back
ROWS_SCHEMA = "file int, kind tinyint, value string"
DEFAULT_MASTER = "local[2]"
JAVA_NEEDED = 17
# Hadoop's zlib level names for our gzip levels 0-3.
ZLIB_LEVELS = ("NO_COMPRESSION", "BEST_SPEED", "TWO", "THREE")


def ingest_spark(
    raw: str | Path = "raw_data",
    out: str | Path = "processed_data",
    *,
    datasets: Iterable[str] | None = None,
    options: Options | None = None,
    master: str | None = None,
    spark: Any = None,
) -> dict[str, Any]:
    """Ingest each dataset folder of `raw` with Spark; return the manifest.

    Writes `<out>/<dataset>/part-*.json.gz`, `<out>/_rejects/<dataset>/part-*.jsonl.gz` and
    `<out>/_manifest.json`. Uses `spark` if given, else starts a session on `master` (see
    `spark_session`) and stops it at the end.
    """
    raw, out, options = Path(raw), Path(out), options or Options()
    folders = dataset_folders(raw, datasets)
    make_output_folder(out)
    owned = spark is None and _active_context() is None  # stop only a session we started
    session = spark or spark_session(master)
    try:
        with output_lock(out):
            # One dataset after another: running two side by side (jobs from two threads)
            # was measured no faster in local mode, and doubles what is cached at once.
            manifest = {f.name: ingest_dataset_spark(session, f, out, options) for f in folders}
            write_manifest(out, manifest)
            return manifest
    finally:
        if owned:
            session.stop()


def spark_session(master: str | None = None) -> Any:
    """A SparkSession on `master`; under spark-submit its own --master unless one is given.

    Local masters run the Python workers with this interpreter, so they import this package.
    """
    check_java()
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise HelpersError("the Spark engine needs pyspark, which is not installed",
                           fix="Install the extra: pip install -e '.[spark]'") from None
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit started the JVM
    builder = SparkSession.builder.appName("helpers-ingest")
    if master or not submitted:
        master = master or DEFAULT_MASTER
        builder = builder.master(master)
    if (master or "").startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.config("spark.ui.enabled", "false")
    # Progress bars would garble our own output; the manifest and summary say what happened.
    builder = builder.config("spark.ui.showConsoleProgress", "false")
    # pyspark checks the pandas version even for mapInArrow, which never touches pandas.
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas")
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _active_context() -> Any:
    try:
        from pyspark import SparkContext
    except ImportError:
        return None
    return SparkContext._active_spark_context


def check_java() -> int:
    """The major version of the Java that Spark would use; raises if it is missing or too old."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    fix = (f"Install a Java {JAVA_NEEDED} runtime (Debian: apt-get install "
           f"openjdk-{JAVA_NEEDED}-jre-headless) or point JAVA_HOME at one")
    if not java or not Path(java).exists():
        raise HelpersError(f"the Spark engine needs Java {JAVA_NEEDED} or newer, and no java "
                           "was found on PATH or in JAVA_HOME", fix=fix)
    done = subprocess.run([java, "-version"], capture_output=True, text=True)
    major = java_major(done.stderr + done.stdout)
    if major is None or major < JAVA_NEEDED:
        raise HelpersError(f"the Spark engine needs Java {JAVA_NEEDED} or newer, found "
                           f"{major or 'an unknown version'} at {java}", fix=fix)
    return major


def java_major(version_text: str) -> int | None:
    """17 from `openjdk version "17.0.15"`, 8 from `java version "1.8.0_292"`."""
    found = re.search(r'version "(\d+)(?:\.(\d+))?', version_text)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


# --- one dataset, on the driver -----------------------------------------------------------


def ingest_dataset_spark(spark: Any, folder: Path, out: Path, options: Options) -> dict[str, Any]:
    """One dataset folder into `<out>/<dataset>/`, its rejects and its manifest entry."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    started = time.perf_counter()
    files = list_files(folder)
    data = [(p, f) for p, f in files if f.kind in DATA_KINDS]
    skipped = [{"name": p.name, "why": f.note or f.kind}
               for p, f in files if f.kind not in DATA_KINDS]
    schema = schema_for(folder.name)
    for _, fmt in data:  # as the local engine: every header's columns before the first row
        map_header(fmt.header, schema)
    tasks = [_task(i, path, fmt, schema, options) for i, (path, fmt) in enumerate(data)]
    rows = _normalize(spark, tasks).persist(StorageLevel.MEMORY_AND_DISK)
    cached = [rows]
    counts = _collect_counts(rows)
    rows, counts, events = _redo_drift(spark, tasks, rows, counts, schema, cached)
    lines = rows.filter(F.col("kind") == LINE).select("value")
    if options.dedupe == "drop":
        lines = lines.dropDuplicates(["value"])
    paths = _write_parts(lines, out / folder.name, ".json.gz", options.level)
    rejected = sum(c["rejected"] for c in counts)
    reject_rows = rows.filter(F.col("kind") == REJECT).select("value") if rejected else (
        spark.createDataFrame([], "value string"))
    _write_parts(reject_rows, out / "_rejects" / folder.name, ".jsonl.gz", options.level)
    total = sum(c["rows"] for c in counts)
    distinct = None
    if options.dedupe != "off":
        distinct = rows.filter(F.col("kind") == LINE).agg(F.countDistinct("value")).first()[0]
    for frame in cached:
        frame.unpersist()
    written = distinct if options.dedupe == "drop" else total
    entry = {
        "engine": "spark",
        "spark_master": spark.sparkContext.master,
        "output": str(out / folder.name),
        "rejects": str(out / "_rejects" / folder.name),
        "files": [{k: v for k, v in c.items() if k not in ("file", "drift", "events")}
                  for c in counts],
        "rows_read": total + rejected,
        "rows_written": written,
        "rows_rejected": rejected,
        "rows_dropped": total - written,
        "duplicates": None if distinct is None else total - distinct,
        "duplicates_exact": True,
        "distinct_rows": distinct,
        **dataset_counts(counts),
        "columns": schema.names,
        "drifted_columns": schema.drift,
        "bytes": sum(p.stat().st_size for p in paths),
        "sha256": sha256_of(paths),
        "events": [f"skipped {s['name']}: {s['why']}" for s in skipped] + events
        + [e for c in counts for e in c["events"]],
        "skipped": skipped,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return entry


def _task(index: int, path: Path, fmt: Format, schema: Schema, options: Options) -> dict:
    return {"file": index, "path": str(path.resolve()), "format": fmt.describe(),
            "dataset": schema.name, "declared": schema.declared,
            "columns": [[c.name, c.kind, c.nullable] for c in schema.columns],
            "chunk_rows": options.chunk_rows,
            "limits": [options.max_record_lines, options.max_record_bytes]}


def _normalize(spark: Any, tasks: list[dict]) -> Any:
    """A DataFrame of (file, kind, value): one partition, and so one task, per file."""
    payload = [(t["file"], orjson.dumps(t).decode()) for t in tasks]
    files = spark.sparkContext.parallelize(payload, max(len(payload), 1))
    frame = spark.createDataFrame(files, "file int, task string")
    return frame.mapInArrow(normalize_tasks, ROWS_SCHEMA)


def _collect_counts(rows: Any) -> list[dict]:
    from pyspark.sql import functions as F

    found = [orjson.loads(r.value) for r in
             rows.filter(F.col("kind") == COUNTS).select("value").collect()]
    return sorted(found, key=lambda c: c["file"])


def _redo_drift(spark: Any, tasks: list[dict], rows: Any, counts: list[dict], schema: Schema,
                cached: list[Any]) -> tuple[Any, list[dict], list[str]]:
    """Run again the files that follow a new JSON key, with the columns known by then.

    Adds the keys to `schema`, and the new cached frame to `cached`."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    redo = []
    for task, count in zip(tasks, counts):
        if schema.names != [c[0] for c in task["columns"]]:
            redo.append({**task, "columns": [[c.name, c.kind, c.nullable]
                                             for c in schema.columns]})
        for name in count["drift"]:
            schema.index(name)
    if not redo:
        return rows, counts, []
    again = {t["file"] for t in redo}
    fixed = _normalize(spark, redo).persist(StorageLevel.MEMORY_AND_DISK)
    cached.append(fixed)
    merged = rows.filter(~F.col("file").isin(sorted(again))).unionByName(fixed)
    counts = [c for c in counts if c["file"] not in again] + _collect_counts(fixed)
    event = f"read {len(again)} file(s) again with the columns that new JSON keys added"
    return merged, sorted(counts, key=lambda c: c["file"]), [event]


# --- one file, in an executor -------------------------------------------------------------


def normalize_tasks(batches: Iterator[Any]) -> Iterator[Any]:
    """mapInArrow body: each input row names one file; yields Arrow batches of its results."""
    for batch in batches:
        for task in batch.column("task").to_pylist():
            yield from normalize_file(orjson.loads(task))


def normalize_file(task: dict) -> Iterator[Any]:
    """Read and normalize one file as the local engine does, chunk by chunk."""
    path, fmt = Path(task["path"]), Format(**task["format"])
    schema = Schema(task["dataset"], [OutputColumn(*c) for c in task["columns"]], task["declared"])
    start = len(schema.columns)
    normalizer = Normalizer(schema, fmt, path.name)
    damage: list[Damage] = []
    counts = {"file": task["file"], **new_counts(path.name, fmt)}
    chunks = read_chunks(path, fmt, task["chunk_rows"], 0, Limits(*task["limits"]))
    for chunk in until_damaged(chunks, damage.append):
        result = normalizer.chunk(chunk)
        add_counts(counts, result)
        yield _batch(task["file"], result.lines, [r.to_json() for r in result.rejects])
    counts["renamed"] = normalizer.renamed
    rejects = [add_damage(counts, found) for found in damage]  # as the local engine
    counts["drift"] = schema.names[start:]
    counts["events"] = [f"{path.name}: {d.reason}" for d in damage]
    yield _batch(task["file"], [], [r.to_json() for r in rejects], orjson.dumps(counts))


def _batch(file: int, lines: list[bytes], rejects: list[bytes], counts: bytes | None = None):
    """One Arrow batch, built from whole buffers: a conversion per value costs 6x as much."""
    import numpy as np
    import pyarrow as pa

    values = lines + rejects + ([counts] if counts is not None else [])
    n = len(values)
    kinds = np.full(n, LINE, np.int8)
    kinds[len(lines):] = REJECT
    if counts is not None:
        kinds[-1] = COUNTS
    offsets = np.zeros(n + 1, np.int32)  # a batch holds one chunk: far below 2 GiB
    np.cumsum(np.fromiter(map(len, values), np.int32, n), out=offsets[1:])
    text = pa.StringArray.from_buffers(  # orjson always writes valid UTF-8
        n, pa.py_buffer(offsets), pa.py_buffer(b"".join(values)))
    return pa.RecordBatch.from_arrays(
        [pa.array(np.full(n, file, np.int32)), pa.array(kinds), text],
        names=["file", "kind", "value"])


# --- output -----------------------------------------------------------------------------


def _write_parts(frame: Any, folder: Path, suffix: str, level: int) -> list[Path]:
    """Write one text column as gzip parts into `folder`, replacing it whole at the end.

    Spark commits into a hidden sibling; the parts get our suffix (the text writer would name
    them .txt.gz) and the folder is swapped in with a rename, so `folder` is always complete.
    """
    staging = folder.with_name(f".{folder.name}.spark-tmp")
    old = folder.with_name(f".{folder.name}.spark-old")
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    (frame.write.option("compression", "gzip").option("zlib.compress.level", ZLIB_LEVELS[level])
     .text(staging.resolve().as_uri()))
    for path in staging.iterdir():
        if path.name.endswith(".crc"):  # checksums of Hadoop's local file system, now stale
            path.unlink()
        elif path.name.startswith("part-"):
            path.rename(path.with_name(path.name.removesuffix(".txt.gz") + suffix))
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return sorted(folder.glob("part-*"))


