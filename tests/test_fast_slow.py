"""The normalizer's fast (column-at-a-time) and slow (row-by-row) paths give the same results.

Hypothesis writes small files (CSV, JSON Lines, JSON arrays) of mostly valid rows with hostile
values planted among them, sniffs and reads them like `ingest` does, and normalizes every chunk
twice, over two fresh schemas: once with `fast=True` and once with `fast=False`. Lines, rejects
(file, line, reason, raw) and the learned columns must be identical.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from helpers.ingest.normalize import Normalizer
from helpers.ingest.readers import read_chunks
from helpers.ingest.schema import map_header, schema_for
from helpers.ingest.sniff import DATA_KINDS, sniff
from tests.fuzz_util import memory_cap as memory_cap  # a fixture

DATASETS = ["track_facts", "orders", "tracks", "things"]
THINGS = ["id", "name", "Price", "when"]
HOSTILE_TEXT = [
    '"', '""', 'a,b', 'a;b', 'x\ny', 'x\r\ny', 'x\ry', '\r', '\n', '\x00', 'a\x00b', '9' * 19,
    '9' * 20, '9' * 25, '9' * 400, '9223372036854775807', '9223372036854775808',
    '-9223372036854775808', '-9223372036854775809', '1.0', '1.5', '1e3', '1E3', '1e400',
    ' 7 ', '\t7', '+7', '007', '0x10', '1_000', '\uff11\uff12', '\u0663', 'NaN', 'nan', 'inf',
    '-inf', 'Infinity', '-0', '-0.0', '0.', '.5', '-.5', '0.1234567890123456',
    '123456789012345.5', '1234567890123456.5', '', ' ', 'caf\u00e9', '\u2028', '\x85', '\ufeff',
    'true', 'null', '#', '# note', "'", "'a,b'", '\\', '\\"', '\U0001f600',
]
HOSTILE_JSON = [
    None, True, False, 0, -0.0, 1.0, 1.5, 1e3, 1e300, float("nan"), float("inf"), 2**63 - 1,
    2**63, -(2**63), -(2**63) - 1, 10**30, 10**400, [], [1, 2], [[1], {"a": None}], {},
    {"k": [1]}, "", " 7 ", "007", "1e3", "0x10", "12", "-0", "x\ny", "\x00", "\ud800",
]
KINDS = {
    "integer": st.integers(-(2**63), 2**63 - 1),
    "number": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**6, 10**6),
    "text": st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=6),
}
pytestmark = pytest.mark.usefixtures("memory_cap")

FAST_SLOW = settings(max_examples=200, deadline=None,
                     phases=[p for p in Phase if p != Phase.explain],
                     suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])


def columns_of(dataset: str) -> list[tuple[str, str]]:
    if dataset == "things":
        return [(name, "text") for name in THINGS]
    return [(c.name, c.kind) for c in schema_for(dataset).columns]


@st.composite
def tables(draw) -> tuple[str, str, list[str], list[list]]:
    """(dataset, format, header, rows): valid rows with a few hostile values planted."""
    dataset = draw(st.sampled_from(DATASETS))
    kind = draw(st.sampled_from(["csv", "csv", "jsonl", "json_array"]))
    columns = columns_of(dataset)
    if draw(st.booleans()):  # drop a column, or add one the dataset does not declare
        columns = draw(st.permutations(columns))[:draw(st.integers(1, len(columns)))]
    if draw(st.booleans()):
        columns = [*columns, ("Extra", "text")]
    names = st.sampled_from(["{}", "{}_1", "t.{}", "\udc80{}", " {} ", ""])
    header = [draw(st.sampled_from([n, n.lower(), n.upper()]) | names.map(n.format))
              for n, _ in columns]
    if draw(st.booleans()):  # the same name twice, as written or in another case
        header[-1] = draw(st.sampled_from([header[0], header[0].upper()]))
    n_rows = draw(st.integers(1, 12))
    rows = [[draw(KINDS[k] if k in KINDS else KINDS["text"]) for _, k in columns]
            for _ in range(n_rows)]
    hostile = st.sampled_from(HOSTILE_TEXT if kind == "csv" else HOSTILE_JSON + HOSTILE_TEXT)
    for _ in range(draw(st.integers(0, 4))):
        row = draw(st.integers(0, n_rows - 1))
        col = draw(st.integers(0, len(columns) - 1))
        rows[row][col] = draw(hostile)
    if kind != "csv" and draw(st.booleans()):  # records that leave keys out, or are no object
        for _ in range(draw(st.integers(1, 3))):
            row = draw(st.integers(0, n_rows - 1))
            short = rows[row][:-1] if isinstance(rows[row], list) else []
            rows[row] = draw(st.sampled_from([short, None, [1], "x", 3]))
    return dataset, kind, header, rows


def render(kind: str, header: list[str], rows: list, ending: str, quote_all: bool) -> bytes:
    if kind == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator=ending,
                            quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
        writer.writerow(header)
        writer.writerows([[v if isinstance(v, str) else repr(v) for v in row] for row in rows])
        return out.getvalue().encode("utf-8", "surrogatepass")
    records = [dict(zip(header, r)) if isinstance(r, list) else r for r in rows]
    if kind == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=quote_all) + "\n" for r in records)
    else:
        text = json.dumps(records, indent=1 if quote_all else None, ensure_ascii=quote_all)
    return text.encode("utf-8", "surrogatepass")


def normalize_twice(path: Path, chunk_rows: int):
    """The results of both paths, chunk by chunk, and the columns each schema learned."""
    fmt = sniff(path)
    if fmt.kind not in DATA_KINDS:
        return fmt, [], [], [], []
    dataset = path.parent.name
    results, names = [], []
    for fast in (True, False):
        schema = schema_for(dataset)
        map_header(fmt.header, schema)  # as ingest does: header columns known up front
        normalizer = Normalizer(schema, fmt, path.name, fast=fast)
        out = []
        for chunk in read_chunks(path, fmt, chunk_rows):
            r = normalizer.chunk(chunk)
            out.append((r.lines, [(x.file, x.line, x.reason, x.raw) for x in r.rejects],
                        (r.blank, r.comments, r.fallbacks)))
        results.append(out)
        names.append(schema.names)
    return fmt, results[0], results[1], names[0], names[1]


@FAST_SLOW
@given(table=tables(), chunk_rows=st.integers(1, 8), ending=st.sampled_from(["\n", "\r\n"]),
       quote_all=st.booleans())
def test_fast_and_slow_paths_agree(table, chunk_rows, ending, quote_all):
    dataset, kind, header, rows = table
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / dataset / ("data.csv" if kind == "csv" else "data.json")
        path.parent.mkdir()
        path.write_bytes(render(kind, header, rows, ending, quote_all))
        fmt, fast, slow, fast_names, slow_names = normalize_twice(path, chunk_rows)
    assume(fmt.kind in DATA_KINDS)  # a tiny file of control bytes is rightly 'binary'
    assert len(fast) == len(slow)
    for i, (f, s) in enumerate(zip(fast, slow)):
        assert f[0] == s[0], f"chunk {i}: lines differ"
        assert f[1] == s[1], f"chunk {i}: rejects differ"
        assert f[2] == s[2], f"chunk {i}: counts differ"
    assert fast_names == slow_names
