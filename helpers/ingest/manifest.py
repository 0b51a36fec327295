"""The manifest: what each dataset read, wrote, rejected and counted twice, and its summary.

`<out>/_manifest.json` is keyed by dataset name, plus `_run` (no dataset can be called that:
`_` folders are not datasets) for the last run: when it started and finished, with which options
and version, which datasets it ingested and which were already up to date, and how it ended.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from helpers.fs import write_atomic

RUN = "_run"
NAME = "_manifest.json"


class Manifest(dict):
    """The datasets' entries, as in the file, with the run that produced this answer as `.run`
    (for a run that found everything up to date, that run, though the file keeps the last run
    that did work)."""

    def __init__(self, entries: dict[str, Any], run: dict[str, Any] | None = None) -> None:
        super().__init__(sorted(entries.items()))
        self.run = run or {}


def write_manifest(out: Path, manifest: dict[str, Any], run: dict[str, Any] | None = None) -> None:
    document = ({RUN: run} if run is not None else {}) | manifest
    write_atomic(out / NAME, orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")


def read_manifest(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The last run's section and the datasets' entries; both empty when there is no manifest
    or it cannot be read (then every dataset is simply ingested again)."""
    try:
        document = orjson.loads((out / NAME).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}, {}
    if not isinstance(document, dict):
        return {}, {}
    run = document.pop(RUN, {})
    return run if isinstance(run, dict) else {}, document


def start_run(engine: str, raw: Any, out: Path, options: dict[str, Any],
              ingested: list[str], up_to_date: list[str], **extra: Any) -> dict[str, Any]:
    """The `_run` section as a run starts; `finished` and `status` are added when it ends.

    A local raw folder is given relative to the output folder, a URL as it is."""
    where = str(raw) if "://" in str(raw) else os.path.relpath(raw, out)
    return {"started": now(), "engine": engine, **extra, "version": package_version(),
            "raw": where, "options": options, "ingested": ingested, "up_to_date": up_to_date}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def package_version() -> str:
    try:
        return metadata.version("chinook-helpers")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def summary_table(manifest: dict[str, Any]) -> str:
    """A fixed-width table of the manifest's counts, one line per dataset."""
    head = ("dataset", "files", "read", "written", "rejected", "duplicates", "MB", "seconds")
    lines = ["{:<16}{:>6}{:>12}{:>12}{:>10}{:>12}{:>8}{:>9}".format(*head)]
    for name, e in manifest.items():
        dup = "-" if e["duplicates"] is None else (
            f"{e['duplicates']:,}" + ("" if e["duplicates_exact"] else "+"))
        lines.append("{:<16}{:>6}{:>12,}{:>12,}{:>10,}{:>12}{:>8.1f}{:>9.1f}".format(
            name, len(e["files"]), e["rows_read"], e["rows_written"], e["rows_rejected"], dup,
            e["bytes"] / 1e6, e["seconds"]))
    return "\n".join(lines)


def records(n: int) -> str:
    """`1 record`, `2 records`, `1,000 records`."""
    return f"{n:,} record" + ("" if n == 1 else "s")


def warnings(manifest: dict[str, Any], out: Path) -> list[str]:
    """One line per thing a user should look at: skipped files, empty datasets, renamed or
    undeclared columns, damaged files, restarts, and the rejects with where to read them."""
    lines = []
    for name, entry in manifest.items():
        lines += [f"{name}: {event}" for event in entry["events"]]
        drifted = entry.get("drifted_columns") or []
        if drifted and drifted != entry["columns"]:  # a dataset with declared columns
            lines.append(f"{name}: columns not declared for this dataset, kept after the "
                         f"declared ones: {', '.join(drifted)}")
        if entry["rows_rejected"] and entry.get("rejects"):
            lines.append(f"{name}: {records(entry['rows_rejected'])} rejected, with the reason "
                         f"for each in {out / entry['rejects']}")
    return lines
