"""The command line and the docs stay honest: every command has help with an example, and README
names every command and the two front-door commands."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_with_an_example(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "Example:" in out
    assert f"python -m helpers {name}" in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_readme_documents_every_command(name):
    assert f"python -m helpers {name}" in README


def test_readme_quickstart_is_make_run_and_make_test():
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\s*(make \w+)\s*$", quickstart, flags=re.M)
    assert commands == ["make run", "make test"]


@pytest.mark.parametrize("target", ["run", "test", "setup", "lab", "help"])
def test_makefile_has_the_targets_readme_relies_on(target):
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^{target}:.*## ", makefile, flags=re.M)


def test_module_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "helpers", "--help"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0
    for name in COMMANDS:
        assert name in done.stdout


def test_a_helpers_error_is_one_line_and_exit_code_1(tmp_path, sdist, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / sdist.name).write_bytes(b"not the archive")
    code = main(["build-db", "--db", str(tmp_path / "x.db"), "--cache", str(cache)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("error: ") and "Delete the file and run the command again" in err


# Exit 2 for what argparse's types refuse (a usage error), 1 for what the options refuse.
@pytest.mark.parametrize("option, value, status", [
    ("--chunk-rows", "0", 2), ("--chunk-rows", "-1", 2), ("--checkpoint-rows", "0", 2),
    ("--dedupe-budget-mb", "-1", 2), ("--max-record-lines", "0", 2),
    ("--max-record-bytes", "10", 1), ("--jobs", "0", 2), ("--jobs", "-2", 2),
    ("--chunk-rows", "many", 2), ("--level", "7", 2),
])
def test_a_bad_ingest_option_is_one_line_that_names_it_and_changes_nothing(tmp_path, option,
                                                                         value, status):
    raw = tmp_path / "raw" / "things"
    raw.mkdir(parents=True)
    (raw / "a.csv").write_text("id\n1\n")
    run = subprocess.run(
        [sys.executable, "-m", "helpers", "ingest", "--raw", str(tmp_path / "raw"), "--out",
         str(tmp_path / "out"), "--no-progress", "--log-dir", str(tmp_path / "logs"), option,
         value], capture_output=True, text=True, timeout=60)  # a zero chunk used to hang
    assert run.returncode == status
    assert run.stderr.startswith("error: ") and len(run.stderr.strip().splitlines()) == 1
    assert option.lstrip("-").replace("-", "_") in run.stderr or option in run.stderr
    assert not (tmp_path / "out" / "things.json.gz").exists()


def test_an_output_path_that_is_a_file_is_one_line_not_a_traceback(tmp_path):
    (tmp_path / "raw" / "things").mkdir(parents=True)
    (tmp_path / "raw" / "things" / "a.csv").write_text("id\n1\n")
    (tmp_path / "taken").write_text("not a folder")
    run = subprocess.run([sys.executable, "-m", "helpers", "ingest", "--raw",
                          str(tmp_path / "raw"), "--out", str(tmp_path / "taken"),
                          "--no-progress", "--log-dir", str(tmp_path / "logs")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "is a file, not a folder" in run.stderr


def test_an_empty_dataset_folder_says_so_on_the_terminal(tmp_path, capsys):
    (tmp_path / "raw" / "nothing").mkdir(parents=True)
    assert main(["ingest", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out"),
                 "--no-progress", "--log-dir", str(tmp_path / "logs")]) == 0
    assert "nothing: no data files" in capsys.readouterr().out


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["ingest", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere
    for default in ("(default: raw_data)", "(default: 5000)", "(default: 10000)",
                    "(default: 1048576)", "(default: count)", "(default: local)"):
        assert default in out
    assert "(default: None)" not in out and "(default: False)" not in out
