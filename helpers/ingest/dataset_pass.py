"""One dataset's pass: its folder's files, in sorted order, into `<dataset>.json.gz`.

Sniff each file, read it in chunks, normalize, count duplicates, write gzip members, checkpoint.
Each file is opened once for its sample and read once for its records.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from helpers.errors import HelpersError, InputError
from helpers.fs import replace_durably, sha256_of
from helpers.ingest import checkpoint, native
from helpers.ingest.blocks import Block, FileSource, block_lines
from helpers.ingest.dedupe import Fingerprints, Unknown, unknown
from helpers.ingest.folders import done_folder, list_files, state_folder
from helpers.ingest.manifest import now, package_version
from helpers.ingest.normalize import Normalizer, Reject
from helpers.ingest.readers import Chunk, Damage, Limits
from helpers.ingest.schema import OutputColumn, Schema, column_names, map_header, schema_for
from helpers.ingest.sniff import DATA_KINDS, Format
from helpers.ingest.writer import MemberWriter, gzip_member


@dataclass(frozen=True)
class Options:
    """Everything that shapes the output bytes; a checkpoint resumes only under the same ones."""

    chunk_rows: int = 5_000  # small chunks keep each worker near 50 MiB at no cost in speed
    checkpoint_rows: int = 500_000  # rounded up to whole chunks
    level: int = 1  # isal gzip level, 0-3: 1 is ~9x faster than zlib's 6 at a similar size
    dedupe: str = "count"  # "count", "drop" or "off"
    dedupe_budget_mb: int = 64
    # A quoted value still open after this many lines or bytes is an unterminated quote: its
    # record is rejected and reading resumes on the next line. A longer line is rejected too.
    max_record_lines: int = 10_000
    max_record_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        # A zero chunk would never advance, a negative one would drop rows: refuse them here,
        # for the library and the command line alike.
        smallest = {"chunk_rows": 1, "checkpoint_rows": 1, "dedupe_budget_mb": 0,
                    "max_record_lines": 1, "max_record_bytes": 1024}
        for name, floor in smallest.items():
            value = getattr(self, name)
            if not isinstance(value, int) or value < floor:
                flag, default = name.replace("_", "-"), getattr(Options, name)
                raise InputError(f"{name} must be a whole number of at least {floor:,}, "
                                 f"not {value!r}", fix=f"Pass --{flag} {default} (the default)")
        if self.level not in range(4):
            raise InputError(f"level must be 0, 1, 2 or 3, not {self.level!r}",
                             fix="Pass --level 1, the default")
        if self.dedupe not in ("count", "drop", "off"):
            raise InputError(f"dedupe must be count, drop or off, not {self.dedupe!r}",
                             fix="Pass --dedupe count, the default")

    @property
    def limits(self) -> Limits:
        return Limits(self.max_record_lines, self.max_record_bytes)

    @property
    def checkpoint_chunks(self) -> int:
        return max(1, -(-self.checkpoint_rows // self.chunk_rows))


@dataclass(frozen=True)
class Paths:
    out: Path
    name: str

    @property
    def final(self) -> Path:
        return self.out / f"{self.name}.json.gz"

    @property
    def part(self) -> Path:
        return self.out / f"{self.name}.json.gz.part"

    @property
    def rejects(self) -> Path:
        return self.out / "_rejects" / f"{self.name}.jsonl.gz"

    @property
    def rejects_part(self) -> Path:
        return self.out / "_rejects" / f"{self.name}.jsonl.gz.part"

    @property
    def checkpoint(self) -> Path:
        return state_folder(self.out) / f"{self.name}.json"

    @property
    def fingerprints(self) -> Path:
        return state_folder(self.out) / f"{self.name}.fp"

    @property
    def done(self) -> Path:
        """The finished run's last checkpoint, kept so that new files can be appended."""
        return done_folder(self.out) / f"{self.name}.json"

    @property
    def done_fingerprints(self) -> Path:
        return done_folder(self.out) / f"{self.name}.fp"

    def moves_to_append(self) -> list[tuple[Path, Path]]:
        """What an append takes back from a finished output: (finished place, working place)."""
        return [(self.final, self.part), (self.rejects, self.rejects_part),
                (self.done_fingerprints, self.fingerprints)]


def ingest_dataset(folder: Path, out: Path, options: Options = Options(),
                   fresh: bool = False, progress: Any = None,
                   append_only: bool = False, pool: DaemonPool | None = None,
                   window: int = 0) -> dict[str, Any]:
    """Ingest one dataset folder; resumes from its checkpoint unless `fresh`.

    When the last run finished and its files are all unchanged, only the files added since are
    read, and their records appended to the output as new gzip members (the old bytes stay a
    prefix). Otherwise the dataset starts over and says why, or with `append_only` raises
    `AppendRefused` before touching anything.

    `pool`: threads that turn blocks into lines on the native path, up to `window` blocks ahead
    of the one being written; without it, this thread does that work too. The output bytes are
    the same either way.
    """
    started = time.perf_counter()
    inputs = signature(folder, options)  # before reading: a file changed meanwhile is stale
    paths = Paths(out, folder.name)
    for sub in (paths.rejects.parent, paths.checkpoint.parent, paths.done.parent):
        sub.mkdir(parents=True, exist_ok=True)
    files = list_files(folder)
    data = [(p, f) for p, f in files if f.kind in DATA_KINDS]
    skipped = [{"name": p.name, "why": f.note or f.kind}
               for p, f in files if f.kind not in DATA_KINDS]
    try:
        run = _Run(paths, data, options, fresh, append_only, inputs["inputs"])
        run.pool, run.window = pool, window if pool is not None else 0
        run.open()
        run.events += [f"skipped {s['name']}: {s['why']}" for s in skipped]
        if not data:
            run.events.append("no data files: the output is an empty file")
        run.process(progress)
        entry = run.finish()
    except OSError as exc:
        # Disk full, permissions, a file gone mid-run: fatal, but the checkpoint survives.
        raise HelpersError(f"{exc.strerror or exc} while ingesting {folder.name}",
                           path=exc.filename or out,
                           fix="Fix the cause and run the same command again: it resumes "
                               "from the last checkpoint") from None
    entry["skipped"] = skipped
    entry["signature"] = inputs
    entry["seconds"] = round(time.perf_counter() - started, 3)
    return entry


def plan_dataset(folder: Path, out: Path, options: Options) -> tuple[str, str | None]:
    """What `ingest_dataset` would do with this folder now (see `_Run.plan`), doing nothing."""
    files = list_files(folder)
    data = [(p, f) for p, f in files if f.kind in DATA_KINDS]
    known = signature(folder, options)["inputs"]
    return _Run(Paths(out, folder.name), data, options, fresh=False, known=known).plan()


def signature(folder: Path, options: Options) -> dict[str, Any]:
    """What a dataset's output depends on: every file's name, size and mtime, the options and
    the package version. An output made under the same signature is up to date."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return {"inputs": checkpoint.input_signature(files), "options": option_record(options),
            "version": package_version()}


def option_record(options: Options) -> dict[str, Any]:
    """The options as checkpoints and the manifest keep them, with the fingerprint function:
    fingerprints kept by one run are only comparable with another's under the same one."""
    return asdict(options) | {"fingerprints": native.fingerprint_function()}


class _Run:
    """One dataset's pass: owns the writers, the fingerprints and the checkpoint."""

    def __init__(self, paths: Paths, data: list[tuple[Path, Format]], options: Options,
                 fresh: bool, append_only: bool = False,
                 known: list[list[Any]] | None = None) -> None:
        """`known`: the folder's file signatures already taken (`signature`), so that no file
        is hashed twice; a file missing from them is signed here."""
        self.paths, self.options = paths, options
        self.events: list[str] = []
        saved = None if fresh else checkpoint.read(paths.checkpoint)
        done = None if fresh else checkpoint.read(paths.done)
        # Files a finished or interrupted run has read come first, in its order, then the new
        # ones sorted: an append keeps the old output a prefix of the new one.
        before = [name for name, *_ in (saved or done).inputs] if (saved or done) else []
        self.data = order_files(data, before)
        self.schema = schema_for(paths.name)
        self.declared = len(self.schema.columns)
        for _, fmt in self.data:  # columns known from headers up front, so every row has them
            map_header(fmt.header, self.schema)
        self.fingerprints = Fingerprints(options.dedupe, options.dedupe_budget_mb << 20)
        by_name = {row[0]: row for row in known or []}
        signature = [by_name.get(p.name) or checkpoint.input_signature([p])[0]
                     for p, _ in self.data]
        self.ckpt = checkpoint.Checkpoint(signature, option_record(options))
        self.pool: DaemonPool | None = None
        self.window = 0
        self.native_off = False  # set when a native call did not come back (see `_settled`)
        self.ckpt.stats = {"files": [], "rows_written": 0, "rows_rejected": 0,
                           "rows_dropped": 0, "history": [], "run_from": 0}
        self.saved, self.done_ckpt, self.append_only = saved, done, append_only

    def plan(self) -> tuple[str, str | None]:
        """What this run will do, without doing it: ("resume" | "append" | "new" | "rebuild",
        and for a rebuild the reason). Reads checkpoints and files only."""
        saved, done = self.saved, self.done_ckpt
        if saved is not None and checkpoint.why_not_resumable(
                saved, self.ckpt.inputs, self.ckpt.options) is None:
            return "resume", None
        why = "no finished run" if done is None else self._why_not_append(done)
        if why is None:
            return "append", None
        if done is None and saved is None and not self.paths.final.exists():
            return "new", None
        return "rebuild", why

    def open(self) -> None:
        """Resume, append or start over, as `plan` says; with `append_only`, refuse to rebuild
        an output that exists."""
        saved, done = self.saved, self.done_ckpt
        if saved is not None:
            self._settle(saved)
            why = self._why_not_resume(saved)
            if why is None:
                self._resume(saved)
                return
        why_not_append = "no finished run" if done is None else self._why_not_append(done)
        if why_not_append is None:
            self._start_append(done)
            return
        if self.append_only and (done is not None or self.paths.final.exists()):
            raise AppendRefused(f"{self.paths.name} cannot be appended to: {why_not_append}",
                                path=self.paths.final, fix="Run without --append-only to "
                                                           "rebuild it")
        if saved is not None:
            self.events.append(f"starting over: {why}")
        elif done is not None:
            self.events.append(f"rebuilding: {why_not_append}")
        self._start_over()

    def _start_over(self) -> None:
        # The old checkpoints go first: were this run killed before its own first checkpoint,
        # a later run must not apply an old one to the new, shorter files.
        for stale in (self.paths.checkpoint, self.paths.done, self.paths.fingerprints,
                      self.paths.done_fingerprints):
            stale.unlink(missing_ok=True)
        self.paths.fingerprints.touch()
        self.output_writer = MemberWriter(self.paths.part, self.options.level)
        self.reject_writer = MemberWriter(self.paths.rejects_part, self.options.level)

    def _why_not_append(self, done: checkpoint.Checkpoint) -> str | None:
        why = checkpoint.why_not_appendable(done, self.ckpt.inputs, self.ckpt.options)
        if why is not None:
            return why
        known = {name for name, *_ in done.columns}
        new = [c.name for c in self.schema.columns if c.name not in known]
        if new:
            return f"new files bring columns the output does not have ({', '.join(new[:5])})"
        finished = [(self.paths.final, done.part_bytes),
                    (self.paths.rejects, done.rejects_bytes),
                    (self.paths.done_fingerprints, done.fingerprint_bytes)]
        for path, size in finished:
            if not path.exists() or path.stat().st_size != size:
                return f"{path.name} is not the file its last run finished"
        return None

    def _start_append(self, done: checkpoint.Checkpoint) -> None:
        """Turn the finished run's checkpoint into one that resumes after its last file."""
        appended = [p.name for p, _ in self.data[len(done.inputs):]]
        ckpt = replace(done, inputs=self.ckpt.inputs, done=False, append=True,
                       stats=done.stats | {"run_from": len(done.inputs)})
        # Durable before anything moves: from here a kill resumes this append (see _settle).
        checkpoint.write(self.paths.checkpoint, ckpt)
        self.paths.done.unlink()
        self._settle(ckpt)
        self.events.append(f"appending {len(appended)} new file(s): {', '.join(appended)}"
                           if appended else "no new data files: the output is kept as it is")
        self._resume(ckpt, say=False)

    def _settle(self, saved: checkpoint.Checkpoint) -> None:
        """Finish moving the files an append or a finish was moving when a run was killed."""
        if saved.append and not saved.done:
            for finished, working in self.paths.moves_to_append():
                if finished.exists() and not working.exists():
                    replace_durably(finished, working)
        if saved.done and not self.paths.fingerprints.exists() \
                and self.paths.done_fingerprints.exists():
            replace_durably(self.paths.done_fingerprints, self.paths.fingerprints)

    def _resume(self, saved: checkpoint.Checkpoint, say: bool = True) -> None:
        self.ckpt = saved
        self.schema = Schema(self.paths.name, [OutputColumn(*c) for c in saved.columns],
                             self.declared)
        if say:
            self.events.append(f"resuming at file {saved.file_index}, record {saved.record}")
        self.fingerprints.restore(self.paths.fingerprints, saved.fingerprint_bytes,
                                  saved.duplicates, saved.exact)
        if saved.done:
            return
        self.output_writer = MemberWriter(self.paths.part, self.options.level, saved.part_bytes)
        self.reject_writer = MemberWriter(self.paths.rejects_part, self.options.level,
                                          saved.rejects_bytes)

    def _why_not_resume(self, saved: checkpoint.Checkpoint) -> str | None:
        why = checkpoint.why_not_resumable(saved, self.ckpt.inputs, self.ckpt.options)
        if why is not None:
            return why
        durable = [(self.paths.fingerprints, saved.fingerprint_bytes)]
        if not saved.done:
            durable += [(self.paths.part, saved.part_bytes),
                        (self.paths.rejects_part, saved.rejects_bytes)]
        for path, size in durable:
            if not path.exists() or path.stat().st_size < size:
                return f"{path.name} is shorter than the checkpoint says"
        return None

    def process(self, progress: Any) -> None:
        if self.ckpt.done:
            return
        for index in range(self.ckpt.file_index, len(self.data)):
            path, fmt = self.data[index]
            self._process_file(index, path, fmt, progress)
            self.ckpt.rows_from = None
            self._checkpoint(index + 1, 0)
        self.ckpt.done = True
        self._checkpoint(len(self.data), 0, complete=True)
        self.output_writer.close()
        self.reject_writer.close()

    def _process_file(self, index: int, path: Path, fmt: Format, progress: Any) -> None:
        stats = self.ckpt.stats
        resuming = bool(self.ckpt.file_index == index and self.ckpt.record and stats["files"])
        if resuming:
            counts = stats["files"].pop()  # resuming inside this file
        else:
            counts = new_counts(path.name, fmt)
        normalizer = Normalizer(self.schema, fmt, path.name)
        options = self.options
        source = FileSource(path, fmt, options.chunk_rows,
                            block_lines(options.chunk_rows, options.checkpoint_chunks),
                            self.ckpt.record, options.limits,
                            self.ckpt.rows_from if resuming else None)
        every = options.chunk_rows * options.checkpoint_chunks

        def done_with(records: int, end: int, resume_at: int) -> None:
            if progress is not None:
                progress(records)
            if end % every == 0:
                counts["renamed"] = normalizer.renamed
                stats["files"].append(counts)
                self.ckpt.rows_from = source.rows_from
                self._checkpoint(index, resume_at)
                stats["files"].pop()

        # Each unit becomes one gzip member however it was read, so that the output's bytes do
        # not depend on which blocks the native path took (see `_ahead`).
        work = native_work(fmt, normalizer, options, self.fingerprints)
        units = self._ahead(source.units(), work, path.name)
        for unit, native_result in units:
            if native_result is not None and source.clean:
                done = native_result
                self._write_lines(done.blob, done.n, done.member, done.hashes, done.unique)
                add_native_counts(counts, done.n, done.fallbacks)
                done_with(unit.n, unit.first + unit.n, unit.first + unit.n)
                continue
            parts, rows, last = [], 0, None
            for chunk in source.chunks(unit):
                blob, n, records = self._normalize(normalizer, chunk, counts)
                parts.append(blob)
                rows, last = rows + n, chunk
                if progress is not None:
                    progress(records)
            self._write_lines(b"".join(parts), rows)
            if last is not None:
                done_with(0, last.batch_end, last.resume_at)
            if source.exhausted:  # the row-by-row reader reads the rest: a member per chunk
                units.close()
                for chunk in source.rest():
                    blob, n, records = self._normalize(normalizer, chunk, counts)
                    self._write_lines(blob, n)
                    done_with(records, chunk.batch_end, chunk.resume_at)
                break
        for chunk in source.finish():
            self._write_lines(*self._normalize(normalizer, chunk, counts)[:2])
        counts["renamed"] = normalizer.renamed
        self.events += [f"{path.name}: column {new!r} is the field written {old!r}"
                        for new, old in counts["renamed"].items()]
        if counts["fallback_lines"]:
            self.events.append(f"{path.name}: {counts['fallback_lines']:,} lines held bytes "
                               "that are not UTF-8, read as cp1252")
        if source.damage is not None:
            self._write_rejects([add_damage(counts, source.damage)])
            self.events.append(f"{path.name}: {source.damage.reason}")
        stats["files"].append(counts)

    def _normalize(self, normalizer: Normalizer, chunk: Chunk,
                   counts: dict[str, Any]) -> tuple[bytes, int, int]:
        """The chunk's output lines, each ending in a newline, and how many (its rejects are
        written); and how many records it held."""
        result = normalizer.chunk(chunk)
        self._write_rejects(result.rejects)
        add_counts(counts, result)
        blob = b"".join(line + b"\n" for line in result.lines)
        return blob, len(result.lines), len(chunk.records)

    def _ahead(self, units: Iterator[Any], work: Callable[[Block, int], Any] | None,
               name: str) -> Iterator[tuple[Any, Any]]:
        """Each unit in order with its native result (None where there is none), the work
        running on the pool up to `window` units ahead of the one returned.

        A result is kept only if the output's columns are still those the work was given: a
        JSON file's earlier records may add columns while later blocks are under way. Which
        blocks are native therefore depends on timing, and nothing downstream may depend on it.
        """
        def columns() -> int:
            return len(self.schema.columns)

        if work is None:
            for unit in units:
                yield unit, None
            return
        pool = self.pool or _inline_pool()
        pending: deque[tuple[Any, Future | Any, int]] = deque()
        try:
            for unit in units:
                if not isinstance(unit, Block) or self.native_off:
                    result: Any = None
                else:
                    result = pool.submit(work, unit, columns())
                pending.append((unit, result, columns()))
                while len(pending) > self.window:
                    yield self._settled(pending.popleft(), columns(), pool, name)
            while pending:
                yield self._settled(pending.popleft(), columns(), pool, name)
        finally:
            for _, result, _ in pending:
                if isinstance(result, Future):
                    result.cancel()
            units.close()

    def _settled(self, item: tuple[Any, Any, int], columns: int, pool: DaemonPool,
                 name: str) -> tuple[Any, Any]:
        """The unit and its native result, None if the output's columns changed since it was
        submitted or if it did not come back within `NATIVE_TIMEOUT` (see `DaemonPool`): the
        rest of the run then goes without the native path, since what stopped one call may
        stop the next."""
        unit, result, submitted_with = item
        if isinstance(result, Future):
            try:
                result = result.result(timeout=NATIVE_TIMEOUT)
            except TimeoutError:
                pool.replace_stuck()
                self.native_off = True
                lines = f"{unit.first + 1:,}-{unit.first + unit.n:,}"
                self.events.append(
                    f"{name}: the native call on lines {lines} did not return within "
                    f"{NATIVE_TIMEOUT:g} s; the normalizer read them and the rest of the run")
                result = None
        return unit, result if submitted_with == columns else None

    def _write_lines(self, blob: bytes | None, n: int, member: bytes | None = None,
                     hashes: Any = None, unique: Unknown | None = None) -> None:
        """n output lines (`blob`) as one gzip member, less the duplicates in drop mode;
        `member`: the lines compressed already, by the worker that made them, which then sends
        the lines themselves only when duplicates are to be dropped."""
        if blob is None:  # counted or not at all, never dropped: the member is the output
            self.fingerprints.count(n, hashes, unique)
            kept, n_kept = b"", n
        else:
            kept, n_kept = self.fingerprints.filter_blob(blob, n, hashes, unique)
        if n_kept:
            if member is None or n_kept != n:
                member = gzip_member(kept, self.options.level)
            self.output_writer.write_member(member)
        self.ckpt.stats["rows_written"] += n_kept
        self.ckpt.stats["rows_dropped"] += n - n_kept

    def _write_rejects(self, rejects: list[Reject]) -> None:
        if rejects:
            self.reject_writer.write(b"".join(r.to_json() + b"\n" for r in rejects))
            self.ckpt.stats["rows_rejected"] += len(rejects)

    def _checkpoint(self, file_index: int, record: int, complete: bool = False) -> None:
        ckpt = self.ckpt
        ckpt.file_index, ckpt.record = file_index, record
        ckpt.part_bytes = self.output_writer.end_member(complete)
        ckpt.rejects_bytes = self.reject_writer.end_member(complete)
        ckpt.fingerprint_bytes = self.fingerprints.save(self.paths.fingerprints)
        ckpt.duplicates, ckpt.exact = self.fingerprints.duplicates, self.fingerprints.exact
        ckpt.columns = [[c.name, c.kind, c.nullable] for c in self.schema.columns]
        checkpoint.write(self.paths.checkpoint, ckpt)

    def finish(self) -> dict[str, Any]:
        """Move the outputs into place, keep the last checkpoint and describe the result."""
        paths, ckpt = self.paths, self.ckpt
        stats = ckpt.stats
        for part, final in ((paths.part, paths.final), (paths.rejects_part, paths.rejects)):
            if part.exists():
                replace_durably(part, final)
        # One item per run that read files; a resumed finish, or an append that found no new
        # file, adds none.
        history = stats["history"]
        if not history or (stats["run_from"] < len(self.data)
                           and history[-1]["files_from"] != stats["run_from"]):
            history.append(_history(stats, len(self.data)))
        # Kept for the next run to append to: the checkpoint first, then the fingerprints
        # (_settle puts them back if a kill comes between), then the working checkpoint goes.
        checkpoint.write(paths.done, ckpt)
        replace_durably(paths.fingerprints, paths.done_fingerprints)
        paths.checkpoint.unlink(missing_ok=True)
        distinct = self.fingerprints.distinct if self.options.dedupe != "off" else None
        return {
            # Relative to the output folder, so that the folder can move as a whole.
            "output": paths.final.name,
            "rejects": f"{paths.rejects.parent.name}/{paths.rejects.name}",
            "files": stats["files"],
            "rows_read": stats["rows_written"] + stats["rows_dropped"]
            + stats["rows_rejected"],
            "rows_written": stats["rows_written"],
            "rows_rejected": stats["rows_rejected"],
            "rows_dropped": stats["rows_dropped"],
            "duplicates": ckpt.duplicates if self.options.dedupe != "off" else None,
            "duplicates_exact": ckpt.exact,
            "distinct_rows": distinct,
            **dataset_counts(stats["files"]),
            "columns": [c.name for c in self.schema.columns],
            "drifted_columns": self.schema.drift,
            "bytes": paths.final.stat().st_size,
            "sha256": sha256_of([paths.final]),
            "history": stats["history"],
            "events": self.events,
        }


def _history(stats: dict[str, Any], files: int) -> dict[str, Any]:
    """What one run added: its files (an append's new ones only) and their rows."""
    added = stats["files"][stats["run_from"]:files]
    return {"finished": now(), "kind": "append" if stats["run_from"] else "full",
            "files_from": stats["run_from"], "files": [f["name"] for f in added],
            "rows": sum(f["rows"] for f in added), "rejected": sum(f["rejected"] for f in added)}


def order_files(data: list[tuple[Path, Format]], before: list[str]) -> list[tuple[Path, Format]]:
    """The files an earlier run read, in its order, then the others by name."""
    position = {name: i for i, name in enumerate(before)}
    return sorted(data, key=lambda item: (position.get(item[0].name, len(position)),
                                          item[0].name))


class AppendRefused(InputError):
    """--append-only, and a dataset whose earlier files changed: nothing may be touched."""


def new_counts(name: str, fmt: Format) -> dict[str, Any]:
    """A file's entry in the manifest, before its first chunk."""
    return {"name": name, **describe_format(fmt), "rows": 0, "rejected": 0, "blank": 0,
            "comments": 0, "physical_records": 0, "fallback_lines": 0, "renamed": {},
            "damage": None}


_INLINE: list[DaemonPool] = []


def _inline_pool() -> DaemonPool:
    """One thread for runs without a pool: the same time limit applies to them."""
    if not _INLINE:
        _INLINE.append(DaemonPool(1))
    return _INLINE[0]


@dataclass(frozen=True)
class NativeLines:
    """A block the native path turned into output lines, as `_Run._write_lines` takes them."""

    blob: bytes | None  # the lines, sent only when duplicates are to be dropped
    n: int
    member: bytes  # the lines as one gzip member
    hashes: Any  # their fingerprints (a Polars Series), or None
    unique: Unknown | None  # what the worker found of them in the levels (`dedupe.unknown`)
    fallbacks: int = 0  # lines that held bytes read as cp1252


NATIVE_TIMEOUT = 60.0  # seconds one block may take on the native path


class DaemonPool:
    """Threads that never keep the interpreter from exiting, so that a Polars call that never
    returns costs its thread and not the process: `replace_stuck` starts another. One cause is
    known and avoided (`native._encode` runs its query on the in-memory engine: a query failing
    on the streaming engine could kill one of Polars' executor threads, and with all of them
    gone every later read waits forever); this is the guard for causes not known."""

    def __init__(self, workers: int) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._workers = 0
        self.stuck = 0  # threads given up on
        for _ in range(max(1, workers)):
            self._start()

    def _start(self) -> None:
        threading.Thread(target=self._work, name=f"native-{self._workers}", daemon=True).start()
        self._workers += 1

    def replace_stuck(self) -> None:
        """A call on one of the threads has not returned in time: another takes its place (if
        it ever returns, it goes back to work; the pool is then one thread larger)."""
        self.stuck += 1
        self._start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        self._queue.put((future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Idle threads end; a thread stuck in a call stays, never joined."""
        for _ in range(self._workers):
            self._queue.put(None)


def native_work(fmt: Format, normalizer: Normalizer, options: Options,
                seen: Fingerprints | None = None) -> Callable[[Block, int], Any] | None:
    """What turns one block of `fmt` into output lines without the GIL, or None where the
    native path never applies (JSON streams, escaped quotes, a header in error). The callable
    gets the number of output columns known when it was submitted, and returns None for a block
    it cannot vouch for; otherwise `NativeLines`. `seen`: the dataset's fingerprints, whose
    `known` snapshot spares both threads the ones it holds already."""
    columns = tuple(native.Column(c.name, c.kind, c.nullable)
                    for c in normalizer.schema.columns)
    if fmt.kind == "csv":
        header = normalizer.header
        if header.error is not None or fmt.escapechar is not None:
            return None
        spec: Any = native.CsvSpec(fmt.delimiter or ",", fmt.quotechar, len(fmt.header),
                                   columns, tuple(normalizer._sources()), fmt.comment,
                                   tuple(fmt.header) if fmt.has_header else ())
        encode: Any = native.csv_lines
    elif fmt.kind == "jsonl":
        encode = native.jsonl_lines
    elif fmt.kind == "json_array":
        encode = native.array_lines
    else:
        return None
    first_record = fmt.data_line if fmt.kind == "csv" else 0
    dedupe = options.dedupe != "off"

    def snapshot() -> Any:
        return seen.known if seen is not None else None

    def work(block: Block, width: int) -> Any:
        try:
            return vouched(block, width)
        except Exception:  # noqa: BLE001 - whatever the native path trips on, the slow one judges
            return None

    def vouched(block: Block, width: int) -> Any:
        if block.first < first_record:
            return None
        fallbacks = 0
        if fmt.kind == "json_array" \
                and native.longest_item(block.data, options.max_record_bytes) \
                > options.max_record_bytes:
            return None  # the normalizer rejects an item over the limit
        if fmt.kind != "csv":
            known = tuple(native.Column(c.name, c.kind, c.nullable)
                          for c in normalizer.schema.columns[:width])
            rename = partial(key_columns, schema=normalizer.schema, width=width)
            encoded = encode(block.data, block.n, native.JsonSpec(known, rename))
        else:
            encoded = encode(block.data, block.n, spec)
            if encoded is None and not native.is_utf8(block.data):
                # As the reader decodes CSV: a byte sequence that is not UTF-8 is cp1252, and
                # each line holding one is counted.
                text, fallbacks = native.decode_with_fallback(block.data)
                encoded = encode(text, block.n, spec)
        if encoded is None:
            return None
        blob, hashes = encoded
        if len(hashes) != block.n:  # a line a record, or the normalizer decides
            return None
        member = gzip_member(blob, options.level, tail=b"\n")
        unique = unknown(hashes, snapshot()) if dedupe else None
        lines = blob + b"\n" if options.dedupe == "drop" else None  # only dropping needs them
        return NativeLines(lines, block.n, member, hashes if dedupe else None, unique, fallbacks)

    return work


def key_columns(keys: list[str], schema: Schema, width: int) -> dict[str, str] | None:
    """The output column of each JSON key, as the normalizer maps every object's keys, when
    that does not depend on which keys an object has; else None. Reads `schema`, never adds to
    it (it runs beside the thread that may)."""
    names, renamed = column_names(list(keys), schema)
    if renamed or names != [column_names([key], schema)[0][0] for key in keys]:
        return None
    out = {}
    for key, name in zip(keys, names):
        position = schema.index(name, add=False)
        if position is None or position >= width:
            return None
        out[key] = schema.columns[position].name
    return out if len(set(out.values())) == len(out) else None


def add_native_counts(counts: dict[str, Any], rows: int, fallbacks: int = 0) -> None:
    """A block the native path wrote: every line one row."""
    counts["rows"] += rows
    counts["physical_records"] += rows
    counts["fallback_lines"] += fallbacks


def add_counts(counts: dict[str, Any], result: Any) -> None:
    """Add a chunk's result to a file's counts; every record lands in exactly one of them."""
    counts["rows"] += len(result.lines)
    counts["rejected"] += len(result.rejects)
    counts["blank"] += result.blank
    counts["comments"] += result.comments
    counts["fallback_lines"] += result.fallbacks
    counts["physical_records"] += (len(result.lines) + len(result.rejects) + result.blank
                                   + result.comments)


def add_damage(counts: dict[str, Any], found: Damage) -> Reject:
    """Count a file's unreadable rest as one reject, so that its accounting still adds up and
    the rejects file agrees with the counts; the reject to write is returned."""
    counts["rejected"] += 1
    counts["physical_records"] += 1
    counts["damage"] = {"line": found.line, "offset": found.offset, "reason": found.reason}
    return Reject(counts["name"], found.line, found.reason, "")


def dataset_counts(files: list[dict[str, Any]]) -> dict[str, int]:
    """The manifest's dataset-wide sums of what each file counted."""
    return {"blank_lines": sum(f["blank"] for f in files),
            "comment_lines": sum(f["comments"] for f in files),
            "files_damaged": sum(1 for f in files if f["damage"])}


def describe_format(fmt: Format) -> dict[str, Any]:
    return {"format": fmt.kind, "delimiter": fmt.delimiter, "quotechar": fmt.quotechar,
            "escapechar": fmt.escapechar, "comment": fmt.comment, "header": fmt.has_header,
            "encoding": fmt.encoding, "compression": fmt.compression, "note": fmt.note}
