"""Tell what a raw file holds from its content, never from its name.

`sniff(path)` peeks at the first bytes: gzip by its magic number, a UTF-8 BOM, the encoding
(UTF-8, or cp1252 as a recorded fallback), JSON Lines against a JSON array, and for delimited text
the delimiter that splits the sample into the most consistent rows.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

GZIP_MAGIC = b"\x1f\x8b"
BOM = codecs.BOM_UTF8
SAMPLE_BYTES = 64 * 1024
DELIMITERS = (",", ";", "|", "\t")
# Names that are never data, whatever they contain (macOS, Spark, Hadoop and editor droppings).
NON_DATA_NAMES = re.compile(r"^(\..*|_SUCCESS|_committed_.*|_started_.*|.*~|Thumbs\.db)$")

SINGLE_COLUMN_HEADER = re.compile(r'"?[A-Za-z_][\w.]*"?')

# Kinds: "csv", "jsonl", "json_array", "empty" (no records), "unknown" (not a data file).
DATA_KINDS = ("csv", "jsonl", "json_array")


@dataclass(frozen=True)
class Format:
    kind: str
    compression: str | None = None  # "gzip" or None
    encoding: str = "utf-8"  # "utf-8", "utf-8-sig" (BOM) or "cp1252" (fallback)
    delimiter: str | None = None
    quotechar: str | None = None
    line_ending: str | None = None  # "\n" or "\r\n"
    header: list[str] = field(default_factory=list)
    note: str = ""  # why a file is skipped, or what fallback was taken

    def describe(self) -> dict:
        return asdict(self)


def sniff(path: str | Path) -> Format:
    """Detect the format of one raw file from its first bytes."""
    path = Path(path)
    if NON_DATA_NAMES.match(path.name):
        return Format("unknown", note="hidden or non-data file name")
    with open(path, "rb") as raw:
        head = raw.read(SAMPLE_BYTES)
    compression = None
    if head.startswith(GZIP_MAGIC):
        compression = "gzip"
        try:
            with gzip.open(path, "rb") as gz:
                head = gz.read(SAMPLE_BYTES)
        except (OSError, EOFError) as exc:
            return Format("unknown", compression, note=f"unreadable gzip: {exc}")
    if not head.strip(BOM + b" \t\r\n"):
        return Format("empty", compression, note="no records")
    if b"\x00" in head:
        return Format("unknown", compression, note="binary content")
    encoding, text = _decode_sample(head, complete=len(head) < SAMPLE_BYTES)
    line_ending = "\r\n" if "\r\n" in text.split("\n", 1)[0] + "\n" else "\n"
    return _sniff_text(text, compression, encoding, line_ending, len(head) < SAMPLE_BYTES)


def _decode_sample(head: bytes, complete: bool) -> tuple[str, str]:
    """Decode the sample, tolerating a multi-byte character cut at its end."""
    encoding = "utf-8-sig" if head.startswith(BOM) else "utf-8"
    try:
        text = codecs.getincrementaldecoder(encoding)().decode(head, final=complete)
    except UnicodeDecodeError:
        # Spreadsheet exports from Windows: cp1252 maps almost every byte, so it never fails.
        encoding = "cp1252"
        text = head.decode("cp1252", errors="replace")
    return encoding, text


def _sniff_text(text: str, compression, encoding, line_ending, complete: bool) -> Format:
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("["):
        # The first item's keys, when the sample holds it whole: the columns are then known
        # before any row is written, as they are from a CSV header.
        try:
            first = json.JSONDecoder().raw_decode(stripped[1:].lstrip())[0]
        except json.JSONDecodeError:
            first = None
        keys = list(first) if isinstance(first, dict) else []
        return Format("json_array", compression, encoding, line_ending=line_ending, header=keys)
    if stripped.startswith("{"):
        try:
            first = orjson.loads(stripped.split("\n", 1)[0])
        except orjson.JSONDecodeError:
            return Format("unknown", compression, encoding, line_ending=line_ending,
                          note="starts with '{' but its first line is not a JSON object; "
                               "a single pretty-printed object is not supported")
        keys = list(first) if isinstance(first, dict) else []
        return Format("jsonl", compression, encoding, line_ending=line_ending, header=keys)
    delimiter = detect_delimiter(text, complete)
    if delimiter is None and SINGLE_COLUMN_HEADER.fullmatch(text.split("\n", 1)[0].strip()):
        delimiter = ","  # one column: any delimiter reads it, and none appears
    if delimiter is None:
        return Format("unknown", compression, encoding, line_ending=line_ending,
                      note="no delimiter among , ; | tab splits the rows consistently")
    header = next(csv.reader(io.StringIO(text), delimiter=delimiter))
    return Format("csv", compression, encoding, delimiter, '"', line_ending, header)


def detect_delimiter(text: str, complete: bool = True) -> str | None:
    """The candidate delimiter that gives the most rows with one and the same field count.

    Rows are parsed with real CSV quoting, so a delimiter or newline inside quotes does not count;
    the score is the share of rows that have the most common field count, so one ragged row cannot
    flip the verdict. Ties go to the delimiter that makes more fields, then to the order above.
    """
    best, best_score = None, (0.0, 0)
    for delimiter in DELIMITERS:
        counts = _field_counts(text, delimiter, complete)
        if not counts:
            continue
        width, rows = Counter(counts).most_common(1)[0]
        if width < 2:
            continue
        score = (rows / len(counts), width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _field_counts(text: str, delimiter: str, complete: bool) -> list[int]:
    if not complete:
        text = text[: text.rfind("\n") + 1] or text  # the sample cut the last row short
    counts = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        for row in reader:
            if row:
                counts.append(len(row))
    except csv.Error:
        # Quotes that do not close under this delimiter: counts as one inconsistent row.
        counts.append(0)
    return counts
