"""environment.yml (for conda users) and pyproject.toml describe the same environment."""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENV_YML = (ROOT / "environment.yml").read_text()


def test_environment_installs_what_make_setup_installs():
    # It installs the project itself, so its package list cannot drift from pyproject's, with
    # the same extras as `make setup`.
    extras = re.search(r"^\s*-\s*--editable \.\[([\w,]+)\]\s*$", ENV_YML, flags=re.M)
    makefile = re.search(r"--editable '\.\[([\w,]+)\]'", (ROOT / "Makefile").read_text())
    assert extras and makefile and set(extras[1].split(",")) == set(makefile[1].split(","))
    assert set(extras[1].split(",")) <= set(PYPROJECT["project"]["optional-dependencies"])


def test_environment_python_satisfies_requires_python():
    version = re.search(r"^\s*-\s*python=(\d+)\.(\d+)", ENV_YML, flags=re.M)
    assert version, "environment.yml must pin a python version"
    floor = re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert (int(version[1]), int(version[2])) >= (int(floor[1]), int(floor[2]))


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower().replace("_", "-")
            for d in requirements}


def test_the_tools_the_design_names_are_in_the_extras_make_setup_installs():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"jupyterlab", "pandas", "ipython-sql", "memory-profiler", "papermill",
            "prettytable", "setuptools"} <= names(extras["notebooks"])
    assert {"pytest", "nbval", "hypothesis"} <= names(extras["test"])


def test_the_core_brings_no_notebook_or_test_stack():
    core = names(PYPROJECT["project"]["dependencies"])
    assert not core & {"jupyterlab", "pandas", "ipython-sql", "matplotlib", "pytest", "nbval",
                       "papermill", "psutil"}


def test_known_breakages_are_pinned_with_a_reason():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"prettytable<3.12"' in text and "#252" in text
    assert '"setuptools"' in text and "#407" in text


def test_running_python_is_supported():
    floor = PYPROJECT["project"]["requires-python"].removeprefix(">=").split(".")
    assert sys.version_info[:2] >= tuple(int(x) for x in floor)
