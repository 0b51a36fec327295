"""Typing rules, reject reasons and line numbers, drift, and the fast and slow paths agreeing."""

import gzip
import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.ingest.schema import CastError, OutputColumn, canonical_name, cast

from .ingest_util import run

INT = OutputColumn("Id", "integer", nullable=False)
NINT = OutputColumn("Id", "integer")
NUM = OutputColumn("Price", "number", nullable=False)
TEXT = OutputColumn("Name", "text", nullable=False)
AUTO = OutputColumn("Extra", "auto")


@pytest.mark.parametrize("value, column, expected", [
    ("12", INT, 12), (" 12 ", INT, 12), ("007", INT, 7), ("-3", INT, -3), (12, INT, 12),
    (12.0, INT, 12), ("", NINT, None), (None, NINT, None), ("0.99", NUM, 0.99), (1, NUM, 1.0),
    ("1e3", NUM, 1000.0), ("Caf\u00e9, \"x\"", TEXT, "Caf\u00e9, \"x\""), (5, TEXT, "5"),
    ("007", AUTO, "007"), ("12", AUTO, 12), ("1.50", AUTO, 1.5), ("1e3", AUTO, "1e3"),
    ("", AUTO, None), ([1, 2], AUTO, [1, 2]),
])
def test_cast_gives_typed_values(value, column, expected):
    result = cast(value, column)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("value, column, reason", [
    ("12a", INT, "Id: '12a' is not an integer"),
    ("1.5", INT, "Id: '1.5' is not an integer"),
    (True, INT, "Id: True is not an integer"),
    ("", INT, "Id is required but empty"),
    (None, TEXT, "Name is required but empty"),
    ("abc", NUM, "Price: 'abc' is not a number"),
    ("nan", NUM, "Price: 'nan' is not a number"),
    (float("inf"), NUM, "Price: inf is not a finite number"),
    ({"a": 1}, TEXT, "Name: {'a': 1} is not text"),
])
def test_cast_rejects_with_the_reason(value, column, reason):
    with pytest.raises(CastError) as info:
        cast(value, column)
    assert str(info.value) == reason


@pytest.mark.parametrize("raw, name", [
    ("TrackId", "TrackId"), ("tracks.TrackId", "TrackId"), (" trackid ", "trackid"),
    ('"TrackId"', "TrackId"), ("\ufeffTrackId", "TrackId"), ("db.tracks.Name", "Name"),
])
def test_header_names_lose_prefix_quotes_and_space(raw, name):
    assert canonical_name(raw) == name


TRACKS_HEADER = b"TrackId,Name,AlbumId,MediaTypeId,GenreId,Composer,Milliseconds,Bytes,UnitPrice\n"


def test_bad_rows_are_rejected_with_file_line_and_reason(tmp_path):
    body = TRACKS_HEADER + (
        b'1,"two\nlines",1,1,1,,100,200,0.99\n'  # a quoted newline: rows below shift a line
        b"2,ok,1,1,1,,100,200,0.99\n"
        b"3a,bad id,1,1,1,,100,200,0.99\n"
        b"4,too,many,1,1,1,,100,200,0.99\n"
        b"5,short\n"
        b",no id,1,1,1,,100,200,0.99\n"
        b"6,big,1,1,1,,100,99999999999999999999999,0.99\n"
    )
    entry = run(tmp_path, "tracks", {"t.csv": body})
    assert [(r["line"], r["reason"]) for r in entry["reject_records"]] == [
        (5, "TrackId: '3a' is not an integer"),
        (6, "too many fields: 10 where the header has 9"),
        (7, "too few fields: 2 where the header has 9"),
        (8, "TrackId is required but empty"),
        (9, "Bytes: '99999999999999999999999' is beyond the 64-bit range"),
    ]
    assert entry["reject_records"][0]["raw"] == "3a,bad id,1,1,1,,100,200,0.99"
    assert (entry["rows_read"], entry["rows_written"], entry["rows_rejected"]) == (7, 2, 5)
    assert orjson.loads(entry["lines"][0])["Name"] == "two\nlines"


def test_bad_json_records_are_rejected_and_the_rest_kept(tmp_path):
    lines = [
        b'{"TrackId": 1, "Name": "a", "MediaTypeId": 1, "Milliseconds": 5, "UnitPrice": 1}',
        b'{"TrackId": 2, "Name": "trunc',
        b"[1, 2]",
        b"",
        b'{"TrackId": true, "Name": "b", "MediaTypeId": 1, "Milliseconds": 5, "UnitPrice": 1}',
        b'{"TrackId": 3, "Name": "c", "MediaTypeId": 1, "Milliseconds": 5, "UnitPrice": 1}',
    ]
    entry = run(tmp_path, "tracks", {"t.jsonl": b"\n".join(lines) + b"\n"})
    reasons = [(r["line"], r["reason"].split(":")[0]) for r in entry["reject_records"]]
    assert reasons == [(2, "invalid JSON"), (3, "a JSON array where an object was expected"),
                       (5, "TrackId")]
    assert [orjson.loads(x)["TrackId"] for x in entry["lines"]] == [1, 3]
    assert entry["blank_lines"] == 1


def test_a_json_array_with_nan_and_a_cut_tail_keeps_what_parses(tmp_path):
    body = (b'[\n {"TrackId": 1, "Name": "a", "MediaTypeId": 1, "Milliseconds": 5, '
            b'"UnitPrice": NaN},\n {"TrackId": 2, "Name": "b", "MediaTypeId": 1, '
            b'"Milliseconds": 5, "UnitPrice": 0.5},\n {"TrackId": 3, "Na')
    entry = run(tmp_path, "tracks", {"a.json": body})
    assert [orjson.loads(x)["TrackId"] for x in entry["lines"]] == [2]
    reasons = [(r["line"], r["reason"]) for r in entry["reject_records"]]
    # NaN is not JSON: the same verdict as orjson gives it in JSON Lines.
    assert reasons[0] == (2, "invalid JSON: NaN is not a JSON value")
    assert reasons[1][0] == 4 and "malformed JSON" in reasons[1][1]


def test_output_is_strict_utf8_json_in_canonical_order(tmp_path):
    body = (b"unitprice;tracks.name;TRACKID;MediaTypeId;Milliseconds\n"
            b"0.99;Caf\xc3\xa9 / \xe2\x80\x9cq\xe2\x80\x9d;7;1;100\n")
    entry = run(tmp_path, "tracks", {"t.txt": body})
    assert entry["lines"] == [
        '{"TrackId":7,"Name":"Café / “q”","AlbumId":null,"MediaTypeId":1,"GenreId":null,'
        '"Composer":null,"Milliseconds":100,"Bytes":null,"UnitPrice":0.99}'.encode()]


def test_schema_drift_is_kept_after_the_declared_columns_and_reported(tmp_path):
    files = {"a.csv": b"PlaylistId,TrackId\n1,2\n",
             "b.csv": b"PlaylistId,TrackId,AddedBy\n1,3,007\n"}
    entry = run(tmp_path, "playlist_track", files)
    assert entry["drifted_columns"] == ["AddedBy"]
    assert entry["lines"] == [b'{"PlaylistId":1,"TrackId":2,"AddedBy":null}',
                              b'{"PlaylistId":1,"TrackId":3,"AddedBy":"007"}']


def test_an_unknown_dataset_keeps_first_seen_columns_and_types_conservatively(tmp_path):
    files = {"a.csv": b"code,qty,price,when\n007,12,1.50,2024-01-01\n",
             "b.jsonl": b'{"qty": 3, "note": "x", "code": "9"}\n'}
    entry = run(tmp_path, "inventory", files)
    assert entry["columns"] == ["code", "qty", "price", "when", "note"]
    assert entry["lines"] == [
        b'{"code":"007","qty":12,"price":1.5,"when":"2024-01-01","note":null}',
        b'{"code":9,"qty":3,"price":null,"when":null,"note":"x"}']


def test_a_missing_required_column_rejects_rows_and_a_missing_optional_one_is_null(tmp_path):
    files = {"facts.csv": b"TrackId,Milliseconds\n1,5\n"}
    entry = run(tmp_path, "track_facts", files)
    assert entry["lines"] == [b'{"TrackId":1,"Milliseconds":5,"Bytes":null}']
    entry = run(tmp_path / "2", "playlist_track", {"p.csv": b"PlaylistId\n1\n"})  # one column
    assert entry["lines"] == []
    assert entry["reject_records"][0]["reason"] == "TrackId is required but empty"


# --- property: every format reads back to the same records --------------------------------

texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                min_size=1, max_size=12)
ints = st.integers(-(2**63), 2**63 - 1)
track = st.tuples(
    ints, texts, st.none() | ints, ints, st.none() | ints, st.none() | texts, ints,
    st.none() | ints,
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
COLUMNS = ["TrackId", "Name", "AlbumId", "MediaTypeId", "GenreId", "Composer", "Milliseconds",
           "Bytes", "UnitPrice"]


def _csv(rows, delimiter, newline="\n", bom=False) -> bytes:
    import csv
    import io

    out = io.StringIO()
    # Minimal quoting guards only the line terminator's own characters: with "\n", a bare "\r"
    # in a value would go out unquoted and break the row, as it would for any reader.
    quoting = csv.QUOTE_MINIMAL if newline == "\r\n" else csv.QUOTE_ALL
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline, quoting=quoting)
    writer.writerow(["tracks." + c if i % 2 else c.lower() for i, c in enumerate(COLUMNS)])
    writer.writerows([["" if v is None else repr(v) if isinstance(v, float) else v for v in r]
                      for r in rows])
    return ("\ufeff" if bom else "").encode() + out.getvalue().encode()


def _formats(rows) -> dict[str, bytes]:
    dicts = [dict(zip(COLUMNS, r)) for r in rows]
    return {
        "a_comma.csv": _csv(rows, ","),
        "b_semicolon.txt": _csv(rows, ";", "\r\n", bom=True),
        "c_pipe.csv.gz": gzip.compress(_csv(rows, "|"), mtime=0),
        "d_tab.csv": _csv(rows, "\t"),
        "e_lines.json": b"".join(orjson.dumps(d) + b"\n" for d in dicts),
        "f_array.json": json.dumps(dicts, indent=2, ensure_ascii=False).encode(),
        "g_array.json.gz": gzip.compress(json.dumps(dicts).encode(), mtime=0),
    }


def _clean(text: str | None) -> str | None:
    # The one lossy rule, on purpose: an empty CSV field and an empty string are both null.
    return text if text else None


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(track, min_size=1, max_size=12), chunk=st.integers(1, 5))
def test_random_tables_in_every_format_read_back_to_the_same_records(tmp_path_factory, rows,
                                                                     chunk):
    root = tmp_path_factory.mktemp("prop")
    entry = run(root, "tracks", _formats(rows), chunk_rows=chunk)
    expected = [orjson.dumps(dict(zip(COLUMNS, (r[0], r[1], r[2], r[3], r[4], _clean(r[5]),
                                               r[6], r[7], r[8])))) for r in rows]
    assert entry["rows_rejected"] == 0, entry["reject_records"][:3]
    assert entry["lines"] == expected * 7
