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
