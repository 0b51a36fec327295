"""`ingest` on Apache Spark: the same rules as the local engine, spread over Spark tasks.

Why not Spark's own CSV and JSON readers? They would need a second copy of every rule the local
engine already has: header spelling, the loose integer and number patterns, nulls in required
columns, rows with too many fields (PERMISSIVE mode does not flag those), line numbers for
rejects, cp1252 bytes inside UTF-8, JSON arrays that break half-way, and orjson's exact float and
text encoding. Two copies drift apart, and then a laptop and a cluster disagree about the same
file. So Spark here distributes and stores, and our code decides:

1. The driver sniffs every file (`folders.list_files`) and fixes each dataset's columns from the
   headers (a JSON file's first keys count as its header), as the local engine does before its
   first row.
2. Each file becomes one task, or one per split when it is large (below). In the executors
   `mapInArrow` runs `readers.read_chunks` and `normalize.Normalizer`, chunk by chunk, and
   streams Arrow batches of (task, kind, text) back: output lines, reject records and one line
   of counts per task.
3. The JVM does the rest without Python: the batches are cached, duplicates are counted with
   `countDistinct` (or removed with `dropDuplicates`), and the lines are written with Spark's
   text writer and gzip codec into `<out>/<dataset>/part-*.json.gz` with `_SUCCESS`.

Splits: an uncompressed CSV or JSON Lines file larger than `split_bytes` (128 MiB) is cut at
fixed offsets, and each task reads the lines that start in its stretch (the first one may begin
before the stretch, the last one end after it), so every line is read once. A first, light job
counts each stretch's lines, so that rejects keep the file's line numbers, and checks that no
CSV line ends inside quotes: a quoted value that holds a line break could straddle a cut, so
such a file is read whole by one task. The manifest gives each file's "splits".

A JSON key first met after a file's first record (schema drift mid-file) is the one place where
tasks depend on each other: the local engine adds it when it meets it, so every later row
carries it too. Tasks report the keys they met; when one is new, the tasks after it run again
with the columns the local engine would have had when it reached them, so the lines match it
exactly.

Each output folder is written beside the previous one and takes its place only when complete
(`_write_parts`), so a crash never leaves a dataset without its last complete output. What this
costs: every executor must reach the raw folder, at the same path (a shared mount) or by a URL
fsspec reads (`location.RemotePath`); and there is no checkpoint to resume from.
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
from dataclasses import asdict
from itertools import groupby
from pathlib import Path
from typing import Any

import orjson

from helpers.errors import HelpersError, InputError
from helpers.fs import exchange, replace_durably, sha256_of, sync_directory
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
from helpers.ingest.location import RemotePath, raw_location
from helpers.ingest.manifest import now, start_run, write_manifest
from helpers.ingest.normalize import Normalizer
from helpers.ingest.readers import Damage, Limits, read_chunks, until_damaged
from helpers.ingest.schema import OutputColumn, Schema, map_header, schema_for
from helpers.ingest.sniff import DATA_KINDS, Format
from helpers.ingest.splits import read_split, scan_split, splittable

LINE, REJECT, COUNTS = 0, 1, 2  # the kinds of text a task sends back
ROWS_SCHEMA = "task int, kind tinyint, value string"
DEFAULT_MASTER = "local[2]"
DEFAULT_SPLIT_BYTES = 128 << 20  # as Spark's own spark.sql.files.maxPartitionBytes
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
    split_bytes: int = DEFAULT_SPLIT_BYTES,
) -> dict[str, Any]:
    """Ingest each dataset folder of `raw` with Spark; return the manifest.

    Writes `<out>/<dataset>/part-*.json.gz`, `<out>/_rejects/<dataset>/part-*.jsonl.gz` and
    `<out>/_manifest.json`. Uses `spark` if given, else starts a session on `master` (see
    `spark_session`) and stops it at the end. Uncompressed CSV and JSON Lines files larger
    than `split_bytes` are read by several tasks.
    """
    raw, out, options = raw_location(raw), Path(out), options or Options()
    if not isinstance(split_bytes, int) or split_bytes < 1:
        raise InputError(f"split_bytes must be a whole number of at least 1, not {split_bytes!r}",
                         fix=f"Pass split_bytes={DEFAULT_SPLIT_BYTES} (128 MiB, the default)")
    folders = dataset_folders(raw, datasets)
    make_output_folder(out)
    owned = spark is None and _active_context() is None  # stop only a session we started
    session = spark or spark_session(master)
    try:
        with output_lock(out):
            run = start_run("spark", raw, out, asdict(options), [f.name for f in folders], [],
                            master=session.sparkContext.master)
            # One dataset after another: running two side by side (jobs from two threads)
            # was measured no faster in local mode, and doubles what is cached at once.
            manifest = {f.name: ingest_dataset_spark(session, f, out, options, split_bytes)
                        for f in folders}
            write_manifest(out, manifest, run | {"finished": now(), "status": "complete"})
            return manifest
    finally:
        if owned:
            session.stop()


def spark_session(master: str | None = None) -> Any:
    """A SparkSession on `master`; under spark-submit its own --master unless one is given.

    Outside spark-submit, executors start their Python workers with this interpreter unless
    PYSPARK_PYTHON names another, so that they import this package: right for local masters, for
    a cluster on this machine (`spark_cluster`) and for nodes that share this installation's path.
    """
    check_java()
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise HelpersError("the Spark engine needs pyspark, which is not installed",
                           fix="Install the extra: pip install -e '.[spark]'") from None
    active = _active_context()
    if master and active is not None and active.master != master:
        # getOrCreate would hand back the running session, silently on the other master.
        raise HelpersError(f"a Spark session on {active.master} is already running in this "
                           f"process, so one on {master} cannot start",
                           fix="Stop that session first, or pass it as spark=")
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit started the JVM
    builder = SparkSession.builder.appName("helpers-ingest")
    if master or not submitted:
        master = master or DEFAULT_MASTER
        builder = builder.master(master)
    if not submitted:  # spark-submit users name the executors' Python: spark.pyspark.python
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if (master or "").startswith("local"):
        builder = builder.config("spark.ui.enabled", "false")
    elif "://127.0.0.1:" in (master or ""):
        # A master on the loopback has its executors on this machine (`spark_cluster`): they
        # reach the driver there, whatever address the host name resolves to.
        builder = builder.config("spark.driver.host", "127.0.0.1")
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


def ingest_dataset_spark(spark: Any, folder: Path, out: Path, options: Options,
                         split_bytes: int = DEFAULT_SPLIT_BYTES) -> dict[str, Any]:
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
    plans, events = plan_splits(spark, data, split_bytes, options.max_record_bytes)
    tasks: list[dict] = []
    for index, ((path, fmt), spans) in enumerate(zip(data, plans)):
        for span in spans or [None]:  # a task per split, in file order
            tasks.append(_task(len(tasks), index, path, fmt, schema, options, span))
    rows = _normalize(spark, tasks).persist(StorageLevel.MEMORY_AND_DISK)
    cached = [rows]
    counts = _collect_counts(rows)
    rows, counts, redone = _redo_drift(spark, tasks, rows, counts, schema, cached)
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
    per_file = _per_file(counts)
    entry = {
        "engine": "spark",
        "spark_master": spark.sparkContext.master,
        # Relative to the output folder, as the local engine's.
        "output": folder.name,
        "rejects": f"_rejects/{folder.name}",
        "files": [{k: v for k, v in c.items() if k not in ("task", "file", "drift", "events")}
                  for c in per_file],
        "rows_read": total + rejected,
        "rows_written": written,
        "rows_rejected": rejected,
        "rows_dropped": total - written,
        "duplicates": None if distinct is None else total - distinct,
        "duplicates_exact": True,
        "distinct_rows": distinct,
        **dataset_counts(per_file),
        "columns": schema.names,
        "drifted_columns": schema.drift,
        "bytes": sum(p.stat().st_size for p in paths),
        "sha256": sha256_of(paths),
        "events": [f"skipped {s['name']}: {s['why']}" for s in skipped] + events + redone
        + [e for c in counts for e in c["events"]],
        "skipped": skipped,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return entry


def _task(index: int, file: int, path: Path, fmt: Format, schema: Schema, options: Options,
          span: list[int] | None) -> dict:
    return {"task": index, "file": file, "span": span, "path": _shared(path),
            "format": fmt.describe(), "dataset": schema.name, "declared": schema.declared,
            "columns": [[c.name, c.kind, c.nullable] for c in schema.columns],
            "chunk_rows": options.chunk_rows,
            "limits": [options.max_record_lines, options.max_record_bytes]}


def _shared(path: Path | RemotePath) -> str:
    """How an executor finds the file: its absolute path on the shared mount, or its URL."""
    return str(path) if isinstance(path, RemotePath) else str(path.resolve())


def _normalize(spark: Any, tasks: list[dict]) -> Any:
    """A DataFrame of (task, kind, value): one partition, and so one Spark task, per task."""
    payload = [(t["task"], orjson.dumps(t).decode()) for t in tasks]
    inputs = spark.sparkContext.parallelize(payload, max(len(payload), 1))
    frame = spark.createDataFrame(inputs, "id int, task string")
    return frame.mapInArrow(normalize_tasks, ROWS_SCHEMA)


def _collect_counts(rows: Any) -> list[dict]:
    from pyspark.sql import functions as F

    found = [orjson.loads(r.value) for r in
             rows.filter(F.col("kind") == COUNTS).select("value").collect()]
    return sorted(found, key=lambda c: c["task"])


def _redo_drift(spark: Any, tasks: list[dict], rows: Any, counts: list[dict], schema: Schema,
                cached: list[Any]) -> tuple[Any, list[dict], list[str]]:
    """Run again the tasks that follow a new JSON key, with the columns known by then.

    Adds the keys to `schema`, and the new cached frame to `cached`. The tasks run again are
    always the last ones, so their partitions, appended, keep the parts in file order."""
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
    again = {t["task"] for t in redo}
    fixed = _normalize(spark, redo).persist(StorageLevel.MEMORY_AND_DISK)
    cached.append(fixed)
    merged = rows.filter(~F.col("task").isin(sorted(again))).unionByName(fixed)
    counts = [c for c in counts if c["task"] not in again] + _collect_counts(fixed)
    files = len({t["file"] for t in redo})
    event = f"read {files} file(s) again with the columns that new JSON keys added"
    return merged, sorted(counts, key=lambda c: c["task"]), [event]


def _per_file(counts: list[dict]) -> list[dict]:
    """Each file's counts, its splits' added up, with how many splits it was read in."""
    files: list[dict] = []
    for _, group in groupby(counts, key=lambda c: c["file"]):  # counts are in task order
        first, *rest = group
        merged = {**first, "renamed": dict(first["renamed"]), "events": list(first["events"])}
        for count in rest:
            for key, value in count.items():
                if type(value) is int and key not in ("task", "file"):
                    merged[key] += value
            merged["renamed"].update(count["renamed"])  # in the order the file met them
            merged["damage"] = merged["damage"] or count["damage"]
            merged["events"] += count["events"]
        files.append({**merged, "splits": 1 + len(rest)})
    return files


# --- splits ---------------------------------------------------------------------------------


def plan_splits(spark: Any, data: list[tuple[Path, Format]], split_bytes: int,
                max_record_bytes: int) -> tuple[list[list[list[int]] | None], list[str]]:
    """Each file's splits as [begin, end, index of the first line], or None for one task.

    A Spark job finds where each split's lines begin and end and counts them; a CSV file with
    a line that ends inside quotes is read by one task (see the module's docstring)."""
    scans = [{"file": i, "path": _shared(path), "format": fmt.describe(), "size": size,
              "from": start, "to": min(start + split_bytes, size), "max_bytes": max_record_bytes}
             for i, (path, fmt) in enumerate(data)
             if splittable(fmt) and (size := path.stat().st_size) > split_bytes
             for start in range(0, size, split_bytes)]
    plans: list[list[list[int]] | None] = [None] * len(data)
    if not scans:
        return plans, []
    found = spark.sparkContext.parallelize(scans, len(scans)).map(scan_split).collect()
    events = []
    for file, group in groupby(found, key=lambda s: s["file"]):
        splits = list(group)
        if any(s["open_quote"] for s in splits):
            events.append(f"{data[file][0].name}: a quoted value holds a line break, so the "
                          f"file was read by one task instead of {len(splits)}")
            continue
        spans, first = [], 0
        for split in splits:
            if split["end"] > split["begin"]:  # a split inside one long line has none
                spans.append([split["begin"], split["end"], first])
            first += split["lines"]
        plans[file] = spans if len(spans) > 1 else None
    return plans, events


# --- one task, in an executor ---------------------------------------------------------------


def normalize_tasks(batches: Iterator[Any]) -> Iterator[Any]:
    """mapInArrow body: each input row names one task; yields Arrow batches of its results."""
    for batch in batches:
        for task in batch.column("task").to_pylist():
            yield from normalize_file(orjson.loads(task))


def normalize_file(task: dict) -> Iterator[Any]:
    """Read and normalize one file, or one split of it, as the local engine does."""
    path, fmt = raw_location(task["path"]), Format(**task["format"])
    schema = Schema(task["dataset"], [OutputColumn(*c) for c in task["columns"]], task["declared"])
    start = len(schema.columns)
    normalizer = Normalizer(schema, fmt, path.name)
    damage: list[Damage] = []
    counts = {"task": task["task"], "file": task["file"], **new_counts(path.name, fmt)}
    limits = Limits(*task["limits"])
    chunks = (read_split(path, fmt, task["chunk_rows"], limits, task["span"]) if task["span"]
              else read_chunks(path, fmt, task["chunk_rows"], 0, limits))
    for chunk in until_damaged(chunks, damage.append):
        result = normalizer.chunk(chunk)
        add_counts(counts, result)
        yield _batch(task["task"], result.lines, [r.to_json() for r in result.rejects])
    counts["renamed"] = normalizer.renamed
    rejects = [add_damage(counts, found) for found in damage]  # as the local engine
    counts["drift"] = schema.names[start:]
    counts["events"] = [f"{path.name}: {d.reason}" for d in damage]
    yield _batch(task["task"], [], [r.to_json() for r in rejects], orjson.dumps(counts))


def _batch(task: int, lines: list[bytes], rejects: list[bytes], counts: bytes | None = None):
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
        [pa.array(np.full(n, task, np.int32)), pa.array(kinds), text],
        names=["task", "kind", "value"])


# --- output -----------------------------------------------------------------------------


def _write_parts(frame: Any, folder: Path, suffix: str, level: int) -> list[Path]:
    """Write one text column as gzip parts into `folder`, replacing it whole at the end.

    Spark commits into a hidden sibling; the parts get our suffix (the text writer would name
    them .txt.gz), are synced, and only then does the sibling take `folder`'s place: at every
    moment `folder`, or after a crash the sibling `_recover` puts back, holds a complete output.
    """
    new = folder.with_name(f".{folder.name}.spark-new")
    old = folder.with_name(f".{folder.name}.spark-old")
    _recover(folder, new, old)
    folder.parent.mkdir(parents=True, exist_ok=True)
    (frame.write.option("compression", "gzip").option("zlib.compress.level", ZLIB_LEVELS[level])
     .text(new.resolve().as_uri()))
    _finish_parts(new, suffix)
    _swap_in(new, folder, old)
    return sorted(folder.glob("part-*"))


def _recover(folder: Path, new: Path, old: Path) -> None:
    """Undo what a crashed run left: the previous output set aside goes back in place, and
    only then are the leftovers deleted (a half-written new one, or a replaced old one)."""
    if old.exists() and not folder.exists():
        replace_durably(old, folder)
    for leftover in (new, old):
        shutil.rmtree(leftover, ignore_errors=True)


def _finish_parts(new: Path, suffix: str) -> None:
    for path in new.iterdir():
        if path.name.endswith(".crc"):  # checksums of Hadoop's local file system, now stale
            path.unlink()
            continue
        if path.name.startswith("part-"):
            path = path.rename(path.with_name(path.name.removesuffix(".txt.gz") + suffix))
        with open(path, "rb") as f:  # Hadoop's local writer never syncs
            os.fsync(f.fileno())
    sync_directory(new)


def _swap_in(new: Path, folder: Path, old: Path) -> None:
    """Put the complete `new` in `folder`'s place, then delete what was there."""
    if not folder.exists():
        replace_durably(new, folder)
    elif exchange(new, folder):  # one step: readers see the previous output or the new one
        sync_directory(folder.parent)
        shutil.rmtree(new)  # which now holds the previous output
    else:  # two steps; a crash between them leaves `old`, which `_recover` puts back
        replace_durably(folder, old)
        replace_durably(new, folder)
        shutil.rmtree(old)
