"""The readers on their own: line endings, record boundaries, resync, limits, damage, resume."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.ingest import readers
from helpers.ingest.lines import DamagedInput
from helpers.ingest.readers import Limits, read_chunks
from helpers.ingest.records import Assembler, Dialect, parse_lenient
from helpers.ingest.schema import parse_json_int
from helpers.ingest.sniff import sniff

DEFAULT = Limits()


def records(path: Path, chunk_rows: int = 3, skip: int = 0, limits: Limits = DEFAULT):
    """(line, record) for every record, and (line, reason) for every reader reject."""
    fmt = sniff(path)
    rows, bad = [], []
    for chunk in read_chunks(path, fmt, chunk_rows, skip, limits):
        lines = chunk.starts or range(chunk.first_line, chunk.first_line + len(chunk.records))
        rows += list(zip(lines, chunk.records))
        bad += [(line, reason) for line, reason, _ in chunk.bad]
    return rows, bad


def write(tmp_path: Path, body: bytes, name: str = "f.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(body)
    return path


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_gives_the_same_records_and_lines(tmp_path, ending):
    body = ending.join([b"id,name", b"1,ann", b'2,"b', b'ob"', b"3,cy"]) + ending
    rows, bad = records(write(tmp_path, body))
    assert [(line, row[0]) for line, row in rows] == [(2, "1"), (3, "2"), (5, "3")]
    assert rows[1][1][1] == "b" + ending.decode() + "ob"  # the value keeps its own line break
    assert bad == []


def test_an_unterminated_quote_costs_one_record(tmp_path):
    body = b'id,name\n1,ann\n2,"bob\n3,cy\n4,dee\n'
    rows, bad = records(write(tmp_path, body), limits=Limits(max_record_lines=2))
    assert [line for line, _ in rows] == [2, 4, 5]
    assert len(bad) == 1 and bad[0][0] == 3 and "unterminated quote" in bad[0][1]


def test_an_unterminated_quote_at_the_end_of_the_file_resyncs_too(tmp_path):
    rows, bad = records(write(tmp_path, b'id,name\n1,"ann\n2,bob\n3,cy\n'))
    assert [line for line, _ in rows] == [3, 4]
    assert [line for line, _ in bad] == [2]


def test_a_line_over_the_limit_is_rejected_without_being_kept(tmp_path):
    body = b"id,name\n1,ann\n2," + b"x" * 5000 + b"\n3,cy\n"
    rows, bad = records(write(tmp_path, body), limits=Limits(max_record_bytes=1000))
    assert [line for line, _ in rows] == [2, 4]
    assert bad[0][0] == 3 and "over the limit" in bad[0][1]


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 5, 100])
def test_resuming_at_any_chunk_reads_exactly_the_records_after_it(tmp_path, chunk_rows):
    body = (b'# export\nid,note\n1,"a\nb"\n2,plain\n\n3,"c,\n\nd"\n4,"e\n5,x\n6,f""g\n')
    path = write(tmp_path, body)
    fmt = sniff(path)
    limits = Limits(max_record_lines=3)
    chunks = list(read_chunks(path, fmt, chunk_rows, 0, limits))
    full = [(c.starts[i], r) for c in chunks for i, r in enumerate(c.records)]
    for n, chunk in enumerate(chunks):
        after = [(c.starts[i], r) for c in chunks[n + 1:] for i, r in enumerate(c.records)]
        resumed, _ = records(path, chunk_rows, chunk.resume_at, limits)
        assert resumed == after, (n, chunk.resume_at)
    assert [line for line, _ in full] == [3, 5, 7, 11, 12]  # line 10's quote never closes


def test_gzip_zero_padding_is_ignored_and_a_corrupt_member_keeps_the_one_before(tmp_path):
    first = gzip.compress(b"id,name\n1,ann\n2,bob\n", mtime=0)
    padded = write(tmp_path, first + b"\0" * 512, "padded.csv.gz")
    assert [row for _, row in records(padded)[0]] == [["1", "ann"], ["2", "bob"]]
    second = bytearray(gzip.compress(b"3,cy\n", mtime=0))
    second[10] = 0xFF  # a reserved deflate block type: the member fails at once
    damaged = write(tmp_path, first + bytes(second), "damaged.csv.gz")
    fmt = sniff(damaged)
    got = []
    with pytest.raises(DamagedInput) as caught:
        for chunk in read_chunks(damaged, fmt, 100):
            got += chunk.records
    assert got == [["1", "ann"], ["2", "bob"]]
    assert caught.value.offset == len(first)


def test_json_lines_keep_their_line_numbers_around_an_over_long_line(tmp_path):
    body = b'{"a": 1}\n{"a": "' + b"x" * 3000 + b'"}\n\n{"a": 3}\n'
    fmt = sniff(write(tmp_path, body, "f.jsonl"))
    chunks = list(read_chunks(tmp_path / "f.jsonl", fmt, 10, 0, Limits(max_record_bytes=100)))
    (chunk,) = chunks
    assert chunk.starts == [1, 3, 4] and chunk.records[0] == b'{"a": 1}\n'
    assert chunk.bad[0][0] == 2


def test_utf16_and_utf32_are_read_through_their_bom(tmp_path):
    text = "id,name\r\n1,Zoë\r\n2,日本\r\n"
    for codec, name in (("utf-16", "a.csv"), ("utf-32", "b.csv")):
        rows, _ = records(write(tmp_path, text.encode(codec), name))
        assert [row for _, row in rows] == [["1", "Zoë"], ["2", "日本"]]


def test_a_stray_cp1252_byte_changes_only_its_own_character(tmp_path):
    body = "id,name\n1,Café\n2,".encode() + b"don\x92t\n"
    rows, _ = records(write(tmp_path, body))
    assert [row[1] for _, row in rows] == ["Café", "don\u2019t"]


def test_lenient_parsing_reads_stray_quotes_as_a_person_would():
    d = Dialect(",", '"')
    assert parse_lenient('"Pedro "the" legend",2\n', d) == ['Pedro "the" legend', "2"]
    assert parse_lenient('"ab"c,d\n', d) == ['"ab"c', "d"]
    assert parse_lenient('a,,\n', d) == ["a", "", ""]


ALPHABET = st.text(st.sampled_from(['a', ',', '"', "\n", "\r", " ", "\\"]), max_size=40)


@settings(max_examples=400, deadline=None)
@given(ALPHABET, st.sampled_from([None, "\\"]))
def test_record_boundaries_agree_with_the_csv_module(text, escape):
    """Where no quote is left open, the assembler splits records exactly where csv does."""
    dialect = Dialect(",", '"', escape)
    lines = text.splitlines(keepends=True)
    out = Assembler(dialect).feed(list(enumerate(lines)), final=True)
    if out.bad or not lines:
        return
    reader = csv.reader(iter(lines), **{**dialect.reader_options(), "strict": False})
    starts, seen = [], 0
    for row in reader:
        if row:  # csv gives an empty line as []; the assembler counts it as blank
            starts.append(seen + 1)
        seen = reader.line_num
    assert out.starts == starts
    assert len(out.rows) == len(starts)


PLAIN_LINES = st.lists(st.text(st.sampled_from(['a', ',', ';', '"', "'", "#", " ", "\\", "\t"]),
                               max_size=12).map(lambda t: t + "\n")
                       | st.sampled_from(["\n", "\r\n", "a,b\r\n", '"a\n', 'b"\n', "x"]),
                       min_size=1, max_size=12)


@settings(max_examples=600, deadline=None)
@given(PLAIN_LINES, st.sampled_from([",", ";"]), st.sampled_from(['"', "'", None]),
       st.sampled_from([None, "\\"]), st.sampled_from([None, "#"]), st.integers(0, 5),
       st.booleans())
def test_lines_read_as_one_record_each_are_what_the_assembler_makes_of_them(
        lines, delimiter, quote, escape, comment, first, final):
    """`feed_plain` (one csv call for a batch whose lines are each a record: the readers' and
    the sniffer's shortcut) gives exactly what `feed` gives, or declines."""
    if quote is None:
        escape = None
    dialect = Dialect(delimiter, quote, escape, comment)
    plain = Assembler(dialect).feed_plain(lines, first)
    if plain is None:
        return
    slow = Assembler(dialect).feed(list(enumerate(lines, start=first)), final)
    assert (plain.rows, plain.starts, plain.bad, plain.blank, plain.comments) \
        == (slow.rows, slow.starts, slow.bad, slow.blank, slow.comments)


def test_a_batch_of_plain_lines_takes_the_shortcut_and_one_spanning_lines_does_not():
    dialect = Dialect(",", '"')
    assert Assembler(dialect).feed_plain(['a,"b c"\n', "\n", "d,e\n"], 0).rows \
        == [["a", "b c"], ["d", "e"]]
    assert Assembler(dialect).feed_plain(['a,"b\n', 'c"\n'], 0) is None
    assert Assembler(Dialect(",", '"', comment="#")).feed_plain(["a,b # note\n"], 0) is None


# Items as hand-edited or buggy writers leave them: a trailing comma, single quotes (around a
# brace too), a quote left unescaped (once or twice), a raw line break, NaN, a bare word, a list
# closed by a brace. (A brace never closed still costs the rest of the file: where the item
# ends is anyone's guess.)
BAD_ITEMS = ['{"a": 1,}', "{'a': 'single'}", '{"a": "say "hi" twice"}', '{"a": NaN}',
             '{"a": "raw\nbreak"}', '{"a": [1, 2,]}', '{"a": tru}', "nul", '{"a": "x\\"}", }',
             '{"a": "a"b"}', "{'a': 'x}y'}", '{"a": "}, {"}', '{"a": [1, 2}', '{"a": [{"b": 1}}']
GOOD_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.text(max_size=6)
    | st.sampled_from(["}", "]", ",", '"', "\\", "{[", "\n"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                  max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), GOOD_VALUES.map(lambda v: {"v": v}),
                          st.sampled_from(BAD_ITEMS)), min_size=1, max_size=8),
       st.sampled_from([", ", ",\n  ", ","]), st.sampled_from([3, 16, 1 << 20]),
       st.sampled_from([40, 1 << 20]))
def test_a_bad_array_item_costs_itself_only(items, separator, block_chars, limit):
    """Every item comes out once, in order, on its line: decoded when it is JSON within the
    limit, an ArrayError otherwise; whatever the reads cut, and however long an item is."""
    texts = [bad if is_bad else json.dumps(good) for is_bad, good, bad in items]
    text = "[\n  " + separator.join(texts) + "\n]\n"
    with mock.patch.object(readers, "BLOCK_CHARS", block_chars):
        got = list(readers._array_items(io.StringIO(text), limit))
    assert len(got) == len(items)
    offset = text.index(texts[0])
    for (line, value), item_text in zip(got, texts):
        at = text.index(item_text, offset)
        assert line == text.count("\n", 0, at) + 1
        offset = at + len(item_text)
        try:  # NaN and Infinity are not JSON, though Python's json reads them
            want = json.loads(item_text, parse_int=parse_json_int,
                              parse_constant=lambda name: 1 / 0)
        except (ValueError, ZeroDivisionError):
            want = None
        if want is None or len(item_text) > limit:
            assert isinstance(value, readers.ArrayError), (item_text, value)
            if want is not None:  # JSON, only too long: said so, with its length
                assert f"{len(item_text):,} characters long" in value.reason
        else:
            assert value == want
