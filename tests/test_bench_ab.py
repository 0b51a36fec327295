"""`python -m benchmarks.ab`: an earlier commit against the working tree, on the same files."""

from __future__ import annotations

from benchmarks import ab


def test_ab_runs_both_sides_and_compares_their_lines(tmp_path, capsys):
    assert ab.main(["--base", "HEAD", "--scale", "1", "--reps", "1", "--work",
                    str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "rep 1 base" in out and "rep 1 tree" in out
    assert "tree / base" in out and "the same lines" in out
    assert not (tmp_path / "base-tree").exists()  # the temporary worktree is removed


def test_ab_runs_one_dataset_under_each_jobs_value(tmp_path, capsys):
    assert ab.main(["--base", "HEAD", "--scale", "1", "--reps", "1", "--work", str(tmp_path),
                    "--dataset", "tracks", "--jobs", "1,2"]) == 0
    out = capsys.readouterr().out
    for side in ("base", "tree"):
        assert f"rep 1 {side} --jobs 1:" in out and f"rep 1 {side} --jobs 2:" in out
        assert f"{side}: wall --jobs 1 / wall --jobs 2 = " in out
    assert "scale 1, tracks --jobs 2" in out and "the same lines" in out


def test_lines_of_tells_equal_outputs_from_different_ones(tmp_path):
    import gzip

    for name, body in (("a", b'{"x":1}\n'), ("b", b'{"x":1}\n'), ("c", b'{"x":2}\n')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "d.json.gz").write_bytes(gzip.compress(body))
    assert ab.lines_of(tmp_path / "a") == ab.lines_of(tmp_path / "b")
    assert ab.lines_of(tmp_path / "a") != ab.lines_of(tmp_path / "c")


def test_ab_runs_on_distinct_rows_of_an_undeclared_dataset(tmp_path, capsys):
    assert ab.main(["--base", "HEAD", "--distinct", "300", "--reps", "1", "--work",
                    str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "300 distinct rows a file, medians of 1" in out and "the same lines" in out
    lines = ab.lines_of(tmp_path / "out-tree")
    assert list(lines) == ["events.json.gz"]


def test_distinct_rows_never_repeat_and_are_written_alike_twice(tmp_path):
    from benchmarks.distinct import write_distinct

    for run in ("a", "b"):
        write_distinct(tmp_path / run, 200)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert [str(f) for f in files] == ["events/events_0.csv", "events/events_1.jsonl"]
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    rows = (tmp_path / "a" / files[0]).read_text().splitlines()[1:]
    rows += (tmp_path / "a" / files[1]).read_text().splitlines()
    assert len(rows) == 400 and len({r.split(",")[0].split(":")[-1] for r in rows}) == 400
