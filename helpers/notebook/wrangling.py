"""What the wrangling notebook calls besides the schema (`helpers.notebook.schema`): the memory
of each `%%sql` cell, answer sentences that name every tied winner, and charts.
"""

from __future__ import annotations

import gc
import math
import os
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from helpers.errors import HelpersError
from helpers.memory import MIB, TreeMemory, _high_water_mark
from helpers.notebook.schema import ACCENT, INK, MUTED

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure



def measure_sql_cells(shell=None) -> None:
    """From now on, print after every `%%sql` cell the kernel's peak memory while the cell ran and
    the increment over its level just before, in the words `%%memit` uses.

    `%%memit` runs its body as plain Python, where a magic cannot sit, so it cannot measure a
    `%%sql` cell. These two IPython events measure the cell's own run (the query runs once) and
    stay silent for every other cell. Registering again changes nothing.
    """
    shell = shell or _shell()
    for event, callback in (("pre_run_cell", _METER.start), ("post_run_cell", _METER.stop)):
        if callback not in shell.events.callbacks[event]:
            shell.events.register(event, callback)


@dataclass
class _CellMeter:
    baseline: int | None = None  # resident bytes before the cell; None: not measuring
    sampler: TreeMemory | None = None  # only where the kernel's high-water mark cannot be reset

    def start(self, info) -> None:
        if not info.raw_cell.lstrip().startswith("%%sql"):
            return
        gc.collect()  # garbage from earlier cells, freed mid-query, would blur the increment
        self.baseline = psutil.Process().memory_info().rss
        if not _reset_high_water_mark():
            self.sampler = TreeMemory(interval=0.01)
            self.sampler.start()

    def stop(self, result) -> None:
        if self.baseline is None:
            return
        if self.sampler is not None:
            self.sampler.stop()
            peak = self.sampler.peak_of("this process")
        else:
            peak = _high_water_mark(os.getpid())
        print(f"peak memory: {peak / MIB:.2f} MiB, "
              f"increment: {(peak - self.baseline) / MIB:.2f} MiB")
        self.baseline, self.sampler = None, None


_METER = _CellMeter()


def _reset_high_water_mark() -> bool:
    """Linux keeps each process's peak resident memory (VmHWM) and lets it reset it to the current
    level, so a peak shorter than any sampling interval is still seen; False elsewhere."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def split_sql_cell(source: str) -> tuple[str, str]:
    """A `%%sql` cell's source as (the magic's own line, the SQL body)."""
    first, _, body = source.lstrip().partition("\n")
    if not first.startswith("%%sql"):
        raise HelpersError(f"expected a %%sql cell, got one starting {first[:40]!r}",
                           fix="Tag only %%sql cells with a question")
    return first.removeprefix("%%sql").strip(), body


def _shell():
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise HelpersError("not running inside IPython", fix="Call this from a notebook cell")
    return shell


# --- answers in sentences -------------------------------------------------------------------


def leaders(frame: pd.DataFrame, rank: str = "rank") -> pd.DataFrame:
    """The rows ranked first (more than one when the top is tied)."""
    return frame[frame[rank] == frame[rank].min()]


def runners_up(frame: pd.DataFrame, rank: str = "rank") -> pd.DataFrame:
    """The rows at the next rank after the first (empty when every row is tied first)."""
    below = frame[frame[rank] > frame[rank].min()]
    return below[below[rank] == below[rank].min()]


def and_join(names: Sequence[str]) -> str:
    """ "A", "A and B", "A, B and C": for answers that may name several tied winners."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def fill(frame: pd.DataFrame, template: str, **values: object) -> str:
    """`template` with each `{column}` (format spec allowed: `{minutes:.2f}`) replaced by that
    column's values in `frame`, each distinct one once, joined "A, B and C", so one template reads
    right for one winner and for a tie. Keywords fill other fields. An empty frame gives ""."""
    if frame.empty:
        return ""
    return _ColumnFormatter(frame).vformat(template, (), values)


class _ColumnFormatter(string.Formatter):
    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def get_value(self, key, args, kwargs):
        if key in kwargs:
            return [kwargs[key]]
        if key not in self.frame.columns:
            raise HelpersError(f"{{{key}}} is not a column of the result",
                               fix=f"Use one of: {', '.join(map(str, self.frame.columns))}")
        return list(self.frame[key])

    def format_field(self, values, format_spec):
        # A NULL (no customer over the threshold, say) reads "none" rather than failing on ".2f".
        shown = ["none" if _missing(v) else format(v, format_spec) for v in values]
        return and_join(list(dict.fromkeys(shown)))


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class Sentence:
    """Text shown as Markdown, whose plain-text form (what nbval compares) is the same words."""

    text: str

    def _repr_markdown_(self) -> str:
        # Two prices in a line ("$49.62 ... $47.62") would otherwise be typeset as LaTeX math.
        return self.text.replace("$", r"\$")

    def __repr__(self) -> str:
        return self.text


def say(*parts: str) -> Sentence:
    """The non-empty parts, one after another: an answer and, when there is one, what comes next."""
    return Sentence(" ".join(p for p in parts if p))


# --- charts -------------------------------------------------------------------------------


def barh_chart(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str,
               highlight: Sequence[bool] | None = None, value_format: str = "{:.2f}") -> Figure:
    """Horizontal bars, first item at the top, highlighted ones in the accent colour, values
    printed at the bar ends."""
    from matplotlib.figure import Figure

    n = len(labels)
    marks = [False] * n if highlight is None else list(highlight)
    fig = Figure(figsize=(9, 0.25 * n + 1.4), dpi=100)
    ax = fig.add_subplot()
    ax.barh(range(n), values, color=[ACCENT if h else MUTED for h in marks])
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(v, i, " " + value_format.format(v), va="center", fontsize=7, color=INK)
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_xlabel(xlabel)
    ax.spines[["top", "right"]].set_visible(False)
    ax.margins(x=0.08, y=0.01)
    fig.tight_layout()
    return fig


def threshold_bins(values: Sequence[float], threshold: float,
                   width: float = 1.0) -> dict[float, int]:
    """How many values fall in each bin, keyed by the bin's upper edge. Bins are `width` wide,
    closed on the right and aligned on the threshold, so the bins above it hold exactly the
    values strictly greater (`> threshold`) and a value equal to it stays below the line."""
    keys = [math.ceil(round((v - threshold) / width, 9)) for v in values]  # 9 places: float noise
    if not keys:
        return {}
    return {threshold + k * width: keys.count(k) for k in range(min(keys), max(keys) + 1)}


def threshold_histogram(values: Sequence[float], threshold: float, *, title: str, xlabel: str,
                        unit: str = "$", width: float = 1.0) -> Figure:
    """A histogram with the bins over the threshold in the accent colour and a dashed line at the
    threshold. Counts sit above the bars' centres, half a bin clear of the line, and the line is
    explained in the title, outside the plot, so nothing is drawn across it."""
    from matplotlib.figure import Figure

    bins = threshold_bins(values, threshold, width)
    over = sum(n for edge, n in bins.items() if edge > threshold)
    fig = Figure(figsize=(9, 4), dpi=100)
    ax = fig.add_subplot()
    for edge, n in bins.items():
        ax.bar(edge - width, n, width=width, align="edge", edgecolor="white",
               color=ACCENT if edge > threshold else MUTED)
        if n:
            ax.text(edge - width / 2, n, str(n), ha="center", va="bottom", fontsize=9, color=INK)
    ax.axvline(threshold, color=INK, lw=1.2, linestyle="--")
    ax.xaxis.set_major_formatter(lambda x, _: f"{unit}{x:g}")
    ax.set_ylim(0, max(bins.values(), default=0) * 1.12 + 1)
    ax.set_title(f"{title}\n{over} over {unit}{threshold:g} (dashed line, red bars), "
                 f"{len(values) - over} at or under", loc="left", fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig
