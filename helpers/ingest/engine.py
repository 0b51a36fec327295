"""`ingest`: every subfolder of the raw folder into `<out>/<subfolder>.json.gz`, in one pass.

Datasets run in parallel worker processes, one per core, because parsing is CPU-bound and a
dataset's output depends only on its own files. A lock file keeps two runs off the same output;
`_manifest.json` records what each dataset read, wrote, rejected and counted twice.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Any

from helpers.errors import InputError
from helpers.ingest.dataset_pass import Options, ingest_dataset
from helpers.ingest.folders import dataset_folders, make_output_folder, output_lock
from helpers.ingest.manifest import write_manifest

log = logging.getLogger("helpers.ingest.engine")
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
    make_output_folder(out)
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
    if jobs is not None and jobs < 1:
        raise InputError(f"jobs must be at least 1, not {jobs}",
                         fix="Leave --jobs out to use every core, or pass a positive number")
    jobs = min(jobs or os.cpu_count() or 1, len(folders))
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
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                               initargs=(counter,))
    try:
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
    except BaseException:
        # Ctrl-C, or a fatal error in one dataset: stop the others now rather than let them run
        # to the end of their datasets. Their checkpoints make the next run resume, and a
        # worker stopped mid-write is what those checkpoints are made for.
        _stop_workers(pool)
        raise
    pool.shutdown()
    return results


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=5)


def _init_worker(counter: Any) -> None:
    global _progress_counter
    _progress_counter = counter
    # Ctrl-C reaches the whole process group; the main process stops the workers itself, so
    # they print no traceback of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()


def _die_with_parent() -> None:
    """Have the kernel kill this worker when the main process dies, even by SIGKILL.

    Otherwise a killed run leaves its workers writing to the output while the lock is free,
    and the next run collides with them. Linux only (prctl); elsewhere a no-op.
    """
    if not sys.platform.startswith("linux"):
        return
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


def _log_to_file(log_dir: Path) -> logging.Handler:
    log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_dir / f"ingest-{datetime.now():%Y%m%d-%H%M%S}.log",
                                  encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("helpers")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler
