"""Check a peer's output against MANIFEST.json: row counts exactly, and a sample of lines.

Counts come from the output files themselves (newlines in the decompressed stream), never from
what a peer says it wrote, so every peer is counted the same way.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from isal import igzip

BLOCK = 1 << 20


def expected_rows(raw_manifest: dict) -> dict[str, int]:
    """Rows per dataset that make-raw wrote (MANIFEST.json is the ground truth)."""
    return {name: d["rows"] for name, d in raw_manifest["datasets"].items()}


def scan_output(path: Path, columns: list[str]) -> tuple[int, list[str]]:
    """Lines in a gzip NDJSON file (a last line without a newline counts too), and what is wrong
    in a sample of them: one line from every MiB of text, so every input file is sampled."""
    rows, last, problems = 0, b"\n", set()
    with igzip.open(path, "rb") as f:
        while block := f.read(BLOCK):
            if rows == 0:
                problems.update(line_problems(block.split(b"\n", 1)[0], columns))
            parts = block.split(b"\n", 2)
            if len(parts) == 3:  # the first line that starts inside this block
                problems.update(line_problems(parts[1], columns))
            rows += block.count(b"\n")
            last = block[-1:]
    return rows + (last != b"\n"), sorted(problems)


def line_problems(line: bytes, columns: list[str]) -> list[str]:
    """Not strict JSON (NaN), or keys that are not exactly the dataset's canonical columns."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return ["not strict JSON (NaN?)"]
    keys, wanted = set(record), set(columns)
    if wanted and keys != wanted:
        return [f"keys differ from canonical (missing {_few(wanted - keys)}; "
                f"extra {_few(keys - wanted)})"]
    return []


def _few(names: set[str], most: int = 2) -> str:
    shown = sorted(names)[:most]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "") if names else "-"


def output_files(out: Path, dataset: str) -> list[Path] | None:
    """A dataset's output: `out/<dataset>.json.gz`, or the parts of a folder `out/<dataset>/`
    (the Spark engine's layout, whose committer writes `part-*.json.gz`); None if neither."""
    single, folder = out / f"{dataset}.json.gz", out / dataset
    if single.is_file():
        return [single]
    if folder.is_dir():
        return sorted(folder.glob("part-*.json.gz"))  # a dataset of no rows may have no part
    return None


def scan_outputs(out: Path, columns: dict[str, list[str]]) -> tuple[dict, dict]:
    """Rows (summed over parts) and sample problems per dataset; None rows if it has no output."""
    rows, problems = {}, {}
    for ds, cols in columns.items():
        files = output_files(out, ds)
        rows[ds], problems[ds] = (None if files is None else 0), set()
        for path in files or []:
            count, found = scan_output(path, cols)
            rows[ds] += count
            problems[ds].update(found)
        problems[ds] = sorted(problems[ds])
    return rows, problems


def output_bytes(out: Path, datasets: list[str]) -> int:
    """The size of every dataset's output files (rejects and manifests not included)."""
    return sum(p.stat().st_size for ds in datasets for p in output_files(out, ds) or [])


def check_rows(expected: dict[str, int], got: dict[str, int | None]) -> list[str]:
    """One message per dataset whose count differs from the manifest's; [] when all match."""
    problems = []
    for ds, want in sorted(expected.items()):
        have = got.get(ds)
        if have is None:
            problems.append(f"{ds}: no output file")
        elif have != want:
            problems.append(f"{ds}: {have:,} rows, manifest says {want:,} ({have - want:+,})")
    for ds in sorted(set(got) - set(expected)):
        problems.append(f"{ds}: not in the manifest")
    return problems
