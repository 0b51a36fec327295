"""The four datasets of raw_data/, declared once and derived from the Chinook schema.

`make-raw` writes them, `ingest` types them, `load` puts them back into tables: all three read
the columns, types and nullability from here, and these come from `tables.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from helpers.chinook.tables import TABLES_BY_NAME


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "integer", "number" or "text"
    nullable: bool


@dataclass(frozen=True)
class Dataset:
    name: str
    fields: tuple[Field, ...]
    source_sql: str  # how the rows are read from chinook.db, in a stable order

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.fields]


def _fields(table: str, names: list[str]) -> tuple[Field, ...]:
    t = TABLES_BY_NAME[table]
    return tuple(Field(n, t.column(n).kind, t.column(n).nullable) for n in names)


_TRACK_COLUMNS = TABLES_BY_NAME["tracks"].column_names

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "tracks",
            _fields("tracks", _TRACK_COLUMNS),
            f"SELECT {', '.join(_TRACK_COLUMNS)} FROM tracks ORDER BY TrackId",
        ),
        Dataset(
            "track_facts",
            _fields("tracks", ["TrackId", "Milliseconds", "Bytes"]),
            "SELECT TrackId, Milliseconds, Bytes FROM tracks ORDER BY TrackId",
        ),
        Dataset(
            "playlist_track",
            _fields("playlist_track", ["PlaylistId", "TrackId"]),
            "SELECT PlaylistId, TrackId FROM playlist_track ORDER BY PlaylistId, TrackId",
        ),
        Dataset(
            "orders",
            (
                *_fields("invoice_items", ["InvoiceLineId", "InvoiceId"]),
                *_fields("invoices", ["CustomerId"]),
                *_fields("invoice_items", ["TrackId", "UnitPrice", "Quantity"]),
            ),
            "SELECT ii.InvoiceLineId, ii.InvoiceId, i.CustomerId, ii.TrackId, ii.UnitPrice,"
            " ii.Quantity FROM invoice_items ii JOIN invoices i ON i.InvoiceId = ii.InvoiceId"
            " ORDER BY ii.InvoiceLineId",
        ),
    )
}
