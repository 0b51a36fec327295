"""The processing notebook's evidence of scale: the approach is listed from the running source by
function name (wherever the functions sit in their module), the scaling runs ingest each scale
in a subprocess with the notebook's options and measure that whole process tree, a failed run is
an error with its message, and the benchmark results are parsed from their Markdown table, with
their date, into numbers that the chart draws.
"""

from __future__ import annotations

import inspect
import sys
import tempfile
import textwrap
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest

from helpers.cli import build_parser
from helpers.errors import HelpersError, InputError
from helpers.ingest import dataset_pass
from helpers.ingest.dataset_pass import Options
from helpers.notebook.scaling import (
    APPROACH,
    OURS,
    approach_source,
    benchmark_chart,
    growth,
    ingest_arguments,
    markdown_tables,
    measure_scaling,
    parse_number,
    read_benchmarks,
    run_measured,
    scaling_chart,
)

ROOT = Path(__file__).resolve().parent.parent

# --- the approach, from its source ---------------------------------------------------------


def test_the_listing_is_the_running_source_of_the_named_functions_in_order():
    listing = approach_source()
    starts = []
    for name in APPROACH:
        cls, method = name.split(".")
        source = textwrap.dedent(inspect.getsource(getattr(getattr(dataset_pass, cls), method)))
        assert source in listing
        starts.append(listing.index(source))
    assert starts == sorted(starts) and starts[0] == 0
    assert listing.startswith("def _process_file(self")


def test_the_listing_shows_the_steps_the_notebook_names():
    # The notebook's prose walks through these calls; a rename must fail here, not in prose.
    listing = approach_source()
    for step in ("source.units()", "self._ahead(", "normalizer.chunk(", "self._write_lines(",
                 "self._checkpoint(", "def _write_lines(", "def _checkpoint("):
        assert step in listing, step


def test_the_listing_finds_functions_by_name_wherever_they_moved(tmp_path, monkeypatch):
    module = tmp_path / "moving_module.py"
    body = "class Run:\n    def step(self):\n        return 1\n"
    module.write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = approach_source("moving_module", ["Run.step"])
    sys.modules.pop("moving_module")
    module.write_text("import os\n\n\nX = 1\n\n\n" + body)  # the function moved down
    assert approach_source("moving_module", ["Run.step"]) == before == (
        "def step(self):\n    return 1\n")
    sys.modules.pop("moving_module")


def test_a_function_that_is_not_there_is_an_error_naming_it():
    with pytest.raises(HelpersError) as error:
        approach_source(names=["_Run._no_such_step"])
    assert error.value.message == ("helpers.ingest.dataset_pass has no _Run._no_such_step. Name "
                                   "a function that exists: the listing picks its functions by "
                                   "name")


# --- peak memory against input size --------------------------------------------------------


def test_ingest_arguments_give_the_command_line_exactly_these_options(tmp_path):
    options = Options(chunk_rows=700, checkpoint_rows=9_000, level=3, dedupe="drop",
                      dedupe_budget_mb=5, max_record_lines=50, max_record_bytes=4096)
    args = build_parser().parse_args(ingest_arguments(tmp_path / "raw", tmp_path / "out",
                                                      options, jobs=2))
    assert Options(**{f.name: getattr(args, f.name) for f in fields(Options)}) == options
    assert (args.raw, args.out, args.jobs) == (str(tmp_path / "raw"), str(tmp_path / "out"), 2)
    assert args.no_progress
    assert build_parser().parse_args(ingest_arguments(tmp_path, tmp_path, Options())).jobs is None


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """Where tempfile makes its folders during the test, to see that they are gone after."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_each_scale_is_ingested_in_a_subprocess_whose_whole_tree_is_measured(chinook_db,
                                                                            scratch):
    frame = measure_scaling(chinook_db, [1, 3], Options(chunk_rows=1_000), jobs=2)
    assert list(frame.index) == [1, 3]
    assert frame["rows as MANIFEST.json says"].all()
    assert frame.loc[3, "rows read"] == 3 * frame.loc[1, "rows read"]
    assert 2.5 < frame.loc[3, "raw MB"] / frame.loc[1, "raw MB"] < 3.5
    # The command runs its two jobs as threads of one process: the tree is that process, and
    # the sampler saw it (a run that spawned workers would show them here).
    assert (frame["processes"] == 1).all()
    assert (frame["peak RSS, tree MiB"] - frame["largest process MiB"]).abs().max() < 1
    # Fresh interpreters that import only the helpers, not this test process with pytest.
    assert (frame["largest process MiB"] > 10).all() and (frame["largest process MiB"] < 200).all()
    assert list(scratch.iterdir()) == []


def test_memory_does_not_grow_with_the_input(chinook_db, scratch):
    frame = measure_scaling(chinook_db, [1, 8], jobs=1)
    assert frame.loc[8, "raw MB"] > 7 * frame.loc[1, "raw MB"]
    assert frame.loc[8, "peak RSS, tree MiB"] < 1.3 * frame.loc[1, "peak RSS, tree MiB"]


def test_a_failed_run_is_an_error_with_its_message(tmp_path):
    with pytest.raises(HelpersError) as error:
        run_measured(["ingest", "--raw", str(tmp_path / "missing"), "--out", str(tmp_path)])
    assert error.value.reason.startswith("python -m helpers ingest failed (exit 1): error: ")
    assert str(tmp_path / "missing") in error.value.reason


@pytest.mark.parametrize("scales", [[], [0, 5]])
def test_scales_must_be_at_least_one(chinook_db, scales):
    with pytest.raises(InputError):
        measure_scaling(chinook_db, scales)


SCALING = pd.DataFrame({"scale": [10, 40], "raw MB": [8.0, 32.0],
                        "peak RSS, tree MiB": [100.0, 110.0],
                        "largest process MiB": [40.0, 44.0]}).set_index("scale")


def test_growth_compares_the_last_scale_with_the_first():
    assert growth(SCALING) == ("from scale 10 to 40 the raw input grew 4.0x (8 to 32 MB); the "
                               "peak memory of the whole tree 1.10x (100 to 110 MiB)")


def test_the_scaling_chart_draws_the_input_and_the_memory_of_each_scale():
    fig = scaling_chart(SCALING)
    size, memory = fig.axes
    assert [bar.get_height() for bar in size.patches] == [8.0, 32.0]
    tree, largest = memory.get_lines()
    assert list(tree.get_ydata()) == [100.0, 110.0]
    assert list(largest.get_ydata()) == [40.0, 44.0]
    assert memory.get_ylim()[0] == 0


# --- the benchmark -------------------------------------------------------------------------

RESULTS = """\
# Benchmark results, 2031-02-03

Machine: 2 cores.

## Scale 7: 1,234 rows, 1 MB of raw files

| peer | wall s | peer / ours | peak RSS, tree MiB | rows/s | rows = manifest |
|---|---:|---:|---:|---:|---|
| (a) ours | 9.2 | 1.00x | 119 | 979,442 | yes |
| (c) naive | 110.0 | 11.99x | 344 | 81,664 | no |

### Fixed cost

| peer | wall s |
|---|---:|
| (a) ours | 0.4 |
"""


@pytest.mark.parametrize(("text", "value"), [
    ("979,442", 979_442), ("119", 119), ("9.2", 9.2), ("11.99x", 11.99), ("1x", 1.0),
    ("-3", -3), ("yes", "yes"), ("1.2.3", "1.2.3"), ("", ""), ("4%", "4%"),
])
def test_parse_number_reads_counts_decimals_and_ratios(text, value):
    parsed = parse_number(text)
    assert parsed == value and type(parsed) is type(value)


def test_tables_come_with_their_heading_and_typed_columns():
    tables = markdown_tables(RESULTS)
    assert [heading for heading, _ in tables] == ["Scale 7: 1,234 rows, 1 MB of raw files",
                                                  "Fixed cost"]
    table = tables[0][1]
    assert list(table.index) == ["(a) ours", "(c) naive"]
    assert table.loc["(c) naive", "peer / ours"] == 11.99
    assert table["rows/s"].tolist() == [979_442, 81_664]
    assert table["rows = manifest"].tolist() == ["yes", "no"]
    assert tables[1][1].loc["(a) ours", "wall s"] == 0.4


def test_read_benchmarks_takes_the_date_and_the_first_table(tmp_path):
    path = tmp_path / "latest.md"
    path.write_text(RESULTS)
    bench = read_benchmarks(path)
    assert bench.date == "2031-02-03"
    assert bench.heading.startswith("Scale 7")
    assert bench.table.loc["(a) ours", "peak RSS, tree MiB"] == 119


def test_the_committed_results_parse():
    bench = read_benchmarks(ROOT / "benchmarks" / "results" / "latest.md")
    assert len(bench.date) == 10 and bench.date[4] == "-"
    assert "(a) ours" in bench.table.index
    assert pd.api.types.is_numeric_dtype(bench.table["wall s"])
    assert pd.api.types.is_numeric_dtype(bench.table["peak RSS, tree MiB"])


@pytest.mark.parametrize(("text", "problem"), [
    (None, "no benchmark results"),
    ("# Benchmark results\n\n| a | b |\n|---|---|\n| 1 | 2 |\n", "not a benchmark results file"),
    ("# Benchmark results, 2031-02-03\n\nno table\n", "not a benchmark results file"),
])
def test_a_missing_or_unfit_results_file_is_an_error_naming_it(tmp_path, text, problem):
    path = tmp_path / "latest.md"
    if text is not None:
        path.write_text(text)
    with pytest.raises(InputError) as error:
        read_benchmarks(path)
    assert error.value.message.startswith(f"{path}: {problem}")


def test_the_benchmark_chart_draws_every_peer_and_colours_ours(tmp_path):
    path = tmp_path / "latest.md"
    path.write_text(RESULTS)
    table = read_benchmarks(path).table
    fig = benchmark_chart(table, title="t")
    wall, memory = fig.axes
    assert [bar.get_width() for bar in wall.patches] == [9.2, 110.0]
    assert [bar.get_width() for bar in memory.patches] == [119, 344]
    colours = [bar.get_facecolor() for bar in wall.patches]
    assert colours[0] != colours[1]
    from matplotlib.colors import to_rgba
    assert colours[0] == to_rgba(OURS)
    assert fig.texts[0].get_text() == "t"  # the title
