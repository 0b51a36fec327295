"""The wrangling notebook's helpers do what the notebook relies on: the schema read from the
database matches the declared one, its tables and the ER diagram (Mermaid and drawn: every table
right of those it references, one arrow per foreign key, none behind a table) show every table and
relationship, the database opens read-only by URL, %%sql cells split, %%memit measures the last
SQL cell through the magic in a real IPython shell, and the ranking, joining and charting helpers
keep every tie.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from helpers.chinook.tables import ROW_COUNTS, TABLES
from helpers.errors import HelpersError
from helpers.notebook.wrangling import (
    ACCENT,
    _boxes,
    _routes,
    and_join,
    barh_chart,
    draw_er,
    foreign_keys_frame,
    layers,
    leaders,
    mermaid_er,
    read_schema,
    record_sql_cells,
    rerun_last_sql,
    schema_frame,
    split_sql_cell,
    sqlite_url,
)

# --- the helpers ----------------------------------------------------------------------------


def test_schema_is_read_from_the_database_and_matches_the_declared_one(chinook_db):
    schema = read_schema(chinook_db)
    assert [t.name for t in schema] == [t.name for t in TABLES]
    assert {t.name: t.rows for t in schema} == ROW_COUNTS
    declared = {(t.name, c.name, c.references, c.nullable)
                for t in TABLES for c in t.columns if c.references}
    found = {(fk.table, fk.column, f"{fk.ref_table}.{fk.ref_column}", fk.nullable)
             for t in schema for fk in t.foreign_keys}
    assert found == declared


def test_schema_frames_have_one_row_per_table_and_per_foreign_key(chinook_db):
    schema = read_schema(chinook_db)
    tables = schema_frame(schema).set_index("table")
    assert tables.loc["playlist_track", "primary key"] == "PlaylistId, TrackId"
    assert tables.loc["tracks", "references"] == "albums, genres, media_types"
    assert len(foreign_keys_frame(schema)) == sum(len(t.foreign_keys) for t in schema)


def test_mermaid_diagram_has_every_table_and_relationship(chinook_db):
    schema = read_schema(chinook_db)
    text = mermaid_er(schema)
    assert text.startswith("erDiagram\n")
    relations = set(re.findall(r"^    (\w+) (\|\||\|o)--o\{ (\w+) : \"(\w+)\"$", text, flags=re.M))
    expected = {(fk.ref_table, "|o" if fk.nullable else "||", fk.table, fk.column)
                for t in schema for fk in t.foreign_keys}
    assert relations == expected
    assert set(re.findall(r"^    (\w+) \{$", text, flags=re.M)) == {t.name for t in schema}
    assert "        INTEGER TrackId PK, FK" in text  # playlist_track's key is both


def test_layers_put_every_table_right_of_the_tables_it_references(chinook_db):
    schema = read_schema(chinook_db)
    grid = layers(schema)
    column = {name: i for i, layer in enumerate(grid) for name in layer}
    assert sorted(column) == sorted(t.name for t in schema)
    for t in schema:
        for fk in t.foreign_keys:
            assert column[fk.ref_table] < column[t.name] or fk.ref_table == t.name
    assert layers(schema) == grid  # deterministic


def test_diagram_arrows_never_pass_behind_a_table(chinook_db):
    schema = read_schema(chinook_db)
    grid = layers(schema)
    boxes, routes = _boxes(schema, grid), _routes(schema, grid)
    from helpers.notebook.wrangling import ROW, WIDTH

    heights = {t.name: (len(t.columns) + 1) * ROW for t in schema}
    for fk, points in routes.items():
        for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
            for step in range(1, 50):  # sample the segment, endpoints excluded
                x, y = x0 + (x1 - x0) * step / 50, y0 + (y1 - y0) * step / 50
                for name, (left, top) in boxes.items():
                    inside = left < x < left + WIDTH and top - heights[name] < y < top
                    assert not inside, f"{fk.table}.{fk.column} crosses {name}"


def test_diagram_draws_one_arrow_per_foreign_key(chinook_db):
    from matplotlib.patches import FancyArrowPatch

    schema = read_schema(chinook_db)
    fig = draw_er(schema)
    arrows = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == sum(len(t.foreign_keys) for t in schema)


def test_sqlite_url_refuses_a_missing_database(tmp_path):
    with pytest.raises(HelpersError) as error:
        sqlite_url(tmp_path / "nope.db")
    assert str(tmp_path / "nope.db") in error.value.message
    assert "make db" in error.value.message
    assert not (tmp_path / "nope.db").exists()


def test_sqlite_url_opens_the_database_read_only(chinook_db):
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(sqlite_url(chinook_db))
    with engine.connect() as con:
        assert con.execute(text("SELECT count(*) FROM customers")).scalar() == 59
        with pytest.raises(OperationalError, match="readonly"):
            con.execute(text("DELETE FROM customers"))
    engine.dispose()


@pytest.mark.parametrize("source, expected", [
    ("%%sql\nSELECT 1", ("", "SELECT 1")),
    ("%%sql sales <<\nSELECT 1\nFROM t", ("sales <<", "SELECT 1\nFROM t")),
    ("\n%%sql\nSELECT 1", ("", "SELECT 1")),
])
def test_split_sql_cell(source, expected):
    assert split_sql_cell(source) == expected


def test_split_sql_cell_refuses_another_cell():
    with pytest.raises(HelpersError, match="expected a %%sql cell"):
        split_sql_cell("%%memit\nx = 1")


@pytest.fixture
def shell(chinook_db):
    """A real IPython shell with ipython-sql and memory_profiler, connected to the database."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "sql")
    ip.run_line_magic("load_ext", "memory_profiler")
    ip.run_line_magic("config", "SqlMagic.short_errors = False")
    ip.run_line_magic("config", "SqlMagic.feedback = False")
    ip.user_ns.update(url=sqlite_url(chinook_db), rerun_last_sql=rerun_last_sql)
    ip.run_cell("%sql $url")
    yield ip
    InteractiveShell.clear_instance()


def test_memit_measures_the_last_sql_cell_through_the_magic(shell, capsys):
    record_sql_cells(shell)
    record_sql_cells(shell)  # registering twice must not run the hook twice
    shell.run_cell("%%sql\nSELECT COUNT(*) AS n FROM tracks", store_history=False)
    capsys.readouterr()
    # store_history=False, as nbval runs cells: no _i or In to lean on.
    done = shell.run_cell("%%memit\nresult = rerun_last_sql()", store_history=False)
    assert done.success, done.error_in_exec
    assert re.search(r"peak memory: [\d.]+ MiB, increment: -?[\d.]+ MiB", capsys.readouterr().out)
    assert shell.user_ns["result"].DataFrame().n[0] == ROW_COUNTS["tracks"]


def test_a_failing_query_fails_the_memit_cell(shell):
    record_sql_cells(shell)
    shell.run_cell("%%sql\nSELECT * FROM no_such_table", store_history=False)
    done = shell.run_cell("%%memit\nrerun_last_sql()", store_history=False)
    assert not done.success
    assert "no such table" in str(done.error_in_exec)


@pytest.mark.parametrize("ranks, expected", [([1, 2, 3], 1), ([1, 1, 3], 2), ([2, 2, 2], 3)])
def test_leaders_keep_every_row_tied_at_the_top(ranks, expected):
    assert len(leaders(pd.DataFrame({"rank": ranks}))) == expected


@pytest.mark.parametrize("names, expected", [
    (["A"], "A"), (["A", "B"], "A and B"), (["A", "B", "C"], "A, B and C"),
])
def test_and_join(names, expected):
    assert and_join(names) == expected


def test_barh_chart_highlights_the_chosen_bars_and_draws_the_threshold():
    from matplotlib.colors import to_hex

    fig = barh_chart(["a", "b", "c"], [3.0, 2.0, 1.0], title="t", xlabel="x",
                     highlight=pd.Series([True, False, True]), threshold=1.5)
    ax = fig.axes[0]
    colors = [to_hex(bar.get_facecolor()) for bar in ax.patches]
    assert colors[0] == colors[2] == ACCENT and colors[1] != ACCENT
    assert [line.get_xdata()[0] for line in ax.lines] == [1.5]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]


def test_the_answer_text_names_every_tied_leader():
    from helpers.notebook import wrangling

    frame = pd.DataFrame({"rank": [1, 1, 3], "album": ["A", "B", "C"]})
    assert wrangling.winners(frame, "album") == "A and B"
    assert wrangling.winners(frame.iloc[1:], "album") == "B"
