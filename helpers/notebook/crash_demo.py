"""Crash safety, shown rather than claimed: kill an ingestion part-way, resume it, compare.

`crash_and_resume` runs `python -m helpers ingest` for one dataset in a subprocess of its own
session, kills the whole process group with SIGKILL (no cleanup handler can run) between its
first and second checkpoints, records what the dead run left behind, then runs the very same
command again. `compare_runs` sets the resumed output beside a clean run's, member by member.

The run stops itself (SIGSTOP) as its second checkpoint begins, and is killed there: a kill
timed from outside lands wherever the threads happen to be, and the demo would show other
figures on every run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

from helpers.errors import HelpersError, InputError
from helpers.ingest import checkpoint, manifest
from helpers.ingest.dataset_pass import Options
from helpers.ingest.folders import log_folder, state_folder
from helpers.ingest.writer import member_digests

# What an ingestion writes in its output folder; a scratch folder holding anything else is not
# ours to empty.
INGEST_ARTEFACTS = (".ingest", "_rejects", "_manifest.json", "._manifest.json.tmp")
HASH_SHOWN = 16  # hex digits of a sha256 shown in a table; equality is checked on all 64
# The run stops its own process as its second checkpoint begins (helpers/signal_on_call.py).
STOP_AT_SECOND_CHECKPOINT = ["SIGSTOP", "helpers.ingest.dataset_pass:_Run._checkpoint", "2"]


@dataclass
class CrashDemo:
    command: list[str]  # the CLI arguments after `python -m helpers`
    killed_returncode: int  # -9: the run died of SIGKILL
    checkpoint: dict[str, Any]  # what the last checkpoint before the kill vouched for
    leftovers: list[dict[str, str]]  # the files the killed run left, and what each is
    part_bytes_on_disk: int  # the .part's size after the kill; past the checkpoint is cut
    final_existed_after_kill: bool  # whether <dataset>.json.gz was there (it must not be)
    resumed: dict[str, Any] = field(default_factory=dict)  # the resumed run's manifest entry
    comparison: pd.DataFrame | None = None  # the resumed run beside a clean one (crash_demo)


def crash_demo(db: str | Path, dataset: str, options: Options, scale: int = 20,
               seed: int = 0, faults: bool = True) -> CrashDemo:
    """The whole demo in a temporary folder that is removed afterwards: raw files of `dataset`
    at a small `scale`, a clean run, a killed and resumed run, and the two compared.

    Small and apart on purpose: the demo must not read the real raw data a second time, nor
    leave a second copy of an output beside the real ones.
    """
    from helpers.ingest.engine import ingest
    from helpers.rawgen.generate import make_raw

    with tempfile.TemporaryDirectory(prefix="crash-demo-") as scratch:
        root = Path(scratch)
        make_raw(db, root / "raw", scale, seed=seed, faults=faults)
        ingest(root / "raw", root / "clean", datasets=[dataset], options=options, jobs=1,
               progress=False)
        demo = crash_and_resume(root / "raw", root / "crashed", dataset, options)
        demo.comparison = compare_runs(root / "clean", root / "crashed", dataset)
        # Paths inside a folder that is gone by now would mislead: keep the arguments only.
        demo.command = [a if not a.startswith(scratch) else Path(a).name for a in demo.command]
    return demo


def crash_and_resume(raw: str | Path, out: str | Path, dataset: str, options: Options,
                     log_dir: str | Path | None = None, poll: float = 0.02,
                     timeout: float = 600) -> CrashDemo:
    """Ingest `dataset` of `raw` into the scratch folder `out`, kill it between its first and
    second checkpoints, then resume it with the same command; `out` is emptied first."""
    raw, out = Path(raw), Path(out)
    clear_scratch(out)
    command = ingest_command(raw, out, dataset, options, log_dir)
    checkpoint_path = state_folder(out) / f"{dataset}.json"
    returncode = _run_until(command, poll, timeout)
    saved = checkpoint.read(checkpoint_path)
    if saved is None:
        raise HelpersError("the killed run left no readable checkpoint", path=checkpoint_path,
                           fix="Run the demo again; if it persists, report it")
    part = out / f"{dataset}.json.gz.part"
    demo = CrashDemo(
        command=command, killed_returncode=returncode,
        checkpoint=describe_checkpoint(saved),
        leftovers=list_leftovers(out, dataset),
        part_bytes_on_disk=part.stat().st_size if part.exists() else 0,
        final_existed_after_kill=(out / f"{dataset}.json.gz").exists())
    _run_to_end(command)
    demo.resumed = read_manifest(out)[dataset]
    return demo


def ingest_command(raw: Path, out: Path, dataset: str, options: Options,
                   log_dir: str | Path | None = None) -> list[str]:
    """The CLI arguments that ingest one dataset with exactly these options."""
    logs = ["--log-dir", str(log_dir)] if log_dir else []
    return ["ingest", "--raw", str(raw), "--out", str(out), "--dataset", dataset,
            "--chunk-rows", str(options.chunk_rows),
            "--checkpoint-rows", str(options.checkpoint_rows), "--level", str(options.level),
            "--dedupe", options.dedupe, "--dedupe-budget-mb", str(options.dedupe_budget_mb),
            "--jobs", "1", "--no-progress", *logs]


def clear_scratch(out: Path) -> None:
    """Empty a scratch output folder, refusing one that holds files an ingestion did not write."""
    if not out.exists():
        return
    foreign = [p.name for p in out.iterdir()
               if p.name not in INGEST_ARTEFACTS and not p.name.endswith((".json.gz",
                                                                         ".json.gz.part"))]
    if foreign:
        raise InputError(f"the scratch folder holds other files ({', '.join(sorted(foreign))})",
                         path=out, fix="Give the crash demo a folder of its own")
    shutil.rmtree(out)


def _run_until(command: list[str], poll: float, timeout: float) -> int:
    """Start the command, and SIGKILL its process group once it has stopped itself at its
    second checkpoint (`STOP_AT_SECOND_CHECKPOINT`)."""
    with tempfile.TemporaryFile() as stderr:
        # A session of its own, so the kill reaches the run and every thread it started.
        proc = subprocess.Popen([sys.executable, "-m", "helpers.signal_on_call",
                                 *STOP_AT_SECOND_CHECKPOINT, *command],
                                stdout=subprocess.DEVNULL, stderr=stderr,
                                start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while not _stopped(proc.pid):
                if proc.poll() is not None:
                    stderr.seek(0)
                    raise HelpersError(
                        f"the run ended (exit {proc.returncode}) before its second checkpoint: "
                        f"{stderr.read().decode(errors='replace').strip() or 'no message'}",
                        fix="Use a larger dataset or a smaller --checkpoint-rows")
                if time.monotonic() > deadline:
                    raise HelpersError(f"no second checkpoint after {timeout:.0f} s",
                                       fix="Check that the raw folder holds the dataset")
                time.sleep(poll)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def _stopped(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False


def _run_to_end(command: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "helpers", *command], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise HelpersError(f"the resumed run failed (exit {done.returncode}): "
                           f"{done.stderr.strip()}", fix="Read its message above")


def describe_checkpoint(saved: checkpoint.Checkpoint) -> dict[str, Any]:
    """What a checkpoint vouches for, in words a table can show."""
    names = [name for name, *_ in saved.inputs]
    reading = names[saved.file_index] if saved.file_index < len(names) else "(all files done)"
    # A checkpoint inside a file also holds that file's counts so far: only those before it
    # are finished.
    done = saved.stats.get("files", [])[:saved.file_index]
    return {"files finished": ", ".join(f["name"] for f in done) or "none",
            "file being read": reading, "records of it already written": saved.record,
            "rows written so far": saved.stats.get("rows_written", 0),
            "output bytes vouched for": saved.part_bytes,
            "rejects bytes vouched for": saved.rejects_bytes,
            "fingerprint bytes vouched for": saved.fingerprint_bytes,
            "duplicates counted so far": saved.duplicates, "finished": saved.done}


def list_leftovers(out: Path, dataset: str) -> list[dict[str, str]]:
    """Every file the run left in `out` (its log folder aside), with what it is."""
    meaning = {
        f"{dataset}.json.gz.part": "the output so far, gzip members; cut back to the "
                                   "checkpoint's size on resume",
        f"{dataset}.json.gz": "the finished output (a killed run must not have one)",
        f"_rejects/{dataset}.jsonl.gz.part": "the rejects so far, cut back likewise",
        f".ingest/state/{dataset}.json": "the checkpoint: file, record and byte sizes vouched "
                                         "for",
        f".ingest/state/{dataset}.fp": "fingerprints of the rows seen, for counting duplicates",
        f".ingest/state/.{dataset}.json.tmp": "a checkpoint being written (the old one stays "
                                              "valid)",
        ".ingest/lock": "the lock file; the OS let go of its lock when the process died",
        ".ingest/lock.owner": "the pid of the run that held the lock, for the error a second "
                              "run would show",
        "_manifest.json": "the manifest, written as each dataset finishes (here: none yet)",
    }
    logs = log_folder(Path(".")).as_posix() + "/"
    found = []
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and not rel.startswith(logs):
            found.append({"file": rel, "what it is": meaning.get(rel, "")})
    return found


def read_manifest(out: Path) -> dict[str, Any]:
    return manifest.read_manifest(Path(out))[1]


def compare_runs(clean_out: str | Path, other_out: str | Path, dataset: str) -> pd.DataFrame:
    """One dataset's counts, members and lines in two output folders, side by side: the lines
    as cut into members, not the compressed bytes, which the compressor may encode another way
    (helpers/ingest/writer.py)."""
    runs = {"clean run": Path(clean_out), "killed, then resumed": Path(other_out)}
    values = {}
    for label, out in runs.items():
        entry = read_manifest(out)[dataset]
        members = member_digests(out / f"{dataset}.json.gz")
        values[label] = {
            "rows read": entry["rows_read"], "rows written": entry["rows_written"],
            "rejected": entry["rows_rejected"], "duplicates": entry["duplicates"],
            "gzip members": len(members),
            "output lines, sha256": _joined_digest(members),
            "rejects lines, sha256": _joined_digest(
                member_digests(out / "_rejects" / f"{dataset}.jsonl.gz")),
        }
    frame = pd.DataFrame(values)
    frame["equal"] = frame["clean run"] == frame["killed, then resumed"]
    for label in runs:
        frame[label] = [_short(v) for v in frame[label]]
    return frame


def _joined_digest(members: list[str]) -> str:
    """One sha256 over the member digests: the lines and where the members cut them."""
    return hashlib.sha256("".join(members).encode()).hexdigest()


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) == 64:
        return value[:HASH_SHOWN] + "…"
    return value
