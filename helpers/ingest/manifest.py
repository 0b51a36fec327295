"""The manifest: what each dataset read, wrote, rejected and counted twice, and its summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from helpers.fs import write_atomic


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    write_atomic(out / "_manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")


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
