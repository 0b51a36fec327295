"""Incremental ingestion (issue #17): after a complete run, files added to a dataset folder are
read alone and appended to the output as new gzip members. The old bytes stay a prefix, the
lines equal a clean run's as a multiset with the same counts, a kill during the append resumes
to the same members holding the same lines, and a changed or vanished file rebuilds the dataset,
or with --append-only stops the run before anything is touched."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import orjson
import pytest

from helpers.fs import sha256_of
from helpers.ingest import dataset_pass
from helpers.ingest.dataset_pass import AppendRefused, Options
from helpers.ingest.engine import ingest
from helpers.ingest.manifest import read_manifest
from helpers.ingest.writer import member_digests
from helpers.rawgen.generate import make_raw
from tests.crash_util import SMALL_CHUNKS, kill_on_call, run_to_completion

COUNTS = ("rows_read", "rows_written", "rows_rejected", "rows_dropped", "duplicates",
          "duplicates_exact", "distinct_rows", "blank_lines", "comment_lines", "columns")
# Hand-written, in the shapes a later export takes: another delimiter, a JSON Lines file, a
# repeat of rows already seen (duplicates must count against the earlier files), a bad record.
NEW_TRACKS = {
    "tracks_7.csv": (b"TrackId;Name;AlbumId;MediaTypeId;GenreId;Composer;Milliseconds;Bytes;"
                     b"UnitPrice\r\n9001;New song;1;1;1;Someone;200000;4000000;0.99\r\n"
                     b"9002;Bad length;1;1;1;;forever;1;0.99\r\n"),
    "tracks_8.jsonl": (b'{"TrackId": 9003, "Name": "Later", "AlbumId": 1, "MediaTypeId": 1, '
                       b'"GenreId": 1, "Composer": null, "Milliseconds": 1, "Bytes": 2, '
                       b'"UnitPrice": 0.99}\n'),
}


@pytest.fixture(scope="module")
def generated(chinook_db, tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("incremental") / "raw"
    make_raw(chinook_db, raw, 3, seed=5, faults=True)
    return raw


@pytest.fixture
def raw(generated, tmp_path) -> Path:
    copy = tmp_path / "raw"
    shutil.copytree(generated, copy)
    return copy


def add_files(raw: Path) -> None:
    first = sorted((raw / "tracks").glob("tracks_0.*"))[0].read_bytes()
    (raw / "tracks" / "tracks_9_repeat.csv").write_bytes(first)  # every row a duplicate
    for name, body in NEW_TRACKS.items():
        (raw / "tracks" / name).write_bytes(body)


def lines(path: Path) -> list[bytes]:
    return sorted(gzip.decompress(path.read_bytes()).splitlines())


def run(raw: Path, out: Path, **kwargs) -> dict:
    return ingest(raw, out, jobs=1, progress=False, options=Options(chunk_rows=500,
                                                                    checkpoint_rows=1500),
                  **kwargs)


def test_a_new_file_is_read_alone_and_appended_as_a_clean_run_would_count_it(raw, tmp_path,
                                                                             monkeypatch):
    out = tmp_path / "out"
    run(raw, out)
    before = (out / "tracks.json.gz").read_bytes()
    rejects_before = (out / "_rejects" / "tracks.jsonl.gz").read_bytes()
    add_files(raw)
    read = []
    real = dataset_pass.FileSource
    monkeypatch.setattr(dataset_pass, "FileSource",
                        lambda path, *a, **k: read.append(path.name) or real(path, *a, **k))
    manifest = run(raw, out)
    monkeypatch.undo()
    assert sorted(read) == ["tracks_7.csv", "tracks_8.jsonl", "tracks_9_repeat.csv"]
    assert manifest.run["ingested"] == ["tracks"]
    after = (out / "tracks.json.gz").read_bytes()
    assert after.startswith(before) and len(after) > len(before)  # a consumer can tail it
    assert (out / "_rejects" / "tracks.jsonl.gz").read_bytes().startswith(rejects_before)

    clean = run(raw, tmp_path / "clean")
    assert lines(out / "tracks.json.gz") == lines(tmp_path / "clean" / "tracks.json.gz")
    for key in COUNTS:
        assert manifest["tracks"][key] == clean["tracks"][key], key
    assert [f["name"] for f in manifest["tracks"]["files"]][-3:] == [
        "tracks_7.csv", "tracks_8.jsonl", "tracks_9_repeat.csv"]
    history = manifest["tracks"]["history"]
    assert [h["kind"] for h in history] == ["full", "append"]
    assert history[1]["files"] == ["tracks_7.csv", "tracks_8.jsonl", "tracks_9_repeat.csv"]
    repeated = clean["tracks"]["files"][0]
    assert history[1]["rows"] == repeated["rows"] + 2
    assert history[1]["rejected"] == repeated["rejected"] + 1
    assert read_manifest(out)[1]["tracks"]["history"] == history


def test_appending_with_dedupe_drop_drops_what_the_earlier_files_held(raw, tmp_path):
    out = tmp_path / "out"
    ingest(raw, out, jobs=1, progress=False, options=Options(dedupe="drop"))
    add_files(raw)
    appended = ingest(raw, out, jobs=1, progress=False, options=Options(dedupe="drop"))
    clean = ingest(raw, tmp_path / "clean", jobs=1, progress=False,
                   options=Options(dedupe="drop"))
    assert appended["tracks"]["rows_written"] == clean["tracks"]["rows_written"]
    assert lines(out / "tracks.json.gz") == lines(tmp_path / "clean" / "tracks.json.gz")


@pytest.mark.parametrize("change, reason", [
    ("rewritten", "tracks_1.json changed since it was ingested"),
    ("removed", "tracks_1.json disappeared since it was ingested"),
    ("new column", "new files bring columns the output does not have (Mood)"),
])
def test_a_changed_or_vanished_file_rebuilds_and_says_why(raw, tmp_path, change, reason):
    out = tmp_path / "out"
    run(raw, out)
    old = raw / "tracks" / "tracks_1.json"
    if change == "rewritten":
        old.write_bytes(old.read_bytes().replace(b"\n", b"\n\n", 1))
    elif change == "removed":
        old.unlink()
    else:
        (raw / "tracks" / "tracks_7.csv").write_bytes(
            b"TrackId,Name,AlbumId,MediaTypeId,GenreId,Composer,Milliseconds,Bytes,UnitPrice,"
            b"Mood\n9001,A,1,1,1,,1,2,0.99,calm\n")
    manifest = run(raw, out)
    assert f"rebuilding: {reason}" in manifest["tracks"]["events"]
    assert [h["kind"] for h in manifest["tracks"]["history"]] == ["full"]
    assert lines(out / "tracks.json.gz") == lines(run(raw, tmp_path / "clean") and
                                                  tmp_path / "clean" / "tracks.json.gz")


def test_append_only_refuses_a_changed_file_and_touches_nothing(raw, tmp_path):
    out = tmp_path / "out"
    run(raw, out)
    add_files(raw)
    old = raw / "tracks" / "tracks_1.json"
    old.write_bytes(old.read_bytes() + b"\n")
    snapshot = {p: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(out.rglob("*")) if p.is_file() and "logs" not in p.parts}
    with pytest.raises(AppendRefused) as refused:
        run(raw, out, append_only=True)
    assert refused.value.message.startswith(
        f"{out}: --append-only, but these datasets would be rebuilt: tracks (tracks_1.json "
        "changed since it was ingested)")
    assert "Nothing was changed" in refused.value.message
    assert snapshot == {p: hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted(out.rglob("*")) if p.is_file() and "logs" not in p.parts}


def test_append_only_appends_when_only_files_were_added(raw, tmp_path):
    out = tmp_path / "out"
    run(raw, out)
    add_files(raw)
    manifest = run(raw, out, append_only=True)
    assert [h["kind"] for h in manifest["tracks"]["history"]] == ["full", "append"]


# A kill at exact moments of an append: while reading the new files, while the finished files
# move back to their working places, and while the finished output moves into place again.
@pytest.mark.parametrize("target, nth", [
    ("helpers.ingest.normalize:Normalizer.chunk", 2),
    ("helpers.ingest.normalize:Normalizer.chunk", 4),
    ("helpers.ingest.dataset_pass:replace_durably", 1),
    ("helpers.ingest.dataset_pass:replace_durably", 2),
    ("helpers.ingest.dataset_pass:replace_durably", 3),
    ("helpers.ingest.dataset_pass:replace_durably", 5),
    ("helpers.ingest.checkpoint:write", 1),
])
def test_a_kill_during_an_append_resumes_to_the_same_members(raw, tmp_path, target, nth):
    args = lambda out: ["ingest", "--raw", str(raw), "--out", str(out), "--no-progress",  # noqa: E731
                        "--dataset", "tracks", "--jobs", "1", *SMALL_CHUNKS]
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    run_to_completion(args(killed))
    shutil.copytree(killed, reference)
    before = (killed / "tracks.json.gz").read_bytes()
    add_files(raw)
    run_to_completion(args(reference))
    kill_on_call(target, nth, args(killed))
    run_to_completion(args(killed))
    for name in ("tracks.json.gz", "_rejects/tracks.jsonl.gz"):
        assert member_digests(killed / name) == member_digests(reference / name), name
    assert (killed / "tracks.json.gz").read_bytes().startswith(before)
    ours, theirs = (orjson.loads((d / "_manifest.json").read_bytes())["tracks"]
                    for d in (killed, reference))
    for key in COUNTS:
        assert ours[key] == theirs[key], key
    assert ours["sha256"] == sha256_of([killed / "tracks.json.gz"])
    assert [h["files"] for h in ours["history"]] == [h["files"] for h in theirs["history"]]
