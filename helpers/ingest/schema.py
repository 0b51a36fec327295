"""Map raw columns onto a dataset's canonical columns and type every value, or say why not.

The rules, in one place: header names lose a `table.` prefix, surrounding space and letter case;
declared columns are cast to their kind (integer, number, text) and checked for nulls; columns a
dataset does not declare (schema drift, or a dataset with no declared schema) are kept after the
declared ones and typed conservatively: only a strict integer or decimal becomes a number, so
`007` stays the string "007".
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from helpers.chinook.datasets import DATASETS

STRICT_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
STRICT_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
LOOSE_INT = re.compile(r"\s*[+-]?[0-9]+\s*")
INT64 = 1 << 63
LOOSE_NUMBER = re.compile(r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")


class CastError(ValueError):
    """A value that does not fit its column; the message is the reject reason."""


@dataclass(frozen=True)
class OutputColumn:
    name: str
    kind: str  # "integer", "number", "text", or "auto" for undeclared columns
    nullable: bool = True


@dataclass
class Schema:
    """The output columns of one dataset: declared ones first, then drift in first-seen order."""

    name: str
    columns: list[OutputColumn]
    declared: int  # how many of `columns` the dataset declares
    lookup: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lookup = {c.name.lower(): i for i, c in enumerate(self.columns)}

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def drift(self) -> list[str]:
        return self.names[self.declared:]

    def index(self, name: str, add: bool = True) -> int | None:
        """The output position of a column name (see `column_names`), adding it as drift."""
        found = self.lookup.get(name.lower())
        if found is None and add:
            self.columns.append(OutputColumn(name, "auto"))
            found = self.lookup[name.lower()] = len(self.columns) - 1
        return found


def schema_for(dataset: str) -> Schema:
    """The declared schema of a known dataset, or an empty one that learns from the headers."""
    declared = DATASETS.get(dataset)
    if declared is None:
        return Schema(dataset, [], 0)
    columns = [OutputColumn(f.name, f.kind, f.nullable) for f in declared.fields]
    return Schema(dataset, columns, len(columns))


PREFIX = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*\.)+([^.]+)")  # table. or db.table.


def canonical_name(raw: str) -> str:
    """`tracks.TrackId`, ` trackid ` and `"TrackId"` all name the column TrackId."""
    name = clean_name(raw)
    prefixed = PREFIX.fullmatch(name)
    return prefixed.group(1).strip() if prefixed else name


SURROGATES = re.compile("[\ud800-\udfff]")


def clean_name(raw: str) -> str:
    # A lone surrogate (from a JSON escape like "\ud800") cannot be written as UTF-8: a name
    # keeps a replacement character in its place, and the rename is reported.
    name = SURROGATES.sub("\ufffd", raw.lstrip("\ufeff").strip())
    if len(name) > 1 and name[0] == name[-1] == '"':  # a quoted JSON key or header cell
        name = name[1:-1].strip()
    return name


@dataclass
class Header:
    """How one file's (or one JSON key set's) fields map onto the dataset's output columns."""

    positions: list[int]  # output column of each field, in field order
    renamed: dict[str, str]  # output name -> the name as written, for names that collided
    error: str | None = None  # two fields onto one declared column: the file's records fail


def map_header(raw_names: list[str], schema: Schema) -> Header:
    """Name each field without merging any two; see `column_names` and `Schema.index`."""
    names, renamed = column_names(raw_names, schema)
    targets: dict[int, str] = {}
    positions = []
    for raw, name in zip(raw_names, names):
        position = schema.index(name)
        if position in targets and position < schema.declared:
            first = targets[position]
            return Header([], renamed, f"the fields {first!r} and {raw!r} both name the column "
                                       f"{schema.columns[position].name}; rename one of them "
                                       f"in the file")
        targets[position] = raw
        positions.append(position)
    return Header(positions, renamed)


def column_names(raw_names: list[str], schema: Schema | None = None) -> tuple[list[str], dict]:
    """Output names for one file's fields: never two alike, named as DuckDB names them.

    A blank name becomes `column<i>` (its 0-based position); a name that repeats one before it
    (letter case aside) becomes `<name>_1`, `<name>_2`, ...; a `table.` prefix is dropped where
    that makes no two names alike. Names of declared columns are matched before renaming, so a
    declared dataset's `tracks.TrackId` is its TrackId column.
    """
    declared = {c.name.lower(): c.name for c in schema.columns[:schema.declared]} if schema else {}
    cleaned = [clean_name(raw) for raw in raw_names]
    stripped = [canonical_name(name) for name in cleaned]
    wanted = []
    for name, short in zip(cleaned, stripped):
        if short.lower() in declared:
            wanted.append(declared[short.lower()])
        else:
            wanted.append(short if name == short else None)
    counts = {}
    for short, want in zip(stripped, wanted):
        key = (want or short).lower()
        counts[key] = counts.get(key, 0) + 1
    names = []
    for i, (name, short, want) in enumerate(zip(cleaned, stripped, wanted)):
        if want is None:  # a prefixed name: short only if no other field is called that
            want = short if counts[short.lower()] == 1 and short.lower() != name.lower() \
                else name
        names.append(want if want else positional_name(i, len(cleaned)))
    return _number_repeats(names, cleaned, set(declared))


def positional_name(i: int, width: int) -> str:
    """`column<i>`, zero-padded as DuckDB pads it: column0..column9, or column00..column11."""
    return f"column{i:0{len(str(width - 1))}d}"


def _number_repeats(names: list[str], cleaned: list[str],
                    declared: set[str]) -> tuple[list[str], dict]:
    seen: set[str] = set()
    out, renamed = [], {}
    taken = {n.lower() for n in names}
    for i, name in enumerate(names):
        key = name.lower()
        if key in seen and key not in declared:
            n = 1
            while f"{key}_{n}" in taken:
                n += 1
            name = f"{name}_{n}"
            taken.add(name.lower())
        seen.add(key)
        out.append(name)
        if name.lower() != cleaned[i].lower() and key not in declared:
            renamed[name] = cleaned[i]
    return out, renamed


def cast(value: Any, column: OutputColumn) -> Any:
    """The typed value for `column`, None for a missing one; raises CastError with the reason.

    One policy for every format: a CSV cell, a JSON string and a JSON number with the same text
    get the same verdict (the table is in README, "Values and types").
    """
    if value is None or value == "":
        if not column.nullable:
            raise CastError(f"{column.name} is required but empty")
        return None
    kind = column.kind
    if kind == "text":
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    elif kind == "integer":
        return _to_int(value, column)
    elif kind == "number":
        return _to_number(value, column)
    elif kind == "auto":
        return _auto(value)
    raise CastError(f"{column.name}: {_show(value)} is not {kind}")


def _to_int(value: Any, column: OutputColumn) -> int:
    if isinstance(value, bool):
        raise CastError(f"{column.name}: {_show(value)} is not an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and LOOSE_NUMBER.fullmatch(value):
        number = _integral(value, column)
    else:
        raise CastError(f"{column.name}: {_show(value)} is not an integer")
    if not -INT64 <= number < INT64:
        # SQLite, Spark and most readers of JSON stop at 64 bits.
        raise CastError(f"{column.name}: {_show(value)} is beyond the 64-bit range")
    return number


def _integral(text: str, column: OutputColumn) -> int:
    """`7`, ` 7 `, `+7`, `007`, `1.0` and `1e3` are integers; `1.5` is not, and nothing rounds."""
    exact = Decimal(text.strip())
    if exact != exact.to_integral_value():
        raise CastError(f"{column.name}: {_show(text)} is not an integer")
    if exact and exact.adjusted() >= 19:  # beyond 64 bits; int() of it could be huge
        raise CastError(f"{column.name}: {_show(text)} is beyond the 64-bit range")
    return int(exact)


def _to_number(value: Any, column: OutputColumn) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and LOOSE_NUMBER.fullmatch(value):
        number = float(value)
    else:
        raise CastError(f"{column.name}: {_show(value)} is not a number")
    if not math.isfinite(number):
        raise CastError(f"{column.name}: {_show(value)} is not a finite number")
    return number


def _auto(value: Any) -> Any:
    """Undeclared columns: JSON keeps its types; text becomes a number only when unambiguous."""
    if isinstance(value, str):
        if len(value) <= 20 and STRICT_INT.fullmatch(value) and -INT64 <= int(value) < INT64:
            return int(value)
        if STRICT_DECIMAL.fullmatch(value):
            number = float(value)
            if math.isfinite(number):
                return number
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not -INT64 <= value < INT64:
        return str(value)  # kept exactly, as text: never a float
    if isinstance(value, float) and not math.isfinite(value):
        raise CastError(f"{_show(value)} is not a finite number")
    return value


def _show(value: Any) -> str:
    text = repr(value) if len(str(value)) < 4000 else f"<a value of {len(str(value)):,} chars>"
    return text if len(text) <= 60 else text[:57] + "..."


def loads_exact(text: str | bytes) -> Any:
    """JSON with the standard library, integers beyond 64 bits kept as their digits (strings).

    orjson reads such integers as floats, and the stdlib refuses to turn over 4,300 digits into
    an int; a JSON string of digits and a JSON number of digits get the same verdict anyway.
    """
    return json.loads(text, parse_int=parse_json_int, parse_constant=_not_json)


def parse_json_int(digits: str) -> int | str:
    """A JSON integer token: an int within 64 bits, else its digits."""
    if len(digits) <= 20:
        number = int(digits)
        if -INT64 <= number < INT64:
            return number
    return digits


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")
