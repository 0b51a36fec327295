"""`ingest`: every subfolder of the raw folder into `<out>/<subfolder>.json.gz`, in one pass.

Datasets run in parallel worker processes, one per core, because parsing is CPU-bound and a
dataset's output depends only on its own files. A lock file keeps two runs off the same output;
`_manifest.json` records what each dataset read, wrote, rejected and counted twice.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from helpers.dataset import Options, ingest_dataset, list_files
from helpers.errors import InputError

log = logging.getLogger("helpers.ingest")
_progress_counter: Any = None  # a shared counter in worker processes
PR_SET_PDEATHSIG = 1


def ingest(
    raw: str | Path = "raw_data",
    out: str | Path = "processed_data",
    *,
    datasets: Iterable[str] | None = None,
    options: Options | None = None,
    jobs: int | None = None,
    fresh: bool = False,
    progress: bool = True,
    log_dir: str | Path | None = "logs",
) -> dict[str, Any]:
    """Ingest each dataset folder of `raw`; return the manifest (also in `<out>/_manifest.json`).

    Re-running after a crash resumes each dataset from its last checkpoint; `fresh` ignores them.
    """
    raw, out, options = Path(raw), Path(out), options or Options()
    folders = dataset_folders(raw, datasets)
    out.mkdir(parents=True, exist_ok=True)
    handler = _log_to_file(Path(log_dir)) if log_dir else None
    try:
        with output_lock(out):
            log.info("ingest %s -> %s, %s", raw, out, options)
            started = time.perf_counter()
            manifest = _run_all(folders, out, options, fresh, jobs, progress)
            for name, entry in manifest.items():
                for event in entry["events"]:
                    log.info("%s: %s", name, event)
            write_manifest(out, manifest)
            with suppress(OSError):
                (out / "_state").rmdir()  # empty once every dataset has finished
            log.info("done in %.1f s", time.perf_counter() - started)
            return manifest
    finally:
        if handler:
            logging.getLogger("helpers").removeHandler(handler)
            handler.close()


def _run_all(folders: list[Path], out: Path, options: Options, fresh: bool,
             jobs: int | None, progress: bool) -> dict[str, Any]:
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(folders)))
    bar = _progress_bar(progress)
    results: dict[str, Any] = {}
    try:
        if jobs == 1:
            for folder in folders:
                results[folder.name] = ingest_dataset(folder, out, options, fresh, bar.update)
        else:
            results = _run_parallel(folders, out, options, fresh, jobs, bar)
    finally:
        bar.close()
    return {name: results[name] for name in sorted(results)}


def _run_parallel(folders, out, options, fresh, jobs, bar) -> dict[str, Any]:
    # spawn, not fork: a notebook kernel has threads, and forking a threaded process can hang.
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    largest_first = sorted(folders, key=lambda f: -sum(p.stat().st_size for p in f.iterdir()))
    results = {}
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                             initargs=(counter,)) as pool:
        futures = {pool.submit(_worker, folder, out, options, fresh): folder
                   for folder in largest_first}
        pending = set(futures)
        while pending:
            done = {f for f in pending if f.done()}
            for future in as_completed(done) if done else ():
                results[futures[future].name] = future.result()
            pending -= done
            bar.update(counter.value - bar.n)
            if pending:
                time.sleep(0.2)
        bar.update(counter.value - bar.n)
    return results


def _init_worker(counter: Any) -> None:
    global _progress_counter
    _progress_counter = counter
    _die_with_parent()


def _die_with_parent() -> None:
    """Have the kernel kill this worker when the main process dies, even by SIGKILL.

    Otherwise a killed run leaves its workers writing to the output while the lock is free,
    and the next run collides with them. Linux only (prctl); elsewhere a no-op.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _count(records: int) -> None:
    with _progress_counter.get_lock():
        _progress_counter.value += records


def _worker(folder: Path, out: Path, options: Options, fresh: bool) -> dict[str, Any]:
    return ingest_dataset(folder, out, options, fresh, _count)


class _NoBar:
    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        pass


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(unit=" rows", unit_scale=True, desc="ingest", mininterval=0.5)


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on the output folder; the OS drops it if the process dies."""
    path = out / ".ingest.lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise InputError(f"another ingest ({holder}) is writing to this folder", path=out,
                             fix="Wait for it to finish, or use another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        yield


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    tmp = out / "_manifest.json.tmp"
    tmp.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(tmp, out / "_manifest.json")


def _log_to_file(log_dir: Path) -> logging.Handler:
    log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_dir / f"ingest-{datetime.now():%Y%m%d-%H%M%S}.log",
                                  encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("helpers")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler


def investigate(raw: str | Path = "raw_data") -> list[dict[str, Any]]:
    """One row per raw file: what sniffing found (format, delimiter, encoding, header)."""
    rows = []
    for folder in dataset_folders(Path(raw)):
        for path, fmt in list_files(folder):
            rows.append({"dataset": folder.name, "file": path.name,
                         "bytes": path.stat().st_size, **fmt.describe()})
    return rows


def dataset_folders(raw: Path, only: Iterable[str] | None = None) -> list[Path]:
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


def summary_table(manifest: dict[str, Any]) -> str:
    """A fixed-width table of the manifest's counts, one line per dataset."""
    head = ("dataset", "files", "read", "written", "rejected", "duplicates", "MB", "seconds")
    lines = ["{:<16}{:>6}{:>12}{:>12}{:>10}{:>12}{:>8}{:>9}".format(*head)]
    for name, e in manifest.items():
        dup = "-" if e["duplicates"] is None else (
            f"{e['duplicates']:,}" + ("" if e["duplicates_exact"] else "+"))
        lines.append("{:<16}{:>6}{:>12,}{:>12,}{:>10,}{:>12}{:>8.1f}{:>9.1f}".format(
            name, len(e["files"]), e["rows_read"], e["rows_written"], e["rows_rejected"], dup,
            e["bytes"] / 1e6, e["seconds"]))
    return "\n".join(lines)
