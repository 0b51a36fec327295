"""Shared by the wrangling notebook's tests (tests/test_wrangling_answers.py) and the end-to-end
test (tests/test_end_to_end.py): where the notebook is, the tags of its question cells, and the SQL
of a tagged question exactly as the notebook holds it.
"""

from __future__ import annotations

from pathlib import Path

from helpers.notebook.wrangling import split_sql_cell

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "02_wrangling.ipynb"
QUESTIONS = ["q1", "q2", "q3", "q4", "q5", "q5b", "q6", "q7"]


def question_sql(notebook, tag: str) -> str:
    cells = [c for c in notebook.cells if tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"exactly one cell must be tagged {tag}"
    line, body = split_sql_cell(cells[0].source)
    assert line == "", f"{tag}: the %%sql line must not redirect or reconnect"
    return body
