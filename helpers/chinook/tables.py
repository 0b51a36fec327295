"""The Chinook schema, declared once.

Everything that needs to know a Chinook table (building the database, generating raw files,
typing ingested values, loading them back) reads it from here, so the rules cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableColumn:
    name: str
    sqltype: str  # as written in the DDL: INTEGER, NVARCHAR(160), NUMERIC(10,2), DATETIME
    nullable: bool = True
    field: str | None = None  # the Django fixture's field name; None for the primary key
    references: str | None = None  # "table.TableColumn" for a foreign key

    @property
    def kind(self) -> str:
        """The JSON-level type: "integer", "number" or "text"."""
        if self.sqltype == "INTEGER":
            return "integer"
        if self.sqltype.startswith("NUMERIC"):
            return "number"
        return "text"


@dataclass(frozen=True)
class Table:
    name: str
    model: str  # the fixture's model label, e.g. "chinook.track"
    columns: tuple[TableColumn, ...]
    primary_key: tuple[str, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> TableColumn:
        return next(c for c in self.columns if c.name == name)


def _pk(name: str) -> TableColumn:
    return TableColumn(name, "INTEGER", nullable=False)


def _text(name: str, size: int, field: str, nullable: bool = True) -> TableColumn:
    return TableColumn(name, f"NVARCHAR({size})", nullable, field)


def _fk(name: str, field: str, references: str, nullable: bool = False) -> TableColumn:
    return TableColumn(name, "INTEGER", nullable, field, references)


def _contact() -> tuple[TableColumn, ...]:
    """Address to fax, as customers and employees both have them."""
    return (
        _text("Address", 70, "address"),
        _text("City", 40, "city"),
        _text("State", 40, "state"),
        _text("Country", 40, "country"),
        _text("PostalCode", 10, "postalcode"),
        _text("Phone", 24, "phone"),
        _text("Fax", 24, "fax"),
    )


# In creation order: albums first, so sqlite_master lists its tables the way the assessment shows.
TABLES: tuple[Table, ...] = (
    Table("albums", "chinook.album", (
        _pk("AlbumId"),
        _text("Title", 160, "title", nullable=False),
        _fk("ArtistId", "artist", "artists.ArtistId"),
    ), ("AlbumId",)),
    Table("artists", "chinook.artist", (
        _pk("ArtistId"),
        _text("Name", 120, "name"),
    ), ("ArtistId",)),
    Table("customers", "chinook.customer", (
        _pk("CustomerId"),
        _text("FirstName", 40, "firstname", nullable=False),
        _text("LastName", 20, "lastname", nullable=False),
        _text("Company", 80, "company"),
        *_contact(),
        _text("Email", 60, "email", nullable=False),
        _fk("SupportRepId", "support_rep", "employees.EmployeeId", nullable=True),
    ), ("CustomerId",)),
    Table("employees", "chinook.employee", (
        _pk("EmployeeId"),
        _text("LastName", 20, "lastname", nullable=False),
        _text("FirstName", 20, "firstname", nullable=False),
        _text("Title", 30, "title"),
        _fk("ReportsTo", "reports_to", "employees.EmployeeId", nullable=True),
        TableColumn("BirthDate", "DATETIME", True, "birthdate"),
        TableColumn("HireDate", "DATETIME", True, "hiredate"),
        *_contact(),
        _text("Email", 60, "email"),
    ), ("EmployeeId",)),
    Table("genres", "chinook.genre", (
        _pk("GenreId"),
        _text("Name", 120, "name"),
    ), ("GenreId",)),
    Table("invoices", "chinook.invoice", (
        _pk("InvoiceId"),
        _fk("CustomerId", "customer", "customers.CustomerId"),
        TableColumn("InvoiceDate", "DATETIME", False, "invoicedate"),
        _text("BillingAddress", 70, "billingaddress"),
        _text("BillingCity", 40, "billingcity"),
        _text("BillingState", 40, "billingstate"),
        _text("BillingCountry", 40, "billingcountry"),
        _text("BillingPostalCode", 10, "billingpostalcode"),
        TableColumn("Total", "NUMERIC(10,2)", False, "total"),
    ), ("InvoiceId",)),
    Table("invoice_items", "chinook.invoiceline", (
        _pk("InvoiceLineId"),
        _fk("InvoiceId", "invoice", "invoices.InvoiceId"),
        _fk("TrackId", "track", "tracks.TrackId"),
        TableColumn("UnitPrice", "NUMERIC(10,2)", False, "unit_price"),
        TableColumn("Quantity", "INTEGER", False, "quantity"),
    ), ("InvoiceLineId",)),
    Table("media_types", "chinook.mediatype", (
        _pk("MediaTypeId"),
        _text("Name", 120, "name"),
    ), ("MediaTypeId",)),
    Table("playlists", "chinook.playlist", (
        _pk("PlaylistId"),
        _text("Name", 120, "name"),
    ), ("PlaylistId",)),
    Table("playlist_track", "chinook.playlisttrack", (
        _fk("PlaylistId", "playlist", "playlists.PlaylistId"),
        _fk("TrackId", "track", "tracks.TrackId"),
    ), ("PlaylistId", "TrackId")),
    Table("tracks", "chinook.track", (
        _pk("TrackId"),
        _text("Name", 200, "name", nullable=False),
        _fk("AlbumId", "album", "albums.AlbumId", nullable=True),
        _fk("MediaTypeId", "mediatype", "media_types.MediaTypeId"),
        _fk("GenreId", "genre", "genres.GenreId", nullable=True),
        _text("Composer", 220, "composer"),
        TableColumn("Milliseconds", "INTEGER", False, "milliseconds"),
        TableColumn("Bytes", "INTEGER", True, "bytes"),
        TableColumn("UnitPrice", "NUMERIC(10,2)", False, "unit_price"),
    ), ("TrackId",)),
)

TABLES_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}

# Facts about this edition of Chinook; a build that gives other counts is not the right data.
ROW_COUNTS: dict[str, int] = {
    "albums": 347,
    "artists": 275,
    "customers": 59,
    "employees": 8,
    "genres": 25,
    "invoices": 412,
    "invoice_items": 2240,
    "media_types": 5,
    "playlists": 18,
    "playlist_track": 8715,
    "tracks": 3503,
}
