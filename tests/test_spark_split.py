"""A large file read in splits gives the bytes one task gives: same lines in the same order, same
rejects at the same lines, same counts, in local mode and on a cluster.

The split size here is 8 KiB instead of 128 MiB, so that hand-written files of a few pages are
cut several times: CRLF, lone CR and mixed line endings,
a BOM, a header, quoted values with commas, blank lines, bad records, a cp1252 byte, a JSON key
first met in a later split, and a CSV whose quoted values hold line breaks, which must be read
whole. In local mode the generated messy data is read in 32 KiB splits too. The boundary rules
are checked on their own first, without Spark.
"""

from __future__ import annotations

import gzip
import io
import math
import random
import re
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.chinook.datasets import DATASETS
from helpers.ingest.dataset_pass import Options
from helpers.ingest.engine import ingest
from helpers.ingest.lines import split_lines
from helpers.ingest.normalize import Normalizer
from helpers.ingest.readers import Limits, read_chunks
from helpers.ingest.records import Dialect
from helpers.ingest.schema import map_header, schema_for
from helpers.ingest.sniff import sniff
from helpers.ingest.spark import ingest_spark
from helpers.ingest.splits import count_lines, line_start, read_split, scan_split
from helpers.rawgen.generate import make_raw
from tests.spark_cluster_util import SHARED_KEYS, local_lines, session_on, shared, spark_lines
from tests.spark_cluster_util import spark_cluster as spark_cluster

pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")

SPLIT = 8 * 1024
HEADER = "TrackId,Name,AlbumId,MediaTypeId,GenreId,Composer,Milliseconds,Bytes,UnitPrice"

# --- where splits begin and end, without Spark -----------------------------------------------

ENDINGS = b"ab\ncd\r\nef\rgh"  # lines start at 0, 3, 7 and 10; 12 bytes


@pytest.mark.parametrize(("data", "offset", "start"), [
    (ENDINGS, 0, 0),
    (ENDINGS, 1, 3),
    (ENDINGS, 3, 3),  # the byte before is \n: a line starts right there
    (ENDINGS, 4, 7),
    (ENDINGS, 6, 7),  # between the \r and the \n of one CRLF
    (ENDINGS, 8, 10),  # after a lone \r
    (ENDINGS, 11, 12),  # inside the last line, which has no ending: none starts after it
    (ENDINGS, 12, 12),
    (b"a\n\xef\xbb\xbfb\nc\n", 1, 7),  # a line that starts with a BOM is passed over
])
def test_a_split_begins_at_the_first_line_that_starts_at_or_after_its_offset(data, offset,
                                                                           start):
    assert line_start(io.BytesIO(data), offset, len(data)) == start


QUOTED = Dialect(",", '"')
ESCAPED = Dialect(",", '"', "\\")


@pytest.mark.parametrize(("body", "dialect", "expected"), [
    (b'1,"a, b"\n2,"c ""d"""\r\n3,e', QUOTED, (3, False)),
    (b'1,"a\nb"\n2,c\n', QUOTED, (3, True)),  # a quoted value runs into the next line
    (b'1,a\\\nb\n2,c\n', ESCAPED, (3, True)),  # an escaped line break
    (b'1,a\n2,"b\n', QUOTED, (2, True)),  # still open at the end of the input
    (b'1,"a\n2,"b"\n', Dialect(",", None), (2, False)),  # no quote character: quotes are text
    (b'1,a"b\n2,c""\n', QUOTED, (2, False)),  # quotes inside an unquoted value are text
    (b'1,"' + b"x" * 2000 + b'\n2,c\n', QUOTED, (2, False)),  # over the limit: rejected alone
])
def test_count_lines_says_whether_a_line_ends_inside_quotes(body, dialect, expected):
    blocks = split_lines(io.BytesIO(body), 1024)
    assert count_lines(blocks, dialect) == expected


def _whole_and_split(path: Path, split: int, chunk_rows: int, limits: Limits):
    """What the normalizer makes of the whole file and of its splits, or None for the splits
    when a line ends inside quotes (the file is then read whole)."""
    fmt = sniff(path)
    size, spans, first = path.stat().st_size, [], 0
    for start in range(0, size, split):
        found = scan_split({"file": 0, "path": str(path), "format": fmt.describe(),
                            "size": size, "from": start, "to": min(start + split, size),
                            "max_bytes": limits.max_record_bytes})
        if found["open_quote"]:
            return _normalized(fmt, read_chunks(path, fmt, chunk_rows, 0, limits)), None
        if found["end"] > found["begin"]:
            spans.append([found["begin"], found["end"], first])
        first += found["lines"]
    splits = (c for span in spans for c in read_split(path, fmt, chunk_rows, limits, span))
    return _normalized(fmt, read_chunks(path, fmt, chunk_rows, 0, limits)), _normalized(fmt,
                                                                                         splits)


def _normalized(fmt, chunks) -> tuple:
    schema = schema_for("events")
    map_header(fmt.header, schema)
    normalizer = Normalizer(schema, fmt, "f")
    lines, rejects, counts = [], [], [0, 0, 0]
    for chunk in chunks:
        result = normalizer.chunk(chunk)
        lines += result.lines
        rejects += [r.to_json() for r in result.rejects]
        counts = [counts[0] + result.blank, counts[1] + result.comments,
                  counts[2] + result.fallbacks]
    return lines, rejects, counts


PIECES = ["id,name,n", "1,2,3", '"x,y",2,3', '"open', 'close",1,2', "", "#c", "\ufeff1,2,3",
          "é,ü,3", "caf\udce9,1,2", '"q""q",1,2', "y" * 1500, 'a,b\\', '{"id": 1}', "{bad"]


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.tuples(st.sampled_from(PIECES), st.sampled_from(["\n", "\r\n", "\r"])),
                      min_size=1, max_size=40),
       split=st.sampled_from([1, 7, 40, 200]), chunk_rows=st.sampled_from([1, 3, 100]),
       max_bytes=st.sampled_from([1024, 1 << 20]), json=st.booleans())
def test_reading_in_splits_gives_what_reading_whole_gives(tmp_path_factory, lines, split,
                                                          chunk_rows, max_bytes, json):
    text = "".join(piece + ending for piece, ending in lines)
    if json:  # JSON Lines: a first record, then whatever comes
        text = '{"id": 0, "name": "h"}\n' + text
    path = tmp_path_factory.mktemp("split") / "f.txt"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    if sniff(path).kind not in ("csv", "jsonl"):
        return
    whole, splits = _whole_and_split(path, split, chunk_rows, Limits(3, max_bytes))
    assert splits is None or splits == whole


# --- hand-written files, in Spark ------------------------------------------------------------


def _crlf_csv() -> tuple[bytes, list[int]]:
    """A header, CRLF endings, quoted values with commas and doubled quotes (closed on their own
    line), blank lines, a cp1252 byte, and bad records; with the lines of the bad ones."""
    lines, bad = [HEADER], []
    for i in range(1, 401):
        if i % 50 == 0:
            lines.append("")
        if i % 97 == 0:
            lines.append(f"x{i},Song {i},1,1,1,,1000,1,0.99")  # not an integer id
            bad.append(len(lines))
        elif i % 89 == 0:
            lines.append(f"{i},Song {i},1,1,1,,1000,1,0.99,extra")  # one field too many
            bad.append(len(lines))
        else:
            lines.append(f'{i},"Song {i}, part {i % 7}",{i % 5 + 1},1,1,"Ann ""A"" Caf@",'
                         f"{200000 + i},{i * 1000},0.99")
    return ("\r\n".join(lines) + "\r\n").encode().replace(b"@", b"\xe9"), bad


def _quoted_newlines_csv() -> tuple[bytes, list[int]]:
    """Composers that hold a line break, so the file must be read by one task; a bad record
    after them, whose line number counts their lines."""
    lines, bad = [HEADER], []
    for i in range(1, 301):
        if i % 60 == 0:
            lines += [f'{i},Song {i},1,1,1,"Lennon', 'McCartney",1000,1,0.99']
        elif i % 71 == 0:
            lines.append(f"{i},,1,1,1,,1000,1,0.99")  # no Name, which is required
            bad.append(len(lines))
        else:
            lines.append(f"{i},Song {i},1,1,1,Composer {i},1000,{i},0.99")
    return ("\n".join(lines) + "\n").encode(), bad


def _json_lines() -> tuple[bytes, list[int]]:
    """Mixed LF and CRLF, blank lines, records cut short, and a key, Mood, first met past the
    first splits, so every row after it carries it, in this file and the next ones."""
    lines, bad = [], []
    for i in range(1000, 1400):
        record = {"TrackId": i, "Name": f"Song {i}", "MediaTypeId": 1,
                  "Milliseconds": 1000 + i, "UnitPrice": 0.99}
        if i >= 1250:
            record["Mood"] = "calm" if i % 2 else None
        if i % 83 == 0:
            lines.append(f'{{"TrackId": {i}, "Name": ')
            bad.append(len(lines))
        elif i % 101 == 0:
            lines.append("")
        else:
            lines.append(orjson.dumps(record).decode())
    return b"".join(line.encode() + (b"\r\n" if n % 2 else b"\n")
                    for n, line in enumerate(lines)), bad


def _lone_cr_semicolons() -> bytes:
    """A BOM, semicolons and old Mac line endings (a lone CR)."""
    lines = ["TrackId;Name;MediaTypeId;Milliseconds;UnitPrice"]
    lines += [f"{i};Tune {i};2;{3000 + i};1.99" for i in range(2000, 3000)]
    return b"\xef\xbb\xbf" + ("\r".join(lines) + "\r").encode()


def _gzip_csv() -> bytes:
    """Larger than a split even compressed; a gzip stream cannot be entered half-way."""
    noise = random.Random(7)
    rows = [f"{i},Noise {noise.getrandbits(128):032x},1,1,1,,1000,1,0.99" for i in range(500)]
    return gzip.compress(("\n".join([HEADER, *rows]) + "\n").encode(), mtime=0)


@pytest.fixture(scope="module")
def split_raw(tmp_path_factory) -> tuple[Path, dict[str, list[int]]]:
    """`tracks` in six files, `single` in one large CSV; and the lines of the bad records."""
    raw = tmp_path_factory.mktemp("split") / "raw"
    crlf, crlf_bad = _crlf_csv()
    quoted, quoted_bad = _quoted_newlines_csv()
    jsonl, jsonl_bad = _json_lines()
    files = {"a_crlf_header.csv": crlf, "b_quoted_newlines.csv": quoted,
             "c_drift.jsonl": jsonl, "d_lone_cr.txt": _lone_cr_semicolons(),
             "e_packed.csv.gz": _gzip_csv(), "f_small.csv": f"{HEADER}\n1,x,1,1,1,,1,1,1\n"}
    for folder, named in (("tracks", files), ("single", {"one_large.csv": crlf})):
        (raw / folder).mkdir(parents=True)
        for name, body in named.items():
            (raw / folder / name).write_bytes(body if isinstance(body, bytes) else body.encode())
    return raw, {"a_crlf_header.csv": crlf_bad, "b_quoted_newlines.csv": quoted_bad,
                 "c_drift.jsonl": jsonl_bad}


def _splits_expected(path: Path, split: int) -> int:
    """How many stretches of `split` bytes some line starts in (a line starts after any line
    ending), counted from the bytes, independently of the code under test."""
    data = path.read_bytes()
    starts = [0] + [m.end() for m in re.finditer(rb"\r\n|\r|\n", data) if m.end() < len(data)]
    return len({start // split for start in starts})


@pytest.fixture(scope="module")
def messy_raw(chinook_db, tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("messy") / "raw"
    make_raw(chinook_db, raw, scale=2, faults=True)
    return raw


# Chunks of 50 rows in the hand-written files, so that chunks and splits end in different places.
SMALL_CHUNKS = Options(chunk_rows=50)


def _local(raw: Path, out: Path, options: Options) -> dict:
    return ingest(raw, out, options=options, progress=False, log_dir=None, jobs=1)


@pytest.fixture(scope="module")
def local_runs(split_raw, messy_raw, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    runs = {}
    for name, raw, options in (("split", split_raw[0], SMALL_CHUNKS),
                               ("messy", messy_raw, Options())):
        out = tmp_path_factory.mktemp(f"local-{name}")
        runs[name] = out, _local(raw, out, options)
    return runs


def _spark_runs(master: str, folders: dict[str, tuple[Path, int, Options]], tmp: Path) -> dict:
    """Each folder read in splits of the given size, in one session that is stopped before
    the tests look at the results (so that the next fixture may start its own)."""
    runs = {}
    with session_on(master) as spark:
        for name, (raw, split, options) in folders.items():
            out = tmp / name
            runs[name] = out, ingest_spark(raw, out, options=options, spark=spark,
                                           split_bytes=split)
    return runs


@pytest.fixture(scope="module")
def local_spark_runs(split_raw, messy_raw, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """In local mode, the generated data too (a cluster runs many small tasks slowly)."""
    folders = {"split": (split_raw[0], SPLIT, SMALL_CHUNKS),
               "messy": (messy_raw, 4 * SPLIT, Options())}
    return _spark_runs("local[2]", folders, tmp_path_factory.mktemp("spark-local"))


@pytest.fixture(scope="module")
def cluster_spark_runs(spark_cluster, split_raw, tmp_path_factory) -> dict:
    return _spark_runs(spark_cluster.master, {"split": (split_raw[0], SPLIT, SMALL_CHUNKS)},
                       tmp_path_factory.mktemp("spark-cluster"))


@pytest.fixture(params=["local", "cluster"])
def spark_runs(request) -> dict[str, tuple[Path, dict]]:
    return request.getfixturevalue(f"{request.param}_spark_runs")


def test_large_files_are_read_in_splits_unless_they_cannot_be(split_raw, spark_runs):
    folder = split_raw[0] / "tracks"
    files = {f["name"]: f["splits"] for f in spark_runs["split"][1]["tracks"]["files"]}
    expected = {name: _splits_expected(folder / name, SPLIT)
                for name in ("a_crlf_header.csv", "c_drift.jsonl", "d_lone_cr.txt")}
    assert min(expected.values()) >= 3
    assert files == {**expected, "b_quoted_newlines.csv": 1, "e_packed.csv.gz": 1,
                     "f_small.csv": 1}


def test_a_large_csv_is_read_in_three_or_more_splits_as_the_local_engine_reads_it(
        split_raw, local_runs, spark_runs):
    """The issue's acceptance, in small: one CSV, several splits, the same output."""
    (local_out, local), (out, done) = local_runs["split"], spark_runs["split"]
    (entry,) = done["single"]["files"]
    assert entry["splits"] == _splits_expected(split_raw[0] / "single" / "one_large.csv",
                                               SPLIT) >= 3
    assert local["single"]["rows_written"] > 300
    assert spark_lines(out / "single") == local_lines(local_out / "single.json.gz")
    assert spark_lines(out / "_rejects" / "single") == local_lines(
        local_out / "_rejects" / "single.jsonl.gz")
    for key in SHARED_KEYS:
        assert shared(done["single"], key) == local["single"][key], key


def test_split_files_give_the_local_engines_lines_in_its_order(local_runs, spark_runs):
    lines = spark_lines(spark_runs["split"][0] / "tracks")
    assert lines == local_lines(local_runs["split"][0] / "tracks.json.gz")
    # Mood, met half-way through the JSON Lines file, is in every row after it, and only there.
    first, last = orjson.loads(lines[0]), orjson.loads(lines[-1])
    assert "Mood" not in first and last["Mood"] is None and last["Name"] == "x"


def test_split_files_reject_the_records_at_the_lines_they_were_written_on(split_raw, local_runs,
                                                                          spark_runs):
    _, bad = split_raw
    rejected = spark_lines(spark_runs["split"][0] / "_rejects" / "tracks")
    assert rejected == local_lines(local_runs["split"][0] / "_rejects" / "tracks.jsonl.gz")
    found = [(r["file"], r["line"]) for r in map(orjson.loads, rejected)]
    assert found == [(name, line) for name, lines in sorted(bad.items()) for line in lines]


def test_split_files_count_as_the_local_engine(split_raw, local_runs, spark_runs):
    done, local = spark_runs["split"][1]["tracks"], local_runs["split"][1]["tracks"]
    for key in SHARED_KEYS:
        assert shared(done, key) == local[key], key
    assert done["drifted_columns"] == ["Mood"]
    cafe = (split_raw[0] / "tracks" / "a_crlf_header.csv").read_bytes().count(b"Caf\xe9")
    assert sum(f["fallback_lines"] for f in done["files"]) == cafe > 300  # read as cp1252
    quoted = (split_raw[0] / "tracks" / "b_quoted_newlines.csv").stat().st_size
    events = "\n".join(done["events"])
    assert ("b_quoted_newlines.csv: a quoted value holds a line break, so the file was read "
            f"by one task instead of {math.ceil(quoted / SPLIT)}") in events
    assert "read 4 file(s) again with the columns that new JSON keys added" in events


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_generated_data_read_in_splits_matches_the_local_engine(dataset, local_runs,
                                                                local_spark_runs):
    local_out, local = local_runs["messy"]
    out, done = local_spark_runs["messy"]
    assert spark_lines(out / dataset) == local_lines(local_out / f"{dataset}.json.gz")
    assert spark_lines(out / "_rejects" / dataset) == local_lines(
        local_out / "_rejects" / f"{dataset}.jsonl.gz")
    for key in SHARED_KEYS:
        assert shared(done[dataset], key) == local[dataset][key], key
    assert max(f["splits"] for f in done[dataset]["files"]) > 1
