"""Group the physical lines of a delimited file into records, one bad quote costing one record.

A record is usually one line; a quoted value may hold line breaks, and then the record spans
several lines. `line_state` follows Python's csv parser (non-strict, doubled quotes, an optional
escape character) through one line and tells whether a record is still open at its end, so the
assembler knows where each record starts and ends without parsing the file twice.

An unterminated quote would otherwise swallow the rest of the file. A record still open after
`max_lines` lines or `max_chars` characters, or at the end of the file, is rejected with the line
where it began, and reading resumes on the line after that one.
"""

from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass, field
from typing import Any

from helpers.ingest.lines import TooLong

# Records are bounded by the assembler's own limits, so the csv module's must never bite.
csv.field_size_limit(2**31 - 1)

CLOSED, QUOTED, FIELD = 0, 1, 2  # at a line's end: record complete, inside quotes, after an escape
_START, _IN_FIELD, _IN_QUOTED, _AFTER_QUOTE, _ESC_FIELD, _ESC_QUOTED = range(6)
BLANK_LINES = frozenset(("\n", "\r\n", "\r", ""))


@dataclass(frozen=True)
class Dialect:
    delimiter: str = ","
    quotechar: str | None = '"'  # None: quotes are ordinary characters
    escapechar: str | None = None  # "\\" when the file escapes quotes with a backslash
    comment: str | None = None  # lines starting with it, between records, are comments

    def reader_options(self) -> dict[str, Any]:
        # strict: a quote inside a quoted value that is not doubled raises, and that record
        # goes to `parse_lenient` instead of being silently run together.
        options: dict[str, Any] = {"delimiter": self.delimiter, "escapechar": self.escapechar,
                                   "doublequote": True, "strict": True}
        if self.quotechar is None:
            options["quoting"] = csv.QUOTE_NONE
        else:
            options["quotechar"] = self.quotechar
        return options

    def reader(self, lines: Any) -> Any:
        if self.escapechar == "\\":  # MySQL's and PostgreSQL's dumps write NULL as \N
            null = _null_mark(self.delimiter)
            lines = (null.sub("", line) if "\\N" in line else line for line in lines)
        return csv.reader(lines, **self.reader_options())

    @property
    def specials(self) -> str:
        return (self.quotechar or "") + (self.escapechar or "")


@functools.lru_cache(maxsize=16)
def _null_mark(delimiter: str) -> re.Pattern[str]:
    """A whole unquoted field \\N: escaping an N means nothing, so a file that escapes with a
    backslash means NULL by it (an empty field, which is null)."""
    d = re.escape(delimiter)
    return re.compile(rf"(?:(?<=^)|(?<={d}))\\N(?={d}|\r?\n|$)")


def line_state(line: str, state: int, dialect: Dialect) -> int:
    """CLOSED, QUOTED or FIELD after `line`, which starts in `state` (CLOSED: a new record)."""
    body = line.rstrip("\r\n")
    ending = line[len(body):]
    q, d, e = dialect.quotechar, dialect.delimiter, dialect.escapechar
    st = {CLOSED: _START, QUOTED: _IN_QUOTED, FIELD: _IN_FIELD}[state]
    pos = 0
    for match in _specials(dialect).finditer(body):
        at = match.start()
        if at > pos:  # ordinary characters before this one
            st = _ordinary(st)
        c = body[at]
        pos = at + 1
        if st == _ESC_FIELD:
            st = _IN_FIELD
        elif st == _ESC_QUOTED:
            st = _IN_QUOTED
        elif st in (_START, _IN_FIELD):
            if c == q and st == _START:
                st = _IN_QUOTED
            elif c == d:
                st = _START
            elif c == e:
                st = _ESC_FIELD
            else:
                st = _IN_FIELD
        elif st == _IN_QUOTED:
            st = _AFTER_QUOTE if c == q else _ESC_QUOTED if c == e else _IN_QUOTED
        else:  # _AFTER_QUOTE
            st = _IN_QUOTED if c == q else _START if c == d else _IN_FIELD
    if pos < len(body):
        st = _ordinary(st)
    if st in (_IN_QUOTED, _ESC_QUOTED):
        return QUOTED
    if st == _ESC_FIELD and ending in ("\n", "\r"):
        return FIELD  # an escaped line break: the value goes on
    return CLOSED


def _ordinary(st: int) -> int:
    if st in (_START, _AFTER_QUOTE, _ESC_FIELD):
        return _IN_FIELD
    if st == _ESC_QUOTED:
        return _IN_QUOTED
    return st


_SPECIALS: dict[Dialect, re.Pattern[str]] = {}


def _specials(dialect: Dialect) -> re.Pattern[str]:
    pattern = _SPECIALS.get(dialect)
    if pattern is None:
        chars = dialect.delimiter + dialect.specials
        pattern = _SPECIALS[dialect] = re.compile("[" + re.escape(chars) + "]")
    return pattern


@dataclass
class Assembled:
    """What a batch of lines held, in order of their first lines."""

    rows: list[list[str]] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)  # each row's first line, from 1
    bad: list[tuple[int, str, str]] = field(default_factory=list)  # (line, reason, raw)
    blank: int = 0
    comments: int = 0


class Assembler:
    """Turns batches of numbered lines into records; keeps an open record across batches."""

    def __init__(self, dialect: Dialect, max_lines: int = 10_000,
                 max_chars: int = 1 << 20) -> None:
        self.dialect, self.max_lines, self.max_chars = dialect, max_lines, max_chars
        self.pending: list[tuple[int, str | TooLong]] = []  # lines of the open record
        self._state = CLOSED
        self._chars = 0

    @property
    def resume_line(self) -> int | None:
        """The 0-based index of the first line not yet part of an emitted record, if pending."""
        return self.pending[0][0] if self.pending else None

    def feed(self, lines: list[tuple[int, str | TooLong]], final: bool) -> Assembled:
        """Records of `lines` (0-based index, text); at `final`, no record may stay open."""
        out = Assembled()
        complete: list[list[str]] = []  # the lines of each complete record, parsed at the end
        queue = lines[::-1]  # a stack: lines given back after a rejected open record go on top
        while queue or (final and self.pending):
            if not queue:  # the file ended inside quotes
                self._give_back(queue, out, "is still open at the end of the file")
                continue
            index, line = queue.pop()
            if not self.pending:
                self._start(index, line, out, complete)
                continue
            if isinstance(line, TooLong):
                queue.append((index, line))
                self._give_back(queue, out, f"runs into line {index + 1}, which is longer than "
                                            f"the limit")
                continue
            self.pending.append((index, line))
            self._chars += len(line)
            self._state = line_state(line, self._state, self.dialect)
            if self._state == CLOSED:
                record = [text for _, text in self.pending]
                if not self._reads_as_csv(record):
                    # A quote that opened a value by mistake ("Round Midnight), closed by the
                    # next quote met, lines later: those lines are records of their own.
                    self._give_back(queue, out, f"closes only on line {index + 1}, and the lines "
                                                "between do not read as one record")
                    continue
                complete.append(record)  # type: ignore[arg-type]
                out.starts.append(self.pending[0][0] + 1)
                self.pending = []
            elif len(self.pending) > self.max_lines or self._chars > self.max_chars:
                self._give_back(queue, out, f"runs past {self.max_lines:,} lines or "
                                            f"{self.max_chars:,} characters")
        out.rows = self._parse(complete, out)
        return out

    def feed_plain(self, texts: list[str], first: int) -> Assembled | None:
        """What `feed` gives for `texts` (lines `first`, `first` + 1, ...; no record open
        before them), when every line is one record, parsed by one csv call; None when a
        record may span lines or a line needs the assembler's judgment (a comment, a bad
        quote). Blank lines are counted, as `feed` counts them."""
        comment = self.dialect.comment
        if self.pending or not texts or (comment and any(comment in t for t in texts)):
            return None
        try:
            rows = list(self.dialect.reader(texts))
        except Exception:  # noqa: BLE001 - whatever the csv module objects to, `feed` judges
            return None
        if len(rows) != len(texts) or line_state(texts[-1], CLOSED, self.dialect) != CLOSED:
            return None
        starts = list(range(first + 1, first + 1 + len(rows)))
        blank = 0
        if [] in rows:
            keep = [i for i, row in enumerate(rows) if row]
            blank = len(rows) - len(keep)
            rows, starts = [rows[i] for i in keep], [starts[i] for i in keep]
        return Assembled(rows, starts, [], blank, 0)

    def _start(self, index: int, line: str | TooLong, out: Assembled,
               complete: list[list[str]]) -> None:
        if isinstance(line, TooLong):
            out.bad.append(line.reject(index + 1, self.max_chars))
            return
        if self.dialect.comment and self.dialect.comment in line:
            # Once: a comment character left in the line is inside quotes, and is data.
            line = strip_comment(line, self.dialect)
            if not line.strip(" \t\r\n"):
                out.comments += 1
                return
        if line in BLANK_LINES:
            out.blank += 1
        elif (not any(c in line for c in self.dialect.specials)
              or line_state(line, CLOSED, self.dialect) == CLOSED):
            complete.append([line])
            out.starts.append(index + 1)
        else:
            self.pending = [(index, line)]
            self._state = line_state(line, CLOSED, self.dialect)
            self._chars = len(line)

    def _reads_as_csv(self, record: list[str]) -> bool:
        """Whether the lines of a record that spans several read as one by the CSV rules."""
        try:
            next(self.dialect.reader(record))
            return True
        except (csv.Error, StopIteration):
            return False

    def _give_back(self, queue: list, out: Assembled, why: str) -> None:
        """Reject the open record's first line; its other lines are read again as new lines."""
        (index, first), rest = self.pending[0], self.pending[1:]
        out.bad.append((index + 1, f"unterminated quote: the quoted value that starts on line "
                                   f"{index + 1} {why}; this record was rejected and reading "
                                   f"resumed on the next line", str(first).rstrip("\r\n")))
        queue.extend(rest[::-1])
        self.pending, self._state, self._chars = [], CLOSED, 0

    def _parse(self, complete: list[list[str]], out: Assembled) -> list[list[str]]:
        """Parse every complete record with one csv reader; record by record if they disagree."""
        flat = [line for record in complete for line in record]
        try:
            rows = list(self.dialect.reader(flat))
            if len(rows) == len(complete):
                return rows
        except csv.Error:
            pass
        rows = []
        for record in complete:
            try:
                rows.append(next(self.dialect.reader(record)))
            except (csv.Error, StopIteration):
                rows.append(parse_lenient("".join(record), self.dialect))
        return rows


def strip_comment(line: str, dialect: Dialect) -> str:
    """The line without a comment that starts outside quotes: the whole line when it starts
    with the comment character (after blanks), else from one that stands apart, white space
    before it and after it (`1,2 # note`): in `C# minor`, `#1 hit` or `SKU#4` it is data.
    The ending is kept."""
    body = line.rstrip("\r\n")
    mark = dialect.comment or ""
    if body.lstrip(" \t").startswith(mark):
        return line[len(body):]
    start = 0
    while (at := body.find(mark, start)) != -1:
        after = body[at + len(mark):at + len(mark) + 1]
        if at and body[at - 1] in " \t" and after in ("", " ", "\t") \
                and line_state(body[:at], CLOSED, dialect) == CLOSED:
            return body[:at].rstrip(" \t") + line[len(body):]
        start = at + 1
    return line


def parse_lenient(record: str, dialect: Dialect) -> list[str]:
    """Fields of a record whose quotes do not follow the rules, read as a person would.

    A quoted value ends at the quote that is followed by the delimiter or the end of the
    record, so `"Pedro "the" legend"` is `Pedro "the" legend`; a value whose quotes never close
    that way is kept as written, quotes and all.
    """
    body = record.rstrip("\r\n")
    q, d = dialect.quotechar, dialect.delimiter
    if q is None:
        return body.split(d)
    closing = re.compile(rf"{re.escape(q)}(?={re.escape(d)}|$)", re.DOTALL)
    fields, pos = [], 0
    while True:
        if body.startswith(q, pos) and (end := closing.search(body, pos + 1)):
            fields.append(body[pos + 1:end.start()].replace(q + q, q))
            pos = end.end()
        else:
            end_at = body.find(d, pos)
            fields.append(body[pos:] if end_at == -1 else body[pos:end_at])
            pos = len(body) if end_at == -1 else end_at
        if pos >= len(body):
            return fields
        pos += 1  # the delimiter
        if pos == len(body):
            return fields + [""]
