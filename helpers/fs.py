"""File-system steps every room shares: durable atomic writes, exclusive locks, digests.

A write is atomic when readers see the old file or the new one, never half of one, and durable
when a crash or power cut after it returns cannot undo it: the data is synced before the rename,
and the directory after it, since the rename is an entry in the directory.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from helpers.errors import InputError


def write_atomic(path: str | Path, data: bytes) -> None:
    """Replace `path` with `data`, atomically and durably."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    replace_durably(tmp, path)


def replace_durably(source: str | Path, target: str | Path) -> None:
    """Rename `source` (already synced) over `target`, and sync the directory that holds it."""
    os.replace(source, target)
    sync_directory(Path(target).parent)


def sync_directory(folder: str | Path) -> None:
    if os.name != "posix":  # Windows cannot open a directory; its renames are journaled
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def exclusive(lock_path: str | Path, what: str, fix: str,
              guarded: str | Path | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` (on any OS); the OS drops it if the process dies.

    The holder's pid goes into a file beside the lock, for the error the next run shows (which
    names `guarded`, by default the lock's folder). Both files are removed on release, so a
    finished run leaves no lock behind.
    """
    lock_path = Path(lock_path)
    owner = lock_path.with_name(lock_path.name + ".owner")
    lock = _acquire(lock_path, owner, InputError(f"{what} holds this folder",
                                                 path=guarded or lock_path.parent, fix=fix))
    try:
        owner.write_text(f"pid {os.getpid()}")
        yield
    finally:
        # Unlinked while still held: a run that opened the old file in the meantime finds, once
        # it gets the lock, that it locked a file no longer in the folder, and tries again.
        owner.unlink(missing_ok=True)
        lock_path.unlink(missing_ok=True)
        lock.release()


def _acquire(lock_path: Path, owner: Path, held: InputError) -> FileLock:
    for _ in range(3):
        lock = FileLock(lock_path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            try:
                holder = owner.read_text().strip() or "another process"
            except OSError:  # it released the lock meanwhile, or never wrote the file
                holder = "another process"
            what, rest = held.reason.split(" holds ", 1)
            raise InputError(f"{what} ({holder}) holds {rest}", path=held.path,
                             fix=held.fix) from None
        if _still_linked(lock, lock_path):
            return lock
        lock.release()
    raise held


def _still_linked(lock: FileLock, lock_path: Path) -> bool:
    """Whether the file we locked is still the one at `lock_path` (a releasing run unlinks it)."""
    fd = getattr(getattr(lock, "_context", None), "lock_file_fd", None)
    if fd is None:  # a lock without a descriptor (soft lock): its file is its path
        return lock_path.exists()
    try:
        return os.path.samestat(os.fstat(fd), os.stat(lock_path))
    except OSError:
        return False


RENAME_EXCHANGE, AT_FDCWD = 2, -100  # from linux/fs.h and fcntl.h


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux's renameat2); False where the system cannot."""
    if sys.platform != "linux":
        return False
    import ctypes

    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # glibc 2.28+
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # a file system without it
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def sha256_of(paths: Iterable[str | Path]) -> str:
    """The sha256 of the files' bytes end to end (gzip members concatenate into one file)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
