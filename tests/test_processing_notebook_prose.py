"""The processing notebook as committed: prose kept short, no figure typed by hand, one title and
numbered sections, charts among its outputs, a `%%memit` that counts child processes, and every
cell whose output varies from run to run marked so that nbval ignores it.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "01_processing.ipynb"
MAX_WORDS = 1_500
# A figure typed in prose: a number of three or more digits, one with thousands separators, or
# one with a unit of size or time. Code spans are left out: they hold names and commands.
TYPED_FIGURE = re.compile(r"(?<![\w.\-/])(\d[\d,]*(\.\d+)? ?(KB|MB|GB|TB|KiB|MiB|GiB|ms|s|seconds|"
                          r"minutes|%)(?!\w)|\d{1,3}(,\d{3})+|\d{3,})(?![\w\-])")
# Cells that print measurements (memory, time) or draw charts from them.
VARYING = ("measure_scaling(", "growth(", "scaling_chart(", "benchmark_chart(")


@pytest.fixture(scope="module")
def notebook() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=4)


def markdown(notebook: nbformat.NotebookNode) -> list[str]:
    return [c.source for c in notebook.cells if c.cell_type == "markdown"]


def words(texts: list[str]) -> int:
    return sum(len(text.split()) for text in texts)


def typed_figures(text: str) -> list[str]:
    prose = re.sub(r"`[^`]*`", "", text)
    return [m.group(0) for m in TYPED_FIGURE.finditer(prose)]


def test_the_prose_stays_under_its_word_budget(notebook):
    assert words(markdown(notebook)) < MAX_WORDS


@pytest.mark.parametrize(("text", "found"), [
    ("These are the counts: 1,120,000 rows.", ["1,120,000"]),
    ("run it at 1.6 GB of raw files", ["1.6 GB"]),
    ("a peak of 157.7 MiB", ["157.7 MiB"]),
    ("it took 9 s", ["9 s"]),
    ("2,700 words and 4,357,500 rows", ["2,700", "4,357,500"]),
    ("## 3. Ingestion, sections 6 to 8", []),
    ("Windows-1252 and sha256, gzip members", []),
    ("`python -m helpers ingest --chunk-rows 5000`", []),
])
def test_typed_figures_are_found_outside_code(text, found):
    assert typed_figures(text) == found


def test_no_figure_is_typed_in_the_prose(notebook):
    typed = {f for text in markdown(notebook) for f in typed_figures(text)}
    assert not typed, f"figures typed in Markdown instead of printed by a cell: {typed}"


def test_one_title_then_numbered_sections(notebook):
    headings = [line for text in markdown(notebook) for line in text.splitlines()
                if line.startswith("#")]
    assert headings[0] == "# Data processing"
    assert [h for h in headings if re.match(r"# ", h)] == ["# Data processing"]
    sections = [h for h in headings if h.startswith("## ")]
    numbers = [int(re.match(r"## (\d+)\. \S", h).group(1)) for h in sections]
    assert numbers == list(range(1, len(sections) + 1))
    assert all(re.match(r"#{1,3} ", h) for h in headings)
    assert not [h for h in headings if re.match(r"#+ \d", h) and not h.startswith("## ")]


def test_the_assessment_questions_have_their_own_section(notebook):
    last = [text for text in markdown(notebook) if text.startswith("## ")][-1]
    assert last.startswith("## ") and "questions" in last.splitlines()[0]
    for question in ("single pass", "gigabytes", "edge cases"):
        assert question in last


def test_the_committed_outputs_hold_at_least_two_charts(notebook):
    charts = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert len(charts) >= 2


def test_memit_counts_the_child_processes(notebook):
    memits = [c.source for c in notebook.cells if c.cell_type == "code"
              and c.source.startswith("%%memit")]
    assert memits
    assert all(re.match(r"%%memit( -\w)* -c\b", src) for src in memits), memits


def test_cells_with_varying_output_are_ignored_by_nbval(notebook):
    for cell in notebook.cells:
        if cell.cell_type != "code" or cell.source.startswith("%%memit"):
            continue  # memit's figures are masked by nbval_sanitize.cfg instead
        if any(call in cell.source for call in VARYING):
            assert "nbval-ignore-output" in cell.metadata.get("tags", []), cell.source


def test_the_parameters_cell_declares_the_scaling_scales(notebook):
    [parameters] = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert re.search(r"^scaling_scales = \[", parameters.source, re.MULTILINE)
    assert re.search(r"^benchmarks_path = ", parameters.source, re.MULTILINE)
