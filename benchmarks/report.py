"""Turn benchmark results into numbers people read: per-peer summaries, ratios against ours,
targets met or missed, a markdown table and a bar chart."""

from __future__ import annotations

import statistics
import textwrap
from pathlib import Path

OURS = "a"
SPARK = "f"
RSS_LIMIT_MIB = 100  # issue 14: the whole process tree, at every scale
GROWTH_LIMIT = 1.15  # peak RSS at the largest scale within 15% of the smallest
JOBS_SPEEDUP = 1.7  # issue 14: one dataset on two threads against one
WALL_GROWTH_LIMIT = 4.4  # issue 14: scale 2000 at most 4.4x the time of scale 500
OURS_COLOR, PEER_COLOR = "tab:blue", "tab:orange"
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "|": "pipe", "\t": "tab"}


def summarize_peer(runs: list[dict], total_rows: int) -> dict:
    """Median wall and CPU, worst memory, and whether every repetition wrote the right rows."""
    walls = [r["wall_s"] for r in runs]
    wall = statistics.median(walls)
    problems = sorted({p for r in runs for p in r["row_problems"]}
                      | {f"run failed: exit {r['returncode']}" for r in runs if r["returncode"]})
    samples = sorted({f"{ds}: {p}" for r in runs for ds, ps in r["sample_problems"].items()
                      for p in ps})
    return {
        "runs": len(runs),
        "wall_s": round(wall, 3),
        "wall_min_s": min(walls),
        "wall_max_s": max(walls),
        "cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 3),
        "peak_tree_mib": max(r["peak_tree_mib"] for r in runs),
        "peak_tree_pss_mib": max(r["peak_tree_pss_mib"] for r in runs),
        "at_peak": max(runs, key=lambda r: r["peak_tree_mib"])["at_peak"],
        "peak_largest_mib": max(r["peak_largest_mib"] for r in runs),
        "rows_per_s": round(total_rows / wall) if wall else None,
        "output_bytes": runs[-1]["output_bytes"],
        "rows_ok": not problems,
        "row_problems": problems,
        "sample_problems": samples,
    }


def ratios(summary: dict) -> dict:
    """Each peer against ours: peer / ours for wall, CPU and peak tree RSS (>1: ours is less)."""
    ours = summary.get(OURS)
    if not ours or "wall_s" not in ours:
        return {}
    out = {}
    for key, s in summary.items():
        if key == OURS or "wall_s" not in s:
            continue
        out[key] = {m: round(s[m] / ours[m], 2) if ours[m] else None
                    for m in ("wall_s", "wall_min_s", "cpu_s", "peak_tree_mib")}
    return out


def _wall_target(summary: dict, peer: str, label: str, ratio: float, target: str) -> dict | None:
    """A target on peer / ours wall time, or None when that peer did not run."""
    ours, other = summary[OURS], summary.get(peer, {})
    if "wall_s" not in other:
        return None
    r = other["wall_s"] / ours["wall_s"]
    best = other["wall_min_s"] / ours["wall_min_s"]
    return {"target": target, "figure": f"{label} / ours = {r:.2f}x (best runs {best:.2f}x)",
            "met": r >= ratio}


def targets(scale: int, summary: dict, smallest: dict | None) -> list[dict]:
    """The issue's targets for (a) at one scale, each met or not, with the figure behind it."""
    ours = summary.get(OURS)
    if not ours or "wall_s" not in ours:
        return []
    found = [t for t in (
        _wall_target(summary, "e", "Polars + isal", 1.0,
                     "(a) wall time at most 1.0x that of (e) Polars + isal"),
        _wall_target(summary, "d", "DuckDB", 1.0, "(a) wall time at most 1.0x that of (d) DuckDB"),
        _wall_target(summary, "c", "naive", 5.0,
                     "(a) at least 5x faster than (c) the naive baseline"),
    ) if t is not None]
    peak = ours["peak_tree_mib"]
    found.append({"target": f"(a) peak RSS of the whole process tree at most {RSS_LIMIT_MIB} MiB",
                  "figure": f"{peak:.0f} MiB of RSS summed over the tree ("
                            + ", ".join(f"{p['role']} {p['rss_mib']:.0f}"
                                        for p in ours["at_peak"])
                            + f"); summed PSS {ours['peak_tree_pss_mib']:.0f} MiB; largest "
                            f"process {ours['peak_largest_mib']:.0f} MiB",
                  "met": peak <= RSS_LIMIT_MIB})
    if smallest is not None and smallest is not ours:
        growth = peak / smallest["peak_tree_mib"]
        found.append({"target": "(a) peak RSS within 15% of the smallest scale's",
                      "figure": f"x{growth:.2f} at scale {scale}", "met": growth <= GROWTH_LIMIT})
    return found


def jobs_targets(jobs: dict) -> list[dict]:
    """One dataset on two threads against one: the speed-up, and the same output."""
    if "speedup" not in jobs:
        return []
    same = _same_output(jobs)
    return [{"target": f"(a) one dataset at least {JOBS_SPEEDUP}x faster with --jobs 2 than "
                       "with --jobs 1, with the same output (members and lines)",
             "figure": f"{jobs['dataset']}: {jobs['jobs_1']['wall_s']:.1f} s against "
                       f"{jobs['jobs_2']['wall_s']:.1f} s, {jobs['speedup']:.2f}x; output "
                       f"{'the same' if same else 'DIFFERS'}, {_bytes_said(jobs)}",
             "met": jobs["speedup"] >= JOBS_SPEEDUP and same}]


def _same_output(jobs: dict) -> bool:
    return jobs.get("same_output", jobs["same_bytes"])  # results from before the key had bytes


def _bytes_said(jobs: dict) -> str:
    if jobs["same_bytes"]:
        return "compressed bytes identical"
    return "compressed bytes differ (ISA-L: see helpers/ingest/writer.py)"


def growth(scales: dict) -> dict:
    """Ours' median wall time at the largest scale against the smallest, and the target."""
    ran = [(int(k), sc["summary"].get(OURS, {})) for k, sc in scales.items()]
    ran = [(k, s) for k, s in ran if "wall_s" in s]
    if len(ran) < 2:
        return {}
    (small, a), (large, b) = min(ran, key=lambda x: x[0]), max(ran, key=lambda x: x[0])
    ratio = b["wall_s"] / a["wall_s"]
    limit = WALL_GROWTH_LIMIT * (large / small) / 4  # 4.4x for 4x the rows
    return {"small": small, "large": large, "ratio": round(ratio, 2),
            "target": {"target": f"(a) scale {large} takes at most {limit:.1f}x the time of "
                                 f"scale {small}",
                       "figure": f"{b['wall_s']:.1f} s against {a['wall_s']:.1f} s: "
                                 f"{ratio:.2f}x for {large / small:.0f}x the rows",
                       "met": ratio <= limit}}


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown(results: dict) -> str:
    """The whole results file as markdown: one table per scale, targets, load, profile."""
    labels = results["peers"]
    lines = [f"# Benchmark results, {results['date']}", "",
             f"Machine: {results['machine']}. Runs per peer: {results['reps']}, "
             "alternating, each in its own process; medians of wall and CPU time, worst peak "
             "memory. The machine was shared while this ran, so single figures are noisy: read "
             "the ratios. Method and caveats: [benchmarks/README.md](../README.md).", ""]
    lines += _code_lines(results)
    for scale, sc in results["scales"].items():
        lines += _scale_section(scale, sc, labels)
    lines += _growth_section(results.get("growth"))
    lines += _end_to_end_section(results.get("end_to_end"))
    lines += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in results["versions"].items()),
              ""]
    return "\n".join(lines)


def odd_code_runs(runs: list[dict]) -> list[str]:
    """Runs that measured other ingestion code than most runs did, as
    `scale 500 (a) rep 1: <digest>`."""
    if not runs:
        return []
    codes = [r["code"] for r in runs]
    usual = max(set(codes), key=codes.count)
    return [f"scale {r.get('scale', '?')} ({r['peer']}) rep {r['rep']}: {r['code']}"
            for r in runs if r["code"] != usual]


def _code_lines(results: dict) -> list[str]:
    codes = results.get("code", [])
    odd = results.get("odd_code_runs", [])
    where = f"Commit {results.get('commit', 'unknown')}; ingestion modules' digest"
    if len(codes) > 1 or odd:
        usual = sorted(set(codes) - {o.split(": ", 1)[1] for o in odd}) or codes
        return [f"**Warning: the ingestion code changed while this ran.** {where} "
                f"{', '.join(usual)} in most runs, other code in: {'; '.join(odd)}. Those runs "
                "are in the medians; run it again for figures of one version.", ""]
    return [f"{where} {', '.join(codes)}.", ""]


def _scale_section(scale: str, sc: dict, labels: dict) -> list[str]:
    lines = [f"## Scale {scale}: {sc['total_rows']:,} rows, {sc['raw_mb']:.0f} MB of raw files "
             "(no faults)", "",
             "| peer | wall s | peer / ours (wall) | best runs: peer / ours | CPU s "
             "| peer / ours (CPU) | peak RSS, tree MiB | peer / ours (RSS) | PSS, tree MiB "
             "| largest process MiB | rows/s | output MB | rows = manifest | sample check |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    rat = sc["ratios"]
    for key, s in sc["summary"].items():
        name = f"({key}) {labels[key]}"
        if "skipped" in s:
            lines.append(f"| {name} | skipped: {s['skipped']} ||||||||||||")
            continue
        r = rat.get(key, {})
        rows_ok = "yes" if s["rows_ok"] else "**NO**: " + "; ".join(s["row_problems"])
        sample = _sample_cell(s["sample_problems"])
        lines.append(
            f"| {name} | {s['wall_s']:.1f} | {fmt_ratio(r.get('wall_s', 1.0))} | "
            f"{fmt_ratio(r.get('wall_min_s', 1.0))} | "
            f"{s['cpu_s']:.1f} | {fmt_ratio(r.get('cpu_s', 1.0))} | {s['peak_tree_mib']:.0f} | "
            f"{fmt_ratio(r.get('peak_tree_mib', 1.0))} | {s['peak_tree_pss_mib']:.0f} | "
            f"{s['peak_largest_mib']:.0f} | {s['rows_per_s']:,} | "
            f"{s['output_bytes'] / 1e6:.1f} | {rows_ok} | {sample} |")
    lines += ["", "Wall time, medians (best runs in brackets): " + "; ".join(
        f"{labels[k]} / ours = {fmt_ratio(v['wall_s'])} ({fmt_ratio(v['wall_min_s'])})"
        for k, v in rat.items()) + ".", ""]
    lines += _spark_note(sc, labels)
    lines += _fixed_cost_section(sc, labels)
    lines += _jobs_section(sc.get("jobs"))
    if sc["targets"]:
        lines += ["### Targets", ""]
        lines += [f"- **{'met' if t['met'] else 'MISSED'}**: {t['target']}: {t['figure']}"
                  for t in sc["targets"]]
        lines.append("")
    lines += _load_section(sc.get("load"))
    lines += _profile_section(sc.get("profile"), sc.get("per_file"))
    return lines


def _jobs_section(jobs: dict | None) -> list[str]:
    if not jobs:
        return []
    if "skipped" in jobs:
        return ["### One dataset on one and two threads", "", f"Skipped: {jobs['skipped']}.", ""]
    rows = [f"| --jobs {n} | {j['wall_s']:.1f} | {j['wall_min_s']:.1f} | {j['cpu_s']:.1f} | "
            f"{j['peak_tree_mib']:.0f} |" for n, j in ((1, jobs["jobs_1"]), (2, jobs["jobs_2"]))]
    return ["### One dataset on one and two threads", "",
            f"`{jobs['dataset']}` alone (`--dataset {jobs['dataset']}`), {jobs['runs']} runs "
            "of each, alternating: blocks of its files are turned into lines on `--jobs` "
            "threads and written in order by one.", "",
            "| run | wall s | best wall s | CPU s | peak RSS, tree MiB |",
            "|---|---:|---:|---:|---:|", *rows, "",
            f"--jobs 1 / --jobs 2 = {jobs['speedup']:.2f}x (medians){_pairs_said(jobs)}; output "
            f"{'the same' if _same_output(jobs) else '**differs**'}, {_bytes_said(jobs)}.",
            ""]


def _pairs_said(jobs: dict) -> str:
    pairs = jobs.get("pair_speedups")  # results from before pairs were kept have none
    if not pairs:
        return ""
    return "; each pair: " + ", ".join(f"{r:.2f}x" for r in pairs)


def _growth_section(found: dict | None) -> list[str]:
    if not found:
        return []
    t = found["target"]
    return [f"## Scale {found['large']} against scale {found['small']}", "",
            f"- **{'met' if t['met'] else 'MISSED'}**: {t['target']}: {t['figure']}", ""]


def _spark_note(sc: dict, labels: dict) -> list[str]:
    """What (f) is, and why its figure is not a target."""
    spark = sc["summary"].get(SPARK)
    if not spark or "wall_s" not in spark:
        return []
    text = (f"({SPARK}) {labels[SPARK]} is our own ingestion on Apache Spark in local mode, on the "
            "same cores. Its figure shows Spark's fixed cost on one machine (starting a JVM, "
            "then Python workers that run our readers and normalizer and hand their lines to "
            "the JVM through Arrow, which caches each dataset once more before writing it) and "
            "is not a target: Spark is for raw folders that outgrow one machine (README, "
            "\"Scaling out\").")
    small = sc.get("fixed_cost", {}).get(SPARK)
    if small:
        text += (f" On the scale-1 files ({small['rows']:,} rows) it takes "
                 f"{small['wall_s']:.0f} s, {100 * small['wall_s'] / spark['wall_s']:.0f}% of "
                 "its median here.")
    jvm = sum(p["rss_mib"] for p in spark["at_peak"] if p["role"] == "JVM")
    if jvm:
        text += (f" Of its peak memory, {jvm:.0f} MiB of {spark['peak_tree_mib']:.0f} MiB is "
                 "the JVM's.")
    return [text, ""]


def _fixed_cost_section(sc: dict, labels: dict) -> list[str]:
    fixed = sc.get("fixed_cost")
    if not fixed:
        return []
    rows = next(iter(fixed.values()))["rows"]
    lines = [f"### Fixed cost: each peer once on the scale-1 files ({rows:,} rows)", "",
             "Start-up, imports, a JVM: what a peer pays however small the input. The last "
             "column is that run's share of the peer's median wall time at this scale.", "",
             "| peer | wall s | CPU s | peak RSS, tree MiB | rows = manifest | share of its "
             "median |", "|---|---:|---:|---:|---|---:|"]
    for key, f in fixed.items():
        big = sc["summary"][key]["wall_s"]
        lines.append(f"| ({key}) {labels[key]} | {f['wall_s']:.1f} | {f['cpu_s']:.1f} | "
                     f"{f['peak_tree_mib']:.0f} | {'yes' if f['rows_ok'] else '**NO**'} | "
                     f"{100 * f['wall_s'] / big:.0f}% |")
    return lines + [""]


def _end_to_end_section(e2e: dict | None) -> list[str]:
    if not e2e:
        return []
    steps = list(dict.fromkeys(s["step"] for r in e2e["runs"] for s in r["steps"]))
    lines = [f"## End to end: `make run` in a fresh clone (commit {e2e['commit']})", "",
             "What a newcomer waits for: `git clone`, then `make run` with no .venv, no "
             "database and no data. It creates the virtualenv and installs the project (pip, "
             f"with this machine's pip cache of {e2e['pip_cache_mb']:,} MB: a machine without one "
             "downloads more), downloads the Chinook sdist, builds the database, generates the "
             f"raw data at scale {e2e['scale']} with faults, ingests, loads and runs both "
             "notebooks. Run 2, in the same clone, is the repeat cost: installed and built "
             "already, the rest done again. Steps are timed from make's echo of each step's "
             "first command; CPU and memory cover every process make started.", "",
             "| run | wall s | exit | CPU s | peak RSS, tree MiB | "
             + " | ".join(f"{s} s" for s in steps) + " |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(steps)]
    for r in e2e["runs"]:
        took = {s["step"]: s["seconds"] for s in r["steps"]}
        cells = " | ".join(_seconds(took[s]) if s in took else "-" for s in steps)
        lines.append(f"| {r['run']} | {r['wall_s']:.0f} | {r['returncode']} | {r['cpu_s']:.0f} "
                     f"| {r['peak_tree_mib']:.0f} | {cells} |")
    lines.append("")
    for r in e2e["runs"]:
        if r["returncode"]:
            lines += [f"**Run {r['run']} failed** (exit {r['returncode']}); the end of its "
                      "stderr:", "", "```", r["stderr_tail"].strip(), "```", ""]
    return lines


def _seconds(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def _sample_cell(problems: list[str]) -> str:
    """`ds: kind (detail)` problems grouped by kind: `kind: ds1, ds2`; details stay in the JSON."""
    if not problems:
        return "ok"
    kinds: dict[str, list[str]] = {}
    for problem in problems:
        ds, _, message = problem.partition(": ")
        names = kinds.setdefault(message.split(" (")[0], [])
        if ds not in names:
            names.append(ds)
    return "; ".join(f"{kind} in {', '.join(names)}" for kind, names in kinds.items())


def _load_section(load: dict | None) -> list[str]:
    if not load:
        return []
    if "skipped" in load:
        return ["### Load", "", f"Not timed: {load['skipped']}", ""]
    return ["### Load (`python -m helpers load` on ours' output)", "",
            f"{load['rows_read']:,} processed rows read in a median {load['wall_s']:.1f} s "
            f"({load['rows_per_s']:,} rows/s); peak RSS {load['peak_tree_mib']:.0f} MiB "
            f"(largest process {load['peak_largest_mib']:.0f} MiB); reconciliation "
            f"{'clean' if load['ok'] else 'DIFFERS'}; {load['runs']} runs.", ""]


def _profile_section(profile: dict | None, per_file: list | None) -> list[str]:
    lines = []
    if profile:
        lines += ["### Where ours spends its time (py-spy, all processes)", "",
                  f"{profile['samples']:,} samples. Own time by function:", "",
                  "| function | % of samples |", "|---|---:|"]
        lines += [f"| `{f['function']}` | {f['percent']} |" for f in profile["self_top"]]
        lines += ["", "Inclusive time in our functions:", "",
                  "| function | % of samples |", "|---|---:|"]
        lines += [f"| `{f['function']}` | {f['percent']} |"
                  for f in profile["helpers_inclusive"]]
        lines.append("")
    if per_file:
        total = sum(f["seconds"] for f in per_file) or 1
        lines += ["### Each file ingested alone (`--jobs 1`, start-up included)", "",
                  "| file | format | rows | rows/s | % of the summed time | peak RSS MiB |",
                  "|---|---|---:|---:|---:|---:|"]
        for f in sorted(per_file, key=lambda f: -f["seconds"]):
            kind = " ".join(filter(None, (
                f["format"], DELIMITER_NAMES.get(f["delimiter"]),
                f["encoding"] if f["encoding"] != "utf-8" else None,
                "gzip" if f["compression"] else None)))
            lines.append(f"| {f['file']} | {kind} | {f['rows']:,} | {f['rows_per_s']:,} | "
                         f"{100 * f['seconds'] / total:.0f} | {f['peak_rss_mib']:.0f} |")
        lines.append("")
    return lines


def chart(results: dict, path: Path) -> None:
    """Bars of median wall time and peak tree RSS per peer, one group per scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = results["peers"]
    ours_keys = results.get("ours", ("a", "b"))
    scales = list(results["scales"])
    keys = [k for k in labels if any("wall_s" in results["scales"][s]["summary"].get(k, {})
                                     for s in scales)]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    width = 0.8 / max(1, len(scales))
    for i, scale in enumerate(scales):
        summary = results["scales"][scale]["summary"]
        ours = summary.get(OURS, {})
        for ax, metric in zip(axes, ("wall_s", "peak_tree_mib")):
            xs = [k_i + (i - (len(scales) - 1) / 2) * width for k_i in range(len(keys))]
            values = [summary.get(k, {}).get(metric, 0) for k in keys]
            # One scale: ours in blue, the peers in orange; several: one colour per scale.
            colors = ([OURS_COLOR if k in ours_keys else PEER_COLOR for k in keys]
                      if len(scales) == 1 else None)
            bars = ax.bar(xs, values, width, color=colors,
                          label=f"scale {scale}" if len(scales) > 1 else "_nolegend_",
                          hatch=["//" if k == SPARK else "" for k in keys])
            for bar, value in zip(bars, values):
                if ours.get(metric) and value:
                    ax.annotate(f"{value / ours[metric]:.1f}x", (bar.get_x() + bar.get_width() / 2,
                                value), ha="center", va="bottom", fontsize=8)
    axes[0].set_title("wall time, median (s); label: peer / ours")
    axes[1].set_title("peak RSS, whole process tree (MiB); label: peer / ours")
    axes[1].axhline(RSS_LIMIT_MIB, color="gray", linestyle="--", linewidth=1,
                    label=f"{RSS_LIMIT_MIB} MiB target for (a) ours")
    for ax in axes:
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([f"({k})\n" + textwrap.fill(labels[k], 14, break_on_hyphens=False)
                            for k in keys], fontsize=8)
        if len(scales) > 1 or ax is axes[1]:
            ax.legend(fontsize=8, loc="upper left")
    if SPARK in keys:
        fig.text(0.5, 0.01, f"hatched: ({SPARK}) our Spark engine in local mode, shown for its "
                 "fixed cost on one machine, not a target", ha="center", fontsize=8)
    fig.suptitle(f"Ingestion benchmark {results['date']}: same raw files, {results['reps']} "
                 "alternating runs each")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
