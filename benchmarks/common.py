"""What every peer shares: the same files, the same sniffing help, the same canonical names.

Each peer gets the same minimum help, so that it reads the same rows as ours: our `sniff` for
each file's kind (CSV, JSON Lines, JSON array), delimiter, encoding and compression, and our
header rule (`tracks.TrackId`, `trackid` and `TRACKID` all name TrackId). What a peer does with
the rows after that is its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

from helpers.chinook.datasets import DATASETS
from helpers.ingest.folders import list_files
from helpers.ingest.schema import canonical_name
from helpers.ingest.sniff import DATA_KINDS, Format


def dataset_folders(raw: Path) -> list[Path]:
    """The dataset subfolders of a raw folder, sorted, as ingestion sees them."""
    return sorted(p for p in raw.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def data_files(folder: Path) -> list[tuple[Path, Format]]:
    """A dataset folder's data files, sorted, each with its sniffed format (empty files and
    strays such as .DS_Store left out, as ingestion leaves them out)."""
    return [(p, f) for p, f in list_files(folder) if f.kind in DATA_KINDS]


def canonical_columns(dataset: str) -> list[str]:
    """The declared column order of a known dataset, or [] for an unknown one."""
    ds = DATASETS.get(dataset)
    return ds.columns if ds else []


def rename_map(dataset: str, names: list[str]) -> dict[str, str]:
    """Each raw column name to its canonical spelling (declared columns matched ignoring case)."""
    declared = {c.lower(): c for c in canonical_columns(dataset)}
    out = {}
    for raw in names:
        name = canonical_name(raw)
        out[raw] = declared.get(name.lower(), name)
    return out


def ordered(dataset: str, columns: list[str]) -> list[str]:
    """Columns in canonical order, then any others in first-seen order."""
    declared = canonical_columns(dataset)
    return [c for c in declared if c in columns] + [c for c in columns if c not in declared]


def main_args(usage: str) -> tuple[Path, Path]:
    """`python -m benchmarks.peers.X RAW OUT`: every peer takes the raw folder and an output one."""
    if len(sys.argv) != 3:
        sys.exit(f"usage: python -m {usage} RAW OUT")
    raw, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    return raw, out
