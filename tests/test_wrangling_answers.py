"""The wrangling notebook's answers are right, and the notebook has the shape they rely on.

Each question's SQL is read from the notebook itself (the `%%sql` cell tagged `q1` ... `q7`), run
with plain sqlite3 on a fresh database, and compared with the same answer computed independently
in pandas from the raw tables. So the SQL a reader sees is the SQL under test. The notebook's
shape: that SQL runs unchanged outside IPython and groups by ids, each question is measured by the
%%memit cell after it, one parameters cell defaults to the built database, cell magics come first,
short errors are off before the first query, and the committed outputs are a clean full run.
"""

from __future__ import annotations

import re
import sqlite3

import nbformat
import pandas as pd
import pytest

from helpers.chinook.tables import TABLES
from helpers.notebook.wrangling import leaders
from tests.wrangling_util import NOTEBOOK, QUESTIONS, question_sql

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
