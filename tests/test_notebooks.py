"""The papermill runner: parameters reach the notebook, it runs in its own folder, a failing cell
fails the run and is named, executed copies and HTML land in the reports folder.

The notebooks under tests/notebooks/ are tiny and named for what they exercise; each test copies
the ones it needs into tmp_path, so nothing is written next to the originals.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers.cli import main
from helpers.errors import HelpersError
from helpers.notebook.runner import (
    find_notebooks,
    parse_parameter,
    refresh_notebooks,
    run_notebooks,
)

ROOT = Path(__file__).resolve().parent.parent
TEST_NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"


@pytest.fixture
def notebooks_dir(tmp_path) -> Path:
    folder = tmp_path / "nbs"
    folder.mkdir()
    for path in TEST_NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(path, folder)
    return folder


@pytest.fixture
def reports(tmp_path) -> Path:
    return tmp_path / "reports"


def stdout_of(notebook: Path) -> str:
    nb = nbformat.read(notebook, as_version=4)
    return "".join(o.text for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs if o.get("name") == "stdout")


def test_parameters_are_injected_and_the_notebook_runs_in_its_folder(notebooks_dir, reports):
    written = run_notebooks(["parameters"], {"greeting": "hi", "repeat": 3}, reports=reports,
                            html=False, notebooks_dir=notebooks_dir)
    assert written == [reports / "parameters.ipynb"]
    assert stdout_of(written[0]) == f"hihihi\n{notebooks_dir.resolve()}\n"


def test_a_run_prints_nothing_of_the_kernels_own_logging(notebooks_dir, reports, capfd):
    """The kernel warned twice per run that its local sockets are unencrypted; it inherits our
    stderr, so capfd sees whatever it prints."""
    run_notebooks(["parameters"], reports=reports, html=False, notebooks_dir=notebooks_dir)
    captured = capfd.readouterr()
    assert "without encryption" not in captured.err and "WARNING" not in captured.err


def test_defaults_hold_without_parameters(notebooks_dir, reports):
    [executed] = run_notebooks(["parameters.ipynb"], reports=reports, html=False,
                               notebooks_dir=notebooks_dir)
    assert stdout_of(executed).startswith("hello\n")


def test_html_is_written_beside_each_executed_copy(notebooks_dir, reports):
    written = run_notebooks(["parameters"], {"greeting": "bonjour"}, reports=reports,
                            notebooks_dir=notebooks_dir)
    assert written == [reports / "parameters.ipynb", reports / "parameters.html"]
    html = written[1].read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html")
    assert "bonjour" in html


def test_a_broken_cell_fails_the_run_and_names_the_cell(notebooks_dir, reports):
    with pytest.raises(HelpersError) as error:
        run_notebooks(["broken", "parameters"], reports=reports, notebooks_dir=notebooks_dir)
    message = error.value.message
    assert message.startswith(f"{notebooks_dir / 'broken.ipynb'}: cell In [3]")
    assert "'# the failing cell'" in message
    assert "ValueError: broken on purpose" in message
    assert str(reports / "broken.ipynb") in message
    # The failed run's copy and HTML keep the traceback; later notebooks are not run.
    assert "broken on purpose" in (reports / "broken.html").read_text(encoding="utf-8")
    assert "never reached" not in stdout_of(reports / "broken.ipynb")
    assert not (reports / "parameters.ipynb").exists()


def test_a_parameter_goes_only_to_notebooks_that_declare_it(notebooks_dir, reports):
    written = run_notebooks(["no_parameters", "parameters"], {"greeting": "hey"},
                            reports=reports, html=False, notebooks_dir=notebooks_dir)
    assert stdout_of(written[0]) == "no parameters cell here\n"
    assert stdout_of(written[1]).startswith("hey\n")
    assert len(nbformat.read(written[0], as_version=4).cells) == 1  # nothing injected


def test_an_unknown_parameter_is_refused_before_anything_runs(notebooks_dir, reports):
    with pytest.raises(HelpersError) as error:
        run_notebooks(["parameters"], {"greting": "hi"}, reports=reports,
                      notebooks_dir=notebooks_dir)
    assert error.value.message == (
        "parameter greting is not declared by parameters.ipynb. Use one of: greeting, repeat")
    assert not reports.exists()


def test_a_missing_notebook_is_refused_with_the_choices(notebooks_dir, reports):
    with pytest.raises(HelpersError) as error:
        run_notebooks(["nope"], reports=reports, notebooks_dir=notebooks_dir)
    assert error.value.message == (
        f"{notebooks_dir / 'nope.ipynb'}: no such notebook. Pick one of: none")


def test_by_default_only_the_numbered_walkthrough_runs(tmp_path):
    for name in ["02_wrangling", "01_processing", "scratch", ".01_hidden", "1_short"]:
        (tmp_path / f"{name}.ipynb").write_text("{}")
    assert [p.name for p in find_notebooks(None, tmp_path)] == [
        "01_processing.ipynb", "02_wrangling.ipynb"]


def test_the_project_notebooks_are_found_by_default():
    names = [p.stem for p in find_notebooks(None, ROOT / "notebooks")]
    assert "02_wrangling" in names


@pytest.mark.parametrize("text, value", [
    ("50", 50), ("0.5", 0.5), ("true", True), ("null", None), ('"50"', "50"), ("[1, 2]", [1, 2]),
    ("../db/sqlite/chinook.db", "../db/sqlite/chinook.db"), ("keep", "keep"),
])
def test_command_line_values_are_json_when_they_parse(text, value):
    assert parse_parameter(text) == value


def test_refresh_saves_outputs_in_place_without_run_metadata(notebooks_dir):
    [path] = refresh_notebooks(["parameters"], notebooks_dir=notebooks_dir)
    nb = nbformat.read(path, as_version=4)
    assert stdout_of(path).startswith("hello\n")
    assert "papermill" not in nb.metadata
    assert not [c for c in nb.cells if {"papermill", "execution"} & set(c.metadata)]
    assert sorted(p.name for p in notebooks_dir.iterdir()) == sorted(
        p.name for p in TEST_NOTEBOOKS.glob("*.ipynb"))  # no scratch file left behind


def test_refresh_leaves_a_failing_notebook_untouched(notebooks_dir):
    before = (notebooks_dir / "broken.ipynb").read_bytes()
    with pytest.raises(HelpersError, match=r"cell In \[3\]"):
        refresh_notebooks(["broken"], notebooks_dir=notebooks_dir)
    assert (notebooks_dir / "broken.ipynb").read_bytes() == before
    assert not list(notebooks_dir.glob(".*"))


def test_cli_runs_notebooks_and_lists_what_it_wrote(notebooks_dir, reports, capsys):
    code = main(["run-notebooks", "parameters", "-p", "repeat", "2", "--no-html",
                 "--reports", str(reports), "--notebooks-dir", str(notebooks_dir)])
    assert code == 0
    assert capsys.readouterr().out == f"wrote: {reports / 'parameters.ipynb'}\n"
    assert stdout_of(reports / "parameters.ipynb").startswith("hellohello\n")


def test_cli_reports_a_broken_cell_in_one_line(notebooks_dir, reports, capsys):
    code = main(["run-notebooks", "broken", "--reports", str(reports),
                 "--notebooks-dir", str(notebooks_dir)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "cell In [3]" in err


def test_cli_in_place_takes_no_parameters(notebooks_dir, capsys):
    code = main(["run-notebooks", "parameters", "--in-place", "-p", "repeat", "2",
                 "--notebooks-dir", str(notebooks_dir)])
    assert code == 1
    assert "--in-place saves the canonical run" in capsys.readouterr().err


def test_nbval_does_not_collect_the_runner_test_notebooks():
    # broken.ipynb fails on purpose: `pytest --nbval` over tests/ must never pick it up.
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "--collect-only", "-q",
         "-p", "no:cacheprovider", str(TEST_NOTEBOOKS)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 5, done.stdout  # 5: no tests collected
    assert "ipynb" not in done.stdout


def test_make_test_runs_the_notebooks_before_nbval():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, flags=re.M).group(1)
    run = recipe.index("run-notebooks")
    nbval = recipe.index("--nbval")
    assert run < nbval
    assert "--nbval-sanitize-with notebooks/nbval_sanitize.cfg notebooks/" in recipe
