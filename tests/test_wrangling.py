"""The wrangling notebook's answers are right, and its helpers do what the notebook relies on.

Each question's SQL is read from the notebook itself (the `%%sql` cell tagged `q1` ... `q7`), run
with plain sqlite3 on a fresh database, and compared with the same answer computed independently
in pandas from the raw tables. So the SQL a reader sees is the SQL under test.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import nbformat
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

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "02_wrangling.ipynb"
QUESTIONS = ["q1", "q2", "q3", "q4", "q5", "q5b", "q6", "q7"]
# The rank cut-off every ranking query keeps (ties included), so ties at the top are visible.
TOP = 5


@pytest.fixture(scope="module")
def notebook() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=4)


@pytest.fixture(scope="module")
def code_cells(notebook) -> list[nbformat.NotebookNode]:
    return [c for c in notebook.cells if c.cell_type == "code"]


@pytest.fixture(scope="module")
def raw(chinook_db) -> dict[str, pd.DataFrame]:
    """Whole tables as pandas frames: the independent side of every comparison."""
    with sqlite3.connect(chinook_db) as con:
        return {t.name: pd.read_sql(f'SELECT * FROM "{t.name}"', con) for t in TABLES}


def question_sql(notebook, tag: str) -> str:
    cells = [c for c in notebook.cells if tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"exactly one cell must be tagged {tag}"
    line, body = split_sql_cell(cells[0].source)
    assert line == "", f"{tag}: the %%sql line must not redirect or reconnect"
    return body


@pytest.fixture(scope="module")
def answer(notebook, chinook_db):
    """Run the notebook's SQL for a question; the result as a frame."""

    def run(tag: str) -> pd.DataFrame:
        with sqlite3.connect(chinook_db) as con:
            return pd.read_sql(question_sql(notebook, tag), con)

    return run


def top_ranked(values: pd.Series, ascending: bool = False, n: int = TOP) -> dict:
    """id -> value for every id whose competition rank (1, 2, 2, 4, ...) is at most n."""
    ranks = values.rank(method="min", ascending=ascending)
    return values[ranks <= n].to_dict()


def shown(result: pd.DataFrame, key: str, value: str) -> dict:
    return dict(zip(result[key], result[value], strict=True))


def winners(result: pd.DataFrame, key: str) -> set:
    return set(leaders(result)[key])


# --- the answers ----------------------------------------------------------------------------


def test_q1_counts_each_customer_once(answer, raw):
    result, customers = answer("q1"), raw["customers"]
    assert result.customers[0] == customers.CustomerId.nunique() == len(customers)
    assert result.distinct_emails[0] == customers.Email.str.lower().nunique()
    assert result.distinct_names[0] == (customers.FirstName + " " + customers.LastName).nunique()
    assert result.customers_with_invoices[0] == raw["invoices"].CustomerId.nunique()


def test_q2_finds_the_longest_track_in_minutes(answer, raw):
    result, ms = answer("q2"), raw["tracks"].set_index("TrackId").Milliseconds
    assert winners(result, "TrackId") == set(ms[ms == ms.max()].index)
    assert result.minutes[0] == round(ms.max() / 60_000, 2)
    assert shown(result, "TrackId", "Milliseconds") == top_ranked(ms)


def test_q3_finds_the_genre_with_the_shortest_average(answer, raw):
    result = answer("q3")
    average = raw["tracks"].groupby("GenreId").Milliseconds.mean()
    assert winners(result, "GenreId") == set(average[average == average.min()].index)
    # Every genre with tracks is listed (the chart uses them all), in minutes to 2 decimals.
    expected = (average / 60_000).round(2).to_dict()
    assert shown(result, "GenreId", "avg_minutes") == pytest.approx(expected)
    assert list(result.GenreId) == list(average.sort_values(kind="stable").index)


def test_q4_counts_distinct_playlists_per_artist_by_id(answer, raw):
    result = answer("q4")
    joined = (raw["albums"][["AlbumId", "ArtistId"]]
              .merge(raw["tracks"][["TrackId", "AlbumId"]], on="AlbumId")
              .merge(raw["playlist_track"], on="TrackId"))
    playlists = joined.groupby("ArtistId").PlaylistId.nunique()
    assert winners(result, "ArtistId") == set(playlists[playlists == playlists.max()].index)
    assert shown(result, "ArtistId", "playlists") == top_ranked(playlists)
    names = joined.merge(raw["playlists"], on="PlaylistId").groupby("ArtistId").Name.nunique()
    assert shown(result, "ArtistId", "playlist_names") == names[result.ArtistId].to_dict()


@pytest.fixture(scope="module")
def sales_by_album(raw) -> pd.DataFrame:
    lines = (raw["invoice_items"]
             .merge(raw["invoices"][["InvoiceId", "CustomerId"]], on="InvoiceId")
             .merge(raw["tracks"][["TrackId", "AlbumId"]], on="TrackId"))
    return lines.groupby("AlbumId").agg(
        units=("Quantity", "sum"), invoice_lines=("InvoiceLineId", "count"),
        invoices=("InvoiceId", "nunique"), customers=("CustomerId", "nunique"))


def test_q5_ranks_albums_by_units_sold_by_album_id(answer, sales_by_album):
    result, units = answer("q5"), sales_by_album.units
    assert winners(result, "AlbumId") == set(units[units == units.max()].index)
    assert shown(result, "AlbumId", "units") == top_ranked(units)
    for column in ("invoice_lines", "invoices", "customers"):
        assert shown(result, "AlbumId", column) == sales_by_album.loc[result.AlbumId,
                                                                      column].to_dict()


def test_q5b_ranks_albums_by_distinct_customers(answer, sales_by_album):
    result, customers = answer("q5b"), sales_by_album.customers
    assert winners(result, "AlbumId") == set(customers[customers == customers.max()].index)
    assert shown(result, "AlbumId", "customers") == top_ranked(customers)


@pytest.fixture(scope="module")
def dollars_by_customer(raw) -> pd.Series:
    return raw["invoices"].groupby("CustomerId").Total.sum().round(2)


def test_q6_finds_the_customer_with_the_highest_dollar_sales(answer, raw, dollars_by_customer):
    result, dollars = answer("q6"), dollars_by_customer
    assert winners(result, "CustomerId") == set(dollars[dollars == dollars.max()].index)
    assert shown(result, "CustomerId", "dollars") == pytest.approx(top_ranked(dollars))
    people = raw["customers"].set_index("CustomerId")
    full_names = (people.FirstName + " " + people.LastName)[result.CustomerId].to_dict()
    assert shown(result, "CustomerId", "customer") == full_names


def test_q7_counts_customers_with_sales_over_40(answer, dollars_by_customer):
    result, dollars = answer("q7"), dollars_by_customer
    assert result.customers_over_40[0] == (dollars > 40).sum()
    assert result.lowest_over_40[0] == pytest.approx(dollars[dollars > 40].min())
    assert result.highest_not_over_40[0] == pytest.approx(dollars[dollars <= 40].max())


# --- the notebook's shape -----------------------------------------------------------------


@pytest.mark.parametrize("tag", QUESTIONS)
def test_question_sql_runs_unchanged_outside_ipython(notebook, tag):
    # ipython-sql expands {var} and $var and binds :name; none may occur, so that sqlite3 here
    # runs exactly the text the magic runs in the notebook.
    sql = question_sql(notebook, tag)
    assert not re.search(r"[{}$]|(?<![:\w]):[A-Za-z_]", sql)


@pytest.mark.parametrize("tag", QUESTIONS)
def test_question_groups_by_ids_not_names(notebook, tag):
    sql = question_sql(notebook, tag)
    for keys in re.findall(r"GROUP BY (.+)", sql):
        assert all(key.strip().endswith("Id") for key in keys.split(",")), keys


@pytest.mark.parametrize("tag", QUESTIONS)
def test_each_question_is_measured_by_the_memit_cell_after_it(code_cells, tag):
    index = next(i for i, c in enumerate(code_cells) if tag in c.metadata.get("tags", []))
    following = code_cells[index + 1].source
    assert following.startswith("%%memit\n")
    assert "rerun_last_sql()" in following


def test_exactly_one_parameters_cell_defaults_to_the_built_database(notebook):
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    assert re.search(r'^db_path = "\.\./db/sqlite/chinook\.db"', cells[0].source, flags=re.M)


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


def test_committed_outputs_are_a_clean_full_run(notebook, code_cells):
    counts = [c.execution_count for c in code_cells]
    assert counts == list(range(1, len(code_cells) + 1))
    assert not [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert not [o for c in code_cells for o in c.outputs if o.get("name") == "stderr"]
    assert "papermill" not in notebook.metadata


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
