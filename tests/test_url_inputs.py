"""Raw folders by URL (issue #16): a raw folder in an S3 bucket, served by moto's S3 server on
127.0.0.1, is ingested with the same lines, rejects and counts as the same folder on disk; a
`file://` URL is a local path; a missing URL or a protocol without its package is one clear
error."""

from __future__ import annotations

import gzip
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.cli import main
from helpers.errors import InputError
from helpers.ingest import location
from helpers.ingest.engine import ingest
from helpers.ingest.location import RemotePath, raw_location
from helpers.ingest.manifest import read_manifest
from helpers.rawgen.generate import make_raw

pytest.importorskip("s3fs", reason="the url extra (s3fs) is not installed")
moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")

BUCKET = "raw-exports"
# What differs between a folder on disk and the same files in a bucket: mtimes (and so the
# signature), timing, and the log of what happened.
DIFFERS = ("signature", "seconds", "events", "history")


@pytest.fixture(scope="module")
def endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint, monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    location._FILESYSTEMS.clear()  # a filesystem made before the endpoint was set
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    yield fs
    location._FILESYSTEMS.clear()


@pytest.fixture(scope="module")
def local_raw(chinook_db, tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("url") / "raw"
    make_raw(chinook_db, raw, 2, seed=7, faults=True)
    return raw


def upload(fs, local: Path, prefix: str) -> str:
    for path in sorted(local.rglob("*")):
        if path.is_file():
            fs.put_file(str(path), f"{BUCKET}/{prefix}/{path.relative_to(local).as_posix()}")
    return f"s3://{BUCKET}/{prefix}"


def comparable(manifest: dict) -> dict:
    return {name: {k: v for k, v in entry.items() if k not in DIFFERS}
            for name, entry in manifest.items()}


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_bucket_is_ingested_as_the_same_folder_on_disk(s3, local_raw, tmp_path, jobs):
    url = upload(s3, local_raw, f"raw-{jobs}")
    from_disk = ingest(local_raw, tmp_path / "disk", jobs=jobs, progress=False)
    from_s3 = ingest(url, tmp_path / "s3", jobs=jobs, progress=False)
    assert comparable(from_s3) == comparable(from_disk)
    for name in from_disk:
        for rel in (f"{name}.json.gz", f"_rejects/{name}.jsonl.gz"):
            assert gzip.decompress((tmp_path / "s3" / rel).read_bytes()) == \
                gzip.decompress((tmp_path / "disk" / rel).read_bytes()), rel
    assert from_s3.run["raw"] == url


def test_a_bucket_is_up_to_date_the_second_time_and_a_new_object_is_appended(s3, local_raw,
                                                                            tmp_path):
    url = upload(s3, local_raw, "raw-again")
    out = tmp_path / "out"
    ingest(url, out, jobs=1, progress=False)
    assert ingest(url, out, jobs=1, progress=False).run["ingested"] == []
    s3.pipe_file(f"{BUCKET}/raw-again/orders/orders_9.jsonl",
                 b'{"InvoiceLineId": 99999, "InvoiceId": 1, "TrackId": 1, "UnitPrice": 0.99, '
                 b'"Quantity": 1, "CustomerId": 2}\n')
    again = ingest(url, out, jobs=1, progress=False)
    assert again.run["ingested"] == ["orders"]
    assert [h["kind"] for h in again["orders"]["history"]] == ["full", "append"]


def test_the_cli_takes_a_url(s3, local_raw, tmp_path, capsys):
    url = upload(s3, local_raw, "raw-cli")
    assert main(["ingest", "--raw", url, "--out", str(tmp_path / "out"), "--no-progress",
                 "--dataset", "tracks"]) == 0
    assert "tracks" in capsys.readouterr().out
    assert (tmp_path / "out" / "tracks.json.gz").exists()


def test_a_missing_bucket_folder_is_one_clear_error(s3, tmp_path, capsys):
    assert main(["ingest", "--raw", f"s3://{BUCKET}/nothing-here", "--out",
                 str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the raw data folder does not exist" in err


def test_file_urls_are_local_paths_and_remote_paths_pickle_as_their_url(tmp_path):
    assert raw_location(f"file://{tmp_path}") == tmp_path
    assert raw_location(str(tmp_path)) == tmp_path
    remote = raw_location("s3://bucket/raw/")
    assert isinstance(remote, RemotePath) and remote.url == "s3://bucket/raw"
    assert (remote / "tracks").name == "tracks"
    assert pickle.loads(pickle.dumps(remote / "tracks")) == RemotePath("s3://bucket/raw/tracks")


def test_a_protocol_without_its_package_says_what_to_install(monkeypatch):
    location._FILESYSTEMS.clear()
    with pytest.raises(InputError) as error:
        RemotePath("nosuchprotocol://bucket/raw").is_dir()
    assert "fsspec cannot read nosuchprotocol://" in error.value.message


def test_the_spark_engine_reads_a_bucket_as_the_local_engine_reads_the_disk(s3, local_raw,
                                                                           tmp_path):
    """In a process of its own, so that its JVM and Python workers start with the endpoint in
    their environment, as they would on a cluster configured for S3."""
    from tests.spark_cluster_util import (
        SHARED_KEYS,
        local_lines,
        shared,
        skip_without_spark,
        spark_lines,
    )

    skip_without_spark()
    url = upload(s3, local_raw, "raw-spark")
    from_disk = ingest(local_raw, tmp_path / "disk", jobs=1, progress=False)
    done = subprocess.run([sys.executable, "-m", "helpers", "ingest", "--engine", "spark",
                           "--master", "local[2]", "--raw", url, "--out", str(tmp_path / "s3"),
                           "--no-progress"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run, from_s3 = read_manifest(tmp_path / "s3")
    assert run["engine"] == "spark" and run["raw"] == url
    for name, entry in from_disk.items():
        assert spark_lines(tmp_path / "s3" / name) == local_lines(tmp_path / "disk" /
                                                                  f"{name}.json.gz")
        for key in SHARED_KEYS:
            assert shared(from_s3[name], key) == entry[key], (name, key)
