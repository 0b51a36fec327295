"""environment.yml (for conda users) and pyproject.toml describe the same environment."""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENV_YML = (ROOT / "environment.yml").read_text()


def test_environment_installs_this_project_with_the_dev_extra():
    # It installs the project itself, so its package list cannot drift from pyproject's.
    assert re.search(r"^\s*-\s*--editable \.\[dev\]\s*$", ENV_YML, flags=re.M)
    assert "dev" in PYPROJECT["project"]["optional-dependencies"]


def test_environment_python_satisfies_requires_python():
    version = re.search(r"^\s*-\s*python=(\d+)\.(\d+)", ENV_YML, flags=re.M)
    assert version, "environment.yml must pin a python version"
    floor = re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert (int(version[1]), int(version[2])) >= (int(floor[1]), int(floor[2]))


def test_the_tools_the_design_names_are_dependencies():
    names = {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower().replace("_", "-")
             for d in PYPROJECT["project"]["dependencies"]}
    required = {"jupyterlab", "pandas", "ipython-sql", "memory-profiler", "papermill",
                "pytest", "nbval", "prettytable", "setuptools"}
    assert required <= names


def test_known_breakages_are_pinned_with_a_reason():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"prettytable<3.12"' in text and "#252" in text
    assert '"setuptools"' in text and "#407" in text


def test_running_python_is_supported():
    floor = PYPROJECT["project"]["requires-python"].removeprefix(">=").split(".")
    assert sys.version_info[:2] >= tuple(int(x) for x in floor)
