"""`ingest`: every subfolder of the raw folder into `<out>/<subfolder>.json.gz`, in one pass.

Datasets run one after the other in this process, each on every core: blocks of a dataset's
files are turned into lines on a pool of threads and written in order by this one (see
`dataset_pass`). A lock file keeps two runs off the same output;
`_manifest.json` records what each dataset read, wrote, rejected and counted twice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from helpers.errors import InputError
from helpers.ingest import native
from helpers.ingest.dataset_pass import (
    AppendRefused,
    DaemonPool,
    Options,
    ingest_dataset,
    plan_dataset,
    signature,
)
from helpers.ingest.folders import (
    dataset_folders,
    log_folder,
    make_output_folder,
    output_lock,
    state_folder,
)
from helpers.ingest.location import raw_location
from helpers.ingest.manifest import Manifest, now, read_manifest, start_run, write_manifest

log = logging.getLogger("helpers.ingest.engine")


def ingest(
    raw: str | Path = "raw_data",
    out: str | Path = "processed_data",
    *,
    datasets: Iterable[str] | None = None,
    options: Options | None = None,
    jobs: int | None = None,
    fresh: bool = False,
    progress: bool = True,
    log_dir: str | Path | None = None,
    append_only: bool = False,
) -> dict[str, Any]:
    """Ingest each dataset folder of `raw`; return the manifest (also in `<out>/_manifest.json`).

    A dataset whose files and options are those of its last complete run, and whose output is
    still in place, is up to date and not read again; one whose folder only gained files has
    those read and appended (see `ingest_dataset`). Re-running after a crash or an interrupt
    resumes each dataset from its last checkpoint; `fresh` ignores all of that. `append_only`
    refuses, before any work, to rebuild a dataset whose earlier files changed. The log goes to
    `log_dir`, by default `<out>/.ingest/logs/`.
    """
    raw, out, options = raw_location(raw), Path(out), options or Options()
    folders = dataset_folders(raw, datasets)
    make_output_folder(out)
    with output_lock(out):
        _, previous = read_manifest(out)
        current = {} if fresh else up_to_date(folders, out, options, previous)
        todo = [f for f in folders if f.name not in current]
        if append_only:
            _refuse_rebuilds(todo, out, options)
        run = start_run("local", raw, out, asdict(options), [f.name for f in todo],
                        sorted(current))
        kept = {name: entry for name, entry in previous.items()  # other datasets' outputs
                if name not in {f.name for f in folders} and isinstance(entry, dict)
                and (out / str(entry.get("output", name))).exists()}
        if not todo:  # the file keeps the run that made these outputs
            return Manifest(current, run | {"finished": now(), "status": "complete"})
        with _logging_to(Path(log_dir) if log_dir else log_folder(out)):
            log.info("ingest %s -> %s, %s; up to date: %s", raw, out, options,
                     ", ".join(current) or "none")
            counter = _Counter()

            def finished(name: str, entry: dict[str, Any]) -> None:
                # At once, so that no interrupt or kill can cost a finished dataset its result.
                current[name] = entry
                write_manifest(out, dict(sorted((kept | current).items())),
                               run | {"status": "running"})

            try:
                _run_all(todo, out, options, fresh, jobs, progress, finished, counter,
                         append_only)
            except KeyboardInterrupt:
                _finish(out, run, "interrupted", current, kept)
                raise Interrupted(_how_far(run, current, counter)) from None
            except BaseException:
                _finish(out, run, "failed", current, kept)
                raise
            for name in run["ingested"]:
                for event in current[name]["events"]:
                    log.info("%s: %s", name, event)
            _finish(out, run, "complete", current, kept)
            log.info("done")
            return Manifest(current, run)


def _refuse_rebuilds(folders: list[Path], out: Path, options: Options) -> None:
    refused = []
    for folder in folders:
        kind, why = plan_dataset(folder, out, options)
        if kind == "rebuild":
            refused.append(f"{folder.name} ({why})")
    if refused:
        raise AppendRefused(f"--append-only, but these datasets would be rebuilt: "
                            f"{'; '.join(refused)}", path=out,
                            fix="Nothing was changed. Run without --append-only to rebuild them")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the datasets that finished are in the manifest, the others resume."""


def up_to_date(folders: list[Path], out: Path, options: Options,
               previous: dict[str, Any]) -> dict[str, Any]:
    """The previous entries of the datasets that need no work: same files (names, sizes,
    mtimes), same options and version, and their outputs still the size they were written."""
    current = {}
    for folder in folders:
        entry = previous.get(folder.name)
        if not isinstance(entry, dict) or entry.get("signature") != signature(folder, options):
            continue
        try:
            written = [(out / entry["output"], entry["bytes"])]
            if entry["rows_rejected"]:
                written.append((out / entry["rejects"], None))
        except (KeyError, TypeError):  # an entry from another engine or version: read again
            continue
        if all(p.is_file() and size in (None, p.stat().st_size) for p, size in written):
            current[folder.name] = entry
    return current


def _finish(out: Path, run: dict[str, Any], status: str, current: dict[str, Any],
            kept: dict[str, Any]) -> None:
    run |= {"finished": now(), "status": status}
    write_manifest(out, dict(sorted((kept | current).items())), run)
    with suppress(OSError):
        state_folder(out).rmdir()  # empty once every dataset has finished


def _how_far(run: dict[str, Any], current: dict[str, Any], counter: _Counter) -> str:
    finished = [name for name in run["ingested"] if name in current]
    left = [name for name in run["ingested"] if name not in current]
    done = f"{', '.join(finished)} finished" if finished else "no dataset finished"
    return (f"interrupted: {done}, {counter.value:,} records read; {', '.join(left)} kept "
            "their last checkpoint; run the same command again to resume")


def _run_all(folders: list[Path], out: Path, options: Options, fresh: bool,
             jobs: int | None, progress: bool, finished: Callable[[str, dict], None],
             counter: _Counter, append_only: bool = False) -> None:
    """Ingest `folders` one after the other, each on `jobs` cores, handing each dataset's
    entry to `finished` as soon as it is done.

    Threads, not processes: the native path (Polars) turns blocks into lines without the GIL,
    so one process holds one copy of every library however many cores it uses, and a folder
    with a single large dataset uses them all."""
    if jobs is not None and jobs < 1:
        raise InputError(f"jobs must be at least 1, not {jobs}",
                         fix="Leave --jobs out to use every core, or pass a positive number")
    jobs = jobs or os.cpu_count() or 1
    native.use_threads(jobs)
    bar = _progress_bar(progress)
    counter.bar = bar
    # One block thread more than cores: each spends about half its time waiting for Polars'
    # own threads and a sixth waiting for the GIL, and with one per core both cores idle
    # whenever both wait (measured: 2 threads kept 1.3 cores busy on one dataset). Each costs a
    # block's working set, about 5 MiB. Two blocks per thread in flight: with one, a thread that
    # finished before the oldest block waits for the writer to take that one and hand it
    # another; the second is raw bytes in the queue or a finished member.
    workers = jobs + 1 if jobs > 1 else 0
    pool = DaemonPool(workers) if workers else None
    window = 2 * workers
    try:
        for folder in folders:
            finished(folder.name, ingest_dataset(folder, out, options, fresh, counter.add,
                                                 append_only, pool, window=window))
    finally:
        bar.close()
        if pool is not None:
            # On Ctrl-C the threads finish the block in hand (milliseconds) and take no other.
            pool.shutdown(wait=True, cancel_futures=True)


class _Counter:
    """Records read so far, shown on the progress bar and in the interrupt message."""

    def __init__(self) -> None:
        self.value = 0
        self.bar: Any = None

    def add(self, records: int) -> None:
        self.value += records
        if self.bar is not None:
            self.bar.update(records)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(unit=" rows", unit_scale=True, desc="ingest", mininterval=0.5)


@contextmanager
def _logging_to(log_dir: Path) -> Iterator[None]:
    log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_dir / f"ingest-{datetime.now():%Y%m%d-%H%M%S}.log",
                                  encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("helpers")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
