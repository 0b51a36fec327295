"""Shared by the ingestion tests: write a raw folder from bytes, ingest it, read the results."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson

from helpers.ingest.dataset_pass import Options
from helpers.ingest.engine import ingest


def write_raw(root: Path, dataset: str, files: dict[str, bytes]) -> Path:
    folder = root / "raw" / dataset
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (folder / name).write_bytes(body)
    return root / "raw"


def run(root: Path, dataset: str, files: dict[str, bytes], **options) -> dict:
    """Ingest one dataset made of `files`; returns its manifest entry plus lines and rejects."""
    raw = write_raw(root, dataset, files)
    out = root / "out"
    jobs = options.pop("jobs", 1)
    manifest = ingest(raw, out, options=Options(**options), jobs=jobs, fresh=True,
                      progress=False, log_dir=None)
    entry = manifest[dataset]
    entry["lines"] = read_lines(out / f"{dataset}.json.gz")
    entry["reject_records"] = [orjson.loads(x) for x in read_lines(out / "_rejects" /
                                                                    f"{dataset}.jsonl.gz")]
    return entry


def read_lines(path: Path) -> list[bytes]:
    with gzip.open(path, "rb") as f:
        return f.read().splitlines()
