"""Where our ingestion spends its time: py-spy over the whole run, and each file on its own.

`profile_run` samples every process of one ingest run with `py-spy record --subprocesses` and
sums the samples by function (self time, and inclusive time for our own `helpers` functions).
`time_files` ingests each raw file alone, in one process, to say which files cost the most time
per row and the most memory. Both feed the benchmark's notes when a target is missed; neither
changes any code.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from benchmarks.common import data_files, dataset_folders

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")
# py-spy --subprocesses puts `process PID:"command line";` frames first; the command line may
# itself hold a `;` (multiprocessing's spawn command does).
PROCESS = re.compile(r'process \d+:".*?"(;|$)')


def profile_run(raw: Path, work: Path, rate: int = 100, top: int = 12) -> dict:
    """py-spy over `python -m helpers ingest` on `raw`; the top functions by share of samples."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out, stacks = work / "profile-out", work / "profile.collapsed.txt"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [py_spy, "record", "--subprocesses", "--format", "raw", "--rate", str(rate),
           "--output", str(stacks), "--", sys.executable, "-m", "helpers", "ingest",
           "--raw", str(raw), "--out", str(out), "--no-progress", "--log-dir", str(out / "_logs")]
    subprocess.run(cmd, check=True, capture_output=True)
    shutil.rmtree(out, ignore_errors=True)
    return summarize(stacks.read_text(encoding="utf-8", errors="replace"), top)


def summarize(collapsed: str, top: int = 12) -> dict:
    """Self and inclusive shares per function from py-spy's collapsed stacks."""
    own, inclusive, total = Counter(), Counter(), 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [short(f) for f in PROCESS.sub("", stack).split(";") if f]
        if not frames:
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            if frame.startswith("helpers."):
                inclusive[frame] += n
    share = (lambda c: round(100 * c / total, 1)) if total else (lambda c: 0.0)
    return {
        "samples": total,
        "self_top": [{"function": f, "percent": share(c)} for f, c in own.most_common(top)],
        "helpers_inclusive": [{"function": f, "percent": share(c)}
                              for f, c in inclusive.most_common(top)],
    }


def short(frame: str) -> str:
    """`chunk (/x/helpers/ingest/normalize.py:1)` -> `helpers.ingest.normalize.chunk`."""
    match = FRAME.match(frame)
    if not match:
        return frame
    func, file = match["func"], match["file"]
    path = "/" + file
    if "/helpers/" in path:
        module = path.rsplit("/helpers/", 1)[1].removesuffix(".py").replace("/", ".")
        return f"helpers.{module}.{func}"
    return f"{func} ({file.rsplit('/', 1)[-1]})"


def time_files(raw: Path) -> list[dict]:
    """Ingest every data file alone, in one process (`--jobs 1`), measured: seconds (start-up
    included), rows/s and peak RSS per file."""
    from benchmarks.measure import run_measured

    found = []
    for folder in dataset_folders(raw):
        for path, fmt in data_files(folder):
            with tempfile.TemporaryDirectory() as tmp:
                single = Path(tmp, "raw", folder.name)
                single.mkdir(parents=True)
                (single / path.name).symlink_to(path.resolve())
                out = Path(tmp, "out")
                m = run_measured([sys.executable, "-m", "helpers", "ingest", "--raw",
                                  str(single.parent), "--out", str(out), "--jobs", "1",
                                  "--no-progress", "--log-dir", str(Path(tmp, "logs"))])
                manifest = json.loads((out / "_manifest.json").read_text())
            n = manifest[folder.name]["rows_read"]
            found.append({"dataset": folder.name, "file": path.name, "format": fmt.kind,
                          "delimiter": fmt.delimiter, "encoding": fmt.encoding,
                          "compression": fmt.compression, "rows": n, "seconds": m.wall_s,
                          "rows_per_s": round(n / m.wall_s) if m.wall_s else None,
                          "peak_rss_mib": m.peak_largest_mib})
    return found


if __name__ == "__main__":  # python -m benchmarks.profile RAW: the per-file table as JSON
    print(json.dumps(time_files(Path(sys.argv[1])), indent=2))
