"""What the processing notebook shows, as tables: sniffing, counts, read-back, rejects, reconcile.

Every table is computed from the files and the manifests, never typed; where the raw folder has
the generator's `MANIFEST.json` (its ground truth), each table also says whether it agrees.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
from isal import igzip
from xxhash import xxh3_64_intdigest

from helpers.chinook.datasets import DATASETS
from helpers.errors import InputError
from helpers.fs import sha256_of
from helpers.ingest.folders import dataset_folders, list_files
from helpers.ingest.manifest import read_manifest
from helpers.ingest.readers import read_chunks
from helpers.ingest.sniff import DATA_KINDS, Format

GROUND_TRUTH = "MANIFEST.json"
DELIMITER_NAMES = {"\t": "tab", " ": "space"}
LINE_ENDINGS = {"\n": "LF", "\r\n": "CRLF", "\r": "CR"}
RAW_PREVIEW = 60  # characters of a rejected record's text shown in a table
JSON_TYPES = {"integer": (int,), "number": (int, float), "text": (str,)}
NOT_LOADED = "-"  # a count that does not apply to a table copied from the base


def read_ground_truth(raw: str | Path) -> dict[str, Any]:
    """The generator's MANIFEST.json in `raw`: rows, distinct rows, file formats, faults."""
    path = Path(raw) / GROUND_TRUTH
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no ground truth in the raw folder", path=path,
                         fix="Generate the raw data with `python -m helpers make-raw`") from None


def generation_frame(truth: dict[str, Any]) -> pd.DataFrame:
    """One line per dataset of what the generator wrote: files, rows, distinct rows, faults."""
    rows = []
    for name, d in truth["datasets"].items():
        rows.append({"dataset": name, "data files": len(d["files"]),
                     "other files": len(d["skipped"]), "rows": d["rows"],
                     "distinct rows": d["distinct_rows"], "damaged records": len(d["faults"]),
                     "MB": round(sum(f["bytes"] for f in d["files"]) / 1e6, 1)})
    return pd.DataFrame(rows).set_index("dataset")


# --- light investigation -------------------------------------------------------------------


def investigation_frames(raw: str | Path,
                         truth: dict[str, Any] | None = None) -> dict[str, pd.DataFrame]:
    """Per dataset folder, one line per file: what sniffing found in its first bytes.

    With the generator's `truth`, each line also gets the rows and damaged records the generator
    wrote into the file, and whether sniffing agrees with how the file was written.
    """
    frames = {}
    for folder in dataset_folders(Path(raw)):
        written = _generated_files(truth, folder.name)
        rows = [_investigate_file(path, fmt, written.get(path.name), truth is not None)
                for path, fmt in list_files(folder)]
        frames[folder.name] = pd.DataFrame(rows).set_index("file")
    return frames


def _generated_files(truth: dict[str, Any] | None, dataset: str) -> dict[str, dict]:
    if truth is None or dataset not in truth["datasets"]:
        return {}
    d = truth["datasets"][dataset]
    faults = Counter(f["file"] for f in d["faults"])
    files = {f["name"]: {**f, "faults": faults[f["name"]]} for f in d["files"]}
    files.update({f["name"]: {**f, "format": None} for f in d["skipped"]})
    return files


def _investigate_file(path: Path, fmt: Format, written: dict | None, with_truth: bool) -> dict:
    row = {"file": path.name, "bytes": path.stat().st_size, "format": fmt.kind,
           "compression": fmt.compression or "", "encoding": fmt.encoding,
           "delimiter": _show_delimiter(fmt.delimiter),
           "line ending": LINE_ENDINGS.get(fmt.line_ending, ""),
           "columns": ", ".join(sniffed_columns(path, fmt)), "note": fmt.note}
    if with_truth:
        row["rows (MANIFEST.json)"] = written["rows"] if written and written["format"] else 0
        row["damaged (MANIFEST.json)"] = written["faults"] if written and written["format"] else 0
        row["sniffed as written"] = sniff_agrees(fmt, written)
    return row


def _show_delimiter(delimiter: str | None) -> str:
    return DELIMITER_NAMES.get(delimiter, delimiter) if delimiter else ""


def sniffed_columns(path: Path, fmt: Format) -> list[str]:
    """The header of a CSV file, or the keys of a JSON file's first record, as written."""
    if fmt.kind == "csv":
        return list(fmt.header)
    if fmt.kind not in DATA_KINDS:
        return []
    with closing(read_chunks(path, fmt, 1)) as chunks:
        first = next(chunks, None)
    record = first.records[0] if first else None
    if isinstance(record, bytes | str):
        try:
            record = orjson.loads(record)
        except orjson.JSONDecodeError:
            return []
    return list(record) if isinstance(record, dict) else []


def sniff_agrees(fmt: Format, written: dict | None) -> bool | None:
    """Whether the sniffed format is the one the generator wrote (None: no record of the file)."""
    if written is None:
        return None
    if written["format"] is None:  # an empty or stray file: sniffing must not call it data
        return fmt.kind not in DATA_KINDS
    same = (fmt.kind == written["format"] and fmt.compression == written["compression"]
            and fmt.encoding == written["encoding"] and fmt.line_ending == written["line_ending"])
    if written["format"] == "csv":
        same = same and fmt.delimiter == written["delimiter"] and fmt.header == written["header"]
    return same


# --- after the ingestion -------------------------------------------------------------------


def run_frame(run: dict[str, Any], out: str | Path) -> pd.DataFrame:
    """This call's run beside the one recorded in `<out>/_manifest.json`: when each started and
    ended, how, what it ingested and what it found up to date.

    A call that finds everything up to date reads nothing and writes nothing, so the recorded
    run is the one that made the outputs on disk; the table says which run that was.
    """
    recorded, _ = read_manifest(Path(out))
    runs = {"this call": run, "the run that wrote the outputs (_manifest.json)": recorded}
    fields = {"started": "started", "finished": "finished", "status": "status",
              "version": "version", "ingested": "ingested", "up_to_date": "up to date"}

    def shown(value: Any) -> Any:
        if isinstance(value, list):
            return ", ".join(value) or "none"
        return "-" if value is None else value

    columns = {label: {**{name: shown(r.get(key)) for key, name in fields.items()},
                       "same options as this call": r.get("options") == run.get("options")}
               for label, r in runs.items()}
    return pd.DataFrame(columns, dtype=object)


def summary_frame(manifest: dict[str, Any], truth: dict[str, Any] | None = None) -> pd.DataFrame:
    """One line per dataset: rows read, written, rejected, duplicates; checked against `truth`."""
    rows = []
    for name, e in manifest.items():
        row = {"dataset": name, "files": len(e["files"]), "skipped": len(e["skipped"]),
               "rows read": e["rows_read"], "rows written": e["rows_written"],
               "rejected": e["rows_rejected"], "duplicates": e["duplicates"],
               "distinct rows": e["distinct_rows"], "drifted columns": len(e["drifted_columns"])}
        if truth is not None:
            row["as MANIFEST.json says"] = counts_agree(e, truth["datasets"][name])
        rows.append(row)
    return pd.DataFrame(rows).set_index("dataset")


def counts_agree(entry: dict[str, Any], written: dict[str, Any]) -> bool:
    """The ingestion kept every row the generator wrote, rejected exactly its damaged records,
    and counted its duplicates; whatever the dedupe mode (dropped rows count as kept here)."""
    rows, distinct = written["rows"], written["distinct_rows"]
    ok = (entry["rows_written"] + entry["rows_dropped"] == rows
          and entry["rows_rejected"] == len(written["faults"]))
    if entry["duplicates"] is not None:
        ok = ok and entry["duplicates"] == rows - distinct and entry["distinct_rows"] == distinct
    return ok


def file_rows_frame(manifest: dict[str, Any], truth: dict[str, Any]) -> pd.DataFrame:
    """One line per data file: what the single pass counted in it against what was written."""
    rows = []
    for name, e in manifest.items():
        written = _generated_files(truth, name)
        for f in e["files"]:
            w = written.get(f["name"], {"rows": None, "faults": None})
            rows.append({"dataset": name, "file": f["name"], "format": f["format"],
                         "rows written": f["rows"], "rejected": f["rejected"],
                         "rows (MANIFEST.json)": w["rows"],
                         "damaged (MANIFEST.json)": w["faults"],
                         "agree": f["rows"] == w["rows"] and f["rejected"] == w["faults"]})
    return pd.DataFrame(rows).set_index(["dataset", "file"])


# --- reading the outputs back --------------------------------------------------------------


@dataclass
class ReadBack:
    """What one processed file holds, read back line by line."""

    lines: int = 0
    distinct_lines: int = 0
    bad_lines: int = 0  # not a JSON object with the dataset's keys, in order, with fitting types
    first_problem: str = ""
    sha256: str = ""


def read_back(path: str | Path, dataset: str, drifted: Iterable[str] = ()) -> ReadBack:
    """Stream one `<dataset>.json.gz`: count its lines and check every one of them.

    Identical lines are checked once (by a 64-bit hash of their bytes): a processed file holds
    many copies of few distinct rows, and this keeps the check fast without sampling.
    """
    path = Path(path)
    columns = DATASETS[dataset].fields
    allowed_extra = set(drifted)
    verdicts: dict[int, str] = {}
    counts: Counter[int] = Counter()
    with igzip.open(path, "rb") as f:
        for block in iter(lambda: f.readlines(1 << 20), []):
            hashes = list(map(xxh3_64_intdigest, block))
            counts.update(hashes)
            for h, line in zip(hashes, block):
                if h not in verdicts:
                    verdicts[h] = line_problem(line, columns, allowed_extra)
    result = ReadBack(lines=sum(counts.values()), distinct_lines=len(verdicts),
                      sha256=sha256_of([path]))
    for h, problem in verdicts.items():
        if problem:
            result.bad_lines += counts[h]
            result.first_problem = result.first_problem or problem
    return result


def line_problem(line: bytes, fields: Iterable[Any], allowed_extra: set[str] = frozenset()) -> str:
    """Why one output line breaks the contract, or "" when it is a proper record."""
    if not line.endswith(b"\n"):
        return "the last line has no line ending"
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"not JSON: {exc}"
    if not isinstance(obj, dict):
        return f"not a JSON object: {line[:60]!r}"
    fields = list(fields)
    names = [f.name for f in fields]
    keys = list(obj)
    if keys[:len(names)] != names or not set(keys[len(names):]) <= allowed_extra:
        return f"keys {keys} are not {names}"
    for f in fields:
        value = obj[f.name]
        if value is None:
            if not f.nullable:
                return f"{f.name} is null"
        elif isinstance(value, bool) or not isinstance(value, JSON_TYPES[f.kind]):
            return f"{f.name} is {value!r}, not {f.kind}"
    return ""


def read_back_frame(out: str | Path, manifest: dict[str, Any],
                    truth: dict[str, Any] | None = None) -> pd.DataFrame:
    """Read every processed file back; one line per dataset, checked against both manifests."""
    rows = []
    for name, e in manifest.items():
        back = read_back(Path(out) / f"{name}.json.gz", name, e["drifted_columns"])
        row = {"dataset": name, "lines": back.lines, "distinct lines": back.distinct_lines,
               "lines not fitting the schema": back.bad_lines,
               "first problem": back.first_problem,
               "sha256 as in _manifest.json": back.sha256 == e["sha256"]}
        if truth is not None:
            written = truth["datasets"][name]
            expected = written["rows"] - e["rows_dropped"]
            row["lines as MANIFEST.json says"] = (back.lines == expected
                                                  and back.distinct_lines
                                                  == written["distinct_rows"])
        rows.append(row)
    return pd.DataFrame(rows).set_index("dataset")


def first_lines(path: str | Path, n: int = 1) -> list[str]:
    """The first `n` lines of a processed file, as text without their line ending."""
    with igzip.open(Path(path), "rb") as f:
        return [line.decode("utf-8").rstrip("\n") for _, line in zip(range(n), f)]


# --- rejects -------------------------------------------------------------------------------


def read_rejects(out: str | Path, dataset: str) -> list[dict[str, Any]]:
    """The reject records of one dataset, from `<out>/_rejects/<dataset>.jsonl.gz`."""
    path = Path(out) / "_rejects" / f"{dataset}.jsonl.gz"
    with igzip.open(path, "rb") as f:
        return [orjson.loads(line) for line in f if line.strip()]


def rejects_frame(out: str | Path, datasets: Iterable[str],
                  truth: dict[str, Any] | None = None) -> pd.DataFrame:
    """Every reject with its reason, next to the damaged record the generator put there.

    Records are matched on file, line and text; a reject without an injected fault, or a fault
    that was not rejected, shows as a line where `matched` is False.
    """
    rows: dict[tuple, dict] = {}
    for name in datasets:
        for r in read_rejects(out, name):
            rows[(name, r["file"], r["line"], r["raw"])] = {
                "reason": r["reason"], "fault injected": None}
        if truth is not None:
            for f in truth["datasets"][name]["faults"]:
                entry = rows.setdefault((name, f["file"], f["line"], f["raw"]), {"reason": None})
                entry["fault injected"] = f["kind"]
    table = []
    for (name, file, line, raw), entry in sorted(rows.items(), key=lambda kv: kv[0][:3]):
        row = {"dataset": name, "file": file, "line": line, **entry, "raw": _preview(raw)}
        if truth is not None:
            row["matched"] = entry["reason"] is not None and entry["fault injected"] is not None
        table.append(row)
    return pd.DataFrame(table).set_index(["dataset", "file", "line"])


def _preview(text: str) -> str:
    return text if len(text) <= RAW_PREVIEW else text[:RAW_PREVIEW - 1] + "…"


# --- load and reconcile --------------------------------------------------------------------


def reconcile_frame(report: Any) -> pd.DataFrame:
    """One line per warehouse table: where it came from and how it compares with the base."""
    by_table = {f.table: f for f in report.files.values() if f.table}
    rows = []
    for name, t in report.tables.items():
        f = by_table.get(name)
        rows.append({"table": name, "source": f.file if f else "copied from the base",
                     "file rows": f.rows if f else NOT_LOADED,
                     "distinct keys": f.distinct_keys if f else NOT_LOADED,
                     "rows in base": t.rows_in_base, "rows loaded": t.rows_loaded,
                     "missing": t.missing_vs_base, "extra": t.extra_vs_base,
                     "mismatched": t.value_mismatches,
                     "conflicting duplicates": f.conflicting_duplicates if f else NOT_LOADED})
    return pd.DataFrame(rows).set_index("table")


def checks_frame(report: Any) -> pd.DataFrame:
    """The load's cross-checks between files and tables, with how many rows fail each."""
    return pd.DataFrame([{"check": c.description, "failing rows": c.count}
                         for c in report.checks.values()]).set_index("check")
