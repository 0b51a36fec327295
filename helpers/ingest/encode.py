"""Typed values to JSON fragments, a whole column at a time: the normalizer's fast path.

Each function returns one fragment per row, or None when it cannot vouch for the column (a value
that needs casting, an empty required field, a newline inside a number); the row-by-row path then
decides. `tests/test_fast_slow.py` holds the two paths to the same bytes.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from helpers.ingest.schema import INT64, OutputColumn

_INT = r"(?:0|-?[1-9][0-9]{0,17})"  # at most 18 digits: always inside the 64-bit range
_NUM = r"(?:-?(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,15})?)"
# Possessive quantifiers (*+, ?+): without them the regex engine keeps a backtracking point per
# line and a 20,000-line column costs hundreds of MB when it fails to match.
INT_COLUMN = re.compile(rf"(?:{_INT}\n)*+{_INT}")
INT_COLUMN_NULLABLE = re.compile(rf"(?:{_INT}?+\n)*+{_INT}?+")
NUM_COLUMN = re.compile(rf"(?:{_NUM}?+\n)*+{_NUM}?+")
JSON_TYPES = {"integer": {int}, "number": {float, int}, "text": {str}}
SCALARS = {int, float, str, bool, type(None)}
ONE_PER_LINE = orjson.OPT_INDENT_2


def encode_values(values: tuple[Any, ...] | list[Any]) -> list[bytes]:
    """Each value as JSON, from one orjson call for the whole column.

    orjson gives every result a buffer of a few KiB that the allocator keeps after shrinking
    it, so a call per value costs that much memory per live value; one call per column with
    one element per line, split at the line breaks, costs only the bytes. A scalar's JSON never
    holds a raw newline, so the split is exact; nested values (only in undeclared columns) are
    encoded one by one.
    """
    if not values:
        return []
    if not SCALARS.issuperset(map(type, values)):
        return [orjson.dumps(v) for v in values]
    return orjson.dumps(list(values), option=ONE_PER_LINE)[4:-2].split(b",\n  ")


def encode_text_column(values: tuple[str, ...] | None, column: OutputColumn, n: int):
    """Fragments for one column of CSV strings, or None when the slow path must decide."""
    if values is None:
        return [b"null"] * n if column.nullable else None
    has_empty = "" in values
    if has_empty and not column.nullable:
        return None
    if column.kind == "text":
        frags = encode_values(values)
    elif column.kind == "integer":
        joined = "\n".join(values)
        pattern = INT_COLUMN_NULLABLE if has_empty else INT_COLUMN
        # A value holding a newline would add a line to the joined column: count them first.
        if joined.count("\n") != n - 1 or not pattern.fullmatch(joined):
            return None
        frags = joined.encode().split(b"\n")
        return [f or b"null" for f in frags] if has_empty else frags
    elif column.kind == "number":
        joined = "\n".join(values)
        if joined.count("\n") != n - 1 or not NUM_COLUMN.fullmatch(joined):
            return None
        return encode_values([float(v) if v else None for v in values])
    else:
        return None
    return [b"null" if f == b'""' else f for f in frags] if has_empty else frags


def encode_json_column(values: tuple[Any, ...] | None, column: OutputColumn, n: int):
    """Fragments for one column of parsed JSON values, or None when the slow path must decide."""
    if values is None:
        return [b"null"] * n if column.nullable else None
    allowed = JSON_TYPES.get(column.kind)
    types = set(map(type, values))
    if allowed is None or not types <= allowed | ({type(None)} if column.nullable else set()):
        return None
    if column.kind == "text" and "" in values:
        return None
    if column.kind == "integer":
        present = [v for v in values if v is not None] if type(None) in types else values
        if present and not (-INT64 <= min(present) and max(present) < INT64):
            return None
    if column.kind == "number":
        if not all(v - v == 0 for v in values if v is not None):  # NaN and infinities
            return None
        if int in types:
            values = tuple(float(v) if v is not None else None for v in values)
    return encode_values(values)
