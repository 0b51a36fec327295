"""End to end against make-raw's ground truth: messy files in, exact counts and records out."""

import gzip
import sqlite3
from collections import Counter

import orjson
import pytest

from helpers.chinook.datasets import DATASETS
from helpers.cli import main
from helpers.errors import InputError
from helpers.fs import sha256_of
from helpers.ingest.dataset_pass import Options
from helpers.ingest.engine import ingest
from helpers.ingest.writer import member_digests
from helpers.rawgen.generate import make_raw

from .ingest_util import read_lines

SCALE = 3
FAULT_REASONS = {
    "truncated_json": "invalid JSON",
    "too_many_fields": "too many fields",
    "non_numeric_id": "is not an integer",
    "missing_required": "is required but empty",
}


@pytest.fixture(scope="module")
def raw(chinook_db, tmp_path_factory):
    out = tmp_path_factory.mktemp("raw")
    return out, make_raw(chinook_db, out, scale=SCALE, faults=True)


@pytest.fixture(scope="module")
def ingested(raw, tmp_path_factory):
    folder, truth = raw
    out = tmp_path_factory.mktemp("processed")
    manifest = ingest(folder, out, options=Options(chunk_rows=1000), progress=False,
                      log_dir=None)
    return out, manifest, truth


def expected_lines(db, name: str) -> list[bytes]:
    dataset = DATASETS[name]
    rows = sqlite3.connect(db).execute(dataset.source_sql).fetchall()
    return [orjson.dumps(dict(zip(dataset.columns, row))) for row in rows]


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_counts_match_the_ground_truth_exactly(ingested, name):
    _, manifest, truth = ingested
    entry, want = manifest[name], truth["datasets"][name]
    assert entry["rows_written"] == want["rows"]
    assert entry["rows_rejected"] == len(want["faults"])
    assert entry["rows_read"] == want["rows"] + len(want["faults"])
    assert entry["distinct_rows"] == want["distinct_rows"]
    assert entry["duplicates"] == want["rows"] - want["distinct_rows"]
    assert entry["duplicates_exact"] is True
    assert entry["columns"] == want["columns"] and entry["drifted_columns"] == []


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_output_holds_exactly_the_source_rows_scale_times(ingested, chinook_db, name):
    out, _, _ = ingested
    lines = read_lines(out / f"{name}.json.gz")
    assert Counter(lines) == Counter(expected_lines(chinook_db, name) * SCALE)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_injected_fault_is_rejected_with_its_file_line_and_reason(ingested, name):
    out, _, truth = ingested
    rejects = [orjson.loads(x) for x in read_lines(out / "_rejects" / f"{name}.jsonl.gz")]
    got = sorted((r["file"], r["line"]) for r in rejects)
    faults = truth["datasets"][name]["faults"]
    assert got == sorted((f["file"], f["line"]) for f in faults)
    by_place = {(r["file"], r["line"]): r for r in rejects}
    for fault in faults:
        reject = by_place[(fault["file"], fault["line"])]
        assert FAULT_REASONS[fault["kind"]] in reject["reason"]
        assert reject["raw"].rstrip("\r") == fault["raw"].rstrip("\r")


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_each_file_is_sniffed_as_the_generator_wrote_it(ingested, name):
    _, manifest, truth = ingested
    ours = {f["name"]: f for f in manifest[name]["files"]}
    for want in truth["datasets"][name]["files"]:
        got = ours[want["name"]]
        assert (got["format"], got["delimiter"], got["compression"], got["encoding"]) == (
            want["format"], want["delimiter"], want["compression"], want["encoding"])
        assert got["rows"] == want["rows"] and got["rejected"] == want["faults"]
    skipped = {s["name"] for s in manifest[name]["skipped"]}
    assert skipped == {s["name"] for s in truth["datasets"][name]["skipped"]}


def test_output_is_strict_json_utf8_with_no_timestamp(ingested, chinook_db):
    out, manifest, _ = ingested
    names = [r[0] for r in sqlite3.connect(chinook_db).execute("SELECT Name FROM tracks")]
    accented = next(n for n in names if not n.isascii())
    data = (out / "tracks.json.gz").read_bytes()
    assert data[:2] == b"\x1f\x8b" and data[4:8] == b"\0\0\0\0"  # mtime 0
    text = gzip.decompress(data)
    assert b"NaN" not in text and b"Infinity" not in text and b"\\u" not in text
    assert orjson.dumps(accented) in text  # raw UTF-8, not \\u escapes
    record = orjson.loads(text.split(b"\n", 1)[0])
    assert list(record) == DATASETS["tracks"].columns
    assert all(type(record[c]) is int for c in ("TrackId", "MediaTypeId", "Milliseconds"))
    assert manifest["tracks"]["sha256"] and manifest["tracks"]["bytes"] == len(data)


def test_the_manifest_file_is_keyed_by_dataset(ingested):
    out, manifest, _ = ingested
    on_disk = orjson.loads((out / "_manifest.json").read_bytes())
    run = on_disk.pop("_run")  # the one key that is not a dataset: `_` folders never are
    assert sorted(on_disk) == sorted(DATASETS)
    for entry in on_disk.values():
        assert {"rows_read", "rows_written", "rows_rejected", "duplicates", "files", "columns",
                "drifted_columns", "sha256", "bytes", "seconds"} <= set(entry)
    assert run["status"] == "complete" and run["ingested"] == sorted(DATASETS)
    assert not (out / ".ingest" / "state").exists()


def test_the_same_input_gives_the_same_members_holding_the_same_lines(raw, ingested, tmp_path):
    folder, _ = raw
    out, manifest, _ = ingested
    again = ingest(folder, tmp_path, options=Options(chunk_rows=1000), jobs=1, progress=False,
                   log_dir=None)
    for name in DATASETS:
        for path in (f"{name}.json.gz", f"_rejects/{name}.jsonl.gz"):
            assert member_digests(tmp_path / path) == member_digests(out / path), path
        assert again[name]["sha256"] == sha256_of([tmp_path / f"{name}.json.gz"])


def test_drop_keeps_first_occurrences_only(raw, chinook_db, tmp_path):
    folder, truth = raw
    manifest = ingest(folder, tmp_path, datasets=["orders"], options=Options(dedupe="drop"),
                      progress=False, log_dir=None)
    lines = read_lines(tmp_path / "orders.json.gz")
    assert sorted(lines) == sorted(expected_lines(chinook_db, "orders"))
    entry = manifest["orders"]
    dropped = truth["datasets"]["orders"]["rows"] - len(lines)
    assert entry["rows_dropped"] == entry["duplicates"] == dropped
    assert entry["rows_read"] == entry["rows_written"] + entry["rows_dropped"] + entry[
        "rows_rejected"]


def test_off_skips_hashing_and_a_tiny_budget_makes_the_count_a_lower_bound(raw, tmp_path):
    folder, truth = raw
    off = ingest(folder, tmp_path / "off", datasets=["orders"], options=Options(dedupe="off"),
                 progress=False, log_dir=None)["orders"]
    assert off["duplicates"] is None and off["distinct_rows"] is None
    tiny = ingest(folder, tmp_path / "tiny", datasets=["orders"],
                  options=Options(dedupe_budget_mb=0), progress=False, log_dir=None)["orders"]
    true_duplicates = truth["datasets"]["orders"]["rows"] - truth["datasets"]["orders"][
        "distinct_rows"]
    assert tiny["duplicates_exact"] is False
    assert 0 <= tiny["duplicates"] < true_duplicates
    assert tiny["rows_written"] == off["rows_written"] == truth["datasets"]["orders"]["rows"]


def test_a_missing_raw_folder_is_one_clear_line_and_exit_1(tmp_path, capsys):
    with pytest.raises(InputError, match="does not exist. Create it with"):
        ingest(tmp_path / "nope", tmp_path / "out", progress=False, log_dir=None)
    code = main(["ingest", "--raw", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
                 "--no-progress", "--log-dir", str(tmp_path / "logs")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "nope: the raw data folder" in err


def test_the_cli_prints_a_summary_and_writes_a_log(raw, tmp_path, capsys):
    folder, truth = raw
    code = main(["ingest", "--raw", str(folder), "--out", str(tmp_path / "o"), "--no-progress",
                 "--dataset", "track_facts", "--log-dir", str(tmp_path / "logs")])
    out = capsys.readouterr().out
    assert code == 0
    rows = truth["datasets"]["track_facts"]["rows"]
    assert "track_facts" in out and f"{rows:,}" in out
    (log,) = (tmp_path / "logs").glob("ingest-*.log")
    assert "skipped _SUCCESS" in log.read_text()


def test_a_full_disk_stops_the_run_with_one_line_and_keeps_the_checkpoint(raw, tmp_path,
                                                                          monkeypatch, capsys):
    import errno

    from helpers.ingest import writer

    folder, _ = raw
    real_write, real_member = writer.MemberWriter.write, writer.MemberWriter.write_member
    calls = {"n": 0}

    def filling_up(real):
        def write(self, data):
            calls["n"] += 1
            if calls["n"] > 3:
                raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
            real(self, data)
        return write

    monkeypatch.setattr(writer.MemberWriter, "write", filling_up(real_write))
    monkeypatch.setattr(writer.MemberWriter, "write_member", filling_up(real_member))
    out = tmp_path / "o"
    code = main(["ingest", "--raw", str(folder), "--out", str(out), "--dataset", "tracks",
                 "--chunk-rows", "500", "--checkpoint-rows", "500", "--jobs", "1",
                 "--no-progress", "--log-dir", str(tmp_path / "logs")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "tracks.json.gz.part: No space left on device while ingesting tracks" in err
    assert "run the same command again" in err
    assert (out / ".ingest" / "state" / "tracks.json").exists()
    monkeypatch.undo()
    assert main(["ingest", "--raw", str(folder), "--out", str(out), "--dataset", "tracks",
                 "--chunk-rows", "500", "--checkpoint-rows", "500", "--jobs", "1",
                 "--no-progress", "--log-dir", str(tmp_path / "logs")]) == 0
    manifest = orjson.loads((out / "_manifest.json").read_bytes())
    assert any(e.startswith("resuming at file") for e in manifest["tracks"]["events"])
