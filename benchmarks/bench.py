"""`python -m benchmarks.bench`: ours against its peers on the same raw files, alternating.

For each scale: generate (or reuse) raw data without faults under benchmarks/work/, then run every
peer `--reps` times in the order a, b, c, d, d2, e, f, a, b, ..., each in its own process, measured
by `measure.run_measured`, its output counted against MANIFEST.json by `checks`; then each peer
once on the scale-1 files, for its fixed cost. Then time `load` on ours' output, profile ours if a
target is missed, optionally time `make run` in a fresh clone (`--end-to-end`), and write the
results JSON, latest.md and latest.png. See benchmarks/README.md for the method.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from benchmarks import checks, e2e, profile, report
from benchmarks.common import canonical_columns
from benchmarks.measure import run_measured
from helpers.fs import sha256_of
from helpers.ingest.writer import member_digests

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
# The --jobs figure comes from runs of 4-7 s, which swing by a fifth on a shared machine: one
# pair decided the target by noise (1.48x and 1.85x from the same code), so the median of three
# pairs (about 40 s in all at scale 500) is taken whatever --reps says.
JOBS_PAIRS = 3


@dataclass(frozen=True)
class Peer:
    key: str
    name: str
    argv: Callable[[Path, Path], list[str]]
    needs: tuple[str, ...] = ()  # modules it imports: a peer whose modules are missing is skipped
    extra: str = "bench"  # the extra that installs them
    check: Callable[[], str | None] | None = None  # anything else it needs: why not, or None
    ours: bool = False  # writes _manifest.json, whose rows_written are checked too

    def skip_reason(self) -> str | None:
        """Why this peer cannot run here, or None when it can."""
        missing = [m for m in self.needs if importlib.util.find_spec(m) is None]
        if missing:
            return f"{', '.join(missing)} not installed (pip install -e '.[{self.extra}]')"
        return self.check() if self.check else None


def _ours(*extra: str) -> Callable[[Path, Path], list[str]]:
    return lambda raw, out: [PY, "-m", "helpers", "ingest", "--raw", str(raw), "--out", str(out),
                             "--no-progress", "--log-dir", str(out / "_logs"), *extra]


def _peer(module: str, *extra: str) -> Callable[[Path, Path], list[str]]:
    return lambda raw, out: [PY, "-m", f"benchmarks.peers.{module}", *extra, str(raw), str(out)]


def java_missing() -> str | None:
    """The Spark engine's own Java check, as a reason to skip, or None when Java will do."""
    from helpers.errors import HelpersError
    from helpers.ingest.spark import check_java

    try:
        check_java()
    except HelpersError as e:
        return e.message
    return None


PEERS: dict[str, Peer] = {p.key: p for p in (
    Peer("a", "ours", _ours(), ours=True),
    Peer("b", "ours --dedupe off", _ours("--dedupe", "off"), ours=True),
    Peer("c", "naive", _peer("naive"), ("pandas",)),
    Peer("d", "DuckDB", _peer("duckdb_peer"), ("duckdb",)),
    Peer("d2", "DuckDB + isal", _peer("duckdb_peer", "--isal"), ("duckdb",)),
    Peer("e", "Polars + isal", _peer("polars_peer"), ("polars",)),
    Peer("f", "ours --engine spark (local[2])", _ours("--engine", "spark", "--master", "local[2]"),
         ("pyspark", "pyarrow"), "spark", java_missing, ours=True),
)}


def prepare_raw(scale: int, work: Path, db: Path) -> tuple[Path, dict]:
    """Raw files for `scale` under `work` (reused when already complete), and their manifest."""
    from helpers.rawgen.generate import make_raw

    raw = work / f"raw-{scale}"
    return raw, make_raw(db, raw, scale, faults=False)


def run_peer(peer: Peer, raw: Path, out: Path, columns: dict[str, list[str]],
             expected: dict[str, int], timeout: float) -> dict:
    """One measured run of one peer on a fresh output folder, its output checked."""
    shutil.rmtree(out, ignore_errors=True)
    measured = run_measured(peer.argv(raw, out), cwd=ROOT, timeout=timeout)
    rows, samples = checks.scan_outputs(out, columns)
    problems = checks.check_rows(expected, rows)
    if peer.ours:
        problems += ours_manifest_problems(out, expected)
    return {"peer": peer.key, **measured.to_dict(), "rows": rows, "row_problems": problems,
            "sample_problems": samples, "output_bytes": checks.output_bytes(out, list(columns))}


def ours_manifest_problems(out: Path, expected: dict[str, int]) -> list[str]:
    """Ours must also *say* it wrote exactly the manifest's rows (no rejects, nothing dropped)."""
    path = out / "_manifest.json"
    if not path.is_file():
        return ["_manifest.json missing"]
    written = {ds: e["rows_written"] for ds, e in json.loads(path.read_text()).items()
               if ds != "_run"}  # the run's own section, not a dataset
    return [f"_manifest.json {m}" for m in checks.check_rows(expected, written)]


def run_scale(scale: int, peers: list[Peer], reps: int, work: Path, db: Path,
              say: Callable[[str], None]) -> dict:
    raw, manifest = prepare_raw(scale, work, db)
    expected = checks.expected_rows(manifest)
    columns = {ds: canonical_columns(ds) for ds in expected}
    total = sum(expected.values())
    raw_bytes = sum(f["bytes"] for d in manifest["datasets"].values() for f in d["files"])
    timeout = 600 + 2 * scale
    skipped = {p.key: p.skip_reason() for p in peers}
    runnable = [p for p in peers if not skipped[p.key]]
    runs: dict[str, list[dict]] = {p.key: [] for p in runnable}
    modules = ingest_modules()
    for rep in range(reps):
        for peer in runnable:
            result = run_peer_recorded(peer, raw, work, columns, expected, timeout, modules)
            result["scale"], result["rep"] = scale, rep + 1
            runs[peer.key].append(result)
            say(f"scale {scale} rep {rep + 1} ({peer.key}) {peer.name}: "
                f"{result['wall_s']:.1f} s, {result['peak_tree_mib']:.0f} MiB tree, "
                f"rows {'ok' if not result['row_problems'] else result['row_problems']}")
    summary = {p.key: {"skipped": skipped[p.key]} if skipped[p.key]
               else report.summarize_peer(runs[p.key], total) for p in peers}
    return {"raw": str(raw), "raw_mb": raw_bytes / 1e6, "expected_rows": expected,
            "total_rows": total, "runs": [r for rs in runs.values() for r in rs],
            "summary": summary, "ratios": report.ratios(summary),
            "fixed_cost": fixed_costs(runnable, work, db, say) if scale > 1 else {}}


def run_peer_recorded(peer: Peer, raw: Path, work: Path, columns: dict[str, list[str]],
                      expected: dict[str, int], timeout: float, modules: list[Path]) -> dict:
    """`run_peer`, with the digest of the ingestion code it ran (edited meanwhile, or not)."""
    code = code_digest(modules)
    result = run_peer(peer, raw, work / f"out-{peer.key}", columns, expected, timeout)
    changed = code != code_digest(modules)
    result["code"] = f"{code} (changed during run)" if changed else code
    return result


def fixed_costs(peers: list[Peer], work: Path, db: Path, say: Callable[[str], None]) -> dict:
    """Each peer once on the scale-1 files (1/500 of the seed's rows): start-up and fixed cost,
    which a peer's figure at the larger scale includes."""
    raw, manifest = prepare_raw(1, work, db)
    expected = checks.expected_rows(manifest)
    columns = {ds: canonical_columns(ds) for ds in expected}
    found = {}
    for peer in peers:
        result = run_peer(peer, raw, work / f"out-{peer.key}-scale-1", columns, expected, 600)
        found[peer.key] = {"wall_s": result["wall_s"], "cpu_s": result["cpu_s"],
                           "peak_tree_mib": result["peak_tree_mib"],
                           "rows": sum(expected.values()),
                           "rows_ok": not result["row_problems"] and not result["returncode"]}
        say(f"scale 1 ({peer.key}) {peer.name}: {result['wall_s']:.1f} s (fixed cost)")
    return found


def jobs_compared(raw: Path, work: Path, reps: int, dataset: str = "tracks",
                  say: Callable[[str], None] = print) -> dict:
    """Ours on a folder with one dataset, on one thread and on two, in at least `JOBS_PAIRS`
    alternating pairs: each side's median wall time, CPU and peak memory, each pair's ratio,
    and whether both write the same output (members and their lines) and the same compressed
    bytes (ISA-L may differ: helpers/ingest/writer.py)."""
    reps = max(reps, JOBS_PAIRS)
    runs: dict[int, list] = {1: [], 2: []}
    digests: dict[int, set[str]] = {1: set(), 2: set()}
    members: set[tuple[str, ...]] = set()
    for rep in range(reps):
        for jobs in (1, 2):
            out = work / f"out-jobs-{jobs}"
            shutil.rmtree(out, ignore_errors=True)
            m = run_measured([*_ours()(raw, out), "--dataset", dataset, "--jobs", str(jobs)],
                             cwd=ROOT, timeout=600)
            if m.returncode:
                return {"skipped": f"--jobs {jobs} failed (exit {m.returncode}): "
                                   f"{m.stderr_tail[-300:]}"}
            runs[jobs].append(m)
            digests[jobs].add(sha256_of([out / f"{dataset}.json.gz"]))
            members.add(tuple(member_digests(out / f"{dataset}.json.gz")))
            say(f"{dataset} alone, --jobs {jobs}, rep {rep + 1}: {m.wall_s:.1f} s")
    found = {"dataset": dataset, "runs": reps}
    for jobs, ms in runs.items():
        found[f"jobs_{jobs}"] = {"wall_s": statistics.median(m.wall_s for m in ms),
                                 "wall_min_s": min(m.wall_s for m in ms),
                                 "cpu_s": statistics.median(m.cpu_s for m in ms),
                                 "peak_tree_mib": max(m.peak_tree_mib for m in ms)}
    found["speedup"] = round(found["jobs_1"]["wall_s"] / found["jobs_2"]["wall_s"], 2)
    found["pair_speedups"] = [round(one.wall_s / two.wall_s, 2)
                              for one, two in zip(runs[1], runs[2])]
    found["same_output"] = len(members) == 1
    found["same_bytes"] = len(digests[1] | digests[2]) == 1
    return found


def time_load(processed: Path, work: Path, db: Path, reps: int) -> dict:
    """`python -m helpers load` on ours' output: rows/s and peak memory, `reps` times."""
    if importlib.util.find_spec("helpers.warehouse.load") is None:
        return {"skipped": "helpers.warehouse.load does not exist yet"}
    if not (processed / "_manifest.json").is_file():
        return {"skipped": "no output of (a) to load"}
    runs = []
    for _ in range(reps):
        target, rep = work / "warehouse.db", work / "reconcile.json"
        target.unlink(missing_ok=True)
        m = run_measured([PY, "-m", "helpers", "load", "--processed", str(processed), "--db",
                          str(target), "--base", str(db), "--report", str(rep), "--allow-diff"],
                         cwd=ROOT)
        if m.returncode:
            return {"skipped": f"load failed (exit {m.returncode}): {m.stderr_tail[-300:]}"}
        runs.append((m, json.loads(rep.read_text())))
    wall = statistics.median(m.wall_s for m, _ in runs)
    rows = runs[-1][1]["rows_read"]
    return {"runs": len(runs), "wall_s": wall, "rows_read": rows,
            "rows_per_s": round(rows / wall) if wall else None,
            "cpu_s": statistics.median(m.cpu_s for m, _ in runs),
            "peak_tree_mib": max(m.peak_tree_mib for m, _ in runs),
            "peak_largest_mib": max(m.peak_largest_mib for m, _ in runs),
            "ok": all(r["ok"] for _, r in runs)}


def ingest_modules() -> list[Path]:
    """The helpers modules `python -m helpers ingest` imports (with `--engine spark`, too): their
    edits change what is measured, edits elsewhere in helpers/ (notebooks, other stages) do not."""
    probe = ("import sys, helpers.cli, helpers.ingest.engine, helpers.ingest.spark\n"
             "for name, m in sorted(sys.modules.items()):\n"
             "    if name.startswith('helpers') and getattr(m, '__file__', None):\n"
             "        print(m.__file__)\n")
    out = subprocess.run([PY, "-c", probe], cwd=ROOT, check=True, capture_output=True, text=True)
    return [Path(line) for line in out.stdout.splitlines()]


def code_digest(modules: list[Path] | None = None) -> str:
    """A short hash of the ingestion's modules as they are on disk: the tree is shared and edited
    while a benchmark runs, so each run records which code it measured."""
    digest = hashlib.sha256()
    for path in sorted(modules if modules is not None else ingest_modules()):
        name = f"{path.parent.name}/{path.name}"  # subpackages each have an __init__.py
        digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in ("pandas", "duckdb", "polars", "pyspark", "pyarrow", "isal", "orjson", "psutil"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def bench(scales: list[int], peer_keys: list[str], reps: int = 2,
          work: Path = ROOT / "benchmarks" / "work",
          results_dir: Path = ROOT / "benchmarks" / "results",
          db: Path = ROOT / "db" / "sqlite" / "chinook.db", load: bool = True,
          profile_when: str = "missed", say: Callable[[str], None] = print,
          end_to_end: bool = False) -> dict:
    """Run the whole benchmark; write `<date>.json`, `latest.md` and `latest.png`; return it."""
    work.mkdir(parents=True, exist_ok=True)
    peers = [PEERS[k] for k in peer_keys]
    started = datetime.now().isoformat(timespec="seconds")
    results = {"date": date.today().isoformat(), "started": started,
               "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}",
               "reps": reps, "peers": {p.key: p.name for p in peers}, "versions": versions(),
               "ours": [p.key for p in peers if p.ours],
               "commit": git_commit(), "scales": {}}
    smallest = None
    for scale in scales:
        sc = run_scale(scale, peers, reps, work, db, say)
        ours = sc["summary"].get("a")
        smallest = smallest or ours
        sc["targets"] = report.targets(scale, sc["summary"], smallest)
        if load:
            sc["load"] = time_load(work / "out-a", work, db, reps)
        if "a" in sc["summary"] and scale == scales[0]:
            say(f"scale {scale}: one dataset on one thread and on two")
            sc["jobs"] = jobs_compared(Path(sc["raw"]), work, reps, say=say)
            sc["targets"] += report.jobs_targets(sc["jobs"])
        missed = any(not t["met"] for t in sc["targets"])
        if "a" in sc["summary"] and (profile_when == "always"
                                     or (profile_when == "missed" and missed)):
            say(f"scale {scale}: profiling ours")
            sc["profile"] = profile.profile_run(Path(sc["raw"]), work)
            sc["per_file"] = profile.time_files(Path(sc["raw"]))
        results["scales"][str(scale)] = sc
    results["growth"] = report.growth(results["scales"])
    if end_to_end:
        say("end to end: `make run` in a fresh clone of HEAD (several minutes)")
        results["end_to_end"] = e2e.time_make_run(ROOT, work / "e2e", say=say)
    runs = [r for sc in results["scales"].values() for r in sc["runs"]]
    results["code"] = sorted({r["code"] for r in runs})
    results["odd_code_runs"] = report.odd_code_runs(runs)
    write_results(results, results_dir)
    return results


def write_results(results: dict, results_dir: Path) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{results['date']}.json").write_text(json.dumps(results, indent=2) + "\n")
    (results_dir / "latest.md").write_text(report.markdown(results))
    report.chart(results, results_dir / "latest.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scales", default="500,2000",
                   help="comma-separated scales; the first is also run with one dataset on one "
                        "and two threads, and the last is compared with the first")
    p.add_argument("--peers", default=",".join(PEERS), help=f"subset of {','.join(PEERS)}")
    p.add_argument("--reps", type=int, default=2, help="runs of each peer (alternating)")
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work",
                   help="raw data and outputs (git-ignored)")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--db", type=Path, default=ROOT / "db" / "sqlite" / "chinook.db")
    p.add_argument("--no-load", action="store_true", help="do not time `helpers load`")
    p.add_argument("--profile", choices=["missed", "always", "never"], default="missed",
                   help="profile ours when a target is missed (default), always or never")
    p.add_argument("--end-to-end", action="store_true",
                   help="also time `make run` twice in a fresh clone of HEAD under WORK/e2e "
                        "(installs, generates and runs everything: several minutes)")
    args = p.parse_args(argv)
    keys = [k.strip() for k in args.peers.split(",") if k.strip()]
    unknown = [k for k in keys if k not in PEERS]
    if unknown:
        p.error(f"unknown peer {', '.join(unknown)}; choose among {', '.join(PEERS)}")
    results = bench([int(s) for s in args.scales.split(",")], keys, args.reps, args.work,
                    args.results, args.db, not args.no_load, args.profile,
                    end_to_end=args.end_to_end)
    print((args.results / "latest.md").read_text())
    rows_ok = all(s.get("rows_ok", True) for sc in results["scales"].values()
                  for s in sc["summary"].values())
    return 0 if rows_ok and results.get("end_to_end", {}).get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
