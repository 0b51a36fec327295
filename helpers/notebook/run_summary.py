"""What `make run` prints last: the answers, then every output and where it is.

The answers are read from the executed wrangling notebook (its cell tagged `answers`), so the
terminal shows exactly what the report concluded rather than a second computation of it.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from helpers.ingest.manifest import read_manifest

ANSWERS_TAG = "answers"


def run_summary(processed: str | Path, warehouse: str | Path, reports: str | Path,
                wrangling: str = "02_wrangling") -> str:
    """The answers table, then the processed files, the warehouse and the reports."""
    processed, warehouse, reports = Path(processed), Path(warehouse), Path(reports)
    parts = ["Answers (from " + str(reports / f"{wrangling}.ipynb") + "):",
             _indent(answers_text(reports / f"{wrangling}.ipynb")), "", "Outputs:"]
    parts += [f"  {line}" for line in output_lines(processed, warehouse, reports)]
    return "\n".join(parts)


def answers_text(notebook: Path) -> str:
    """The plain-text output of the executed notebook's `answers` cell."""
    try:
        cells = orjson.loads(notebook.read_bytes())["cells"]
    except (OSError, orjson.JSONDecodeError, KeyError):
        return f"(no executed notebook at {notebook}: run `make notebooks`)"
    for cell in cells:
        if ANSWERS_TAG in cell.get("metadata", {}).get("tags", []):
            for output in cell.get("outputs", []):
                text = output.get("data", {}).get("text/plain") or output.get("text")
                if text:
                    return "".join(text).rstrip()
    return f"(no cell tagged {ANSWERS_TAG!r} with an output in {notebook})"


def output_lines(processed: Path, warehouse: Path, reports: Path) -> list[str]:
    run, datasets = read_manifest(processed)
    lines = []
    for entry in datasets.values():
        rejected = entry["rows_rejected"]
        where = f", see {processed / entry['rejects']}" if rejected and entry.get("rejects") else ""
        lines.append(f"{processed / entry['output']}: {entry['rows_written']:,} rows, "
                     f"{rejected:,} rejected{where}")
    if datasets:
        lines.append(f"{processed / '_manifest.json'}: what each dataset read, wrote and "
                     f"rejected (run {run.get('status', 'unknown')}, {run.get('finished', '?')})")
    else:
        lines.append(f"{processed}: no manifest (run `make process`)")
    lines.append(_warehouse_line(warehouse))
    lines += [str(p) for p in sorted(reports.glob("*.html"))] or [f"{reports}: no reports"]
    return lines


def _warehouse_line(warehouse: Path) -> str:
    record = warehouse.with_name(f"{warehouse.name}.load.json")
    try:
        report = orjson.loads(record.read_bytes())["report"]
    except (OSError, orjson.JSONDecodeError, KeyError):
        return f"{warehouse}: not loaded (run `make load`)"
    verdict = "equals its base" if report["ok"] else "DIFFERS from its base"
    return f"{warehouse}: {verdict}, {report['base']} (reconciliation in {record})"


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
