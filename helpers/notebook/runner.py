"""Run the walkthrough notebooks headlessly with papermill: executed copies and HTML in reports/.

Each notebook runs with the notebooks' own folder as working directory, so the relative defaults in
its `parameters` cell (for example `db_path = "../db/sqlite/chinook.db"`) hold from the command
line as they do in JupyterLab. A failing cell fails the run and the error names the cell.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from helpers.errors import HelpersError

NOTEBOOKS_DIR = Path("notebooks")
KERNEL = "python3"
# The walkthrough is numbered by step (01_processing, 02_wrangling); other .ipynb files in the
# folder (scratch copies, checkpoints) are not part of a batch run unless named.
WALKTHROUGH_GLOB = "[0-9][0-9]_*.ipynb"
# papermill and nbclient write these on every run; they change each time and say nothing about
# the notebook, so the committed copies leave them out.
RUN_METADATA = ("papermill", "execution")


def run_notebooks(
    names: Iterable[str] | None = None,
    parameters: Mapping[str, object] | None = None,
    reports: Path = Path("reports"),
    html: bool = True,
    notebooks_dir: Path = NOTEBOOKS_DIR,
) -> list[Path]:
    """Execute notebooks into `reports` (plus HTML); return the files written, in order.

    `parameters` go to every notebook that declares them in its `parameters` cell; a name that no
    selected notebook declares is an error (it is almost always a typo).
    """
    paths = find_notebooks(names, notebooks_dir)
    given = dict(parameters or {})
    declared = {path: declared_parameters(path) for path in paths}
    check_parameters_known(given, declared)
    reports = Path(reports)
    reports.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for path in paths:
        own = {k: v for k, v in given.items() if k in declared[path]}
        out = reports / path.name
        try:
            execute(path, out, own)
        except HelpersError:
            # The HTML of a failed run is the quickest way to read its traceback.
            if html and out.exists():
                write_html(out)
            raise
        written.append(out)
        if html:
            written.append(write_html(out))
    return written


def refresh_notebooks(names: Iterable[str] | None = None,
                      notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """Re-run notebooks with their defaults and save the outputs back in place (what nbval checks).

    The copies stay free of papermill's run metadata, so re-running an unchanged notebook rewrites
    the same file apart from what truly varies (memory figures).
    """
    paths = find_notebooks(names, notebooks_dir)
    for path in paths:
        # Into a scratch file first: a failing run must not leave half-run outputs in git.
        scratch = path.with_name(f".{path.stem}.running.ipynb")
        try:
            execute(path, scratch, {})
            strip_run_metadata(scratch)
            scratch.replace(path)
        finally:
            scratch.unlink(missing_ok=True)
    return paths


def find_notebooks(names: Iterable[str] | None, notebooks_dir: Path) -> list[Path]:
    """Resolve names ("02_wrangling" or "02_wrangling.ipynb") in `notebooks_dir`; None: all."""
    folder = Path(notebooks_dir)
    if not folder.is_dir():
        raise HelpersError("no such notebooks folder", path=notebooks_dir,
                           fix="Run the command from the project root or pass --notebooks-dir")
    available = sorted(folder.glob(WALKTHROUGH_GLOB))
    if names is None:
        if not available:
            raise HelpersError(f"no notebooks matching {WALKTHROUGH_GLOB}", path=notebooks_dir,
                               fix="Name the notebooks to run")
        return available
    paths = []
    for name in names:
        path = folder / (name if name.endswith(".ipynb") else f"{name}.ipynb")
        if not path.is_file():
            listed = ", ".join(p.stem for p in available) or "none"
            raise HelpersError("no such notebook", path=path,
                               fix=f"Pick one of: {listed}")
        paths.append(path)
    return paths


def declared_parameters(path: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged `parameters` (empty when it has none)."""
    import papermill

    return set(papermill.inspect_notebook(str(path)))


def check_parameters_known(given: Mapping[str, object],
                           declared: Mapping[Path, set[str]]) -> None:
    known = set().union(*declared.values()) if declared else set()
    unknown = sorted(set(given) - known)
    if unknown:
        names = ", ".join(p.name for p in declared)
        raise HelpersError(
            f"parameter {', '.join(unknown)} is not declared by {names}",
            fix=f"Use one of: {', '.join(sorted(known)) or 'none (no parameters cell)'}")


def execute(path: Path, out: Path, parameters: Mapping[str, object]) -> None:
    """papermill run of `path` into `out`, in the notebook's folder; errors name the cell."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    try:
        papermill.execute_notebook(
            str(path.resolve()), str(out.resolve()), parameters=dict(parameters),
            kernel_name=KERNEL, cwd=str(path.resolve().parent), progress_bar=False,
            log_output=False,
            # The kernel logs a warning that its local TCP sockets are not encrypted, twice
            # per run; papermill's kernel listens on 127.0.0.1 only, so it is noise here.
            # Errors still reach the terminal, and a failing cell is reported from its output.
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    except papermill.PapermillExecutionError as exc:
        raise HelpersError(
            f"cell In [{exc.exec_count}] ({first_line(exc.source)!r}) failed: "
            f"{exc.ename}: {exc.evalue.rstrip('.')}",
            path=path, fix=f"See the traceback in {out}, fix the cell and run again") from exc
    except (CellTimeoutError, DeadKernelError) as exc:
        raise HelpersError(f"the kernel stopped: {exc}", path=path,
                           fix=f"See how far it got in {out}") from exc


def first_line(source: str) -> str:
    lines = [line for line in source.splitlines() if line.strip()]
    return lines[0] if lines else ""


def write_html(notebook: Path) -> Path:
    """HTML next to the executed notebook, readable without Jupyter."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    target = notebook.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def strip_run_metadata(path: Path) -> None:
    """Drop papermill's and nbclient's per-run metadata (timings, paths, parameters) in place."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for key in RUN_METADATA:
        nb.metadata.pop(key, None)
        for cell in nb.cells:
            cell.metadata.pop(key, None)
    nbformat.write(nb, path)


def parse_parameter(text: str) -> object:
    """A command-line value as JSON when it is one (50, 0.5, true, null, [1]), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
