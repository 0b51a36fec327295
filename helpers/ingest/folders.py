"""The folders an ingestion works on: the raw folder's datasets and files, the output's lock.

The output folder holds the deliverables (`<dataset>.json.gz`), `_manifest.json` and `_rejects/`;
everything a run needs only while it works (checkpoints, the lock, logs) lives in one hidden
folder inside it, `.ingest/`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from helpers.errors import InputError
from helpers.fs import exclusive
from helpers.ingest.sniff import Format, sniff


def dataset_folders(raw: Path, only: Iterable[str] | None = None) -> list[Path]:
    """The raw folder's dataset subfolders, sorted; hidden and `_` folders are not datasets."""
    if not raw.is_dir():
        raise InputError("the raw data folder does not exist", path=raw,
                          fix="Create it with `python -m helpers make-raw`, or pass --raw")
    folders = sorted(p for p in raw.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if only:
        wanted = set(only)
        missing = wanted - {p.name for p in folders}
        if missing:
            raise InputError(f"no dataset folder named {', '.join(sorted(missing))}", path=raw,
                             fix="Check the names against the subfolders of the raw folder")
        folders = [p for p in folders if p.name in wanted]
    if not folders:
        raise InputError("the raw data folder has no dataset subfolders", path=raw,
                         fix="Put one subfolder per dataset in it")
    return folders


def list_files(folder: Path) -> list[tuple[Path, Format]]:
    """Every regular file of a dataset folder, sorted by name, with its sniffed format."""
    return [(p, sniff(p)) for p in sorted(folder.iterdir()) if p.is_file()]


def make_output_folder(out: Path) -> None:
    """Create the output folder, or say plainly why it cannot be one."""
    if out.exists() and not out.is_dir():
        raise InputError("the output path is a file, not a folder", path=out,
                         fix="Pass --out a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"the output folder cannot be created ({exc.strerror})", path=out,
                         fix="Pass --out a folder you can write to") from None


WORK_FOLDER = ".ingest"


def work_folder(out: Path) -> Path:
    """The output's hidden folder: `state/` (checkpoints), `done/` (what the next run may append
    to), `logs/`, and the lock during a run."""
    return out / WORK_FOLDER


def state_folder(out: Path) -> Path:
    return work_folder(out) / "state"


def done_folder(out: Path) -> Path:
    """Each finished dataset's last checkpoint and duplicate fingerprints, for appending."""
    return work_folder(out) / "done"


def log_folder(out: Path) -> Path:
    return work_folder(out) / "logs"


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on the output folder, so two runs never write the same files."""
    work_folder(out).mkdir(exist_ok=True)
    with exclusive(work_folder(out) / "lock", "another ingest",
                   "Wait for it to finish, or use another --out", guarded=out):
        yield
