"""The wrangling notebook's answers are right.

Each question's SQL is read from the notebook itself (the `%%sql` cell tagged `q1` ... `q7`), bound
by sqlite3 with the notebook's parameters (`top_n`, `threshold`: the defaults and others), run on a
fresh database, and compared with the same answer computed independently in pandas from the raw
tables. So the SQL a reader sees is the SQL under test, and a ranking keeps every row tied at its
cut-off whatever the cut-off.
"""

from __future__ import annotations

import math
import sqlite3

import nbformat
import pandas as pd
import pytest

from helpers.chinook.tables import TABLES
from helpers.notebook.wrangling import leaders
from tests.wrangling_util import NOTEBOOK, notebook_parameters, question_cell_sql

# Cut-offs a user might pass as top_n: 1 keeps only the leaders (and their ties), 10 reaches into
# Q4's and Q6's tied ranks from another side.
TOP_NS = [1, 3, 5, 10]


@pytest.fixture(scope="module")
def notebook() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=4)


@pytest.fixture(scope="module")
def raw(chinook_db) -> dict[str, pd.DataFrame]:
    """Whole tables as pandas frames: the independent side of every comparison."""
    with sqlite3.connect(chinook_db) as con:
        return {t.name: pd.read_sql(f'SELECT * FROM "{t.name}"', con) for t in TABLES}


@pytest.fixture(scope="module")
def answer(notebook, chinook_db):
    """Run the notebook's SQL for a question, its parameters bound as ipython-sql binds them."""
    defaults = notebook_parameters(notebook)

    def run(tag: str, **params) -> pd.DataFrame:
        with sqlite3.connect(chinook_db) as con:
            return pd.read_sql(question_cell_sql(notebook, tag), con,
                               params={**defaults, **params})

    return run


def top_ranked(values: pd.Series, n: int, ascending: bool = False) -> dict:
    """id -> value for every id whose competition rank (1, 2, 2, 4, ...) is at most n."""
    ranks = values.rank(method="min", ascending=ascending)
    return values[ranks <= n].to_dict()


def shown(result: pd.DataFrame, key: str, value: str) -> dict:
    return dict(zip(result[key], result[value], strict=True))


def winners(result: pd.DataFrame, key: str) -> set:
    return set(leaders(result)[key])


def test_the_defaults_are_the_assessments(notebook):
    params = notebook_parameters(notebook)
    assert (params["threshold"], params["top_n"]) == (40, 5)


# --- the answers ----------------------------------------------------------------------------


def test_q1_counts_each_customer_once(answer, raw):
    result, customers = answer("q1"), raw["customers"]
    assert result.customers[0] == customers.CustomerId.nunique() == len(customers)
    assert result.distinct_emails[0] == customers.Email.str.lower().nunique()
    assert result.distinct_names[0] == (customers.FirstName + " " + customers.LastName).nunique()
    assert result.customers_with_invoices[0] == raw["invoices"].CustomerId.nunique()


@pytest.mark.parametrize("n", TOP_NS)
def test_q2_finds_the_longest_track_in_minutes(answer, raw, n):
    result, ms = answer("q2", top_n=n), raw["tracks"].set_index("TrackId").Milliseconds
    assert winners(result, "TrackId") == set(ms[ms == ms.max()].index)
    assert shown(result, "TrackId", "Milliseconds") == top_ranked(ms, n)
    assert list(result.minutes) == [round(v / 60_000, 2) for v in result.Milliseconds]


@pytest.mark.parametrize("n", TOP_NS)
def test_q2_audio_ranks_only_audio_tracks(answer, raw, n):
    result = answer("q2_audio", top_n=n)
    audio_types = raw["media_types"][raw["media_types"].Name.str.contains("audio", case=False)]
    tracks = raw["tracks"][raw["tracks"].MediaTypeId.isin(audio_types.MediaTypeId)]
    ms = tracks.set_index("TrackId").Milliseconds
    assert shown(result, "TrackId", "Milliseconds") == top_ranked(ms, n)
    assert not result.media_type.str.contains("video").any()


def test_q3_finds_the_genre_with_the_shortest_average(answer, raw):
    result = answer("q3")
    average = raw["tracks"].groupby("GenreId").Milliseconds.mean()
    assert winners(result, "GenreId") == set(average[average == average.min()].index)
    # Every genre with tracks is listed (the chart uses them all), in minutes to 2 decimals.
    expected = (average / 60_000).round(2).to_dict()
    assert shown(result, "GenreId", "avg_minutes") == pytest.approx(expected)
    assert list(result.GenreId) == list(average.sort_values(kind="stable").index)


@pytest.mark.parametrize("n", TOP_NS)
def test_q4_counts_distinct_playlists_per_artist_by_id(answer, raw, n):
    result = answer("q4", top_n=n)
    joined = (raw["albums"][["AlbumId", "ArtistId"]]
              .merge(raw["tracks"][["TrackId", "AlbumId"]], on="AlbumId")
              .merge(raw["playlist_track"], on="TrackId"))
    playlists = joined.groupby("ArtistId").PlaylistId.nunique()
    assert winners(result, "ArtistId") == set(playlists[playlists == playlists.max()].index)
    assert shown(result, "ArtistId", "playlists") == top_ranked(playlists, n)
    names = joined.merge(raw["playlists"], on="PlaylistId").groupby("ArtistId").Name.nunique()
    assert shown(result, "ArtistId", "playlist_names") == names[result.ArtistId].to_dict()


def test_q4_shows_every_artist_tied_at_the_cut_off(answer):
    # Four artists share second place in Chinook: a cut-off of 2 must show all of them.
    result = answer("q4", top_n=2)
    assert list(result["rank"]) == [1, 2, 2, 2, 2]


MEASURES = {"units": "by_units", "invoice_lines": "by_lines", "invoices": "by_invoices",
            "customers": "by_customers", "revenue": "by_revenue"}


@pytest.fixture(scope="module")
def sales_by_album(raw) -> pd.DataFrame:
    lines = (raw["invoice_items"]
             .merge(raw["invoices"][["InvoiceId", "CustomerId"]], on="InvoiceId")
             .merge(raw["tracks"][["TrackId", "AlbumId"]], on="TrackId"))
    lines["paid"] = lines.UnitPrice * lines.Quantity
    by_album = lines.groupby("AlbumId").agg(
        units=("Quantity", "sum"), invoice_lines=("InvoiceLineId", "count"),
        invoices=("InvoiceId", "nunique"), customers=("CustomerId", "nunique"),
        revenue=("paid", "sum"))
    by_album["revenue"] = by_album.revenue.round(2)
    return by_album


@pytest.mark.parametrize("n", TOP_NS)
def test_q5_ranks_albums_by_tracks_sold_by_album_id(answer, sales_by_album, n):
    result, units = answer("q5", top_n=n), sales_by_album.units
    assert winners(result, "AlbumId") == set(units[units == units.max()].index)
    assert shown(result, "AlbumId", "units") == top_ranked(units, n)
    for column in ("invoice_lines", "invoices", "customers", "revenue"):
        expected = sales_by_album.loc[result.AlbumId, column].to_dict()
        assert shown(result, "AlbumId", column) == pytest.approx(expected)


def test_q5_readings_show_the_leader_of_every_reading_with_all_its_ranks(answer, sales_by_album):
    result = answer("q5_readings").set_index("AlbumId")
    leading = set().union(*(
        sales_by_album.index[sales_by_album[m] == sales_by_album[m].max()] for m in MEASURES))
    assert set(result.index) == leading
    for measure, rank in MEASURES.items():
        ranks = sales_by_album[measure].rank(method="min", ascending=False)
        assert result[rank].to_dict() == ranks[result.index].astype(int).to_dict()
        assert result[measure].to_dict() == pytest.approx(
            sales_by_album.loc[result.index, measure].to_dict())


def test_q5_revenue_picks_another_album_than_tracks_sold(answer):
    # The reason revenue is listed among the readings: in Chinook it changes the answer.
    result = answer("q5_readings").set_index("album")
    assert result.by_units.idxmin() == "Minha Historia"
    assert result.by_revenue.idxmin() == "Battlestar Galactica (Classic), Season 1"
    assert result.revenue.max() == pytest.approx(35.82)


@pytest.fixture(scope="module")
def dollars_by_customer(raw) -> pd.Series:
    return raw["invoices"].groupby("CustomerId").Total.sum().round(2)


@pytest.mark.parametrize("n", TOP_NS)
def test_q6_finds_the_customer_with_the_highest_dollar_sales(answer, raw, dollars_by_customer,
                                                             n):
    result, dollars = answer("q6", top_n=n), dollars_by_customer
    assert winners(result, "CustomerId") == set(dollars[dollars == dollars.max()].index)
    assert shown(result, "CustomerId", "dollars") == pytest.approx(top_ranked(dollars, n))
    people = raw["customers"].set_index("CustomerId")
    full_names = (people.FirstName + " " + people.LastName)[result.CustomerId].to_dict()
    assert shown(result, "CustomerId", "customer") == full_names


def same(value, expected) -> bool:
    """Equal, or both missing (SQL NULL against an empty pandas min/max)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.isnan(expected)
    return value == pytest.approx(expected)


# 45.62 is two customers' exact total: it tests "strictly above" and the count on the line.
@pytest.mark.parametrize("threshold", [40, 45.62, 0, 1000])
def test_q7_counts_customers_strictly_above_the_threshold(answer, dollars_by_customer,
                                                          threshold):
    result, dollars = answer("q7", threshold=threshold), dollars_by_customer
    row = result.iloc[0]
    assert row.customers_over == (dollars > threshold).sum()
    assert row.customers_at == (dollars == threshold).sum()
    assert row.customers == len(dollars)
    assert same(row.lowest_over, dollars[dollars > threshold].min())
    assert same(row.highest_not_over, dollars[dollars <= threshold].max())


def test_q7_at_the_default_threshold(answer):
    row = answer("q7").iloc[0]
    assert (row.customers_over, row.customers_at) == (14, 0)
