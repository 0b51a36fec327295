"""The wrangling notebook has the shape its answers and its readers rely on: the SQL runs unchanged
outside IPython with only the notebook's parameters bound, groups by ids and never truncates a
ranking with LIMIT; every %%sql cell is measured once, by its own run; one parameters cell holds
db_path, threshold and top_n; the prose stays short; the committed outputs are a clean full run
whose closing table lists the seven answers and nothing else; and papermill runs it on another
database with other parameters, where the answers follow that database.
"""

from __future__ import annotations

import re
import shutil
import sqlite3

import nbformat
import pandas as pd
import pytest

from helpers.notebook.runner import run_notebooks
from tests.wrangling_util import (
    BIND,
    NOTEBOOK,
    QUESTIONS,
    ROOT,
    notebook_parameters,
    question_cell_sql,
    question_sql,
)

MEMIT_LINE = re.compile(r"^peak memory: [\d.]+ MiB, increment: -?[\d.]+ MiB$", flags=re.M)
MAX_MARKDOWN_WORDS = 1500


@pytest.fixture(scope="module")
def notebook() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=4)


@pytest.fixture(scope="module")
def code_cells(notebook) -> list[nbformat.NotebookNode]:
    return [c for c in notebook.cells if c.cell_type == "code"]


def sql_cells(cells) -> list[nbformat.NotebookNode]:
    return [c for c in cells if c.source.startswith("%%sql")]


def text_of(cell) -> str:
    """Everything a cell printed or showed as plain text."""
    return "\n".join(o.get("text", "") or o.get("data", {}).get("text/plain", "")
                     for o in cell.outputs)


# --- the SQL ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", QUESTIONS)
def test_question_sql_binds_only_the_notebook_parameters(notebook, tag):
    # ipython-sql expands {var} and $var and binds :name from the namespace; only the parameters
    # may be bound, so that sqlite3 here runs exactly what the magic runs in the notebook.
    sql = question_cell_sql(notebook, tag)
    assert not re.search(r"[{}$]", sql)
    assert set(BIND.findall(sql)) <= set(notebook_parameters(notebook)) - {"db_path"}


@pytest.mark.parametrize("tag", QUESTIONS)
def test_parameters_written_in_give_what_binding_gives(notebook, chinook_db, tag):
    # tests/test_end_to_end.py runs question_sql, with the values written into the text.
    with sqlite3.connect(chinook_db) as con:
        bound = pd.read_sql(question_cell_sql(notebook, tag), con,
                            params={"top_n": 3, "threshold": 45.62})
        written = pd.read_sql(question_sql(notebook, tag, top_n=3, threshold=45.62), con)
    pd.testing.assert_frame_equal(written, bound)


@pytest.mark.parametrize("tag", QUESTIONS)
def test_question_groups_by_ids_not_names(notebook, tag):
    for keys in re.findall(r"GROUP BY (.+)", question_cell_sql(notebook, tag)):
        assert all(key.strip().endswith("Id") for key in keys.split(",")), keys


def test_no_query_truncates_a_ranking_with_limit(code_cells):
    # Ties at a cut-off are shown (RANK() <= :top_n); LIMIT would drop tied rows silently.
    for cell in code_cells:
        assert not re.search(r"\bLIMIT\b", cell.source, flags=re.I), cell.source


# --- memory, parameters, prose --------------------------------------------------------------


def test_every_sql_cell_is_measured_on_its_own_run(code_cells):
    sources = [c.source for c in code_cells]
    setup = next(i for i, s in enumerate(sources) if "measure_sql_cells()" in s)
    assert setup < next(i for i, s in enumerate(sources) if s.startswith("%%sql"))
    assert not [s for s in sources if s.startswith("%%memit")]  # no second run to measure
    for cell in sql_cells(code_cells):
        assert len(MEMIT_LINE.findall(text_of(cell))) == 1, cell.source


def test_one_parameters_cell_holds_db_path_threshold_and_top_n(notebook):
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    assert notebook_parameters(notebook) == {
        "db_path": "../db/sqlite/chinook.db", "threshold": 40, "top_n": 5}


def test_the_markdown_stays_under_1500_words(notebook):
    words = sum(len(c.source.split()) for c in notebook.cells if c.cell_type == "markdown")
    assert words < MAX_MARKDOWN_WORDS


def test_every_cell_magic_is_the_first_line_of_its_cell(code_cells):
    for cell in code_cells:
        later_lines = cell.source.splitlines()[1:]
        assert not [line for line in later_lines if line.lstrip().startswith("%%")], cell.source


def test_short_errors_are_off_before_the_first_query(code_cells):
    sources = [c.source for c in code_cells]
    setup = next(i for i, s in enumerate(sources) if "SqlMagic.short_errors = False" in s)
    first_query = next(i for i, s in enumerate(sources) if s.startswith("%%sql")
                       or re.search(r"^%sql SELECT", s, flags=re.M))
    assert setup < first_query
    assert "SqlMagic.displaycon = False" in sources[setup]


# --- the committed outputs ------------------------------------------------------------------


def test_committed_outputs_are_a_clean_full_run(notebook, code_cells):
    counts = [c.execution_count for c in code_cells]
    assert counts == list(range(1, len(code_cells) + 1))
    assert not [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert not [o for c in code_cells for o in c.outputs if o.get("name") == "stderr"]
    assert "papermill" not in notebook.metadata


def closing_table(cells) -> pd.Series:
    """The last cell's table of answers, read back from its plain text: question -> answer."""
    lines = text_of(cells[-1]).splitlines()
    assert lines[0].split() == ["answer"]
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]
    return pd.Series({q: a for q, a in rows})


def test_the_closing_table_lists_the_seven_answers_and_nothing_else(code_cells):
    table = closing_table(code_cells)
    assert [q.split(".")[0] for q in table.index] == ["1", "2", "3", "4", "5", "6", "7"]
    assert table.to_dict() == {
        "1. Different customers": "59",
        "2. Longest track": "88.12 minutes (Occupation / Precipice)",
        "3. Genre with the shortest average track": "Rock And Roll (2.24 min)",
        "4. Artist in the most playlists": "Eugene Ormandy (7 playlists)",
        "5. Album with the most purchases": "Minha Historia (27 tracks sold)",
        "6. Customer with the highest dollar sales": "Helena Holý ($49.62)",
        "7. Customers with dollar sales over $40": "14",
    }


def test_no_mermaid_copy_of_the_diagram(notebook):
    assert "mermaid" not in nbformat.writes(notebook).lower()


# --- another database, other parameters -----------------------------------------------------


@pytest.fixture(scope="module")
def other_run(chinook_db, tmp_path_factory) -> list[nbformat.NotebookNode]:
    """The notebook run by papermill on a changed copy of Chinook: a second track as long as the
    longest, so question 2's top is tied; with top_n 3 and a $45 threshold."""
    folder = tmp_path_factory.mktemp("other")
    db = folder / "other.db"
    shutil.copy(chinook_db, db)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE tracks SET Milliseconds = 5286953 WHERE Name = ?",
                    ("Through a Looking Glass",))
    [executed] = run_notebooks(["02_wrangling"], {"db_path": str(db), "top_n": 3,
                                                  "threshold": 45},
                               reports=folder / "reports", html=False,
                               notebooks_dir=ROOT / "notebooks")
    cells = nbformat.read(executed, as_version=4).cells
    return [c for c in cells if c.cell_type == "code"]


def test_another_database_gets_its_own_answers(other_run):
    table = closing_table(other_run)
    assert table["2. Longest track"] == (
        "88.12 minutes (Occupation / Precipice and Through a Looking Glass)")
    assert table["7. Customers with dollar sales over $45"] == "5"


def test_another_top_n_keeps_the_ties_at_its_cut_off(other_run):
    after = {tag: other_run[i + 1] for i, c in enumerate(other_run)
             for tag in c.metadata.get("tags", []) if tag in QUESTIONS}
    assert "Occupation / Precipice and Through a Looking Glass" in text_of(after["q2"])
    # Q4 at top_n 3: the four artists tied second all reach the answer, none cut off.
    assert ("Next, with 6: English Concert & Trevor Pinnock, Academy of St. Martin in the Fields "
            "& Sir Neville Marriner, The King's Singers and Berliner Philharmoniker & Herbert "
            "Von Karajan.") in text_of(after["q4"])
