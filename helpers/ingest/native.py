"""Whole blocks of CSV or JSON Lines to output lines in compiled code (Polars), off the GIL.

The row-by-row normalizer stays the judge. A block is turned into lines here only when checks
made on the block itself vouch that the normalizer would write the same bytes: every line one
record, every field where the CSV module would put it, every value already in the form the
normalizer's strict fast path accepts (integers without signs or leading zeros, plain decimals,
text that is not empty; an undeclared column's CSV values or JSON strings all of one kind in
the block, and no JSON integer beside its floats), every JSON key a known column, once per
line, every JSON boolean where Polars read one. Anything else returns
None and the block goes through the normalizer, which rejects what must be rejected and says why.
`tests/test_native.py` holds the two paths to the same bytes, on hand-written blocks and on
hypothesis-made ones.

Polars runs its work without holding the GIL, so several blocks of one dataset are turned into
lines at once on as many threads as `--jobs` allows; `use_threads` sizes Polars' own pool to
match before it is first imported.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import metadata
from typing import Any

from helpers.ingest.lines import FALLBACK_ERRORS_NOTED, fallback_starts

KINDS = ("integer", "number", "text")
BOM = "\ufeff".encode()
AUTO = "auto"  # an undeclared column (`schema.cast`): each value typed by what it looks like
# `schema.STRICT_INT` and `schema.STRICT_DECIMAL`, whole values: only these become numbers in an
# undeclared column (an integer also within 64 bits).
STRICT_INT = r"^-?(?:0|[1-9][0-9]*)$"
STRICT_DECIMAL = r"^-?(?:0|[1-9][0-9]*)\.[0-9]+$"
ITEM_BOUNDARY = re.compile(rb"\}[ \t\r\n]*,[ \t\r\n]*\{")  # between two objects of an array
# Escapes Polars and orjson may read apart, or that hide a key from the counts: a backslash
# escaped before `":`, a key written with a \u escape, an escaped surrogate (a lone one reads
# differently). Searched by Polars, whose regex runs without the GIL.
ODD_ESCAPES = "|".join([r'\\\\":', r'\\u[0-9a-fA-F]{4}(?:[^"\\]|\\.)*":', r"\\u[dD][89abAB]"])
# What may come between two keys of one record: on a line, anything but a line break; in an
# array's object, anything but its closing brace, strings taken whole (a brace may be in one).
SAME_LINE, SAME_OBJECT = r"[^\n]*", r'(?:[^}"]|"(?:[^"\\]|\\.)*")*'
BOOLEAN = r'":[ \t\r\n]*(?:true|false)'  # a key's value that is a JSON boolean
# A key with white space before its colon, which the counts of `":` do not see (a key written
# twice that way balances them); looked for only where white space comes before a colon at all
# (a search a sixth as long).
SPACED_KEY = r'"[ \t\r\n]+:'
SPACE_COLON = r"[ \t\r\n]:"
NULL_SEARCH_BYTES = 1 << 16  # how far into a block an explicit null is looked for, holding the GIL
# A \r that ends no line: Polars reads \r\n as \n, as the normalizer does, and a lone \r as the
# normalizer does not (a line break to it, even inside quotes; part of the value to Polars).
LONE_CR = r"\r(?:[^\n]|$)"
# Polars' allocator (jemalloc) keeps freed pages for ten seconds by default: a run would hold
# the peak of every block it has seen. A tenth of a second returns them between blocks cheaply
# (with zero, the kernel spends seconds mapping pages back in); one arena for all threads. Its
# per-thread caches keep objects up to 4 KiB only (the default is 32 KiB): each of the seven
# threads that allocate held its own stock of larger ones, about 3 MiB in all; without the
# caches the run holds about 7 MiB less and takes 5% more time.
ALLOCATOR = "dirty_decay_ms:100,muzzy_decay_ms:0,narenas:1,tcache_max:4096"
M_ARENA_MAX = -8  # glibc's mallopt(3) parameter
# What `import polars` writes into the environment when it finds no setting of its own: a child
# process (the CLI run from a test, a notebook, any program that imported Polars) inherits it.
POLARS_ALLOCATOR_DEFAULT = "dirty_decay_ms:500,muzzy_decay_ms:1000"


def use_threads(jobs: int) -> None:
    """Size Polars' thread pool to `jobs` and set up its allocator (environment variables it
    reads once, when it is first imported; an earlier import keeps its own); and give Python's
    threads one malloc arena. An allocator setting of the user's is kept; Polars' own default,
    inherited from a parent process that imported Polars, is not (it held 160-190 MiB where
    ours holds 125 at scale 500)."""
    if "polars" not in sys.modules:
        os.environ.setdefault("POLARS_MAX_THREADS", str(max(1, jobs)))
        if os.environ.get("_RJEM_MALLOC_CONF", POLARS_ALLOCATOR_DEFAULT) \
                == POLARS_ALLOCATOR_DEFAULT:
            os.environ["_RJEM_MALLOC_CONF"] = ALLOCATOR
    _one_malloc_arena()


def _one_malloc_arena() -> None:
    """glibc gives each thread an arena of its own, and memory freed in one (a block's bytes,
    made by the reading thread and dropped by a worker) is reused by that arena only: about
    8 MiB more at scale 500 with two threads. Threads started after this call share one;
    elsewhere than glibc, nothing happens."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_ARENA_MAX, 1)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        pass


def _pl() -> Any:
    import polars

    return polars


def fingerprint_function() -> str:
    """Names the hash behind duplicate fingerprints: a kept set is only valid under the same one
    (Polars promises a stable hash within one version only)."""
    return f"polars-{metadata.version('polars')}-hash-seed-0"  # without importing it


def fingerprints(blob: bytes, n: int) -> Any:
    """One 64-bit fingerprint per line of `blob` (n lines, each ending in a newline), as a
    Polars UInt64 Series: the hash of each line as a String, as the native path takes it."""
    return _lines(blob).head(n).hash(seed=0)


def _lines(blob: bytes) -> Any:
    """`blob`'s lines as a String Series (a Series made from bytes, not a reader: readers run
    on Polars' I/O runtime, which hung once inside a long test session)."""
    return _pl().Series("l", blob.split(b"\n"), dtype=_pl().Binary).cast(_pl().String)


def _text(block: bytes) -> Any:
    """`block` as a one-value String Series, for Polars' searches over its bytes (the cast
    fails on bytes that are not UTF-8, which the callers' callers take as "not native")."""
    return _pl().Series("b", [block], dtype=_pl().Binary).cast(_pl().String)


# Output lines joined by newlines, the last without its own (the writer adds it: one copy of
# the lines fewer), and their fingerprints.
Encoded = tuple[bytes, Any]


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def decode_with_fallback(block: bytes) -> tuple[bytes, int]:
    """The block in UTF-8, each byte sequence that is not UTF-8 read as cp1252 (as
    `lines.decode_line` reads a line), and how many lines held one. A line break is never part
    of a sequence, so the whole block decodes as its lines one by one would. The lines are
    counted from where the sequences start, a `find` for each line that held one: this runs
    holding the GIL, and splitting and comparing every line of the block took longer."""
    starts = fallback_starts.found = []
    text = block.decode("utf-8", FALLBACK_ERRORS_NOTED).encode("utf-8")
    lines, line_end = 0, -1
    for start in starts:
        if start > line_end:  # the first sequence of another line
            lines += 1
            line_end = block.find(b"\n", start)
            if line_end < 0:  # the block's last line has no line break
                line_end = len(block)
    return text, lines


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # integer, number, text; auto: typed per block (`_typed`, `_auto_json`)
    nullable: bool


@dataclass(frozen=True)
class CsvSpec:
    """What the native path needs to know of a CSV file and of the output."""

    delimiter: str
    quotechar: str | None
    width: int  # fields per record
    columns: tuple[Column, ...]
    sources: tuple[int | None, ...]  # per output column, the field that feeds it
    comment: str | None = None  # lines starting with it are comments, not records
    header: tuple[str, ...] = ()  # the header's fields: a record equal to them is rejected


@dataclass(frozen=True)
class JsonSpec:
    columns: tuple[Column, ...]
    # The output column of each key as written, or None when the normalizer must decide how
    # keys map (collisions, names that map one way alone and another beside others).
    rename: Callable[[list[str]], dict[str, str] | None] | None = None


def csv_lines(block: bytes, n: int, spec: CsvSpec) -> Encoded | None:
    """`block`'s n lines of CSV records as output lines, or None when the normalizer must
    decide. Never raises."""
    try:
        return _csv_lines(block, n, spec)
    except Exception:  # noqa: BLE001 - whatever Polars objects to, the normalizer judges
        return None


def jsonl_lines(block: bytes, n: int, spec: JsonSpec) -> Encoded | None:
    """`block`'s n JSON Lines as output lines, or None when the normalizer must decide."""
    try:
        return _jsonl_lines(block, n, spec)
    except Exception:  # noqa: BLE001
        return None


def array_lines(block: bytes, n: int, spec: JsonSpec) -> Encoded | None:
    """n objects of a JSON array, `block` running from the first one's `{` to the last one's
    `}`, as output lines; None when the normalizer must decide."""
    try:
        return _array_lines(block, n, spec)
    except Exception:  # noqa: BLE001
        return None


def _array_lines(block: bytes, n: int, spec: JsonSpec) -> Encoded | None:
    """The objects read as the array they came from, bracketed again. Polars' JSON reader
    refuses what orjson refuses between and inside them (raw control characters in strings,
    trailing commas, NaN); a block cut inside a string reads as other items, or none."""
    frame = _read_json(_pl().read_json, b"".join((b"[", block, b"]")))
    if frame.height != n:
        return None
    return _json_out(block, frame, spec, lines_are_records=False)


def longest_item(block: bytes, limit: int) -> int:
    """The length in bytes of the longest item of an array block, once the block is longer than
    `limit` (0 before: none can be longer)."""
    if len(block) <= limit:
        return 0
    longest, start = 0, 0
    for boundary in ITEM_BOUNDARY.finditer(block):
        longest, start = max(longest, boundary.start() + 1 - start), boundary.end() - 1
    return max(longest, len(block) - start)


def _blank_line(block: bytes) -> bool:
    """Whether the block starts with an empty line or holds one."""
    return block.startswith((b"\n", b"\r\n")) or b"\n\n" in block or b"\n\r\n" in block


def _csv_lines(block: bytes, n: int, spec: CsvSpec) -> Encoded | None:
    pl = _pl()
    # A block that starts with a byte order mark: Polars drops it, where it is the start of
    # the first value to the normalizer (a file's own BOM never reaches a block).
    if any(c.kind not in (*KINDS, AUTO) for c in spec.columns) or len(spec.delimiter) != 1 \
            or not block or (spec.comment and spec.comment.encode() in block) \
            or block.startswith(BOM):
        return None
    # A blank line is no record, where Polars reads one of empty fields. With two fields or
    # more, the field counts of `_records_whole` find it (it has no delimiter); with one,
    # only a search does.
    if spec.width == 1 and _blank_line(block):
        return None
    if not _records_whole(block, n, spec):
        return None
    names = [f"f{i}" for i in range(spec.width)]
    frame = pl.read_csv(block, has_header=False, separator=spec.delimiter,
                        quote_char=spec.quotechar, schema=dict.fromkeys(names, pl.String),
                        empty_string_is_null=False, truncate_ragged_lines=False,
                        raise_if_empty=False)
    if frame.height != n:
        return None
    typed = _typed(frame, spec)
    query = _csv_query(typed) if typed is not None else None
    if query is None:
        return None
    _, checks, exprs = query
    return _encode(frame, checks, exprs)


def _typed(frame: Any, spec: CsvSpec) -> CsvSpec | None:
    """`spec` with each undeclared column given the kind every value of it in this block has,
    as `schema.cast` types them one by one: all integers (within 64 bits), all decimals, or
    none of either (text); empty values aside. None when a column mixes them: Polars writes
    one type a column, the normalizer one a value, so the block is the normalizer's."""
    auto = [(i, f"f{source}") for i, (column, source)
            in enumerate(zip(spec.columns, spec.sources))
            if column.kind == AUTO and source is not None]
    kinds = dict.fromkeys((i for i, c in enumerate(spec.columns) if c.kind == AUTO), "text")
    if auto:
        found = _kinds_in(frame, [name for _, name in auto])
        if found is None:
            return None
        kinds |= {i: kind for (i, _), kind in zip(auto, found)}
    if not kinds:
        return spec
    columns = tuple(Column(c.name, kinds.get(i, c.kind), c.nullable)
                    for i, c in enumerate(spec.columns))
    return replace(spec, columns=columns)


def _value_looks(value: Any, name: str) -> list[Any]:
    """How many of a text column's values are not empty, are integers within 64 bits, and are
    decimals (a decimal too large for a float becomes text to the normalizer, where the number
    column's finiteness check sends the block to it)."""
    pl = _pl()
    integer = value.str.contains(STRICT_INT) & value.cast(pl.Int64, strict=False).is_not_null()
    return [(value != "").sum().alias(f"v{name}"), integer.sum().alias(f"i{name}"),
            value.str.contains(STRICT_DECIMAL).sum().alias(f"d{name}")]


@functools.lru_cache(maxsize=256)
def _csv_query(spec: CsvSpec) -> tuple[list[str], list[Any], list[Any]] | None:
    """The field names, checks and output columns of a CSV file's blocks, made once per file
    (expressions are immutable, so threads share them): or None when a column the normalizer
    requires has no field to come from."""
    pl = _pl()
    names = [f"f{i}" for i in range(spec.width)]
    # Short records are found before the read (`_records_whole`): Polars 2 reads a field left
    # out as "". Should a null come out of the read all the same, the normalizer decides.
    checks, exprs = [pl.sum_horizontal(pl.all().null_count()) == 0], []
    if spec.header:  # the normalizer rejects the header line met again
        checks.append(~pl.all_horizontal([pl.col(name) == field for name, field
                                          in zip(names, spec.header)]).any())
    for column, source in zip(spec.columns, spec.sources):
        if source is None:
            if not column.nullable:
                return None
            exprs.append(pl.lit(None, _dtype(column)).alias(column.name))
            continue
        value = pl.col(names[source])
        if not column.nullable:
            checks.append(~(value == "").any())
        exprs.append(_from_text(value, column.kind, checks).alias(column.name))
    return names, checks, exprs


def _from_text(value: Any, kind: str, checks: list[Any]) -> Any:
    """Text values as the normalizer types them for a column of `kind`, "" as null. A strict
    cast fails the block on any text Polars cannot read; what it reads ("+7", "007", " 7.5",
    "1e3") the normalizer reads as the same number, but for infinities (a check added to
    `checks`)."""
    pl = _pl()
    typed = pl.when(value == "").then(None).otherwise(value).cast(_kind_dtype(kind),
                                                                  strict=True)
    if kind == "number":
        checks.append(typed.is_finite().all())
    return typed


def _records_whole(block: bytes, n: int, spec: CsvSpec) -> bool:
    """Whether each of the block's n lines holds exactly `spec.width` fields, quotes only around
    whole fields (doubled inside them), and every \\r in it ends a line. Polars 2 reads a field
    missing from a short record as it reads an empty one ("" or null, as `empty_string_is_null`
    says), so a record that leaves out trailing fields, which the normalizer rejects, is found
    here, by its delimiters: without quotes, by counting them (a long record fails Polars'
    read); with quotes, by matching every line with a regular expression of the whole record.
    Regular expressions run in Polars, without the GIL."""
    quote = spec.quotechar
    crs = b"\r" in block
    if quote is None or quote.encode() not in block:
        if block.count(spec.delimiter.encode()) != n * (spec.width - 1):
            return False
        return not crs or not _text(block).str.contains(LONE_CR).item()
    found = _text(block).to_frame().select(_quoted_checks(spec, crs)).row(0, named=True)
    return not found.get("odd") and found.get("records", n) == n


@functools.lru_cache(maxsize=64)
def _quoted_checks(spec: CsvSpec, crs: bool) -> list[Any]:
    """`_records_whole`'s searches of a block with quotes: how many lines are whole records;
    with one field a record, which no line can leave out, only quotes inside fields are looked
    for (`_stray_quote`); with `crs`, a \\r that ends no line too."""
    text = _pl().col("b").str
    odd = ([_stray_quote(spec)] if spec.width == 1 else []) + ([LONE_CR] if crs else [])
    checks = [] if spec.width == 1 else \
        [text.count_matches(_record_pattern(spec)).alias("records")]
    return checks + ([text.contains("|".join(odd)).alias("odd")] if odd else [])


@functools.lru_cache(maxsize=64)
def _record_pattern(spec: CsvSpec) -> str:
    """A line of exactly `spec.width` fields, each quoted whole or holding no quote at all."""
    q, d = _hex(spec.quotechar or ""), _hex(spec.delimiter)
    field = f"(?:{q}(?:[^{q}]|{q}{q})*{q}|[^{q}{d}\\r\\n]*)"
    return f"(?m)^(?:{field}{d}){{{spec.width - 1}}}{field}\\r?$"


def _stray_quote(spec: CsvSpec) -> str:
    """A quote where the CSV module and Polars read it apart: not opening a field (after a
    delimiter or a line break), closing one (before them), or doubled inside one, but with an
    ordinary character on both sides (`"x"y"z"`, where the module refuses the record and Polars
    reads xyz). A quote that opens a field nobody closes runs on to other lines, which the row
    count catches."""
    q, d = _hex(spec.quotechar or ""), _hex(spec.delimiter)
    return f"[^{q}{d}\\n]{q}[^{q}{d}\\r\\n]"


def _hex(char: str) -> str:
    return f"\\x{{{ord(char):x}}}"


def _jsonl_lines(block: bytes, n: int, spec: JsonSpec) -> Encoded | None:
    """The lines read as the items of a JSON array: Polars' array reader costs a few
    microseconds a call where its JSON Lines reader starts a query (0.4 ms), and reads faster.
    A comma goes before each line break, not in its place, so a string cannot run on from one
    line to the next (Polars refuses a raw line break in one). `_read_faithfully` checks that
    every line but the first starts with `{` and every line but the last ends with `}` (the
    first starts with an object or Polars refuses the array: it reads objects only). With no
    string running across lines and no value nested (`_json_type_fits`), each line then holds
    whole objects, at least one, and the row count makes it one."""
    if not block:
        return None
    frame = read_lines(block)
    if frame.height != n:  # a blank line makes two commas, which Polars refuses
        return None
    return _json_out(block, frame, spec, lines_are_records=True)


def read_lines(block: bytes) -> Any:
    """JSON Lines as Polars reads them on the native path: as the items of an array (made with
    one copy besides the replacement's, the last line's comma left out by a view)."""
    items = block.replace(b"\n", b",\n")
    end = len(items) - 2 if block.endswith(b"\n") else len(items)
    return _read_json(_pl().read_json, b"".join((b"[", memoryview(items)[:end], b"]")))


def _read_json(read: Callable[..., Any], data: bytes) -> Any:
    """Types guessed from the first 100 records, and from all of them when that was wrong."""
    try:
        return read(data)
    except _pl().exceptions.ComputeError:
        return read(data, infer_schema_length=None)


def _json_out(block: bytes, frame: Any, spec: JsonSpec,
              lines_are_records: bool) -> Encoded | None:
    """Output lines for the records Polars read from `block`, or None."""
    if any(c.kind not in (*KINDS, AUTO) for c in spec.columns):
        return None
    if any('"' in name or "\\" in name for name in frame.columns) \
            or not _read_faithfully(block, frame, lines_are_records):
        return None
    mapping = spec.rename(frame.columns) if spec.rename else \
        {name: name for name in frame.columns}
    known = {c.name for c in spec.columns}
    if mapping is None or not set(mapping.values()) <= known:
        return None
    frame = frame.rename(mapping)
    auto = {c.name for c in spec.columns if c.kind == AUTO}
    # Polars types a column by its first 100 records and reads a later 2.5 or 1e3 into an
    # integer column as 2 or 1000, silently; a later 7 into a float column as 7.0.
    ints = [raw for raw, name in mapping.items() if frame.schema[name] == _pl().Int64]
    floats = [raw for raw, name in mapping.items()
              if name in auto and frame.schema[name] == _pl().Float64]
    if (ints or floats) and _written_otherwise(block, ints, floats):
        return None
    looks = _strings_look(frame, spec.columns)
    query = _json_query(spec.columns, tuple(frame.schema.items()), looks) \
        if looks is not None else None
    if query is None:
        return None
    return _encode(frame, *query)


def _written_otherwise(block: bytes, ints: list[str], floats: list[str]) -> bool:
    """Whether any key Polars read as integers (`ints`) has a number with a fraction or an
    exponent written as its value (Polars truncates it; the normalizer keeps 2.5 in a number
    column and rejects it in an integer one), or any of the undeclared `floats` an integer
    (Polars reads 1 beside 1.5 as 1.0, the normalizer keeps it 1): one search for both. A key
    can only be matched where it is one: inside a string its quotes would be escaped."""
    pl = _pl()

    def keys(names: list[str]) -> str:
        return '"(?:' + "|".join(map(pl.escape_regex, names)) + r')":[ \t\r\n]*-?[0-9]+'

    patterns = ([keys(ints) + "[.eE]"] if ints else []) \
        + ([keys(floats) + r"[ \t\r\n]*[,}]"] if floats else [])
    return bool(_text(block).str.contains("|".join(patterns)).item())


def _strings_look(frame: Any, columns: tuple[Column, ...]) -> tuple[tuple[str, str], ...] | None:
    """The kind every JSON string of each undeclared column Polars read as text has in this
    block, as `_typed` finds it for CSV (the normalizer makes "7" the integer 7 there); None
    when a column mixes kinds."""
    pl = _pl()
    names = [c.name for c in columns if c.kind == AUTO and frame.schema.get(c.name) == pl.String]
    if not names:
        return ()
    kinds = _kinds_in(frame, names)
    return None if kinds is None else tuple(zip(names, kinds))


def _kinds_in(frame: Any, names: list[str]) -> list[str] | None:
    """The kind all values of each text column `names` have in this block (`_kinds_of`), in
    one select; None when a column mixes them."""
    pl = _pl()
    counts = frame.select(
        [c for i, name in enumerate(names) for c in _value_looks(pl.col(name), f"{i}")])
    return _kinds_of(counts.row(0), len(names))


def _kinds_of(counts: tuple[int, ...], columns: int) -> list[str] | None:
    """From `_value_looks`' counts, three a column: each column's kind, or None for a mix."""
    kinds = []
    for k in range(columns):
        values, integers, decimals = counts[3 * k:3 * k + 3]
        if integers and integers == values:
            kinds.append("integer")
        elif decimals and decimals == values:
            kinds.append("number")
        elif integers or decimals:
            return None
        else:
            kinds.append("text")
    return kinds


@functools.lru_cache(maxsize=256)
def _json_query(columns: tuple[Column, ...], read: tuple[tuple[str, Any], ...],
                looks: tuple[tuple[str, str], ...] = ()) -> tuple[list[Any], list[Any]] | None:
    """The checks and output columns for records Polars read as `read` (output names and
    types), made once per shape; None when a type needs a cast the normalizer would decide
    otherwise, or when no column is known yet (the normalizer writes {}). `looks`: the kind of
    the strings of undeclared columns read as text (`_strings_look`)."""
    pl = _pl()
    types, kinds = dict(read), dict(looks)
    checks, exprs = [], []
    for column in columns:
        if column.name not in types:
            if not column.nullable:
                return None
            exprs.append(pl.lit(None, _dtype(column) if column.kind != AUTO else None)
                         .alias(column.name))
            continue
        value = pl.col(column.name)
        dtype = types[column.name]
        if column.kind == AUTO:
            typed = _auto_json(value, dtype, kinds.get(column.name), checks)
            if typed is None:
                return None
            exprs.append(typed.alias(column.name))
            continue
        if not _json_type_fits(dtype, column, pl):
            return None
        if not column.nullable:
            checks.append(value.null_count() == 0)
        if column.kind == "text" and dtype == pl.String:
            empty = value == ""
            if not column.nullable:
                checks.append(~empty.any())
            value = pl.when(empty).then(None).otherwise(value)
        exprs.append(value.cast(_dtype(column)).alias(column.name))
    return (checks, exprs) if exprs else None


def _read_faithfully(block: bytes, frame: Any, lines_are_records: bool) -> bool:
    """Whether Polars read every record as the normalizer reads it (orjson, the last of two
    equal keys winning): no key twice in a record, and every value of a text column a JSON
    string (Polars makes a String column of any mix, writing 1.5 or true as text).

    Each `":` ends a key, but for those right after a backslash (a quote escaped inside a
    string), so their count less those is the number of keys; likewise `":null` a key whose
    value is null and `":"` one whose value is a string (`": null`, `": "` in files that put a
    space after the colon). Polars' non-null values plus the explicit nulls must account for
    every key, and its non-null text values for every string; neither can come out short in
    any record, so the block's totals agreeing means every record's do. A repeated key whose
    second value is null still balances the first, so with explicit nulls the block is also
    searched for a key written twice in one record (on one line, or in one object). So does a
    block where a backslash is itself escaped before `":`, where a key is written with \\u
    escapes (not seen as written here), and where a surrogate is escaped (a lone one reads
    differently in Python and Polars). A key with white space before its colon (`"k" :`) is not
    counted either, and one written twice that way would balance the counts: where white space
    comes before a colon, the block is searched for such a key (`SPACED_KEY`)."""
    pl = _pl()
    escapes = b"\\" in block
    at = block.find(b'":')
    style = b'": ' if block[at + 2:at + 3] == b" " else b'":'  # the other style: no match, None
    crs = lines_are_records and b"\r" in block  # between an array's items, \r is white space

    # Counted and searched by Polars, without the GIL, over the block as one string, in one query
    # (two when the first explicit null comes late: the search for a null, holding the GIL, looks
    # at the block's start only, since a block without one would be searched to its end).
    text = _text(block).to_frame()
    keys = tuple(frame.columns)
    twice = block.find(style + b"null", 0, NULL_SEARCH_BYTES) >= 0
    checks = _faithfulness_checks(style, escapes, crs, lines_are_records)
    found = text.select(_twice_checks(lines_are_records, keys) + checks if twice else checks) \
        .row(0, named=True)
    if found["nulls"] and not twice:
        found |= text.select(_twice_checks(lines_are_records, keys)).row(0, named=True)
    # Counted only where the words are (a count takes six times the search for them).
    found["booleans"] = text.select(_boolean_count(escapes)).item() if found["flags"] else 0
    if found.get("odd") or found["space_colon"] \
            and text.select(pl.col("b").str.contains(SPACED_KEY)).item():
        return False
    if lines_are_records and found["boundaries"] != frame.height - 1:
        return False  # a line that does not end with }, or one after that does not start with {
    missing = frame.null_count().row(0, named=True)
    texts = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    flags = [name for name, dtype in frame.schema.items() if dtype == pl.Boolean]
    values = frame.height * frame.width - sum(missing.values())
    text_values = frame.height * len(texts) - sum(missing[name] for name in texts)
    flag_values = frame.height * len(flags) - sum(missing[name] for name in flags)
    if found["keys"] != values + found["nulls"] or found["strings"] != text_values \
            or found["booleans"] != flag_values:
        return False
    return not found["nulls"] or not found["twice"]


@functools.lru_cache(maxsize=256)
def _faithfulness_checks(style: bytes, escapes: bool, crs: bool, on_lines: bool) -> list[Any]:
    """`_read_faithfully`'s counts and searches over a block, made once per kind of block.
    `escapes`: the counts leave out matches right after a backslash; `crs`: search for a \\r
    that ends no line; `on_lines`: count where lines meet. Counted as regular expressions:
    Polars' literal count took longer (3x for a pattern seldom found)."""
    pl = _pl()
    text = pl.col("b").str

    def count(pattern: bytes) -> Any:
        found = text.count_matches(pl.escape_regex(pattern.decode())).cast(pl.Int64)
        if escapes:
            found = found - text.count_matches(pl.escape_regex("\\" + pattern.decode()))
        return found

    checks = [count(b'":').alias("keys"), count(style + b"null").alias("nulls"),
              count(style + b'"').alias("strings"), text.contains("true|false").alias("flags"),
              text.contains(SPACE_COLON).alias("space_colon")]
    if on_lines:  # where a line ending in } meets one starting with {
        checks.append(text.count_matches(r"\}\r?\n\{").alias("boundaries"))
    odd = ([ODD_ESCAPES] if escapes else []) + ([LONE_CR] if crs else [])
    if odd:
        checks.append(text.contains("|".join(odd)).alias("odd"))
    return checks


@functools.lru_cache(maxsize=2)
def _boolean_count(escapes: bool) -> Any:
    """How many values are a JSON true or false, with any white space after the colon: Polars
    reads one in a column of numbers as 1 or 0 (1.0, 0.0), where the normalizer rejects its
    record. `escapes`: less those right after a backslash (inside a string)."""
    pl = _pl()
    text = pl.col("b").str
    booleans = text.count_matches(BOOLEAN).cast(pl.Int64)
    if escapes:
        booleans = booleans - text.count_matches(r"\\" + BOOLEAN)
    return booleans.alias("booleans")


@functools.lru_cache(maxsize=256)
def _twice_checks(on_lines: bool, keys: tuple[str, ...]) -> list[Any]:
    """A search for any of `keys` written twice in one record (on one line if `on_lines`, else
    in one object), as one regular expression over the block: one pass, where a count per key
    and line took a list of the lines and a pass per key."""
    pl = _pl()
    between = SAME_LINE if on_lines else SAME_OBJECT
    escaped = map(pl.escape_regex, keys)
    return [pl.col("b").str.contains("|".join(f'"{k}":{between}"{k}":' for k in escaped))
            .alias("twice")]


def _auto_json(value: Any, dtype: Any, kind: str | None, checks: list[Any]) -> Any:
    """An undeclared column's output as the normalizer types each JSON value (`schema._auto`):
    integers, booleans, floats and nulls as they are (a column of floats holding no integer
    as written: `_written_otherwise`); strings by the kind they all have (`kind`), "" as null.
    None for any other type."""
    pl = _pl()
    if dtype in (pl.Int64, pl.Boolean, pl.Null, pl.Float64):
        return value
    if dtype != pl.String or kind is None:
        return None
    return _from_text(value, kind, checks)


def _json_type_fits(dtype: Any, column: Column, pl: Any) -> bool:
    """Whether every value of a column Polars read as `dtype` needs no cast the normalizer
    would decide otherwise (a JSON string in a number column, 1.0 in an integer one...)."""
    allowed = {"integer": (pl.Int64,), "number": (pl.Float64, pl.Int64),
               "text": (pl.String,)}[column.kind]
    return dtype in allowed or (dtype == pl.Null and column.nullable)


def _dtype(column: Column) -> Any:
    return _kind_dtype(column.kind)


def _kind_dtype(kind: str) -> Any:
    pl = _pl()
    return {"integer": pl.Int64, "number": pl.Float64, "text": pl.String}[kind]


def _encode(frame: Any, checks: list[Any], exprs: list[Any]) -> Encoded | None:
    """The output columns (`exprs`) as JSON Lines (the normalizer's bytes: compact, keys in
    column order, orjson's numbers and escapes) and each line's fingerprint, if every check
    holds: one query for all of it, so Polars plans and runs it once.

    On the in-memory engine: in Polars 2.1 a query that fails on the streaming engine (a strict
    cast, say) can panic one of its executor threads ("joined on cancelled task"), and once all
    of them are gone every later scan in the process waits forever (`tests/test_native.py`)."""
    pl = _pl()
    lazy = frame.lazy()
    lines = lazy.select(pl.struct(exprs).struct.json_encode().alias("l"))
    verdict, hashes, joined = pl.collect_all(
        [lazy.select([c.alias(f"check{i}") for i, c in enumerate(checks)] or [pl.lit(True)]),
         lines.select(pl.col("l").hash(seed=0).alias("h")),
         # Joined in the query, as bytes: writing CSV into a Python buffer held the GIL.
         lines.select(pl.col("l").str.join("\n").cast(pl.Binary))], engine="in-memory")
    if not all(verdict.row(0)):
        return None
    return joined.item(), hashes["h"]
