"""How the processing scales, shown rather than claimed: the heart of the approach as the code
that runs it, peak memory against input size, and speed and memory against other tools.

`approach_source` takes the streaming loop out of `helpers.ingest.dataset_pass` by name with
`inspect`, so the listing is the running code and cannot drift from it. `measure_scaling`
generates raw data at a few small scales in a temporary folder, ingests each with the command line
in a subprocess and samples that process tree with `helpers.memory.TreeMemory`.
`read_benchmarks` parses the results table that `python -m benchmarks.bench` writes to
`benchmarks/results/latest.md`.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from helpers.errors import HelpersError, InputError
from helpers.ingest.dataset_pass import Options
from helpers.ingest.manifest import read_manifest
from helpers.memory import MIB, TreeMemory
from helpers.notebook.processing import counts_agree

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The streaming loop and the decision made for every chunk of records: read, normalize or
# reject, write, checkpoint. Named, never located by line: the module changes under us.
APPROACH = ("_Run._process_file", "_Run._normalize", "_Run._write_lines", "_Run._checkpoint")
OURS = "#1f77b4"
OTHERS = "#b8b8b8"


# --- the approach, from its source ---------------------------------------------------------


def approach_source(module: str = "helpers.ingest.dataset_pass",
                    names: Sequence[str] = APPROACH) -> str:
    """The source of the functions `names` (dotted within `module`), dedented, one after the
    other: what runs, as it is in the installed package at this moment."""
    found = importlib.import_module(module)
    parts = []
    for name in names:
        obj: Any = found
        for attr in name.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                raise HelpersError(f"{module} has no {name}",
                                   fix="Name a function that exists: the listing picks its "
                                       "functions by name")
        parts.append(textwrap.dedent(inspect.getsource(obj)))
    return "\n".join(parts)


# --- peak memory against input size --------------------------------------------------------


def ingest_arguments(raw: Path, out: Path, options: Options, jobs: int | None = None) -> list[str]:
    """The `python -m helpers` arguments that ingest `raw` into `out` with exactly `options`.

    Every field of `Options` becomes its flag (`chunk_rows` -> `--chunk-rows`), so an option added
    later is passed too, or refused by the command line rather than silently dropped.
    """
    args = ["ingest", "--raw", str(raw), "--out", str(out), "--no-progress"]
    for f in dataclasses.fields(options):
        args += [f"--{f.name.replace('_', '-')}", str(getattr(options, f.name))]
    return args + (["--jobs", str(jobs)] if jobs else [])


def run_measured(args: Sequence[str], interval: float = 0.02) -> tuple[TreeMemory, float]:
    """Run `python -m helpers *args` and sample its process tree until it exits: (the tree's
    peaks, wall seconds). A failed run is an error carrying its message."""
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "helpers", *args],
                                stdout=subprocess.DEVNULL, stderr=stderr)
        # Not yet waited for, the process exists (at worst as a zombie) when the sampler looks.
        tree = TreeMemory(interval=interval, pid=proc.pid)
        tree.start()
        try:
            proc.wait()
        finally:
            tree.stop()
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            stderr.seek(0)
            message = stderr.read().decode(errors="replace").strip() or "no message"
            raise HelpersError(f"python -m helpers {args[0]} failed (exit {proc.returncode}): "
                               f"{message}", fix="Run the same command in a terminal to see why")
    return tree, seconds


def measure_scaling(db: str | Path, scales: Sequence[int], options: Options | None = None, *,
                    jobs: int | None = None, seed: int = 0, faults: bool = False,
                    interval: float = 0.02) -> pd.DataFrame:
    """Generate raw data at each scale, ingest it in a subprocess, and keep its peak memory.

    One line per scale: raw MB and rows, wall seconds, the peak of the whole tree's summed RSS,
    the largest single process, and whether the rows match the generator's ground truth. All
    of it happens in a temporary folder, one scale on disk at a time, removed afterwards.
    """
    if not scales or min(scales) < 1:
        raise InputError(f"scales must be whole numbers of at least 1, not {list(scales)}",
                         fix="Pass scales such as [25, 50, 100]")
    from helpers.rawgen.generate import make_raw

    options = options or Options()
    rows = []
    with tempfile.TemporaryDirectory(prefix="scaling-") as scratch:
        for scale in scales:
            raw, out = Path(scratch) / f"raw-{scale}", Path(scratch) / f"out-{scale}"
            truth = make_raw(db, raw, scale, seed=seed, faults=faults)
            tree, seconds = run_measured(ingest_arguments(raw, out, options, jobs), interval)
            _, entries = read_manifest(out)
            written = truth["datasets"]
            rows.append({
                "scale": scale,
                "raw MB": sum(f["bytes"] for d in written.values() for f in d["files"]) / 1e6,
                "rows read": sum(e["rows_read"] for e in entries.values()),
                "seconds": seconds,
                "peak RSS, tree MiB": tree.peak_total_bytes / MIB,
                "largest process MiB": tree.largest().peak_bytes / MIB,
                "processes": tree.max_processes,
                "rows as MANIFEST.json says": set(entries) == set(written) and all(
                    counts_agree(e, written[name]) for name, e in entries.items()),
            })
            shutil.rmtree(raw)
            shutil.rmtree(out)
    return pd.DataFrame(rows).set_index("scale").round(1)


def growth(scaling: pd.DataFrame) -> str:
    """One sentence: how much the input and the peak memory grew from the first scale to the
    last."""
    first, last = scaling.iloc[0], scaling.iloc[-1]
    memory = "peak RSS, tree MiB"
    return (f"from scale {scaling.index[0]} to {scaling.index[-1]} the raw input grew "
            f"{last['raw MB'] / first['raw MB']:.1f}x ({first['raw MB']:.0f} to "
            f"{last['raw MB']:.0f} MB); the peak memory of the whole tree "
            f"{last[memory] / first[memory]:.2f}x ({first[memory]:.0f} to "
            f"{last[memory]:.0f} MiB)")


def scaling_chart(scaling: pd.DataFrame) -> Figure:
    """Two panels over the same scales: the raw input in MB, the peak memory in MiB."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6), dpi=100)
    size, memory = fig.subplots(1, 2)
    labels = [f"scale {s}" for s in scaling.index]
    bars = size.bar(labels, scaling["raw MB"], color=OTHERS)
    size.bar_label(bars, fmt="%.0f MB")
    size.set(title="Raw input grows", ylabel="MB of raw files")
    x = range(len(labels))
    memory.plot(x, scaling["peak RSS, tree MiB"], marker="o", color=OURS,
                label="whole process tree (summed RSS)")
    memory.plot(x, scaling["largest process MiB"], marker="s", color=OURS, linestyle="--",
                label="largest single process")
    for i, value in enumerate(scaling["peak RSS, tree MiB"]):
        memory.annotate(f"{value:.0f} MiB", (i, value), textcoords="offset points",
                        xytext=(0, 6), ha="center")
    memory.set_xticks(list(x), labels)
    memory.set_xlim(-0.5, len(labels) - 0.5)  # room for the first and last figures
    # From zero, so that flat looks flat and not like noise magnified.
    memory.set_ylim(0, max(scaling["raw MB"].max(), scaling["peak RSS, tree MiB"].max()) * 1.15)
    memory.set(title="Peak memory stays flat", ylabel="MiB")
    memory.legend(loc="lower right")
    for ax in (size, memory):
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


# --- the benchmark against other tools -----------------------------------------------------


@dataclass
class Benchmarks:
    date: str  # the date in the results' title
    heading: str  # the section above the table: its scale, rows and raw size
    table: pd.DataFrame  # one line per peer


def read_benchmarks(path: str | Path) -> Benchmarks:
    """The first table of a benchmark results file, with its date and the heading above it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no benchmark results", path=path,
                         fix="Run `make bench`, or pass the path of a results file") from None
    date = re.search(r"^# .*?(\d{4}-\d{2}-\d{2})", text, re.MULTILINE)
    tables = markdown_tables(text)
    if date is None or not tables:
        raise InputError("not a benchmark results file: it needs a dated title and a table",
                         path=path, fix="Pass the latest.md that `python -m benchmarks.bench` "
                                        "writes")
    heading, table = tables[0]
    return Benchmarks(date.group(1), heading, table)


def markdown_tables(text: str) -> list[tuple[str, pd.DataFrame]]:
    """Every pipe table in a Markdown text, each with the nearest heading above it (without its
    #s); numbers written as `1,234`, `9.2` or `1.00x` become numbers."""
    tables: list[tuple[str, pd.DataFrame]] = []
    heading, block = "", []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2:
            tables.append((heading, _table(block)))
        block = []
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
    return tables


def _table(lines: list[str]) -> pd.DataFrame:
    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    header, rows = cells(lines[0]), [cells(line) for line in lines[2:]]  # [1] is |---|
    frame = pd.DataFrame(rows, columns=header)
    for column in frame.columns:
        values = [parse_number(v) for v in frame[column]]
        if all(isinstance(v, int | float) for v in values):
            frame[column] = values
    return frame.set_index(header[0])


def parse_number(text: str) -> int | float | str:
    """`979,442` -> 979442, `9.2` -> 9.2, `1.00x` (a ratio) -> 1.0; anything else as it is."""
    match = re.fullmatch(r"(-?\d[\d,]*(?:\.\d+)?)(x?)", text)
    if match is None:
        return text
    number = match.group(1).replace(",", "")
    return float(number) if "." in number or match.group(2) else int(number)


def benchmark_chart(table: pd.DataFrame, *, title: str = "", wall: str = "wall s",
                    memory: str = "peak RSS, tree MiB", ours: str = "ours") -> Figure:
    """Two panels of horizontal bars, one per peer: wall seconds and peak memory; the peers whose
    name (after its `(a) ` key) starts with `ours` in colour, the others grey."""
    from matplotlib.figure import Figure

    names = list(table.index)
    colors = [OURS if re.sub(r"^\(\w+\)\s*", "", n).startswith(ours) else OTHERS for n in names]
    fig = Figure(figsize=(11, 0.42 * len(names) + 1.3), dpi=100)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, column, unit in ((axes[0], wall, "s"), (axes[1], memory, "MiB")):
        bars = ax.barh(names, table[column], color=colors)
        ax.bar_label(bars, labels=[f"{v:.{1 if v < 10 else 0}f} {unit}" for v in table[column]],
                     padding=3)
        ax.set_xlim(0, table[column].max() * 1.2)
        ax.set_title(column)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].invert_yaxis()  # the table's order, top down
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
