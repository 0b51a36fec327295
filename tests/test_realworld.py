"""Hand-made fixtures that imitate real exports, one quirk per folder of fixtures/realworld/.

Each case holds `raw/<dataset>/<files>` and `expected.json`, written by hand from the ingestion
rules (never copied from the tool's output). Bytes that a text file cannot hold (gzip, UTF-16/32,
NUL, stray bytes, huge fields) are made from the text by the "build" steps, applied to a copy:

- "repeat": {"marker", "text", "times"}: the marker becomes text * times; the same marker in the
  expected rows stands for the same expansion;
- "replace_hex": {"from", "to"}: every occurrence of the bytes `from` becomes `to`;
- "encode": a codec for the UTF-8 text; "utf-16" and "utf-32" mean little-endian with a BOM;
- "gzip": true, compressed with "gzip_level" (default 6) and mtime 0; "gzip_split": a marker
  where a new gzip member starts; "corrupt_member": n, the n-th member (1-based) gets 0xff as
  its first deflate byte (reserved block type 3: an error before any of its data);
- "cut_tail_bytes": n bytes dropped from the end; "append_hex": bytes added at the end.
"""

from __future__ import annotations

import codecs
import gzip
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

CASES = Path(__file__).parent / "fixtures" / "realworld"
CASE_NAMES = sorted(p.parent.name for p in CASES.glob("*/expected.json"))
BOMS = {"utf-16": codecs.BOM_UTF16_LE, "utf-32": codecs.BOM_UTF32_LE}
GZIP_HEADER = 10  # gzip.compress writes no file name, so the deflate data starts here


def build(data: bytes, step: dict[str, Any]) -> bytes:
    """One "build" step applied to a file's bytes, in the order of the module docstring."""
    if "repeat" in step:
        rep = step["repeat"]
        data = data.replace(rep["marker"].encode(), (rep["text"] * rep["times"]).encode())
    if "replace_hex" in step:
        swap = step["replace_hex"]
        data = data.replace(bytes.fromhex(swap["from"]), bytes.fromhex(swap["to"]))
    if "encode" in step:
        codec = step["encode"]
        text = data.decode("utf-8")
        data = BOMS[codec] + text.encode(f"{codec}-le") if codec in BOMS else text.encode(codec)
    if step.get("gzip"):
        parts = data.split(step["gzip_split"].encode()) if "gzip_split" in step else [data]
        level = step.get("gzip_level", 6)
        members = [gzip.compress(part, compresslevel=level, mtime=0) for part in parts]
        if "corrupt_member" in step:
            n = step["corrupt_member"] - 1
            members[n] = members[n][:GZIP_HEADER] + b"\xff" + members[n][GZIP_HEADER + 1:]
        data = b"".join(members)
    if step.get("cut_tail_bytes"):
        data = data[: -step["cut_tail_bytes"]]
    if "append_hex" in step:
        data += bytes.fromhex(step["append_hex"])
    return data


def expand(value: Any, repeats: list[dict[str, Any]]) -> Any:
    """The expected value with each repeat marker replaced by its expansion."""
    if isinstance(value, str):
        for rep in repeats:
            value = value.replace(rep["marker"], rep["text"] * rep["times"])
        return value
    if isinstance(value, list):
        return [expand(v, repeats) for v in value]
    if isinstance(value, dict):
        return {k: expand(v, repeats) for k, v in value.items()}
    return value


def typed(value: Any) -> Any:
    """A value with its JSON type (and its keys' order) made part of it: 1, 1.0, True differ."""
    if isinstance(value, dict):
        return ("object", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("array", [typed(v) for v in value])
    return (type(value).__name__, value)


def read_json_lines(path: Path) -> list[Any]:
    if not path.exists():
        return []
    with gzip.open(path, "rb") as f:
        return [json.loads(line) for line in f.read().splitlines() if line.strip()]


def short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def check_rejects(got: list[dict], want: dict[str, Any]) -> None:
    """The expected rejects, each once with its reason, and no others.

    A file expected to be damaged may also report its damage as one extra reject.
    """
    for reject in got:
        assert {"file", "line", "reason", "raw"} <= set(reject), short(reject)
    extra = Counter((r["file"], r["line"]) for r in got)
    missing = []
    for exp in want["rejects"]:
        key = (exp["file"], exp["line"])
        if extra[key] == 0:
            missing.append(exp)
            continue
        extra[key] -= 1
        reasons = [r["reason"] for r in got if (r["file"], r["line"]) == key]
        needle = exp.get("reason_contains", "")
        assert any(needle in str(reason) for reason in reasons), (exp, reasons)
    assert not missing, f"rejects missing: {missing}; got {short(got, 2000)}"
    damaged = {f["name"] for f in want.get("files", []) if f.get("damage")}
    per_file = Counter(name for (name, _), n in extra.items() for _ in range(n))
    unexpected = {name: n for name, n in per_file.items() if name not in damaged or n > 1}
    assert not unexpected, f"unexpected rejects {unexpected}: {short(got, 2000)}"


def check_files(files: list[dict], want_files: list[dict]) -> None:
    for entry in files:
        counted = sum(entry.get(k) or 0 for k in ("rows", "rejected", "blank", "comments"))
        assert entry.get("physical_records") == counted, (
            f"{entry.get('name')}: physical_records != rows + rejected + blank + comments",
            short(entry, 1000))
    by_name = {entry.get("name"): entry for entry in files}
    for want in want_files:
        entry = by_name.get(want["name"])
        assert entry is not None, f"no manifest entry for {want['name']}: {list(by_name)}"
        for key, value in want.items():
            got = entry.get(key)
            if key == "damage":
                assert isinstance(got, dict) if value else got is None, (want["name"], got)
                if value:
                    assert {"line", "offset", "reason"} <= set(got), (want["name"], got)
            elif key == "renamed":
                assert (got or {}) == value, (want["name"], key, got)
            else:
                assert got == value, (want["name"], key, got, short(entry, 1000))


def test_every_expected_json_parses_and_names_its_raw_files():
    assert len(CASE_NAMES) >= 35
    for name in CASE_NAMES:
        want = json.loads((CASES / name / "expected.json").read_text(encoding="utf-8"))
        assert {"dataset", "columns", "rows", "rejects", "why"} <= set(want), name
        folder = CASES / name / "raw" / want["dataset"]
        assert folder.is_dir(), name
        for step in want.get("build", []):
            assert (CASES / name / step["file"]).is_file(), (name, step["file"])
        for item in want["rejects"] + want.get("files", []):
            assert (folder / item.get("file", item.get("name"))).is_file(), (name, item)


@pytest.mark.parametrize("case", CASE_NAMES)
def test_realworld(case: str, tmp_path: Path) -> None:
    # Imported here, so the fixtures' own check runs even while helpers/ does not import.
    from helpers.ingest.dataset_pass import Options
    from helpers.ingest.engine import ingest

    want = json.loads((CASES / case / "expected.json").read_text(encoding="utf-8"))
    shutil.copytree(CASES / case / "raw", tmp_path / "raw")
    for step in want.get("build", []):
        path = tmp_path / step["file"]
        path.write_bytes(build(path.read_bytes(), step))
    out = tmp_path / "out"
    manifest = ingest(tmp_path / "raw", out, options=Options(), jobs=1, progress=False,
                      log_dir=None)
    dataset = want["dataset"]
    entry = manifest[dataset]
    repeats = [step["repeat"] for step in want.get("build", []) if "repeat" in step]
    rows = read_json_lines(out / f"{dataset}.json.gz")
    rejects = read_json_lines(out / "_rejects" / f"{dataset}.jsonl.gz")

    assert entry["columns"] == want["columns"]
    expected_rows = expand(want["rows"], repeats)
    assert len(rows) == len(expected_rows), (short(rows, 2000), short(rejects, 2000))
    for n, (got, exp) in enumerate(zip(rows, expected_rows, strict=True)):
        assert typed(got) == typed(exp), f"row {n}: got {short(got)}, want {short(exp)}"
    assert entry["rows_written"] == len(expected_rows)
    check_rejects(rejects, want)
    assert entry["rows_rejected"] == len(rejects)
    check_files(entry["files"], want.get("files", []))
