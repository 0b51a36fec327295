"""The schema the wrangling notebook queries, read from the database itself, and its
entity-relationship diagram.

Everything comes from SQLite's own catalogue (`sqlite_master`, `PRAGMA table_info`,
`PRAGMA foreign_key_list`), never from a list typed by hand, so the diagram shows the database the
notebook actually queries.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise, permutations, product
from math import factorial, prod
from pathlib import Path
from typing import TYPE_CHECKING

from helpers.errors import HelpersError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

ACCENT, MUTED, INK = "#c0392b", "#9db4c8", "#1f2d3a"
# The diagram's grid, in data units: a column row's height, a box's width, the gaps between.
ROW, WIDTH, GAP_X, GAP_Y, LANE = 1.0, 9.0, 5.0, 1.6, 0.4
MAX_ARRANGEMENTS = 20_000


@dataclass(frozen=True)
class DbColumn:
    name: str
    sqltype: str
    primary_key: bool
    not_null: bool


@dataclass(frozen=True)
class ForeignKey:
    table: str
    column: str
    ref_table: str
    ref_column: str
    nullable: bool


@dataclass(frozen=True)
class TableInfo:
    name: str
    rows: int
    columns: tuple[DbColumn, ...]
    foreign_keys: tuple[ForeignKey, ...]


# --- reading the catalogue ------------------------------------------------------------------


def sqlite_url(db_path: str | Path) -> str:
    """A read-only SQLAlchemy URL for `%sql`, after checking the file is there.

    SQLite would otherwise create an empty database at a mistyped path, and every query would then
    fail with a puzzling "no such table".
    """
    path = Path(db_path)
    if not path.is_file():
        raise HelpersError("no database here", path=path,
                           fix="Build it with `make db`, or pass -p db_path <file>")
    return f"sqlite:///file:{path.as_posix()}?mode=ro&uri=true"


def connect_readonly(db_path: str | Path) -> sqlite3.Connection:
    sqlite_url(db_path)  # the same existence check and message
    return sqlite3.connect(f"file:{Path(db_path).as_posix()}?mode=ro", uri=True)


def read_schema(db_path: str | Path) -> list[TableInfo]:
    """The user tables in creation order, each with its row count, columns and foreign keys."""
    with connect_readonly(db_path) as con:
        names = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY rowid")]
        return [_table_info(con, name) for name in names]


def _table_info(con: sqlite3.Connection, name: str) -> TableInfo:
    quoted = '"' + name.replace('"', '""') + '"'
    # table_info: cid, name, type, notnull, default, pk (position in the key, 0 when not in it)
    columns = tuple(DbColumn(r[1], r[2], r[5] > 0, bool(r[3]))
                    for r in con.execute(f"PRAGMA table_info({quoted})"))
    not_null = {c.name: c.not_null for c in columns}
    # foreign_key_list: id, seq, table, from, to, ...; sorted so the order is the declared one
    fks = tuple(ForeignKey(name, r[3], r[2], r[4], not not_null[r[3]])
                for r in sorted(con.execute(f"PRAGMA foreign_key_list({quoted})"),
                                key=lambda r: (-r[0], r[1])))
    rows = con.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]
    return TableInfo(name, rows, columns, fks)


def schema_frame(schema: Sequence[TableInfo]) -> pd.DataFrame:
    """One row per table: rows, columns, primary key and the tables it references."""
    import pandas as pd

    return pd.DataFrame([{
        "table": t.name,
        "rows": t.rows,
        "columns": len(t.columns),
        "primary key": ", ".join(c.name for c in t.columns if c.primary_key),
        "references": ", ".join(sorted({fk.ref_table for fk in t.foreign_keys})),
    } for t in schema])


def foreign_keys_frame(schema: Sequence[TableInfo]) -> pd.DataFrame:
    """One row per foreign key: child column -> parent column, and whether it may be NULL."""
    import pandas as pd

    return pd.DataFrame([{
        "table": fk.table, "column": fk.column, "references": f"{fk.ref_table}.{fk.ref_column}",
        "nullable": fk.nullable,
    } for t in schema for fk in t.foreign_keys])


# --- the entity-relationship diagram ----------------------------------------------------------


def layers(schema: Sequence[TableInfo]) -> list[list[str]]:
    """Tables by depth (0 references nothing but itself, n references depth n-1 at most), each
    layer in the order that keeps the diagram's arrows shortest; names break ties."""
    parents = {t.name: {fk.ref_table for fk in t.foreign_keys} - {t.name} for t in schema}
    depth: dict[str, int] = {}

    def depth_of(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name not in depth:
            if name in seen:
                raise HelpersError(f"foreign keys form a cycle through {name}")
            depth[name] = 1 + max((depth_of(p, seen | {name}) for p in parents[name]), default=-1)
        return depth[name]

    grid: list[list[str]] = [[] for _ in range(1 + max(map(depth_of, parents), default=-1))]
    for name in sorted(parents):
        grid[depth_of(name)].append(name)
    return _shortest_arrangement(schema, grid)


def _shortest_arrangement(schema: Sequence[TableInfo], grid: list[list[str]]) -> list[list[str]]:
    # Every ordering of every layer, when there are few (Chinook: 5! * 2! * 2! * 2! = 960);
    # the first one met wins ties, and the orderings come in name order, so it is deterministic.
    if prod(factorial(len(layer)) for layer in grid) > MAX_ARRANGEMENTS:
        return grid
    best, best_cost = grid, float("inf")
    for candidate in product(*(permutations(layer) for layer in grid)):
        arranged = [list(layer) for layer in candidate]
        routes = _routes(schema, arranged)
        cost = sum(abs(b[1] - a[1]) for route in routes.values() for a, b in pairwise(route))
        if cost < best_cost:
            best, best_cost = arranged, cost
    return best


def _boxes(schema: Sequence[TableInfo], grid: list[list[str]]) -> dict[str, tuple[float, float]]:
    """Each table's (left x, top y): layers side by side, each centred vertically."""
    sizes = {t.name: (len(t.columns) + 1) * ROW for t in schema}
    heights = [sum(sizes[n] + GAP_Y for n in layer) for layer in grid]
    tallest = max(heights, default=0)
    boxes = {}
    for i, layer in enumerate(grid):
        top = tallest - (tallest - heights[i]) / 2
        for name in layer:
            boxes[name] = (i * (WIDTH + GAP_X), top)
            top -= sizes[name] + GAP_Y
    return boxes


def _anchors(schema: Sequence[TableInfo],
             grid: list[list[str]]) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(table, column) -> (left x, right x, y of the column's row)."""
    boxes = _boxes(schema, grid)
    return {(t.name, c.name): (boxes[t.name][0], boxes[t.name][0] + WIDTH,
                               boxes[t.name][1] - (j + 0.5) * ROW)
            for t in schema for j, c in enumerate(t.columns, start=1)}


def _routes(schema: Sequence[TableInfo],
            grid: list[list[str]]) -> dict[ForeignKey, list[tuple[float, float]]]:
    """Each foreign key's arrow as points from the child's row to the parent's key row.

    An arrow that skips a layer crosses it through the gap between two boxes (or above or below
    them) nearest its height, never behind a table, so no arrow seems to start at the wrong box;
    arrows sharing a gap get lanes of their own, in the order of where they are going.
    """
    boxes, anchors = _boxes(schema, grid), _anchors(schema, grid)
    sizes = {t.name: (len(t.columns) + 1) * ROW for t in schema}
    layer_of = {name: i for i, layer in enumerate(grid) for name in layer}
    gaps = [[boxes[layer[0]][1] + GAP_Y / 2] + [boxes[n][1] - sizes[n] - GAP_Y / 2 for n in layer]
            for layer in grid]
    passes: dict[ForeignKey, list[tuple[int, int]]] = {}  # fk -> [(layer, gap index)]
    for t in schema:
        for fk in t.foreign_keys:
            if fk.ref_table == t.name:
                continue
            y, crossings = anchors[(t.name, fk.column)][2], []
            for i in range(layer_of[t.name] - 1, layer_of[fk.ref_table], -1):
                g = min(range(len(gaps[i])), key=lambda g, i=i, y=y: abs(gaps[i][g] - y))
                crossings.append((i, g))
                y = gaps[i][g]
            passes[fk] = crossings
    lane: dict[tuple[ForeignKey, int], float] = {}
    for gap in {c for crossings in passes.values() for c in crossings}:
        sharing = sorted((fk for fk, cs in passes.items() if gap in cs),
                         key=lambda fk: -anchors[(fk.ref_table, fk.ref_column)][2])
        for k, fk in enumerate(sharing):
            lane[(fk, gap[0])] = gaps[gap[0]][gap[1]] + (len(sharing) / 2 - k - 0.5) * LANE
    routes = {}
    for fk, crossings in passes.items():
        points = [anchors[(fk.table, fk.column)][::2]]
        for i, _ in crossings:
            x = i * (WIDTH + GAP_X)
            points += [(x + WIDTH, lane[(fk, i)]), (x, lane[(fk, i)])]
        routes[fk] = [*points, anchors[(fk.ref_table, fk.ref_column)][1:]]
    return routes


def draw_er(schema: Sequence[TableInfo]) -> Figure:
    """The schema as boxes of columns in dependency layers, an arrow from each foreign key to the
    key it references, dashed when the key may be NULL (matplotlib: renders wherever a PNG does)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, Rectangle
    from matplotlib.path import Path

    grid = layers(schema)
    boxes, anchors, routes = _boxes(schema, grid), _anchors(schema, grid), _routes(schema, grid)
    fig = Figure(figsize=(16, 10), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    for t in schema:
        x0, top = boxes[t.name]
        height = (len(t.columns) + 1) * ROW
        fk_columns = {fk.column for fk in t.foreign_keys}
        # Boxes above the arrows, so an arrow that passes behind a table never hides its text.
        ax.add_patch(Rectangle((x0, top - height), WIDTH, height, fc="white", ec=INK, lw=1.2,
                               zorder=2))
        ax.add_patch(Rectangle((x0, top - ROW), WIDTH, ROW, fc=INK, ec=INK, zorder=2))
        ax.text(x0 + 0.3, top - ROW / 2, f"{t.name}  ({t.rows:,} rows)", color="white",
                va="center", fontsize=9, fontweight="bold", zorder=3)
        for c in t.columns:
            keys = [k for k, on in (("PK", c.primary_key), ("FK", c.name in fk_columns)) if on]
            ax.text(x0 + 0.3, anchors[(t.name, c.name)][2], f"{' '.join(keys):5} {c.name}",
                    va="center", fontsize=8, family="monospace", color=ACCENT if keys else INK,
                    zorder=3)
    for t in schema:
        for fk in t.foreign_keys:
            style = dict(arrowstyle="-|>", mutation_scale=12, color=ACCENT, lw=1.1,
                         linestyle="--" if fk.nullable else "-", zorder=1)
            if fk in routes:
                ax.add_patch(FancyArrowPatch(path=Path(routes[fk]), **style))
            else:  # a self-reference loops round the right side of its box
                _, x1, y = anchors[(t.name, fk.column)]
                _, px1, py = anchors[(fk.ref_table, fk.ref_column)]
                ax.add_patch(FancyArrowPatch((x1, y), (px1, py), connectionstyle="arc3,rad=0.6",
                                             **style))
    tallest = max((top for _, top in boxes.values()), default=0)
    ax.set_xlim(-1, len(grid) * (WIDTH + GAP_X) - GAP_X + 2)
    ax.set_ylim(-1, tallest + 1)
    ax.axis("off")
    return fig


# --- measuring the %%sql cells --------------------------------------------------------------
