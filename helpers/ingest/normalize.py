"""Turn chunks of raw records into output lines, or into rejects that say why.

Two paths give the same bytes. The fast path works a column at a time with C-level primitives
(one regular expression over a whole joined column, one orjson call per column, one `zip` to build
the lines); any chunk it cannot vouch for, because of a ragged row, an empty required field or a
value that needs casting, goes through the slow path, which casts each value with `schema.cast`
and rejects the records that do not fit. The property tests hold the two paths to each other.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import orjson

from helpers.ingest.encode import encode_json_column, encode_text_column, encode_values
from helpers.ingest.lines import decode_line
from helpers.ingest.readers import ArrayError, Chunk
from helpers.ingest.schema import (
    INT64,
    CastError,
    Header,
    Schema,
    cast,
    loads_exact,
    map_header,
)
from helpers.ingest.sniff import Format


@dataclass
class Reject:
    file: str
    line: int
    reason: str
    raw: str

    def to_json(self) -> bytes:
        record = {"file": self.file, "line": self.line, "reason": self.reason, "raw": self.raw}
        try:
            return orjson.dumps(record)
        except orjson.JSONEncodeError:  # a lone surrogate from a JSON escape: \uXXXX it stays
            return json.dumps(record).encode()


@dataclass
class Result:
    lines: list[bytes] = field(default_factory=list)  # one JSON object each, no newline
    rejects: list[Reject] = field(default_factory=list)
    blank: int = 0  # empty lines: neither rows nor rejects
    comments: int = 0
    fallbacks: int = 0  # lines where a byte sequence was read as cp1252


class Normalizer:
    """Normalizes the chunks of one file; holds the file's column mapping.

    `fast=False` sends every chunk through the row-by-row path: the differential tests compare
    the two.
    """

    def __init__(self, schema: Schema, fmt: Format, file_name: str, fast: bool = True) -> None:
        self.schema, self.fmt, self.file, self.fast = schema, fmt, file_name, fast
        self.width = len(fmt.header)
        self.header = map_header(fmt.header, schema) if fmt.kind == "csv" else None
        # The header line met again among the records (exports joined end to end) is no record.
        self.header_fields = list(fmt.header) if fmt.kind == "csv" and fmt.has_header else None
        self._key_headers: dict[tuple, Header] = {}
        self._prefix_count = -1

    @property
    def renamed(self) -> dict[str, str]:
        """Every field this file's header (or keys) had to rename, new name first."""
        out = dict(self.header.renamed) if self.header else {}
        for header in self._key_headers.values():
            out.update(header.renamed)
        return out

    def chunk(self, chunk: Chunk) -> Result:
        if not chunk.records:
            result = Result()
        elif self.fmt.kind == "csv":
            result = self.csv_chunk(chunk)
        else:
            result = self.json_chunk(chunk)
        if chunk.bad:
            result.rejects += [Reject(self.file, line, reason, raw)
                               for line, reason, raw in chunk.bad]
            result.rejects.sort(key=lambda r: r.line)
        result.blank += chunk.blank
        result.comments += chunk.comments
        result.fallbacks += chunk.fallbacks
        return result

    # --- CSV ------------------------------------------------------------------------------

    def csv_chunk(self, chunk: Chunk) -> Result:
        rows = chunk.records
        if (self.fast and self.header.error is None
                and min(map(len, rows)) == max(map(len, rows)) == self.width
                and (self.header_fields is None or self.header_fields not in rows)):
            try:
                fast = self._csv_fast(rows)
            except Exception:  # noqa: BLE001 - the slow path judges what the fast one could not
                fast = None
            if fast is not None:
                return Result(fast)
        return self._csv_slow(chunk)

    def _csv_fast(self, rows: list[list[str]]) -> list[bytes] | None:
        by_column = list(zip(*rows))
        source = self._sources()
        encoded = []
        for column, src in zip(self.schema.columns, source):
            values = by_column[src] if src is not None else None
            frags = encode_text_column(values, column, len(rows))
            if frags is None:
                return None
            encoded.append(frags)
        return self._assemble(encoded, len(rows))

    def _csv_slow(self, chunk: Chunk) -> Result:
        result, typed, raws = Result(), [], []
        source = self._sources()
        lines = chunk.starts or range(chunk.first_line, chunk.first_line + len(chunk.records))
        for row, line in zip(chunk.records, lines):
            try:
                if self.header.error is not None:
                    raise CastError(self.header.error)
                if row == self.header_fields:
                    raise CastError("the header line again, among the records (files joined "
                                    "end to end?)")
                if len(row) != self.width:
                    many = "many" if len(row) > self.width else "few"
                    raise CastError(f"too {many} fields: {len(row)} where the header has "
                                    f"{self.width}")
                typed.append([cast(row[src] if src is not None else None, column)
                              for column, src in zip(self.schema.columns, source)])
                raws.append((line, row))
            except Exception as exc:  # noqa: BLE001 - a value never stops the run
                result.rejects.append(Reject(self.file, line, _reason(exc), self._raw_csv(row)))
        encoded = self._encode_rows(typed, raws, result, self._raw_csv)
        result.lines = [line for line in encoded if line is not None]
        return result

    def _raw_csv(self, row: list[str]) -> str:
        out = io.StringIO()
        csv.writer(out, delimiter=self.fmt.delimiter or ",", lineterminator="",
                   quotechar=self.fmt.quotechar or '"').writerow(row)
        return out.getvalue()

    def _sources(self) -> list[int | None]:
        """For each output column, the index of the file column that feeds it, if any."""
        source: list[int | None] = [None] * len(self.schema.columns)
        for file_index, out_index in enumerate(self.header.positions):
            source[out_index] = file_index
        return source

    # --- JSON Lines and JSON arrays ------------------------------------------------------

    def json_chunk(self, chunk: Chunk) -> Result:
        records = chunk.records
        objects = records
        result = Result()
        if self.fmt.kind == "jsonl":
            try:
                objects = list(map(orjson.loads, records))
            except orjson.JSONDecodeError:
                objects = [_loads_or_keep(r, result) for r in records]
        fast = self._json_fast(objects) if self.fast else None
        if fast is not None:
            result.lines = fast
            return result
        # A row carries every column known when it is read: the ones before it and its own.
        # Counting them row by row here makes the output the same however the file is chunked.
        widths = self._widths(objects)
        # Records with the same keys share a fast path; a file whose records leave out keys
        # with null values (they often do) would otherwise go record by record.
        lines = chunk.starts or range(chunk.first_line, chunk.first_line + len(records))
        placed: list[bytes | None] = [None] * len(records)
        groups = _group_by_keys(objects) if len(set(widths)) == 1 else [list(range(len(records)))]
        for indices in groups:
            subset = [objects[i] for i in indices]
            fast = self._json_fast(subset) if len(groups) > 1 and self.fast else None
            if fast is None:
                fast = self._json_slow(subset, [records[i] for i in indices],
                                       [lines[i] for i in indices],
                                       [widths[i] for i in indices], result)
            for i, line in zip(indices, fast):
                placed[i] = line
        result.lines = [line for line in placed if line is not None]
        result.rejects.sort(key=lambda r: r.line)
        return result

    def _json_fast(self, objects: list[Any]) -> list[bytes] | None:
        try:
            return self._json_fast_or_none(objects)
        except Exception:  # noqa: BLE001 - the slow path judges what the fast one could not
            return None

    def _json_fast_or_none(self, objects: list[Any]) -> list[bytes] | None:
        if not objects or set(map(type, objects)) != {dict}:
            return None
        keys = set(map(tuple, objects))
        if len(keys) != 1:
            return None
        (names,) = keys
        header = self._keys(names)
        if header.error is not None:
            return None
        known = header.positions
        by_column = list(zip(*map(dict.values, objects)))
        encoded = []
        for out_index, column in enumerate(self.schema.columns):
            values = by_column[known.index(out_index)] if out_index in known else None
            frags = encode_json_column(values, column, len(objects))
            if frags is None:
                return None
            encoded.append(frags)
        return self._assemble(encoded, len(objects))

    def _keys(self, names: tuple) -> Header:
        header = self._key_headers.get(names)
        if header is None:
            header = self._key_headers[names] = map_header(list(names), self.schema)
        return header

    def _widths(self, objects: list[Any]) -> list[int]:
        """How many columns are known after each record (each object's keys are named here)."""
        widths = []
        for obj in objects:
            if type(obj) is dict:
                self._keys(tuple(obj))
            widths.append(len(self.schema.columns))
        return widths

    def _json_slow(self, objects: list[Any], records: list[Any], lines: list[int],
                   widths: list[int], result: Result) -> list[bytes | None]:
        """Type each record; the result is aligned with `objects`, None where rejected."""
        typed, where, raws = [], [], []
        for i, (obj, record, line) in enumerate(zip(objects, records, lines)):
            try:
                parsed = self._parse(obj, record)
                if parsed is None:
                    result.blank += 1
                    continue
                typed.append(self._type_object(parsed, widths[i]))
                where.append(i)
                raws.append((line, record))
            except Exception as exc:  # noqa: BLE001 - a value never stops the run
                result.rejects.append(Reject(self.file, line, _reason(exc), _raw_json(record)))
        placed: list[bytes | None] = [None] * len(objects)
        for i, encoded in zip(where, self._encode_rows(typed, raws, result, _raw_json)):
            placed[i] = encoded
        return placed

    def _parse(self, obj: Any, record: Any) -> dict | None:
        """The record as an object, None for a blank line; raises CastError for anything else."""
        if obj is _BLANK:
            return None
        if isinstance(obj, (ArrayError, _Unparsed)):
            raise CastError(obj.reason)
        if not isinstance(obj, dict):
            kind = JSON_NAMES.get(type(obj), type(obj).__name__)
            raise CastError(f"a JSON {kind} where an object was expected")
        if isinstance(record, (bytes, str)) and any(map(_maybe_big_int, obj.values())):
            obj = loads_exact(record)  # orjson read an integer beyond 64 bits as a float
        return obj

    def _type_object(self, obj: dict, width: int) -> list[Any]:
        header = self._keys(tuple(obj))
        if header.error is not None:
            raise CastError(header.error)
        values: list[Any] = [None] * width  # width counts this record's own keys too
        for index, value in zip(header.positions, obj.values()):
            values[index] = value
        return [cast(value, column) for value, column in zip(values, self.schema.columns)]

    # --- shared ---------------------------------------------------------------------------

    def _encode_rows(self, typed: list[list[Any]], raws: list[tuple[int, Any]], result: Result,
                     show: Any) -> list[bytes | None]:
        """Encode typed rows, aligned with them; a value JSON cannot hold rejects its row.

        Rows of one width (the columns known when each was read) are encoded together."""
        if not typed:
            return []
        if len(set(map(len, typed))) == 1:
            try:
                return self._assemble([encode_values(col) for col in zip(*typed)], len(typed))
            except (orjson.JSONEncodeError, ValueError):
                pass
        lines: list[bytes | None] = []
        for row, (line, raw) in zip(typed, raws):
            try:
                lines.extend(self._assemble([[orjson.dumps(v)] for v in row], 1))
            except (orjson.JSONEncodeError, ValueError) as exc:
                reason = f"a value cannot be written as JSON ({exc})"
                result.rejects.append(Reject(self.file, line, reason, show(raw)))
                lines.append(None)
        return lines

    def _assemble(self, encoded: list[list[bytes]], n: int) -> list[bytes]:
        if any(len(frags) != n for frags in encoded):
            raise ValueError("a column's fragments do not line up with its rows")
        if not encoded:  # no columns known yet: a file of empty objects
            return [b"{}"] * n
        if self._prefix_count != len(self.schema.columns):
            names = [orjson.dumps(c.name) + b":" for c in self.schema.columns]
            self._prefixes = [b"{" + names[0]] + [b"," + n for n in names[1:]]
            self._prefix_count = len(names)
        parts: list[Any] = []
        for prefix, frags in zip(self._prefixes, encoded):
            parts += [repeat(prefix), frags]
        parts.append(repeat(b"}"))
        return list(map(b"".join, zip(*parts)))


def _reason(exc: Exception) -> str:
    if isinstance(exc, CastError):
        return str(exc)
    return f"unexpected error while reading the record ({type(exc).__name__}: {exc})"


def _maybe_big_int(value: Any) -> bool:
    return type(value) is float and abs(value) >= INT64 and value.is_integer()


class _Unparsed:
    """A JSON line that did not parse, kept in place so that its neighbours can be grouped."""

    def __init__(self, reason: str, raw: bytes | str) -> None:
        self.reason, self.raw = reason, raw


_BLANK = object()  # stands for an empty line in a JSON Lines file
JSON_NAMES = {str: "string", list: "array", int: "number", float: "number", bool: "boolean",
              type(None): "null"}


def _loads_or_keep(record: bytes | str, result: Result) -> Any:
    if not record.strip():
        return _BLANK
    try:
        return orjson.loads(record)
    except orjson.JSONDecodeError as exc:
        error = exc
    text = record
    if isinstance(record, bytes):
        text, fallback = decode_line(record)
        if fallback:  # not UTF-8: stray bytes read as Windows-1252, as the text readers do
            result.fallbacks += 1
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                error = exc
    try:  # orjson refuses integers beyond 64 bits that the standard library reads exactly
        return loads_exact(text)
    except (ValueError, RecursionError):
        return _Unparsed(f"invalid JSON: {error}", record)


def _group_by_keys(objects: list[Any]) -> list[list[int]]:
    """Indices of the records, grouped by their key tuple; non-objects in a group of their own."""
    groups: dict[Any, list[int]] = {}
    for i, obj in enumerate(objects):
        key = tuple(obj) if type(obj) is dict else None
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _raw_json(record: Any) -> str:
    if isinstance(record, (ArrayError, _Unparsed)):
        return record.raw if isinstance(record.raw, str) else _raw_json(record.raw)
    if isinstance(record, bytes):
        return record.decode("utf-8", errors="replace").rstrip("\r\n")
    if isinstance(record, str):
        return record.rstrip("\r\n")
    try:
        return orjson.dumps(record).decode()
    except (orjson.JSONEncodeError, ValueError):  # an integer beyond 64 bits, say
        return json.dumps(record, default=str)
