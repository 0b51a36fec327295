"""`python -m benchmarks.ab --base REV`: our ingestion at an earlier commit against this tree.

The question a change to the ingestion must answer: is it slower than before? Both versions run
on the same raw files (generated once, without faults, as `bench` does), alternating, each in its
own process, measured by `measure.run_measured` (wall, CPU of the whole tree, peak RSS of the
tree). The base commit is checked out into a temporary worktree and run with this environment's
Python, its own package first on the path. Medians and the ratio working tree / base are printed;
outputs are compared line for line, since a faster version that writes other lines proves
nothing.

`--dataset tracks --jobs 1,2` runs one dataset under each `--jobs` in turn (both sides), for a
change meant to help the threads of one dataset: it prints each side's time under each and the
ratio of the first to the last. `--distinct N` runs on N distinct rows a file of a dataset with
no declared schema (`benchmarks.distinct`) instead of the Chinook scale.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from isal import igzip

from benchmarks.distinct import write_distinct
from benchmarks.measure import run_measured

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def ingest_argv(raw: Path, out: Path, dataset: str | None = None,
                jobs: int | None = None) -> list[str]:
    argv = [PY, "-m", "helpers", "ingest", "--raw", str(raw), "--out", str(out),
            "--no-progress", "--fresh", "--log-dir", str(out.parent / "logs")]
    if dataset is not None:
        argv += ["--dataset", dataset]
    if jobs is not None:
        argv += ["--jobs", str(jobs)]
    return argv


def lines_of(out: Path) -> dict[str, str]:
    """Each output's decompressed bytes, as a digest: the same lines in the same order."""
    found = {}
    for path in sorted(out.glob("*.json.gz")):
        digest = hashlib.sha256()
        with igzip.open(path, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
        found[path.name] = digest.hexdigest()
    return found


def run(base: str, scale: int, reps: int, work: Path, dataset: str | None = None,
        jobs: list[int | None] | None = None, distinct: int | None = None) -> int:
    if distinct:
        raw, label = work / f"raw-distinct-{distinct}", f"{distinct:,} distinct rows a file"
        if not (raw / "done").exists():
            write_distinct(raw, distinct)
            (raw / "done").touch()  # a file, not a folder: no dataset
    else:
        raw, label = work / f"raw-{scale}", f"scale {scale}"
        if not (raw / "MANIFEST.json").exists():
            subprocess.run([PY, "-m", "helpers", "make-raw", "--scale", str(scale), "--out",
                            str(raw), "--db", str(ROOT / "db" / "sqlite" / "chinook.db")],
                           check=True, cwd=ROOT)
    tree = work / "base-tree"
    shutil.rmtree(tree, ignore_errors=True)
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), base], check=True,
                   cwd=ROOT)
    try:
        sides = {"base": tree, "tree": ROOT}
        jobs = jobs or [None]
        runs: dict[str, list] = {f"{side}{_label(j)}": [] for side in sides for j in jobs}
        outputs: set[str] = set()
        for rep in range(reps):
            for j in jobs:
                for side, code in sides.items():
                    key = f"{side}{_label(j)}"
                    out = work / f"out-{side}"
                    shutil.rmtree(out, ignore_errors=True)
                    env = {**os.environ, "PYTHONPATH": str(code)}
                    m = run_measured(ingest_argv(raw, out, dataset, j), cwd=code, env=env)
                    if m.returncode != 0:
                        print(f"{key} failed:\n{m.stderr_tail}")
                        return 1
                    runs[key].append(m)
                    outputs.add(repr(lines_of(out)))
                    print(f"rep {rep + 1} {key}: wall {m.wall_s:6.2f} s  cpu {m.cpu_s:6.2f} s"
                          f"  tree peak {m.peak_tree_mib:6.1f} MiB")
        same = len(outputs) == 1
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
    for j in jobs:
        report({side: runs[f"{side}{_label(j)}"] for side in sides}, base,
               f"{label}{f', {dataset}' if dataset else ''}{_label(j)}", same)
    if len(jobs) > 1:
        first, last = _label(jobs[0]), _label(jobs[-1])
        for side in sides:
            a, b = (statistics.median(m.wall_s for m in runs[f"{side}{x}"]) for x in (first, last))
            print(f"{side}: wall{first} / wall{last} = {a / b:.2f}x")
    return 0 if same else 1


def _label(jobs: int | None) -> str:
    return "" if jobs is None else f" --jobs {jobs}"


def report(runs: dict[str, list], base: str, label: str, same: bool) -> None:
    def med(side: str, attr: str) -> float:
        return statistics.median(getattr(m, attr) for m in runs[side])

    print(f"\n{label}, medians of {len(runs['base'])} alternating runs; base = {base}")
    for attr, label in (("wall_s", "wall s"), ("cpu_s", "CPU s"),
                        ("peak_tree_mib", "tree peak MiB")):
        b, t = med("base", attr), med("tree", attr)
        print(f"  {label:<14} base {b:8.2f}   working tree {t:8.2f}   tree / base {t / b:5.2f}x")
    print(f"  outputs: {'the same lines' if same else 'DIFFERENT lines'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="the commit to compare with, e.g. HEAD~5")
    p.add_argument("--scale", type=int, default=500)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--work", default=None, help="raw data and outputs (default: a temp folder)")
    p.add_argument("--dataset", default=None, help="one dataset only, e.g. tracks")
    p.add_argument("--jobs", default=None,
                   help="comma-separated --jobs values to run each side under, e.g. 1,2")
    p.add_argument("--distinct", type=int, default=None, metavar="N",
                   help="instead of --scale: N distinct rows a file, no declared schema")
    args = p.parse_args(argv)
    jobs = [int(j) for j in args.jobs.split(",")] if args.jobs else None
    if args.work:
        return run(args.base, args.scale, args.reps, Path(args.work), args.dataset, jobs,
                   args.distinct)
    with tempfile.TemporaryDirectory(prefix="ab-") as tmp:
        return run(args.base, args.scale, args.reps, Path(tmp), args.dataset, jobs,
                   args.distinct)


if __name__ == "__main__":
    sys.exit(main())
