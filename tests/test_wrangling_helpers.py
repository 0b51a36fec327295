"""The wrangling notebook's helpers do what the notebook relies on: the schema read from the
database matches the declared one, the drawn ER diagram shows every table and relationship (every
table right of those it references, one arrow per foreign key, none behind a table), the database
opens read-only by URL, %%sql cells split, answer sentences name every tied winner, and the charts
colour and label what they claim, with the threshold line clear of every label.
"""

from __future__ import annotations

import pandas as pd
import pytest

from helpers.chinook.tables import ROW_COUNTS, TABLES
from helpers.errors import HelpersError
from helpers.notebook.schema import (
    ACCENT,
    _boxes,
    _routes,
    draw_er,
    foreign_keys_frame,
    layers,
    read_schema,
    schema_frame,
    sqlite_url,
)
from helpers.notebook.wrangling import (
    Sentence,
    and_join,
    barh_chart,
    fill,
    leaders,
    runners_up,
    say,
    split_sql_cell,
    threshold_bins,
    threshold_histogram,
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
    from helpers.notebook.schema import ROW, WIDTH

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


# --- answers in sentences -------------------------------------------------------------------


@pytest.mark.parametrize("ranks, first, next_", [
    ([1, 2, 3], [1], [2]),
    ([1, 1, 3, 3, 5], [1, 1], [3, 3]),
    ([2, 2, 2], [2, 2, 2], []),
])
def test_leaders_and_runners_up_keep_every_tied_row(ranks, first, next_):
    frame = pd.DataFrame({"rank": ranks})
    assert list(leaders(frame)["rank"]) == first
    assert list(runners_up(frame)["rank"]) == next_


@pytest.mark.parametrize("names, expected", [
    (["A"], "A"), (["A", "B"], "A and B"), (["A", "B", "C"], "A, B and C"),
])
def test_and_join(names, expected):
    assert and_join(names) == expected


ALBUMS = pd.DataFrame({"album": ["Minha Historia", "Greatest Hits", "Unplugged"],
                       "artist": ["Chico Buarque", "Lenny Kravitz", "Lenny Kravitz"],
                       "units": [27, 27, 25], "revenue": [26.73, 25.74, None]})


@pytest.mark.parametrize("rows, template, expected", [
    ([0], "{album} ({units} tracks)", "Minha Historia (27 tracks)"),
    # a tie: every winner named, a value they share said once
    ([0, 1], "{album}: {units} tracks", "Minha Historia and Greatest Hits: 27 tracks"),
    ([1, 2], "by {artist}", "by Lenny Kravitz"),
    ([0, 1], "${revenue:.2f}", "$26.73 and 25.74"),
    ([2], "${revenue:.2f}", "$none"),
    ([0, 1, 2], "{units:,}", "27 and 25"),
    ([], "{album}", ""),
])
def test_fill_names_every_row_and_each_value_once(rows, template, expected):
    assert fill(ALBUMS.iloc[rows], template) == expected


def test_fill_takes_other_fields_as_keywords():
    assert fill(ALBUMS.iloc[:1], "{units} over ${threshold:g}", threshold=40) == "27 over $40"


def test_fill_names_the_columns_when_a_field_is_not_one():
    with pytest.raises(HelpersError) as error:
        fill(ALBUMS, "{title}")
    assert error.value.message == (
        "{title} is not a column of the result. Use one of: album, artist, units, revenue")


def test_say_joins_the_parts_that_have_something_to_say():
    sentence = say("**Answer:** A.", "", "Next: B.")
    assert sentence == Sentence("**Answer:** A. Next: B.")
    # The Markdown and the plain text (what nbval compares) are the same words.
    assert sentence._repr_markdown_() == repr(sentence) == "**Answer:** A. Next: B."


def test_dollars_in_a_sentence_are_not_read_as_math():
    sentence = say("**$49.62** over 7 invoices.", "Next: $47.62.")
    assert sentence._repr_markdown_() == r"**\$49.62** over 7 invoices. Next: \$47.62."
    assert repr(sentence) == "**$49.62** over 7 invoices. Next: $47.62."


# --- charts -------------------------------------------------------------------------------


def test_barh_chart_highlights_the_chosen_bars_in_order():
    from matplotlib.colors import to_hex

    fig = barh_chart(["a", "b", "c"], [3.0, 2.0, 1.0], title="t", xlabel="x",
                     highlight=pd.Series([True, False, True]))
    ax = fig.axes[0]
    colors = [to_hex(bar.get_facecolor()) for bar in ax.patches]
    assert colors[0] == colors[2] == ACCENT and colors[1] != ACCENT
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]


@pytest.mark.parametrize("values, expected", [
    # bins are (39, 40], (40, 41], ...: exactly 40 is not over 40, 40.01 is
    ([40.0], {40.0: 1}),
    ([40.01, 40.99, 41.0], {41.0: 3}),
    ([37.62, 40.62, 40.62], {38.0: 1, 39.0: 0, 40.0: 0, 41.0: 2}),
    ([], {}),
])
def test_threshold_bins_are_closed_on_the_right_and_aligned_on_the_threshold(values, expected):
    assert threshold_bins(values, 40) == expected


def test_threshold_bins_follow_the_width():
    assert threshold_bins([41, 44, 45.5], 40, width=2.5) == {42.5: 1, 45.0: 1, 47.5: 1}


@pytest.fixture
def histogram():
    values = [36.64] + [37.62] * 30 + [39.62] * 8 + [40.0] + [40.62] * 3 + [49.62]
    return values, threshold_histogram(values, 40, title="t", xlabel="x")


def test_histogram_colours_only_the_bins_over_the_threshold(histogram):
    from matplotlib.colors import to_hex

    values, fig = histogram
    bars = fig.axes[0].patches
    over = [(b.get_x(), b.get_height()) for b in bars if to_hex(b.get_facecolor()) == ACCENT]
    assert all(x >= 40 for x, _ in over)
    assert sum(h for _, h in over) == sum(v > 40 for v in values) == 4
    assert sum(b.get_height() for b in bars) == len(values)
    assert "4 over $40" in fig.axes[0].get_title(loc="left")


def test_histogram_threshold_line_crosses_no_label(histogram):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    _, fig = histogram
    ax = fig.axes[0]
    [line] = ax.lines
    assert list(line.get_xdata()) == [40, 40]
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    x = ax.transData.transform((40, 0))[0]
    labels = [t for t in ax.texts if t.get_text()]
    assert len(labels) == 5  # one count per non-empty bin
    for text in labels:
        box = text.get_window_extent(renderer)
        assert not box.x0 <= x <= box.x1, text.get_text()
