"""The native (Polars) path is judged by the row-by-row path: same lines, same rejects, same counts.

Each hand-written file under tests/fixtures/native/<dataset>/ (one real-world case each: Excel's
CRLF and quotes, stray and doubled quotes, quoted line breaks, ragged rows, loose numbers, cp1252
and a BOM, lone CRs, pandas' and json.dumps' JSON, repeated keys, mixed types, tricky strings in
arrays...) is ingested three ways: with the native path on one thread, on two, and with the
native path switched off so that only the normalizer reads it. The decompressed output and the
rejects must be identical, and so must every count in the manifest; the two native runs must also
cut the lines into the same gzip members. Blocks of four lines make every file cross several
block boundaries.

Then hypothesis writes files the same way `test_fast_slow` does (valid rows, hostile values) and
holds the three runs to each other again; it also writes JSON by hand, as other writers do and
`json.dumps` of a dict never does (a key twice, escaped keys, other separators, numbers spelled
1.50 or 1E3), one oddity a file; and the block reader is held to `split_lines`.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Collection
from dataclasses import replace
from functools import partial
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from helpers.ingest import blocks, dataset_pass, native
from helpers.ingest.blocks import Batch, Block, FileSource
from helpers.ingest.dataset_pass import DaemonPool, Options, ingest_dataset
from helpers.ingest.lines import decode_line, split_lines
from helpers.ingest.readers import Limits
from helpers.ingest.schema import schema_for
from helpers.ingest.sniff import DATA_KINDS, Format, sniff
from helpers.ingest.writer import member_digests
from tests.test_fast_slow import THINGS, render, tables

FIXTURES = Path(__file__).parent / "fixtures" / "native"
CASES = sorted(p.relative_to(FIXTURES) for p in FIXTURES.glob("*/*"))
SMALL = Options(chunk_rows=2, checkpoint_rows=4, max_record_bytes=2048)
COUNTED = ("rows", "rejected", "blank", "comments", "physical_records", "fallback_lines",
           "damage", "renamed")


def ingest_three_ways(folder: Path, work: Path, options: Options = SMALL) -> dict:
    """Outputs of the native path on 1 and 2 threads and of the normalizer alone."""
    runs = {}
    for name, jobs, on in (("native-1", 1, True), ("native-2", 2, True), ("rows", 1, False)):
        out = work / name
        out.mkdir()
        pool = DaemonPool(jobs) if jobs > 1 else None
        off = mock.patch.object(dataset_pass, "native_work", lambda *a: None)
        try:
            if not on:
                off.start()
            entry = ingest_dataset(folder, out, options, fresh=True, pool=pool, window=jobs)
        finally:
            if not on:
                off.stop()
            if pool is not None:
                pool.shutdown()
        runs[name] = {
            "members": member_digests(out / entry["output"]),
            "lines": gzip.decompress((out / entry["output"]).read_bytes()),
            "rejects": gzip.decompress((out / entry["rejects"]).read_bytes()),
            "files": [{k: f[k] for k in COUNTED} for f in entry["files"]],
            "totals": {k: entry[k] for k in ("rows_written", "rows_rejected", "duplicates",
                                             "columns")},
        }
    return runs


def assert_same(runs: dict) -> None:
    rows = runs["rows"]
    for name in ("native-1", "native-2"):
        for key in ("lines", "rejects", "files", "totals"):
            assert runs[name][key] == rows[key], f"{name}: {key} differ from the normalizer's"
    assert runs["native-1"]["members"] == runs["native-2"]["members"], "members depend on threads"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_each_real_world_file_gives_what_the_normalizer_gives(case, tmp_path):
    folder = tmp_path / "raw" / case.parts[0]
    folder.mkdir(parents=True)
    shutil.copy(FIXTURES / case, folder / case.name)
    runs = ingest_three_ways(folder, tmp_path)
    assert_same(runs)
    assert runs["rows"]["lines"] or runs["rows"]["rejects"], "the case reads as nothing at all"


@pytest.mark.parametrize("options", [
    replace(SMALL, dedupe="drop"),
    replace(SMALL, dedupe_budget_mb=0),  # room for one fingerprint: counted line by line
    replace(SMALL, dedupe="off"),
], ids=["drop", "past-the-budget", "off"])
@pytest.mark.parametrize("case", ["playlist_track/pipes.txt", "track_facts/pandas_compact.json",
                                  "tracks/excel_crlf.csv"])
def test_duplicates_count_and_drop_alike_on_both_paths(case, options, tmp_path):
    folder = tmp_path / "raw" / case.split("/")[0]
    folder.mkdir(parents=True)
    data = (FIXTURES / case).read_bytes()
    (folder / f"a_{Path(case).name}").write_bytes(data)
    (folder / f"b_{Path(case).name}").write_bytes(data)  # every record once more
    runs = ingest_three_ways(folder, tmp_path, options)
    assert_same(runs)
    if options.dedupe != "off":
        assert runs["rows"]["totals"]["duplicates"] > 0


def test_the_native_path_takes_the_common_files(tmp_path, monkeypatch):
    """The judge must not be the only one working: clean exports go native, block by block."""
    taken = []
    for name in ("csv_lines", "jsonl_lines", "array_lines"):
        original = getattr(native, name)

        def spy(block, n, spec, original=original, name=name):
            result = original(block, n, spec)
            taken.append((name, result is not None))
            return result

        monkeypatch.setattr(native, name, spy)
    worked = []  # and what the worker makes of them in the end: lines, not None
    original_work = dataset_pass.native_work

    def spy_work(fmt, *args):
        work = original_work(fmt, *args)

        def wrapped(block, width):
            result = work(block, width)
            if fmt.kind != "csv" or block.first >= fmt.data_line:  # a header is no record
                worked.append((fmt.kind, result is not None))
            return result
        return wrapped if work is not None else None

    monkeypatch.setattr(dataset_pass, "native_work", spy_work)
    for case in ("tracks/excel_crlf.csv", "tracks/doubled_quotes.csv",
                 "tracks/pandas_records.jsonl", "track_facts/indented.json",
                 "track_facts/pandas_compact.json", "playlist_track/pipes.txt"):
        folder = tmp_path / case.replace("/", "_") / case.split("/")[0]
        folder.mkdir(parents=True)
        shutil.copy(FIXTURES / case, folder)
        ingest_dataset(folder, tmp_path / f"out-{folder.parent.name}", SMALL, fresh=True)
    kinds = {name for name, ok in taken if ok}
    assert kinds == {"csv_lines", "jsonl_lines", "array_lines"}, taken
    assert sum(ok for _, ok in taken) >= 0.8 * len(taken), taken
    assert {kind for kind, ok in worked if ok} == {"csv", "jsonl", "json_array"}, worked
    assert sum(ok for _, ok in worked) >= 0.8 * len(worked), worked


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_native_call_that_never_returns_costs_its_block_not_the_run(jobs, tmp_path,
                                                                      monkeypatch):
    """A Polars call that hangs (see `dataset_pass.DaemonPool`), played by one that waits until
    the test ends: after the time limit that block goes through the normalizer, the run says
    so and goes on without the native path, a new thread takes the stuck one's place, and the
    output is that of a run without the native path. The next run goes native again."""
    folder = tmp_path / "raw" / "tracks"
    folder.mkdir(parents=True)
    for name in "abcd":  # two blocks each
        shutil.copy(FIXTURES / "tracks/excel_crlf.csv", folder / f"{name}.csv")
    (tmp_path / "three").mkdir()
    expected = ingest_three_ways(folder, tmp_path / "three")["rows"]
    release, calls, lock = threading.Event(), {0: [], 1: []}, threading.Lock()
    run = [0]
    original = native.csv_lines

    def hangs_once(block, n, spec):
        with lock:
            first = not calls[0]
            calls[run[0]].append(block[:20])
        if first:
            release.wait(30)  # far beyond the test's time limit; released at the end
            return None
        result = original(block, n, spec)
        assert result is not None, block
        return result

    monkeypatch.setattr(native, "csv_lines", hangs_once)
    monkeypatch.setattr(dataset_pass, "NATIVE_TIMEOUT", 0.5)
    pool = dataset_pass.DaemonPool(jobs)
    monkeypatch.setattr(dataset_pass, "_INLINE", [pool])  # the pool of a run without one
    entries = []
    try:
        for run[0] in (0, 1):
            entries.append(ingest_dataset(folder, tmp_path / f"out{run[0]}", SMALL, fresh=True,
                                          pool=pool if jobs > 1 else None, window=jobs))
    finally:
        release.set()
        pool.shutdown()
    assert pool.stuck == 1
    stalls = [e for e in entries[0]["events"] if "did not return" in e]
    assert len(stalls) == 1 and stalls[0].startswith("a.csv: "), entries[0]["events"]
    assert not [e for e in entries[1]["events"] if "did not return" in e]
    for i, entry in enumerate(entries):
        out = tmp_path / f"out{i}" / entry["output"]
        assert gzip.decompress(out.read_bytes()) == expected["lines"]
        assert entry["rows_written"] == expected["totals"]["rows_written"]
    assert len(calls[0]) <= 1 + jobs, calls  # none asked for after the stall was seen
    assert len(calls[1]) == 8, calls  # the next run: native throughout

def _polars_executors() -> int:
    """Polars' async executor threads in this process, by the names Linux gives them."""
    names = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread ending meanwhile
            names.append((task / "comm").read_text())
    return sum(name.startswith("async-exec") for name in names)


# Values the strict cast refuses, in records with every field (a short one would be found
# before the query: `native._records_whole`): the native query fails.
FAILING = [b"%d,%d,%d" % (i, 200037 * i, 6000000 + i) for i in range(1, 316)]
FAILING[7], FAILING[10] = b"8,20H296,6000008", b"11,200407,60{}"
FAILING_BLOCK = b"\n".join(FAILING) + b"\n"
INTEGERS = native.CsvSpec(",", '"', 3, tuple(native.Column(name, "integer", name != "TrackId")
                                             for name in ("TrackId", "Milliseconds", "Bytes")),
                          (0, 1, 2), None)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="thread names from /proc")
def test_blocks_that_fail_inside_polars_leave_its_threads_alive():
    """On Polars' streaming engine such a failure killed one of its executor threads about
    once in a thousand blocks ("joined on cancelled task"), and once none was left every later
    read in the process waited forever: the hang of issue 14's notes."""
    assert native.csv_lines(b"1,2,3\n", 1, INTEGERS) is not None  # Polars' threads started
    with pytest.raises(native._pl().exceptions.InvalidOperationError):  # it reaches the query
        native._csv_lines(FAILING_BLOCK, 315, INTEGERS)
    before = _polars_executors()
    assert before >= 1
    for i in range(2000):  # with no thread left, the next call would never return
        assert native.csv_lines(FAILING_BLOCK, 315, INTEGERS) is None
        if i % 10 == 0:
            time.sleep(0.005)  # a dying thread takes a moment to go
            assert _polars_executors() == before, f"a Polars thread died after {i + 1} blocks"


def test_the_query_that_can_fail_stays_off_the_streaming_engine():
    """The same, deterministically: the native query runs where a failure is only an error
    (Polars says which engine ran a query when POLARS_VERBOSE is set)."""
    script = (
        "import polars as pl\n"
        "from helpers.ingest import native\n"
        "frame = pl.DataFrame({'a': ['1', 'x']})\n"
        "checks = [pl.col('a').is_not_null().all()]\n"
        "try:\n"
        "    native._encode(frame, checks, [pl.col('a').cast(pl.Int64, strict=True)])\n"
        "except pl.exceptions.InvalidOperationError:\n"
        "    print('failed as it should')\n")
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=os.environ | {"POLARS_VERBOSE": "1"}, timeout=120,
                         cwd=Path(__file__).parent.parent)
    assert ran.stdout.strip() == "failed as it should", ran.stderr[-2000:]
    assert "polars-stream" not in ran.stderr, ran.stderr[-2000:]

NATIVE_FUZZ = settings(max_examples=60, deadline=None,
                       phases=[p for p in Phase if p != Phase.explain],
                       suppress_health_check=[HealthCheck.too_slow])


def write_raw(folder: Path, name: str, body: bytes, gzipped: bool) -> Path:
    """A raw file as it was exported, or gzipped (read back in short reads, block by block)."""
    path = folder / (name + ".gz" if gzipped else name)
    path.write_bytes(gzip.compress(body, mtime=0) if gzipped else body)
    return path


def assert_native_agrees(dataset: str, name: str, body: bytes, gzipped: bool,
                         kinds: Collection[str] | None = None) -> None:
    """`body`, as file `name` of `dataset`, ingested three ways with the same results; `kinds`:
    the formats the file must sniff as to count (a few random bytes rightly sniff otherwise)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "raw" / dataset
        folder.mkdir(parents=True)
        path = write_raw(folder, name, body, gzipped)
        assume(kinds is None or sniff(path).kind in kinds)
        assert_same(ingest_three_ways(folder, Path(tmp)))


@NATIVE_FUZZ
@given(table=tables(), ending=st.sampled_from(["\n", "\r\n"]), quote_all=st.booleans())
def test_native_and_row_by_row_agree_on_hostile_files(table, ending, quote_all):
    dataset, kind, header, rows = table
    assert_native_agrees(dataset, "data.csv" if kind == "csv" else "data.json",
                         render(kind, header, rows, ending, quote_all), False, DATA_KINDS)


# JSON as other writers write it, which `json.dumps` of a dict never does: a key twice in one
# object (the second value null, or not), separators without spaces or with tabs, strings with
# every character \u-escaped or with `\/`, numbers spelled 1.50, 1E3 or -0. Polars and orjson
# read some of these apart; the native path must notice each time.
JSON_NUMBERS = ["0", "-0", "7", "1.0", "1.50", "-2.25", "1e3", "1E-2", "0.1", "12345678901234567",
                "9223372036854775808", "3.141592653589793238", "-0.0", "100"]
# The first two styles, the usual ones, are the ones the native path reads (the others all go to
# the normalizer), so they are drawn twice as often.
JSON_STYLES = [(", ", ": "), (",", ":")] * 2 + [(" , ", " : "), (",\t", ":\t")]


def escape_all(text: str) -> str:
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else json.dumps(c)[1:-1]
                         for c in text) + '"'


def json_text(value: object, escapes: str) -> str:
    if isinstance(value, str):
        if escapes == "every":
            return escape_all(value)
        text = json.dumps(value, ensure_ascii=escapes == "ascii")
        return text.replace("/", "\\/") if escapes == "slash" else text
    if isinstance(value, tuple):  # a number as a writer spelled it
        return value[0]
    return json.dumps(value)


CLEAN = {"integer": st.integers(-(2**63), 2**63 - 1),
         "number": st.floats(allow_nan=False, allow_infinity=False, width=64),
         "text": st.text(st.characters(exclude_categories=("Cs",)), max_size=8)}
ODD = {"integer": st.sampled_from(JSON_NUMBERS).map(lambda t: (t,)),
       "number": st.sampled_from(JSON_NUMBERS).map(lambda t: (t,)),
       "text": st.sampled_from(["", "a/b", "x\ty", "caf\u00e9", "\U0001f600", "}", '"', "\\"])
       | st.integers() | st.booleans()}


# A key twice with the second value null is the case only a search finds (Polars keeps the
# first value, orjson the last, and the counts still balance); with \u-escaped keys, only the
# search for escapes finds it.
# A boolean anywhere: Polars reads one in a column of numbers as 1 or 0, and only a count of
# the booleans written finds it.
# A key twice with white space before its second colon: the counts of `":` miss that one, and
# the repeat balances them.
ODDITIES = ["none", "twice, then null", "twice", "left out", "null", "spelled oddly",
            "escaped keys, twice, then null", "boolean", "twice, spaced"]


class Spaced(str):
    """A key written with white space before its colon."""


@st.composite
def hand_rolled_json(draw, oddities: list[str] = ODDITIES) -> tuple[str, str, bytes]:
    """Clean records, as a real export holds them, with one oddity of each file planted in one
    or two of them, the oddity drawn evenly so that every one is met in a short run."""
    dataset = draw(st.sampled_from(["tracks", "orders", "things"]))
    columns = [(c.name, c.kind, c.nullable) for c in schema_for(dataset).columns
               if dataset != "things"] or [(name, "text", True) for name in THINGS]
    records = [[(name, draw(CLEAN[kind] | st.none()) if nullable and draw(st.booleans())
                 else draw(CLEAN[kind])) for name, kind, nullable in columns]
               for _ in range(draw(st.integers(1, 9)))]
    odd = draw(st.sampled_from(oddities))
    for _ in range(draw(st.integers(1, 2)) if odd != "none" else 0):
        pairs = draw(st.sampled_from(records))
        at = draw(st.integers(0, len(pairs) - 1))
        name, kind, _ = next(c for c in columns if c[0] == pairs[at][0])
        if odd in ("twice", "twice, spaced"):
            again = Spaced(name) if odd == "twice, spaced" else name
            pairs.insert(draw(st.integers(0, len(pairs))), (again, draw(CLEAN[kind] | ODD[kind])))
        elif odd.endswith("twice, then null"):
            if pairs[at][1] is None:
                pairs[at] = (name, draw(CLEAN[kind]))
            pairs.insert(draw(st.integers(at + 1, len(pairs))), (name, None))
        elif odd == "left out":
            del pairs[at:at + 1 if len(pairs) > 1 else 0]
        else:
            pairs[at] = (name, None if odd == "null" else draw(st.booleans())
                         if odd == "boolean" else draw(ODD[kind]))
    comma, colon = draw(st.sampled_from(JSON_STYLES))
    escapes = draw(st.sampled_from(["plain", "ascii", "slash", "every"]))
    keys_escaped = odd.startswith("escaped keys")

    kind = draw(st.sampled_from(["jsonl", "json_array"]))
    if kind == "json_array" and draw(st.booleans()):  # pretty-printed, an item over lines
        comma = comma.rstrip() + "\n    "
    opening, closing = ("{\n    ", "\n  }") if comma.endswith("\n    ") else ("{", "}")

    spaced = " " + colon.lstrip() if colon.startswith(":") else colon

    def obj(pairs: list) -> str:
        return opening + comma.join((escape_all(k) if keys_escaped else json.dumps(k))
                                    + (spaced if isinstance(k, Spaced) else colon)
                                    + json_text(v, escapes) for k, v in pairs) + closing

    objects = [obj(pairs) for pairs in records]
    if kind == "jsonl":
        text = "".join(o + "\n" for o in objects)
    else:
        text = "[" + draw(st.sampled_from([",\n  ", ",", ", "])).join(objects) + "]\n"
    if draw(st.booleans()):  # as written on Windows: CRLF, and now and then a BOM
        text = text.replace("\n", "\r\n")
    bom = "\ufeff" if draw(st.integers(0, 3)) == 0 else ""
    return dataset, kind, (bom + text).encode()


@settings(NATIVE_FUZZ, max_examples=150)
@given(case=hand_rolled_json(), gzipped=st.booleans())
def test_native_and_row_by_row_agree_on_hand_rolled_json(case, gzipped):
    dataset, kind, body = case
    assert_native_agrees(dataset, "data.jsonl" if kind == "jsonl" else "data.json", body,
                         gzipped)


@settings(NATIVE_FUZZ, max_examples=40)
@given(case=hand_rolled_json(oddities=["boolean"]))
def test_a_boolean_where_a_number_belongs_is_rejected_as_the_normalizer_rejects_it(case):
    dataset, kind, body = case
    assert_native_agrees(dataset, "data.jsonl" if kind == "jsonl" else "data.json", body, False)


@pytest.mark.parametrize("null_search", [native.NULL_SEARCH_BYTES, 0])
@settings(NATIVE_FUZZ, max_examples=40)
@given(case=hand_rolled_json(oddities=["twice, then null", "escaped keys, twice, then null"]))
def test_a_key_twice_then_null_never_passes_natively(null_search, case):
    """The hard case in every example, so that a short run meets it whatever its seed; also with
    every null past where the native path first looks for one (its second query searches)."""
    dataset, kind, body = case
    with mock.patch.object(native, "NULL_SEARCH_BYTES", null_search):
        assert_native_agrees(dataset, "data.jsonl" if kind == "jsonl" else "data.json", body,
                             False)


@settings(NATIVE_FUZZ, max_examples=80)
@given(case=hand_rolled_json(oddities=["twice, spaced"]))
def test_a_key_twice_with_a_space_before_its_colon_never_passes_natively(case):
    dataset, kind, body = case
    assert_native_agrees(dataset, "data.jsonl" if kind == "jsonl" else "data.json", body, False)


# Polars types a JSON column by its first 100 records and reads what comes later into that type
# without a word: 2.5 or 1e3 into a column of integers as 2 or 1000. JavaScript exports write a
# whole price as 1, so a file's first hundred prices may all look like integers.
LATE_NUMBERS = ["2.5", "0.99", "1e3", "1E-2", "-0.0", "7.0", "-1.5e2"]


@settings(NATIVE_FUZZ, max_examples=25)
@given(dataset=st.sampled_from(["orders", "things"]), kind=st.sampled_from(["jsonl", "array"]),
       before=st.integers(100, 400), after=st.integers(0, 50), late=st.sampled_from(LATE_NUMBERS),
       key=st.sampled_from(["UnitPrice", "Quantity"]))
def test_a_number_with_a_fraction_after_a_hundred_integers_is_read_as_the_normalizer_reads_it(
        dataset, kind, before, after, late, key):
    """One block (the default options), so that Polars types the column from its first hundred
    records: a declared number column keeps the late value, an integer one rejects its record,
    an undeclared one (`things`) writes it as the float it is."""
    def record(i: int, value: str) -> str:
        values = {"InvoiceLineId": str(i), "InvoiceId": "1", "CustomerId": "2", "TrackId": "3",
                  "UnitPrice": "1", "Quantity": "1"} | {key: value}
        return "{" + ",".join(f'"{k}":{v}' for k, v in values.items()) + "}"

    records = [record(i, str(i % 3 + 1)) for i in range(before)] + [record(before, late)] \
        + [record(before + 1 + i, "2") for i in range(after)]
    body = ("".join(r + "\n" for r in records) if kind == "jsonl"
            else "[" + ",\n".join(records) + "]\n").encode()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "raw" / dataset
        folder.mkdir(parents=True)
        write_raw(folder, "data.jsonl" if kind == "jsonl" else "data.json", body, False)
        runs = ingest_three_ways(folder, Path(tmp), Options())
    assert_same(runs)
    written = runs["rows"]["lines"].count(b"\n") + runs["rows"]["totals"]["rows_rejected"]
    assert written == len(records)


# CSV as exports write it, one oddity a file: numbers spelled as people and spreadsheets spell
# them, quotes where the CSV module and Polars may read them apart, ragged and blank lines.
CSV_NUMBERS = ["+7", "007", " 7", "7 ", "1e3", "1.0", "1_000", "0x10", "NaN", "inf", "-0", ".5",
               "5.", "1,5", "\uff11\uff12", "\u0663", "9" * 19, "-9223372036854775809"]
# A short row twice: one that leaves out a field the schema lets be empty is read by Polars as a
# row with that field empty, and only a count of the fields finds it.
CSV_ODDITIES = ["none", "spelled oddly", "empty", "quote inside", "space before a quote",
                "short row", "short row", "long row", "trailing delimiter", "blank line",
                "line break in quotes", "backslash before a quote", "lone CR in quotes"]
CSV_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8)


def csv_field(text: str, delimiter: str, quote_all: bool) -> str:
    if quote_all or any(c in text for c in (delimiter, '"', "\r", "\n")) or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


@st.composite
def hand_rolled_csv(draw, oddities: list[str] = CSV_ODDITIES,
                    datasets: tuple[str, ...] = ("tracks", "orders", "track_facts", "track_facts"),
                    ) -> tuple[str, str, bytes]:
    # track_facts twice: its last column may be empty (see CSV_ODDITIES).
    dataset = draw(st.sampled_from(datasets))
    columns = schema_for(dataset).columns
    clean = {"integer": st.integers(-(2**63), 2**63 - 1).map(str),
             "number": st.floats(allow_nan=False, allow_infinity=False).map(repr)
             | st.decimals(places=2, allow_nan=False, allow_infinity=False).map(str),
             "text": CSV_TEXT.filter(bool)}
    delimiter = draw(st.sampled_from([",", ";", "|", "\t"]))
    quote_all = draw(st.booleans())
    rows = [[draw(clean[c.kind]) if not c.nullable or draw(st.integers(0, 3)) else ""
             for c in columns] for _ in range(draw(st.integers(1, 9)))]
    lines = [[csv_field(v, delimiter, quote_all) for v in row] for row in rows]
    odd = draw(st.sampled_from(oddities))
    for _ in range(draw(st.integers(1, 2)) if odd != "none" else 0):
        row = draw(st.integers(0, len(lines) - 1))
        at = draw(st.integers(0, len(columns) - 1))
        numeric = [i for i, c in enumerate(columns) if c.kind != "text"]
        texts = [i for i, c in enumerate(columns) if c.kind == "text"]
        if odd == "spelled oddly":
            lines[row][draw(st.sampled_from(numeric))] = draw(st.sampled_from(CSV_NUMBERS))
        elif odd == "empty":
            lines[row][at] = draw(st.sampled_from(["", '""']))
        elif odd == "quote inside":
            lines[row][at] = draw(st.sampled_from(['5"', 'a"b', '"a"b"', '"a" ']))
        elif odd == "space before a quote":
            lines[row][at] = ' "' + rows[row][at] + '"'
        elif odd == "short row":
            lines[row] = lines[row][:-1]
        elif odd == "long row":
            lines[row] = [*lines[row], draw(st.sampled_from(["", "x", "1"]))]
        elif odd == "trailing delimiter":
            lines = [[*line, ""] for line in lines]
        elif odd == "blank line":
            lines.insert(row, [])
        elif texts and odd == "line break in quotes":
            lines[row][draw(st.sampled_from(texts))] = draw(st.sampled_from(['"a\nb"', '"a\r\nb"']))
        elif texts and odd == "backslash before a quote":
            lines[row][draw(st.sampled_from(texts))] = '"a\\"b"'
        elif texts and odd == "lone CR in quotes":
            lines[row][draw(st.sampled_from(texts))] = '"a\rb"'
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    header = [csv_field(c.name, delimiter, quote_all) for c in columns]
    if odd == "trailing delimiter":
        header.append("")
    text = "".join(delimiter.join(line) + ending for line in [header, *lines])
    # Spreadsheets on Windows write cp1252, or UTF-8 with a BOM; what cp1252 cannot hold is "?".
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]))
    suffix = {",": "csv", ";": "csv", "|": "txt", "\t": "tsv"}[delimiter]
    return dataset, suffix, text.encode(encoding, errors="replace")


@settings(NATIVE_FUZZ, max_examples=150)
@given(case=hand_rolled_csv(), gzipped=st.booleans())
def test_native_and_row_by_row_agree_on_hand_rolled_csv(case, gzipped):
    dataset, suffix, body = case
    assert_native_agrees(dataset, f"data.{suffix}", body, gzipped, {"csv"})


@settings(NATIVE_FUZZ, max_examples=40)
@given(case=hand_rolled_csv(oddities=["short row"], datasets=("track_facts",)))
def test_a_record_that_leaves_out_a_field_is_rejected_as_the_normalizer_rejects_it(case):
    """A short record in every example; track_facts' last column may be empty."""
    dataset, suffix, body = case
    assert_native_agrees(dataset, f"data.{suffix}", body, False, {"csv"})


# An undeclared column's values, as exports hold them: what the normalizer makes a number (a
# strict integer within 64 bits, a strict decimal that fits a float), and what it keeps as text
# right beside those. The native path types a column per block, all of one kind or the block
# goes to the normalizer; a column drawing from several kinds puts both cases in most examples.
AUTO_VALUES = {
    "integers": st.integers(-(2**63), 2**63 - 1).map(str),
    "decimals": st.tuples(st.integers(-(10**20), 10**20), st.text("0123456789", min_size=1,
                                                                  max_size=8))
    .map(lambda t: f"{t[0]}.{t[1]}"),
    "text": CSV_TEXT.filter(bool),
    "near misses": st.sampled_from([*CSV_NUMBERS, "-0.0", "0.0", "-0.5", "1" * 400 + ".5",
                                    "9223372036854775808", "-", "00", "1.50"]),
}


# What Polars would read as a number of that kind, or nearly, and the normalizer keeps as text.
NEAR_MISSES = {"integers": ["+7", "007", " 7", "7 ", "00", "-00", "1_000", "1e3", "0x10",
                            "9223372036854775808", "\u0663", "\uff17"],
               "decimals": ["1.", ".5", "-.5", "+1.5", " 1.5", "1.5 ", "00.5", "1e3", "1.5e3",
                            "1_0.5", "\uff11.5", "1" * 400 + ".5"]}


@st.composite
def undeclared_columns(draw, styles: list[str], plant: bool,
                       planted_styles: list[str]) -> tuple[list[str], list[list[str]], int | None]:
    """Column names, each column's one or two styles of value, and (`plant`) the column given a
    single style of `planted_styles`, where one near miss will go."""
    names = draw(st.lists(st.sampled_from(["id", "amount", "label", "code"]), min_size=1,
                          max_size=4, unique=True))
    drawn = [draw(st.lists(st.sampled_from(styles), min_size=1, max_size=2)) for _ in names]
    planted = draw(st.integers(0, len(names) - 1)) if plant else None
    if planted is not None:
        drawn[planted] = [draw(st.sampled_from(planted_styles))]
    return names, drawn, planted


@st.composite
def undeclared_csv(draw, plant: bool = False) -> bytes:
    """A CSV file of undeclared columns. `plant`: one column of integers or of decimals holds
    a single near miss among them, the case a per-block typing gets wrong most easily."""
    names, styles, planted = draw(undeclared_columns(list(AUTO_VALUES), plant,
                                                     ["integers", "decimals"]))
    rows = [[draw(st.one_of([AUTO_VALUES[k] for k in style])) if draw(st.integers(0, 4)) else ""
             for style in styles] for _ in range(draw(st.integers(1, 12)))]
    if planted is not None:
        row = draw(st.integers(0, len(rows) - 1))
        rows[row][planted] = draw(st.sampled_from(NEAR_MISSES[styles[planted][0]]))
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    quote_all = draw(st.booleans())
    lines = [names, *rows]
    return "".join(delimiter.join(csv_field(v, delimiter, quote_all) for v in line) + "\n"
                   for line in lines).encode()


@settings(NATIVE_FUZZ, max_examples=100)
@given(body=undeclared_csv(), gzipped=st.booleans())
def test_undeclared_columns_are_typed_natively_as_the_normalizer_types_each_value(body, gzipped):
    assert_native_agrees("events", "data.csv", body, gzipped, {"csv"})


@settings(NATIVE_FUZZ, max_examples=40)
@given(body=undeclared_csv(plant=True))
def test_one_near_miss_among_numbers_is_typed_as_the_normalizer_types_it(body):
    assert_native_agrees("events", "data.csv", body, False, {"csv"})


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_an_undeclared_dataset_whose_columns_keep_to_one_kind_goes_native(kind, tmp_path,
                                                                         monkeypatch):
    """A dataset with no declared schema (every column undeclared) is not the normalizer's
    alone: blocks whose columns each hold integers, decimals or text go native."""
    taken = []
    name = f"{kind}_lines"
    original = getattr(native, name)

    def spy(block, n, spec):
        result = original(block, n, spec)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(native, name, spy)
    folder = tmp_path / "raw" / "events"
    folder.mkdir(parents=True)
    rows = [(i, f"{i * 7 % 1000}.{i % 100 + 1:02d}", f"item {i % 13}", "" if i % 5 else str(i))
            for i in range(40)]
    if kind == "csv":
        body = "id,amount,label,maybe\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
    else:
        body = "".join(json.dumps({"id": i, "amount": float(a), "label": t, "maybe": m}) + "\n"
                       for i, a, t, m in rows)
    (folder / f"events.{kind}").write_text(body)
    out = tmp_path / "out"
    entry = ingest_dataset(folder, out, SMALL, fresh=True)
    assert entry["rows_written"] == 40
    assert taken and all(taken), taken
    first = json.loads(gzip.decompress((out / entry["output"]).read_bytes()).split(b"\n")[0])
    assert first == {"id": 0, "amount": 0.01, "label": "item 0", "maybe": 0}


# An undeclared column's JSON values: what the normalizer keeps as it is (integers, floats,
# booleans, nested values, integers past 64 bits), and strings, which it types as it types CSV.
JSON_AUTO = {
    "integers": st.integers(-(2**63), 2**63 - 1),
    "floats": st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-1000, 1000).map(float),  # whole ones: 5.0 is written 5.0
    "strings": st.one_of(AUTO_VALUES.values()),
    "booleans": st.booleans(),
    "odd": st.sampled_from([[1], {"a": 1}, 2**63, -(2**63) - 1, 10**30, ""]),
}


@st.composite
def undeclared_json(draw, plant: bool = False) -> tuple[str, bytes]:
    """JSON Lines or an array of objects with undeclared keys. `plant`: one key of floats holds
    a single integer, or one key of integer strings a single near miss, among them."""
    keys, styles, planted = draw(undeclared_columns(list(JSON_AUTO), plant,
                                                    ["floats", "integer strings"]))
    values = JSON_AUTO | {"floats": st.floats(0.5, 1e6).filter(lambda x: not x.is_integer()),
                          "integer strings": AUTO_VALUES["integers"]} if plant else JSON_AUTO
    records = []
    for _ in range(draw(st.integers(1, 12))):
        record = {}
        for key, style in zip(keys, styles):
            presence = draw(st.integers(0, 6))
            if presence:
                record[key] = draw(st.one_of([values[k] for k in style])) if presence > 1 \
                    else None
        records.append(record)
    if planted is not None:
        record = draw(st.sampled_from(records))
        record[keys[planted]] = draw(st.integers(-5, 5)) if styles[planted] == ["floats"] \
            else draw(st.sampled_from(NEAR_MISSES["integers"]))
    compact = draw(st.booleans())
    dumps = partial(json.dumps, separators=(",", ":") if compact else (", ", ": "))
    if draw(st.booleans()):
        return "data.jsonl", "".join(dumps(r) + "\n" for r in records).encode()
    return "data.json", ("[" + ",\n".join(map(dumps, records)) + "]\n").encode()


@settings(NATIVE_FUZZ, max_examples=100)
@given(case=undeclared_json(), gzipped=st.booleans())
def test_undeclared_json_values_are_typed_natively_as_the_normalizer_types_them(case, gzipped):
    name, body = case
    assert_native_agrees("events", name, body, gzipped)


@settings(NATIVE_FUZZ, max_examples=40)
@given(case=undeclared_json(plant=True))
def test_one_integer_among_floats_or_near_miss_among_integers_is_typed_as_written(case):
    name, body = case
    assert_native_agrees("events", name, body, False)


# Bytes of a line as a cp1252 export, a UTF-8 one or a damaged one holds them.
LINE_BYTES = st.lists(st.sampled_from([b"a", b",", b"\xe9", b"\x80", b"\x81", b"\xc3\xa9",
                                       b"\xe2\x82\xac", b"\xe2\x82", b"\xed\xa0\x80", b"\xff"]),
                      max_size=12).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(LINE_BYTES, min_size=1, max_size=30), last_break=st.booleans())
def test_a_block_decodes_and_counts_as_its_lines_do_one_by_one(lines, last_break):
    """`decode_with_fallback` on a block (the last of a file may end without a line break): the
    text, and the count of lines that needed cp1252 as `lines.decode_line` finds them line by
    line (what the normalizer counts)."""
    end = b"\n" if last_break else b""
    text, fallbacks = native.decode_with_fallback(b"\n".join(lines) + end)
    one_by_one = [decode_line(line) for line in lines]
    assert text == ("\n".join(t for t, _ in one_by_one) + end.decode()).encode()
    assert fallbacks == sum(fell_back for _, fell_back in one_by_one)


# --- the block reader counts lines as split_lines does --------------------------------------

def lines_by_blocks(path: Path, skip: int, limit: int) -> list[tuple[int, bytes]]:
    out = []
    source = FileSource(path, Format("jsonl"), 3, 6, skip, Limits(max_record_bytes=limit))
    for unit in source.units():
        if isinstance(unit, Block):
            out += [(unit.first + i, line) for i, line in enumerate(
                unit.data.splitlines(keepends=True))]
        elif isinstance(unit, Batch):
            out += [(unit.first + i, x if isinstance(x, bytes) else
                     x.encode() if isinstance(x, str) else b"<too long>")
                    for i, x in enumerate(unit.lines)]
    return out


def lines_by_split_lines(path: Path, skip: int, limit: int) -> list[tuple[int, bytes]]:
    with open(path, "rb") as f:
        lines = [x for batch in split_lines(f, limit) for x in batch]
    return [(i, x if isinstance(x, bytes) else b"<too long>")
            for i, x in enumerate(lines) if i >= skip]


LINE = st.text(st.sampled_from("ab,\"é"), max_size=8).map(str.encode)
ENDING = st.sampled_from([b"\n", b"\r\n", b"\r", b""])


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.tuples(LINE, ENDING), max_size=30), skip=st.integers(0, 12),
       bom=st.booleans(), limit=st.sampled_from([6, 1 << 20]))
def test_blocks_hold_the_lines_split_lines_reads(parts, skip, bom, limit):
    data = (b"\xef\xbb\xbf" if bom else b"") + b"".join(a + e for a, e in parts)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.jsonl"
        path.write_bytes(data)
        expected = lines_by_split_lines(path, skip, limit)
        # A line over the limit is skipped by split_lines; blocks hand it to the reader that
        # marks it, so compare where both hold the text.
        got = lines_by_blocks(path, skip, limit)
    assert [i for i, _ in got] == [i for i, _ in expected]
    for (i, a), (_, b) in zip(got, expected):
        assert a == b or b == b"<too long>" or a == b"<too long>", i


def cuts_by_the_rule(data: bytes, skip: int, block: int, budget: int) -> list[tuple[int, int]]:
    """(first line, lines) of each block as the rule reads, written plainly: from line `skip`,
    as many complete lines as end within `budget` bytes of the block's start (at least one), up
    to the next multiple of `block` lines; a last line without an ending is a block alone."""
    ends = [i + 1 for i, byte in enumerate(data) if byte == ord("\n")]
    starts = [0] + ends
    cuts, index = [], skip
    while index < len(ends):
        room = block - index % block
        within = sum(1 for end in ends[index:] if end - starts[index] <= budget)
        n = min(room, max(1, within))
        cuts.append((index, n))
        index += n
    if len(data) > (ends[-1] if ends else 0) and len(ends) >= skip:
        cuts.append((len(ends), 1))
    return cuts


@settings(max_examples=300, deadline=None)
@given(lengths=st.lists(st.integers(0, 40), max_size=60), last=st.booleans(),
       skip=st.integers(0, 20), block=st.integers(1, 7), budget=st.integers(1, 90),
       read=st.integers(1, 70))
def test_blocks_are_cut_by_their_byte_budget_whatever_the_reads(lengths, last, skip, block,
                                                                 budget, read):
    """The block reader looks only `BLOCK_BYTES` ahead of each block; here that budget and the
    read size are a few bytes, so that every way a block can end (its line count, its budget,
    a line longer than the budget, the file's end) meets every way a read can end."""
    data = b"".join(b"x" * n + b"\n" for n in lengths) + (b"tail" if last else b"")
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch("helpers.ingest.blocks.BLOCK_BYTES", budget), \
            mock.patch("helpers.ingest.blocks.READ_BYTES", read):
        path = Path(tmp) / "data.jsonl"
        path.write_bytes(data)
        source = FileSource(path, Format("jsonl"), 1, block, skip, Limits())
        got = [(u.first, u.n) for u in source.units() if isinstance(u, Block)]
    assert got == cuts_by_the_rule(data, skip, block, budget)


def array_cuts_by_the_rule(data: bytes, block: int, budget: int) -> list[tuple[int, int]]:
    """(first item, items) of each block of a JSON array as the rule reads: as many items as
    have their separator end within `budget` bytes of the block's first `{` (at least one), up
    to the next multiple of `block` items."""
    separators = list(native.ITEM_BOUNDARY.finditer(data))
    starts = [data.index(b"{")] + [m.end() - 1 for m in separators]
    cuts, index = [], 0
    while index < len(starts):
        room = block - index % block
        within = sum(1 for m in separators[index:] if m.end() - starts[index] <= budget)
        n = min(room, max(1, within), len(starts) - index)
        cuts.append((index, n))
        index += n
    return cuts


@settings(max_examples=300, deadline=None)
@given(items=st.lists(st.tuples(st.text("x}", max_size=30),
                                st.sampled_from([",", ", ", ",\n  ", "\n,\n"])),
                      min_size=1, max_size=40),
       block=st.integers(1, 7), budget=st.integers(1, 120), read=st.integers(8, 90))
def test_array_blocks_are_cut_by_their_byte_budget_whatever_the_reads(items, block, budget, read):
    """The same for the items of a JSON array (the first read must reach the first item: a
    file that starts otherwise goes to the row-by-row reader); a `}` in a string, and items
    separated in several ways in one file, must not fool the cutter's count."""
    body = "".join(f'{{"a":"{text}"}}{sep}' for text, sep in items[:-1])
    data = f'[\n  {body}{{"a":"{items[-1][0]}"}}\n]\n'.encode()
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch("helpers.ingest.blocks.BLOCK_BYTES", budget), \
            mock.patch("helpers.ingest.blocks.READ_BYTES", read):
        path = Path(tmp) / "data.json"
        path.write_bytes(data)
        source = FileSource(path, Format("json_array"), 1, block, 0, Limits())
        got = [(u.first, u.n) for u in source.units() if isinstance(u, Block)]
    assert got == array_cuts_by_the_rule(data, block, budget)


def test_an_array_whose_string_holds_the_item_separator_is_read_right(tmp_path):
    """`}, {` inside a string makes a false cut; the rest of the file goes to the row reader."""
    items = [{"TrackId": i, "Milliseconds": 1, "Bytes": 2} for i in range(1, 40)]
    items[7]["Bytes"] = None
    text = json.dumps(items, indent=2).replace('"Bytes": null', '"Bytes": null, "Note": "x }, { y"')
    folder = tmp_path / "raw" / "track_facts"
    folder.mkdir(parents=True)
    (folder / "facts.json").write_text(text)
    runs = ingest_three_ways(folder, tmp_path)
    assert_same(runs)
    assert len(runs["rows"]["lines"].splitlines()) == 39


@pytest.mark.parametrize("lines, faithful", [
    # An escaped quote before a colon, inside a string, ends no key: the block is still read.
    ([b'{"a":1,"b":"say \\":\\" here"}', b'{"a":2,"b":null}'], True),
    ([b'{"a":1,"b":"x"}', b'{"a":2,"b":"y","b":null}'], False),  # Polars keeps "y", orjson null
    ([b'{"a":1,"b":"x"}', b'{"a":2,"b":"y"}'], True),
    ([b'{"a":1,"k\\\\":2}'], False),  # a key ending in an escaped backslash
    ([b'{"a":1,"\\u0062":2}'], False),  # a key written with a \u escape
    ([b'{"a":1,"b":"\\ud800"}'], False),  # a lone surrogate, escaped
    ([b'{"a":1,"b":"caf\\u00e9 \\"x\\""}'], True),  # escapes in a value only
])
@pytest.mark.parametrize("null_search", [native.NULL_SEARCH_BYTES, 0])  # 0: every null "late"
def test_a_json_block_is_read_faithfully_only_when_polars_reads_what_orjson_reads(lines, faithful,
                                                                                 null_search):
    block = b"".join(line + b"\n" for line in lines)
    frame = native.read_lines(block)
    with mock.patch.object(native, "NULL_SEARCH_BYTES", null_search):
        assert native._read_faithfully(block, frame, lines_are_records=True) is faithful


def test_fingerprints_are_one_per_line_even_with_odd_bytes():
    lines = [b'{"a":"x\\u0001"}', b'{"a":1}', b'{"a":1}', b"{}"]
    blob = b"".join(line + b"\n" for line in lines)
    hashes = native.fingerprints(blob, len(lines)).to_list()
    assert len(hashes) == 4 and hashes[1] == hashes[2] and len(set(hashes)) == 3
    odd = b"\x01" + blob  # the byte the fast split uses: the slow split must agree
    assert len(native.fingerprints(odd, 4)) == 4


def test_options_record_names_the_fingerprint_function():
    record = dataset_pass.option_record(Options())
    assert record["fingerprints"].startswith("polars-")


CSV_SPEC = native.CsvSpec(",", '"', 2, (native.Column("id", "integer", False),
                                        native.Column("name", "text", True)), (0, 1))
JSON_SPEC = native.JsonSpec((native.Column("id", "integer", False),
                             native.Column("name", "text", True)))


def test_crlf_blocks_are_read_as_their_lf_twins():
    """Polars reads \\r\\n as the normalizer does: the block is taken natively, unchanged."""
    lf = native.csv_lines(b'1,a\n2,"b c"\n3,\n', 3, CSV_SPEC)
    assert lf is not None
    assert native.csv_lines(b'1,a\r\n2,"b c"\r\n3,\r\n', 3, CSV_SPEC)[0] == lf[0]
    lf = native.jsonl_lines(b'{"id":1,"name":"a"}\n{"id":2}\n', 2, JSON_SPEC)
    assert lf is not None
    assert native.jsonl_lines(b'{"id":1,"name":"a"}\r\n{"id":2}\r\n', 2, JSON_SPEC)[0] == lf[0]


ONE_COLUMN = native.CsvSpec(",", '"', 1, (native.Column("name", "text", True),), (0,))


@pytest.mark.parametrize("block, spec", [
    (b"1,a\r2,b\r\n", CSV_SPEC),  # a lone CR: a line break to the normalizer
    (b'1,"a\rb"\r\n', CSV_SPEC),  # ...even inside quotes, where Polars keeps it in the value
    (b"1,a\rb\n2,c\n", CSV_SPEC),  # ...or inside a field with no quotes, the fields counting right
    (b"a\rb\n", ONE_COLUMN),
    (b'"a\rb"\n', ONE_COLUMN),
    (b"a\r\n\r\nb\r\n", ONE_COLUMN),  # a blank line: Polars reads an empty record
    (b"\r\na\r\n", ONE_COLUMN),
    (b"1,a\n\n2,b\n", CSV_SPEC),  # with two fields, counted: a blank line has no delimiter
    (b'\r\n1,"a"\r\n', CSV_SPEC),
])
def test_csv_blocks_with_line_breaks_polars_reads_otherwise_go_to_the_normalizer(block, spec):
    """n counted as the block reader counts lines: by their \n."""
    assert native.csv_lines(block, block.count(b"\n"), spec) is None


def test_a_json_line_holding_a_raw_cr_goes_to_the_normalizer():
    """A raw CR inside a string is a control character orjson refuses; between two tokens it is
    white space to Polars and a line break to the normalizer."""
    assert native.jsonl_lines(b'{"id":1,"name":"a\rb"}\n', 1, JSON_SPEC) is None
    assert native.jsonl_lines(b'{"id":1,"name":"a"}\n', 1, JSON_SPEC) is not None
    assert native.jsonl_lines(b'{"id":1,\r"name":"a"}\n', 1, JSON_SPEC) is None


LETTERS = native.JsonSpec((native.Column("a", "text", True),)
                          + tuple(native.Column(k, "integer", True) for k in "bcd"))


@pytest.mark.parametrize("block", [
    b'{"a":"x"\n"b":2}\n{"c":1},{"d":2}\n{"a":"y"}\n',  # an object over two lines, two on one
    b'{"c":1},{"d":2}\n{"a":"x"\n"b":2}\n',
    b'{"a":"x"}\n{"c":1},{"d":2}\n{"b":2\n"a":"y"}',  # ...the last line without a line break
    b'{"a":"}\n{"}\n{"c":1},{"d":2}\n',  # a string over two lines: "},{" to Polars
])
def test_json_lines_holding_other_than_one_object_each_go_to_the_normalizer(block):
    """Read as an array's items, these make as many objects as lines, each key counted once:
    only the lines' starts and ends tell that the normalizer rejects lines Polars would read."""
    n = block.count(b"\n") + (not block.endswith(b"\n"))
    assert native.jsonl_lines(block, n, LETTERS) is None
    good = b'{"a":"x","b":2}\n' * n
    assert native.jsonl_lines(good, n, LETTERS) is not None


@pytest.mark.parametrize("block, n, native_ok", [
    # Nulls, and no key twice: taken, also when the objects share a line.
    (b'{"id":1,"name":null},{"id":2,"name":"x"}', 2, True),
    (b'{\n  "id": 1,\n  "name": null\n},\n{\n  "id": 2,\n  "name": "x"\n}', 2, True),
    # A key twice in one object, the second null: Polars keeps "x", orjson null.
    (b'{"id":1,"name":"x","name":null},{"id":2,"name":"y"}', 2, False),
    (b'{"id":1,"name":"}","name":null},{"id":2,"name":"y"}', 2, False),  # a brace between
    (b'{"id":1,"name":"x"}, 5, {"id":2,"name":null}', 2, False),  # an item that is no object
    (b'{"id":1,"name":"a\nb"}', 1, False),  # a raw line break in a string: orjson refuses it
])
def test_array_blocks_are_taken_only_when_polars_reads_what_orjson_reads(block, n, native_ok):
    assert (native.array_lines(block, n, JSON_SPEC) is not None) is native_ok


def test_array_blocks_give_the_lines_of_their_json_lines_twins():
    items = [b'{"id":1,"name":null}', b'{"id":2,"name":"x \\"y\\""}', b'{"id":3}']
    array = native.array_lines(b",\n  ".join(items), 3, JSON_SPEC)
    lines = native.jsonl_lines(b"".join(item + b"\n" for item in items), 3, JSON_SPEC)
    assert array is not None and lines is not None and array[0] == lines[0]


def test_csv_blocks_with_text_polars_reads_otherwise_go_to_the_normalizer():
    stray = b'1,"x"y"z"\n2,b\n'  # the CSV module refuses the record, Polars reads xyz
    assert native.csv_lines(stray, 2, CSV_SPEC) is None
    assert native.csv_lines(b'1,"x""y"\n2,b\n', 2, CSV_SPEC) is not None  # doubled: both agree
    texts = (native.Column("name", "text", True), native.Column("note", "text", True))
    commented = native.CsvSpec(",", '"', 2, texts, (0, 1), comment="#")
    assert native.csv_lines(b"a,b\n#c,d\n", 2, commented) is None  # a comment is no record
    assert native.csv_lines(b"a,b\nc,d\n", 2, commented) is not None


@settings(max_examples=300, deadline=None)
@given(buf=st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"ab"]), max_size=12).map(b"".join),
       start=st.integers(0, 6), eof=st.booleans())
def test_a_lone_cr_is_found_as_a_plain_scan_finds_it(buf, start, eof):
    """A \\r followed by anything but \\n; one that ends the buffer only when the file ends
    there (before, it may be half of a \\r\\n split by a read)."""
    lone = any(buf[i:i + 1] == b"\r" and (buf[i + 1:i + 2] not in (b"\n", b"") or
                                          (eof and i == len(buf) - 1))
               for i in range(start, len(buf)))
    assert blocks._lone_cr(buf, start, eof) is lone


@settings(max_examples=400, deadline=None)
@given(lengths=st.lists(st.sampled_from([0, 1, 2, 7, 40, 300]), min_size=40, max_size=600),
       cut=st.tuples(st.integers(0, 3), st.integers(0, 3)), data=st.data())
def test_nth_newline_finds_the_newline_a_plain_scan_finds(lengths, cut, data):
    """Lines of uneven lengths, so that the interpolated guess misses by many lines (and
    enough of them that it is made: the last 32 are found one by one)."""
    buf = b"\n".join(b"x" * k for k in lengths) + b"\n"
    start, end = cut[0], len(buf) - cut[1]
    newlines = [i for i in range(start, end) if buf[i] == 10]
    assume(newlines)
    n = data.draw(st.integers(1, len(newlines)))
    assert blocks._nth_newline(buf, n, len(newlines), start, end) == newlines[n - 1]


def test_nth_newline_takes_line_lengths_from_the_bytes_there_are():
    """A block's byte budget may reach past what was read so far: the guess must not assume
    lines as long as budget / lines, or it walks back one line at a time."""
    buf = b"1,2\n" * 40_000
    calls = []
    real_rfind = bytes.rfind

    class Counting(bytes):
        def rfind(self, *args):
            calls.append(args)
            return real_rfind(self, *args)

    at = blocks._nth_newline(Counting(buf), 20_000, 40_000, 0, 1 << 20)
    assert at == 20_000 * 4 - 1
    assert len(calls) < 100, f"{len(calls)} rfind calls to find one newline"
