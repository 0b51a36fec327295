"""Map raw columns onto a dataset's canonical columns and type every value, or say why not.

The rules, in one place: header names lose a `table.` prefix, surrounding space and letter case;
declared columns are cast to their kind (integer, number, text) and checked for nulls; columns a
dataset does not declare (schema drift, or a dataset with no declared schema) are kept after the
declared ones and typed conservatively: only a strict integer or decimal becomes a number, so
`007` stays the string "007".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from helpers.datasets import DATASETS

STRICT_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
STRICT_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
LOOSE_INT = re.compile(r"\s*[+-]?[0-9]+\s*")
INT64 = 1 << 63
LOOSE_NUMBER = re.compile(r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")


class CastError(ValueError):
    """A value that does not fit its column; the message is the reject reason."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "integer", "number", "text", or "auto" for undeclared columns
    nullable: bool = True


@dataclass
class Schema:
    """The output columns of one dataset: declared ones first, then drift in first-seen order."""

    name: str
    columns: list[Column]
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

    def index(self, raw_name: str, add: bool = True) -> int | None:
        """The output position of a raw header or key, adding it as drift if unknown."""
        name = canonical_name(raw_name)
        found = self.lookup.get(name.lower())
        if found is None and add:
            self.columns.append(Column(name, "auto"))
            found = self.lookup[name.lower()] = len(self.columns) - 1
        return found


def schema_for(dataset: str) -> Schema:
    """The declared schema of a known dataset, or an empty one that learns from the headers."""
    declared = DATASETS.get(dataset)
    if declared is None:
        return Schema(dataset, [], 0)
    columns = [Column(f.name, f.kind, f.nullable) for f in declared.fields]
    return Schema(dataset, columns, len(columns))


def canonical_name(raw: str) -> str:
    """`tracks.TrackId`, ` trackid ` and `"TrackId"` all name the column TrackId."""
    name = raw.strip().strip('"').lstrip("\ufeff").strip()
    return name.rsplit(".", 1)[-1].strip() if "." in name else name


def cast(value: Any, column: Column) -> Any:
    """The typed value for `column`, None for a missing one; raises CastError with the reason."""
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


def _to_int(value: Any, column: Column) -> int:
    if isinstance(value, bool):
        raise CastError(f"{column.name}: {_show(value)} is not an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and LOOSE_INT.fullmatch(value):
        number = int(value)
    else:
        raise CastError(f"{column.name}: {_show(value)} is not an integer")
    if not -INT64 <= number < INT64:
        # SQLite, Spark and most readers of JSON stop at 64 bits.
        raise CastError(f"{column.name}: {_show(value)} is beyond the 64-bit range")
    return number


def _to_number(value: Any, column: Column) -> float:
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
    if isinstance(value, str):
        if STRICT_INT.fullmatch(value) and -INT64 <= int(value) < INT64:
            return int(value)
        if STRICT_DECIMAL.fullmatch(value):
            return float(value)
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise CastError(f"{_show(value)} is not a finite number")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
