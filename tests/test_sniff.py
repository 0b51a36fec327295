"""Formats are told by content: each case is a file body named for what it exercises."""

import csv
import gzip
import io
import random
import sqlite3

import pytest

from helpers.ingest.sniff import SAMPLE_BYTES, SINGLE_COLUMN, detect_delimiter, sniff

HEADER = ["TrackId", "Name", "Composer"]
CASES = {
    # name: (file name, bytes, kind, delimiter, encoding)
    "comma": ("t.csv", b'TrackId,Name,Composer\n1,"A, B",x\n', "csv", ",", "utf-8"),
    "tab_in_csv": ("t.csv", b"TrackId\tName\tComposer\n1\tA, B\tx\n", "csv", "\t", "utf-8"),
    "semicolon": ("t.txt", b"TrackId;Name;Composer\n1;A, B;x\n", "csv", ";", "utf-8"),
    "pipe_txt": ("t.txt", b"TrackId|Name|Composer\n1|A; B|x\n", "csv", "|", "utf-8"),
    "bom_crlf": ("t.csv", b"\xef\xbb\xbfTrackId,Name,Composer\r\n1,A,x\r\n", "csv", ",",
                 "utf-8-sig"),
    "cp1252": ("t.csv", "TrackId,Name,Composer\n1,Caf\u00e9 \u2013 Ol\u00e9,x\n".encode("cp1252"),
               "csv", ",", "cp1252"),
    "jsonl_named_json": ("t.json", b'{"TrackId": 1, "Name": "A"}\n{"TrackId": 2}\n', "jsonl",
                         None, "utf-8"),
    "json_array": ("t.json", b'[\n  {\n    "TrackId": 1\n  }\n]\n', "json_array", None, "utf-8"),
    "empty": ("t.csv", b"", "empty", None, "utf-8"),
    "only_whitespace": ("t.csv", b"\n \r\n", "empty", None, "utf-8"),
    "binary": ("t.dat", b"\x00\x01\x02junk", "unknown", None, "utf-8"),
    "ds_store": (".DS_Store", b"TrackId,Name\n1,a\n", "unknown", None, "utf-8"),
    "spark_marker": ("_SUCCESS", b"", "unknown", None, "utf-8"),
    # One column: no delimiter splits it, so none that could appear in a value is used.
    "single_column": ("ids.csv", b"TrackId\n1\n2\n", "csv", SINGLE_COLUMN, "utf-8"),
    # Text with no delimiter is a one-column file, as DuckDB reads it.
    "prose": ("notes.txt", b"just some words\nnothing tabular\n", "csv", SINGLE_COLUMN,
              "utf-8"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_sniff_tells_the_format_from_content(case, tmp_path):
    name, body, kind, delimiter, encoding = CASES[case]
    path = tmp_path / name
    path.write_bytes(body)
    fmt = sniff(path)
    assert (fmt.kind, fmt.delimiter) == (kind, delimiter)
    if kind in ("csv", "jsonl", "json_array"):
        assert fmt.encoding == encoding
    if kind == "csv":
        expected = {"single_column": ["TrackId"], "prose": ["just some words"]}
        assert fmt.header == expected.get(case, HEADER)


@pytest.mark.parametrize("case", ["comma", "jsonl_named_json", "json_array", "empty"])
def test_gzip_is_known_by_its_magic_bytes_whatever_the_name(case, tmp_path):
    _, body, kind, delimiter, _ = CASES[case]
    path = tmp_path / "looks_plain.csv"
    path.write_bytes(gzip.compress(body, mtime=0))
    fmt = sniff(path)
    assert (fmt.compression, fmt.kind, fmt.delimiter) == ("gzip", kind, delimiter)


def test_crlf_line_endings_are_recorded(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(CASES["bom_crlf"][1])
    assert sniff(path).line_ending == "\r\n"


def _chinook_sample(db, delimiter: str, seed: int) -> str:
    rnd = random.Random(seed)
    rows = sqlite3.connect(db).execute("SELECT TrackId, Name, Composer FROM tracks").fetchall()
    start = rnd.randrange(len(rows) - 30)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(HEADER)
    writer.writerows(rows[start:start + rnd.choice([3, 5, 20])])
    writer.writerow([99, "quoted\nnewline, with comma", "x"])
    writer.writerow([100, "ragged", "row", "with", "extras"])
    return out.getvalue()


@pytest.mark.parametrize("delimiter", [",", ";", "|", "\t"])
def test_a_ragged_row_and_a_quoted_newline_do_not_fool_the_delimiter(chinook_db, delimiter):
    # csv.Sniffer picks "\r", "e" or a space on most of these samples; ours must never miss.
    for seed in range(40):
        assert detect_delimiter(_chinook_sample(chinook_db, delimiter, seed)) == delimiter


def test_a_sample_cut_inside_a_quoted_field_still_sniffs(tmp_path):
    row = '1,"' + "long text, with commas " * 40 + '",x\n'
    body = ("TrackId,Name,Composer\n" + row * (SAMPLE_BYTES // len(row) + 5)).encode()
    path = tmp_path / "big.csv"
    path.write_bytes(body)
    fmt = sniff(path)
    assert (fmt.kind, fmt.delimiter, fmt.header) == ("csv", ",", HEADER)


def test_a_utf8_sample_cut_inside_a_character_stays_utf8(tmp_path):
    prefix = b"TrackId,Name,Composer\n1,"
    pad = b"a" * (SAMPLE_BYTES - 1 - len(prefix))
    body = prefix + pad + "\u00e9".encode() + b",x\n2,b,c\n"  # the sample ends mid-character
    assert body[SAMPLE_BYTES - 1] == 0xC3
    path = tmp_path / "accents.csv"
    path.write_bytes(body)
    fmt = sniff(path)
    assert (fmt.encoding, fmt.delimiter) == ("utf-8", ",")


@pytest.mark.parametrize("body, header, skip", [
    # Every data line ends with a delimiter the header lacks: the header, an empty last column.
    (b"id;name\n1;a;\n2;b;\n3;c;\n", ["id", "name", ""], 0),
    # A title one field short of the records, whose last fields are not all empty: a preamble.
    (b"Quarterly sales;by region\nid;name;note\n1;a;x\n2;b;\n3;c;y\n", ["id", "name", "note"], 1),
    # Data lines ending empty, but the short line is not names: a preamble still.
    (b"2024;12\nid;name;\n1;a;\n2;b;\n", ["id", "name", ""], 1),
])
def test_a_header_one_field_short_of_trailing_delimiters_is_the_header(tmp_path, body, header,
                                                                         skip):
    path = tmp_path / "export.csv"
    path.write_bytes(body)
    fmt = sniff(path)
    assert (fmt.header, fmt.has_header, fmt.skip_lines) == (header, True, skip)


def test_a_header_ending_with_a_delimiter_its_data_lines_lack_is_the_header(tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes(b"PlaylistId;TrackId;\n1;2\n1;3\n2;4\n")
    fmt = sniff(path)
    assert (fmt.header, fmt.has_header, fmt.skip_lines, fmt.delimiter) \
        == (["PlaylistId", "TrackId"], True, 0, ";")


@pytest.mark.parametrize("body, delimiter, header", [
    (b"sep=;\r\nName;Price\r\nBolt, M8;1,5\r\n", ";", ["Name", "Price"]),
    (b"SEP=|\nid|name|note\n1|a|b\n", "|", ["id", "name", "note"]),
])
def test_excels_sep_line_names_the_delimiter_and_is_skipped(tmp_path, body, delimiter, header):
    path = tmp_path / "excel.csv"
    path.write_bytes(body)
    fmt = sniff(path)
    assert (fmt.delimiter, fmt.header, fmt.skip_lines, fmt.data_line) == (delimiter, header, 1, 2)


def test_a_title_stays_a_preamble_above_a_table_with_a_few_ragged_rows(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_bytes(b"Invoice lines export\r\n"
                     b"InvoiceLineId,InvoiceId,CustomerId,TrackId,UnitPrice,Quantity\r\n"
                     b"1,1,2,2,0.99,1\r\n2,1,2,4,0.99\r\n3,2,4,6,0.99,1\r\n4,2,4,8,0.99,1\r\n")
    fmt = sniff(path)
    assert (fmt.header[0], fmt.skip_lines) == ("InvoiceLineId", 1)


@pytest.mark.parametrize("body, kind", [
    (b"id,name\n1,a\n2,b\n" + b"\x00" * 20, "csv"),  # a small file padded with NULs
    (b"\x00" * 40, "unknown"),  # nothing but NULs: binary
])
def test_nul_padding_after_the_last_line_does_not_make_a_file_binary(tmp_path, body, kind):
    path = tmp_path / "padded.csv"
    path.write_bytes(body)
    assert sniff(path).kind == kind


def test_decimal_commas_do_not_make_a_headerless_semicolon_file_comma_separated(tmp_path):
    path = tmp_path / "measures.csv"
    path.write_bytes(b"1;1,5;2,5\n2;3,25;4,0\n3;0,5;1,75\n")
    assert sniff(path).delimiter == ";"
