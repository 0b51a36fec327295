"""Where raw files live: a local folder, or any URL fsspec can read (`s3://`, `gs://`, ...).

The readers need little of a path: its name, size and modification time, its entries, and a
binary stream. `RemotePath` gives exactly that for an fsspec URL, in `pathlib.Path`'s own words,
so the same code reads a local folder and a bucket; `raw_location` picks one or the other. The
output folder stays local: atomic renames, fsync and locks are what make ingestion crash-safe,
and object stores have none of them.

fsspec and its protocol packages (s3fs for `s3://`) are needed only for URLs: install the `url`
extra. Credentials come the usual way of each protocol (for S3: the AWS environment variables,
`~/.aws`, or an instance role); `AWS_ENDPOINT_URL` points s3fs at another endpoint (MinIO,
moto).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from helpers.errors import InputError


def raw_location(raw: str | Path) -> Path | RemotePath:
    """A local `Path` for a path or a `file://` URL; a `RemotePath` for any other URL."""
    text = os.fspath(raw) if not isinstance(raw, str) else raw
    if "://" not in text:
        return Path(text)
    if text.startswith("file://"):
        return Path(text[len("file://"):])
    return RemotePath(text.rstrip("/"))


def open_raw(path: str | Path | RemotePath) -> IO[bytes]:
    """A raw file's bytes, wherever it lives."""
    return open(path, "rb") if isinstance(path, str) else path.open("rb")


@dataclass(frozen=True)
class Stat:
    st_size: int
    st_mtime_ns: int


class RemotePath:
    """A file or folder behind an fsspec URL, with the part of `pathlib.Path` the readers use.

    Pickles as its URL: worker processes and Spark executors open their own connection.
    """

    def __init__(self, url: str, info: dict[str, Any] | None = None) -> None:
        self.url = url
        self._info = info  # from the listing that found it, to spare a request per stat

    def __reduce__(self) -> tuple:
        return (RemotePath, (self.url,))

    @property
    def fs(self) -> Any:
        return _filesystem(self.protocol)

    @property
    def protocol(self) -> str:
        return self.url.split("://", 1)[0]

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    def __truediv__(self, name: str) -> RemotePath:
        return RemotePath(f"{self.url}/{name}")

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemotePath({self.url!r})"

    def __fspath__(self) -> str:  # for messages and os.path.relpath only: never opened so
        return self.url

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __lt__(self, other: RemotePath) -> bool:
        return self.url < other.url

    def info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = self.fs.info(self.url)
        return self._info

    def exists(self) -> bool:
        return bool(self.fs.exists(self.url))

    def is_dir(self) -> bool:
        try:
            return self.info()["type"] == "directory"
        except FileNotFoundError:
            return False

    def is_file(self) -> bool:
        try:
            return self.info()["type"] == "file"
        except FileNotFoundError:
            return False

    def iterdir(self) -> list[RemotePath]:
        prefix = f"{self.protocol}://"
        return [RemotePath(prefix + entry["name"].split("://", 1)[-1], entry)
                for entry in self.fs.ls(self.url, detail=True)
                if entry["name"].rstrip("/") != self.url.split("://", 1)[-1].rstrip("/")]

    def stat(self) -> Stat:
        info = self.info()
        return Stat(int(info.get("size") or 0), _mtime_ns(info))

    def open(self, mode: str = "rb") -> IO[bytes]:
        if mode != "rb":
            raise ValueError("raw files are only read")
        # Buffered like a local file (read1 included), over fsspec's own 4 MiB read-ahead.
        return io.BufferedReader(self.fs.open(self.url, "rb", block_size=1 << 22),
                                 buffer_size=1 << 16)


def _mtime_ns(info: dict[str, Any]) -> int:
    """The modification time an fsspec listing gives, under whichever key its protocol uses."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return int(value.timestamp() * 1e9)
        if isinstance(value, (int, float)):
            return int(value * 1e9)
        if isinstance(value, str):
            try:
                return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
            except ValueError:
                continue
    return 0


_FILESYSTEMS: dict[str, Any] = {}


def _filesystem(protocol: str) -> Any:
    if protocol not in _FILESYSTEMS:
        try:
            import fsspec
        except ImportError:
            raise InputError(f"reading {protocol}:// needs fsspec, which is not installed",
                             fix="Install the extra: pip install -e '.[url]'") from None
        try:
            _FILESYSTEMS[protocol] = fsspec.filesystem(protocol)
        except (ImportError, ValueError) as exc:
            raise InputError(f"fsspec cannot read {protocol}:// here ({exc})",
                             fix="Install the package fsspec names for it (s3fs for s3://)"
                             ) from None
    return _FILESYSTEMS[protocol]
