"""Shared by the wrangling notebook's tests (tests/test_wrangling_*.py) and the end-to-end test
(tests/test_end_to_end.py): where the notebook is, the tags of its question cells, its parameters,
and the SQL of a tagged question exactly as the notebook holds it.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers.notebook.wrangling import split_sql_cell

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "02_wrangling.ipynb"
QUESTIONS = ["q1", "q2", "q2_audio", "q3", "q4", "q5", "q5_readings", "q6", "q7"]
# A bind parameter as ipython-sql (through SQLAlchemy's text()) and sqlite3 both read it; `::`
# and `a:b` are not parameters.
BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def notebook_parameters(notebook) -> dict[str, object]:
    """The defaults of the notebook's `parameters` cell (plain assignments), by name."""
    [cell] = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    values: dict[str, object] = {}
    exec(cell.source, {}, values)
    return values


def question_cell_sql(notebook, tag: str) -> str:
    """The SQL of the `%%sql` cell tagged `tag`, as written (bind parameters such as `:top_n`
    included); the cell must keep its result in a variable named like the tag, and nothing else."""
    cells = [c for c in notebook.cells if tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"exactly one cell must be tagged {tag}"
    line, body = split_sql_cell(cells[0].source)
    assert line == f"{tag} <<", f"{tag}: the %%sql line must be `{tag} <<`, got {line!r}"
    return body


def question_sql(notebook, tag: str, **overrides: object) -> str:
    """The tagged question's SQL, ready for plain sqlite3: each bind parameter written in as the
    value of the notebook's parameter of that name (its default, or `overrides`)."""
    values = {**notebook_parameters(notebook), **overrides}

    def literal(match: re.Match) -> str:
        value = values[match.group(1)]
        assert isinstance(value, int | float) and not isinstance(value, bool), match.group(0)
        return repr(value)

    return BIND.sub(literal, question_cell_sql(notebook, tag))
