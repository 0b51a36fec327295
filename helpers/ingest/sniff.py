"""Tell what a raw file holds from its content, never from its name.

`sniff(path)` reads a sample (64 KiB after decompression): gzip by its magic number, UTF-8,
UTF-16 or UTF-32 by the BOM, binary only when the sample is mostly control bytes, JSON Lines
against a JSON array by the first character. For delimited text it tries every dialect (delimiter
among `,` `;` `|` tab; quote `"`, `'` or none; doubled quotes or a backslash escape) and keeps
the one whose records have one and the same field count most often, parsing real quoting, so a
quoted newline or one ragged row cannot flip it. Comment lines (`#`) and blank lines before the
header are recognised, and the first record is taken as data, not a header, when every value in
it fits the type its column has below (the columns are then named `column0`, `column1`, ...).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from helpers.ingest.lines import (
    GZIP_MAGIC,
    DamagedInput,
    bom_encoding,
    decode_block,
    open_binary,
)
from helpers.ingest.location import RemotePath, open_raw, raw_location
from helpers.ingest.records import Assembler, Dialect
from helpers.ingest.schema import loads_exact, parse_json_int, positional_name

SAMPLE_BYTES = 64 * 1024
MAX_FIRST_RECORD = 64 * 1024 * 1024  # how far a JSON Lines file's first line is read to sniff it
DELIMITERS = (",", ";", "|", "\t")
DECIMAL_COMMA = re.compile(r"\s*[+-]?[0-9]+,[0-9]+\s*")
EXCEL_SEPARATOR = re.compile(r"sep=([^\r\n])\r?\n?", re.IGNORECASE)
SINGLE_COLUMN = "\x1f"  # the unit separator: a delimiter that never splits a one-column file
# Names that are never data, whatever they contain (macOS, Spark, Hadoop and editor droppings).
NON_DATA_NAMES = re.compile(r"^(\..*|_SUCCESS|_committed_.*|_started_.*|.*~|Thumbs\.db)$")
CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")
BINARY_SHARE = 0.1  # a sample with more control bytes than this is not text

# Kinds: "csv", "jsonl", "json_array", "json_stream" (JSON values one after another, such as
# pretty-printed objects), "empty" (no records), "unknown" (not a data file).
DATA_KINDS = ("csv", "jsonl", "json_array", "json_stream")

# What a value looks like, for telling a header from a first row of data.
VALUE_TYPES = (
    # A leading zero makes a code (a zip code, an account), not a number, as in DuckDB.
    ("integer", re.compile(r"\s*[+-]?(?:0|[1-9][0-9]*)\s*")),
    ("number", re.compile(r"\s*[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)"
                          r"(?:[eE][+-]?[0-9]+)?\s*")),
    ("boolean", re.compile(r"\s*(?i:true|false)\s*")),
    ("date", re.compile(r"\s*(?:[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{1,2}[/.][0-9]{1,2}[/.][0-9]{2,4})"
                        r"(?:[ T][0-9:.]+(?:Z|[+-][0-9:]+)?)?\s*")),
)


@dataclass(frozen=True)
class Format:
    kind: str
    compression: str | None = None  # "gzip" or None
    encoding: str = "utf-8"  # utf-8, utf-8-sig, utf-16, utf-32; cp1252 when only that fits
    delimiter: str | None = None
    quotechar: str | None = None
    line_ending: str | None = None  # the first line's: "\n", "\r\n" or "\r"
    header: list[str] = field(default_factory=list)  # as written; column0... when headerless
    escapechar: str | None = None
    comment: str | None = None
    has_header: bool = True
    data_line: int = 0  # 0-based index of the first line after the header record
    skip_lines: int = 0  # lines before the header (or first record): a preamble, comments
    note: str = ""  # why a file is skipped, or what fallback was taken

    def describe(self) -> dict:
        return asdict(self)

    @property
    def dialect(self) -> Dialect:
        return Dialect(self.delimiter or ",", self.quotechar, self.escapechar, self.comment)


def sniff(path: str | Path | RemotePath) -> Format:
    """Detect the format of one raw file from its first bytes; never raises for its content."""
    path = raw_location(path) if isinstance(path, str) else path
    try:
        return _sniff(path)
    except Exception as exc:  # noqa: BLE001 - a file we cannot make out is skipped, and says why
        return Format("unknown", note=f"could not be sniffed ({type(exc).__name__}: {exc})")


def _sniff(path: Path) -> Format:
    if NON_DATA_NAMES.match(path.name):
        return Format("unknown", note="hidden or non-data file name")
    try:
        with open_raw(path) as raw:
            magic = raw.read(2)
        compression = "gzip" if magic == GZIP_MAGIC else None
        head = _read_head(path, compression, None, SAMPLE_BYTES)
        encoding = bom_encoding(head)
        if encoding in ("utf-16", "utf-32"):
            head = _read_head(path, compression, encoding, SAMPLE_BYTES)
    except (OSError, DamagedInput) as exc:
        return Format("unknown", note=f"unreadable: {exc}")
    complete = len(head) < SAMPLE_BYTES
    if not head.removeprefix(b"\xef\xbb\xbf").strip(b" \t\r\n"):
        return Format("empty", compression, note="no records")
    # NUL bytes after the last line (a preallocated file, a writer that died) do not make a
    # small text file binary: its records are read, the padding rejected as one more.
    body = head.rstrip(b"\x00") if complete else head
    if not body or len(CONTROL_BYTES.findall(body)) > BINARY_SHARE * len(body):
        return Format("unknown", compression, note="binary content")
    return _sniff_sample(path, body.removeprefix(b"\xef\xbb\xbf"), complete, compression,
                         encoding or "utf-8")


def _read_head(path: Path, compression: str | None, encoding: str | None, size: int) -> bytes:
    """Up to `size` bytes from the start; a damaged file gives what precedes the damage."""
    out = bytearray()
    with open_binary(path, compression, encoding or "utf-8") as f:
        try:
            while len(out) < size:
                block = f.read1(size - len(out))  # one raw read: keeps what precedes damage
                if not block:
                    break
                out += block
        except (OSError, EOFError, DamagedInput):
            if not out:
                raise
    return bytes(out)


def _sniff_sample(path: Path, head: bytes, complete: bool, compression: str | None,
                  encoding: str) -> Format:
    raw_lines = head.splitlines(keepends=True)
    if not complete and len(raw_lines) > 1:
        raw_lines.pop()  # the sample cut its last line short
    lines = decode_block(b"".join(raw_lines))  # as the CSV reader decodes its blocks
    if lines.fallbacks and encoding == "utf-8":
        encoding = _label_fallback(raw_lines)
    ending = _line_ending(head)
    first = head.lstrip(b" \t\r\n")[:1]
    common = {"compression": compression, "encoding": encoding, "line_ending": ending}
    if first == b"[":
        return _sniff_array(head, complete, common)
    if first == b"{":
        return _sniff_jsonl(path, head, complete, common)
    return _sniff_delimited(lines, complete, common)


def _label_fallback(lines: list[bytes]) -> str:
    """cp1252 when no line holds UTF-8 beyond ASCII (a Windows export); else UTF-8 with strays.

    Only the label: decoding stays per byte sequence either way.
    """
    for line in lines:
        if not line.isascii():
            try:
                line.decode("utf-8")
                return "utf-8"
            except UnicodeDecodeError:
                pass
    return "cp1252"


def _line_ending(head: bytes) -> str:
    """The first line's ending: a quoted value may hold other breaks, so later ones do not vote."""
    found = re.search(rb"\r\n|\r|\n", head)
    return found.group().decode() if found else "\n"


def _sniff_array(head: bytes, complete: bool, common: dict) -> Format:
    # The first item's keys, when the sample holds it whole: the columns are then known
    # before any row is written, as they are from a CSV header.
    text = head.decode("utf-8", "replace").lstrip()[1:].lstrip()
    try:
        first = json.JSONDecoder(parse_int=parse_json_int).raw_decode(text)[0]
    except (ValueError, RecursionError):
        first = None
    keys = list(first) if isinstance(first, dict) else []
    return Format("json_array", header=keys, **common)


def _sniff_jsonl(path: Path, head: bytes, complete: bool, common: dict) -> Format:
    line = head.lstrip(b" \t\r\n").split(b"\n", 1)[0]
    if not complete and b"\n" not in head.lstrip(b" \t\r\n"):
        # The first record is larger than the sample: read on to its end.
        more = _read_head(path, common["compression"], common["encoding"], MAX_FIRST_RECORD)
        line = more.lstrip(b"\xef\xbb\xbf \t\r\n").split(b"\n", 1)[0]
    try:
        first = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:  # stray bytes that are not UTF-8, or an integer beyond 64 bits
            first = loads_exact(line.decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            return _sniff_json_stream(head, complete, common)
    keys = list(first) if isinstance(first, dict) else []
    return Format("jsonl", header=keys, **common)


def _sniff_json_stream(head: bytes, complete: bool, common: dict) -> Format:
    """An object that spans lines: pretty-printed objects one after another, or just one."""
    text = head.decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    try:
        first = json.JSONDecoder(parse_int=parse_json_int).raw_decode(text)[0]
    except (ValueError, RecursionError):
        if complete:
            return Format("unknown", note="starts with '{' but holds no complete JSON object",
                          **common)
        first = None  # the first object is larger than the sample
    keys = list(first) if isinstance(first, dict) else []
    return Format("json_stream", header=keys, **common)


def _sniff_delimited(lines: list[str], complete: bool, common: dict) -> Format:
    every_line = content = list(enumerate(lines))
    excel = EXCEL_SEPARATOR.fullmatch(lines[0]) if lines else None
    if excel:  # Excel's "sep=;" line names the delimiter and is no record
        content = content[1:]
    best = _best_dialect(content, complete, excel.group(1) if excel else None)
    if best is None:
        dialect = Dialect(SINGLE_COLUMN, '"', None, None)
        result = _read_sample(dialect, content, complete)
        if not result.rows:
            return Format("unknown", note="no records found in the sample", **common)
    else:
        dialect, result = best
    rows, starts = result.rows, result.starts
    skip = _preamble(rows)
    note = ""
    header_fixed = _header_beside_trailing_delimiters(rows[skip - 1], rows[skip:]) if skip \
        else None
    if header_fixed is not None:
        skip -= 1
        rows = [*rows[:skip], header_fixed, *rows[skip + 1:]]
        note = "a delimiter ends the header or every data line, not both"
    rows, starts = rows[skip:], starts[skip:]
    if skip:
        note = f"{starts[0] - 1} lines before the header skipped as preamble"
    has_header = _first_row_is_header(rows)
    if has_header:
        header = rows[0]
        data_line = _line_after(dialect, every_line, starts[0])
    else:
        header = [positional_name(i, len(rows[0])) for i in range(len(rows[0]))]
        data_line = starts[0] - 1
    return Format("csv", delimiter=dialect.delimiter, quotechar=dialect.quotechar,
                  escapechar=dialect.escapechar, comment=dialect.comment, header=header,
                  has_header=has_header, data_line=data_line,
                  skip_lines=starts[0] - 1 if skip or excel else 0,
                  note=note, **common)


def detect_delimiter(text: str, complete: bool = True) -> str | None:
    """The delimiter of a delimited text sample, None when no candidate splits it."""
    best = _best_dialect(list(enumerate(text.splitlines(keepends=True))), complete)
    return best[0].delimiter if best else None


def _best_dialect(content: list[tuple[int, str]], complete: bool, only: str | None = None):
    """The dialect (and its reading of the sample) whose records agree best on a field count
    (with `only`, among those of that delimiter).

    Quoting is chosen per delimiter and comment mode, then those compete: a quote character
    cannot win by making more fields, a delimiter can. `#` starts comments only where that
    makes the records agree better (a `#N/A` value would not).
    """
    sample = "".join(line for _, line in content)
    comments: list[str | None] = [None]
    if any(line.lstrip(" \t").startswith("#") for _, line in content):
        comments.append("#")
    best, best_rank = None, None
    for comment in comments:
        for delimiter in (only,) if only else DELIMITERS:
            if delimiter not in sample:
                continue
            readings = []
            for dialect in _quotings(sample, delimiter, comment):
                result = _read_sample(dialect, content, complete)
                agreement = _agreement(result)
                if agreement is not None:
                    share, not_many_bad, width, fewer_bad = agreement
                    key = (share, not_many_bad, *_quote_preference(sample, dialect), fewer_bad)
                    readings.append((key, agreement[:3], dialect, result))
            if not readings:
                continue
            _, rank, dialect, result = max(readings, key=lambda r: r[0])
            if best_rank is None or rank > best_rank or rank == best_rank \
                    and _typed_share(result.rows) > _typed_share(best[1].rows):
                best, best_rank = (dialect, result), rank
    return best


def _typed_share(rows: list[list[str]]) -> float:
    """The share of the first rows' values that look like numbers (a decimal comma too) or
    dates: between two delimiters that agree as well, the one that splits values apart, not
    numbers in two (`1;2,5` is 1 and 2,5, not `1;2` and 5)."""
    values = [v for row in rows[:200] for v in row if v.strip()]
    typed = sum(1 for v in values if DECIMAL_COMMA.fullmatch(v) or _column_type([v]) != "text")
    return typed / len(values) if values else 0.0


def _read_sample(dialect: Dialect, content: list[tuple[int, str]], complete: bool):
    """The sample's records as the reader assembles them under `dialect`: by one csv call when
    every line is one record (each candidate dialect reads the whole sample)."""
    assembler = Assembler(dialect)
    plain = assembler.feed_plain([line for _, line in content], content[0][0]) if content \
        else None
    return plain if plain is not None else assembler.feed(content, final=complete)


def _quotings(sample: str, delimiter: str, comment: str | None) -> list[Dialect]:
    quotes: list[str | None] = ['"'] + (["'"] if "'" in sample else []) + [None]
    escapes: list[str | None] = [None] + (["\\"] if "\\" in sample else [])
    return [Dialect(delimiter, q, e, comment) for q in quotes for e in escapes
            if not (q is None and e is not None)]


def _agreement(result) -> tuple | None:
    """How well the records agree: share with the usual field count, not many bad, width."""
    counts = [len(row) for row in result.rows]
    if not counts:
        return None
    width, rows = Counter(counts).most_common(1)[0]
    if width < 2:
        return None
    bad = len(result.bad)
    # A single unterminated quote is a bad record, not a sign of the wrong quote character;
    # many are.
    many_bad = bad > 1 and bad > 0.1 * (len(counts) + bad)
    return (round(rows / len(counts), 6), not many_bad, width, -bad)


def _quote_preference(sample: str, dialect: Dialect) -> tuple:
    """Between equally good readings: the quote character the file wraps values in, then
    double quotes, doubled to escape."""
    return (_quote_usage(sample, dialect), dialect.quotechar == '"',
            dialect.escapechar is None)


def _quote_usage(sample: str, dialect: Dialect) -> int:
    """How many values the sample wraps whole in this dialect's quote character."""
    q, d = dialect.quotechar, re.escape(dialect.delimiter)
    if q is None:
        return 0
    q = re.escape(q)
    return len(re.findall(rf"(?:^|{d}){q}[^\n]*?{q}(?={d}|\r?$)", sample, re.MULTILINE))


def _preamble(rows: list[list[str]]) -> int:
    """How many leading records are a preamble (a title, notes) rather than header or data.

    Exports often open with a few lines of text: records of another width than all that
    follows. At most 20 of them, followed by at least two records (a header and a row) that
    nearly all share one width; or, when they are all narrower than that (a title, notes),
    that most share (a few ragged rows after a title must not make the title the header).
    """
    if len(rows) < 3:
        return 0
    width = Counter(map(len, rows)).most_common(1)[0][0]
    for skip, row in enumerate(rows[:21]):
        if len(row) == width:
            rest = rows[skip:]
            agree = sum(1 for r in rest if len(r) == width)
            narrower = all(len(r) < width for r in rows[:skip])
            agreed = agree >= 0.9 * len(rest) or narrower and agree > 0.5 * len(rest)
            return skip if skip and len(rest) >= 2 and agreed else 0
    return 0


def _header_beside_trailing_delimiters(row: list[str], rest: list[list[str]]) -> list[str] | None:
    """`row`, taken for a preamble, as the header of the records after it, when only a trailing
    delimiter sets them apart (as some exports write it): one field short of records that all
    end empty (the header gains an empty last name), or one field more than them, its last
    empty (which goes); its other values names (text, none empty). None otherwise."""
    width = Counter(map(len, rest)).most_common(1)[0][0] if rest else 0
    if len(row) == width + 1 and row[-1] == "":
        names, header = row[:-1], row[:-1]
    elif len(row) == width - 1 and all(r[-1] == "" for r in rest if len(r) == width):
        names, header = row, [*row, ""]
    else:
        return None
    if names and all(v.strip() and _column_type([v]) == "text" for v in names):
        return header
    return None


def _first_row_is_header(rows: list[list[str]]) -> bool:
    """A first row whose every value fits its column's type below, some column not text, is data."""
    if len(rows) < 2:  # nothing to compare with: a row with a number or a date is data
        return not any(_column_type([v]) != "text" for v in (rows[0] if rows else []) if v)
    first = rows[0]
    if all(_column_type([v]) != "text" for v in first if v) and any(first):
        return False  # no header is all numbers and dates
    width = Counter(map(len, rows[1:])).most_common(1)[0][0]
    if len(first) != width:
        return True
    body = [row for row in rows[1:] if len(row) == width]
    types = [_column_type([row[j] for row in body]) for j in range(width)]
    typed = [t != "text" and value != "" for value, t in zip(first, types)]
    if not any(typed):
        return True
    return not all(value == "" or _fits(value, t) for value, t in zip(first, types))


def _column_type(values: list[str]) -> str:
    present = [v for v in values if v != ""]
    if not present:
        return "text"
    for name, pattern in VALUE_TYPES:
        if all(pattern.fullmatch(v) for v in present):
            return name
    return "text"


def _fits(value: str, kind: str) -> bool:
    if kind == "text":
        return True
    if kind == "number":  # an integer fits a number column
        return any(p.fullmatch(value) for n, p in VALUE_TYPES if n in ("integer", "number"))
    return bool(dict(VALUE_TYPES)[kind].fullmatch(value))


def _line_after(dialect: Dialect, content: list[tuple[int, str]], start: int) -> int:
    """The index of the line after the record that starts on line `start` (from 1)."""
    assembler = Assembler(dialect)
    for index, line in content[start - 1:]:
        if assembler.feed([(index, line)], final=False).rows:
            return index + 1
    return len(content)
