"""Each `%%sql` cell of the wrangling notebook is measured on its own run: in a real IPython shell
with ipython-sql, `measure_sql_cells()` prints one line in `%%memit`'s words after every `%%sql`
cell and none after other cells, the query runs once, and a spike freed before the cell ends still
shows in the peak, with Linux's high-water mark and with the sampler used elsewhere.
"""

from __future__ import annotations

import re
import sqlite3

import pytest

from helpers.notebook import wrangling
from helpers.notebook.wrangling import measure_sql_cells

MEMIT_LINE = re.compile(r"^peak memory: [\d.]+ MiB, increment: (-?[\d.]+) MiB$", flags=re.M)


@pytest.fixture
def shell(tmp_path):
    """A real IPython shell with ipython-sql, connected to a small writable database."""
    from IPython.core.interactiveshell import InteractiveShell

    db = tmp_path / "small.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "sql")
    ip.run_line_magic("config", "SqlMagic.short_errors = False")
    ip.run_line_magic("config", "SqlMagic.feedback = False")
    ip.run_line_magic("config", "SqlMagic.displaycon = False")
    ip.user_ns["url"] = f"sqlite:///{db}"
    ip.run_cell("%sql $url", store_history=False)
    ip.db = db
    yield ip
    for event, callback in (("pre_run_cell", wrangling._METER.start),
                            ("post_run_cell", wrangling._METER.stop)):
        if callback in ip.events.callbacks[event]:
            ip.events.unregister(event, callback)
    InteractiveShell.clear_instance()


def run(shell, source: str, capsys) -> str:
    # store_history=False, as nbval runs cells: nothing may lean on In or _i.
    done = shell.run_cell(source, store_history=False)
    assert done.success, done.error_in_exec
    return capsys.readouterr().out


def test_every_sql_cell_prints_one_memit_line_and_other_cells_none(shell, capsys):
    measure_sql_cells(shell)
    measure_sql_cells(shell)  # registering twice must not measure twice
    assert len(MEMIT_LINE.findall(run(shell, "%%sql\nSELECT COUNT(*) FROM t", capsys))) == 1
    assert len(MEMIT_LINE.findall(run(shell, "%%sql n <<\nSELECT 1 AS one", capsys))) == 1
    assert not MEMIT_LINE.findall(run(shell, "x = 1\nx", capsys))
    assert not MEMIT_LINE.findall(run(shell, "%sql SELECT 1", capsys))


def test_the_measured_query_runs_once(shell, capsys):
    measure_sql_cells(shell)
    run(shell, "%%sql\nINSERT INTO t VALUES (1)", capsys)
    with sqlite3.connect(shell.db) as con:
        assert con.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1


@pytest.mark.parametrize("high_water_mark", [True, False], ids=["linux-hwm", "sampled"])
def test_a_spike_freed_before_the_cell_ends_is_in_the_peak(shell, capsys, monkeypatch,
                                                           high_water_mark):
    if not high_water_mark:
        monkeypatch.setattr(wrangling, "_reset_high_water_mark", lambda: False)
    elif not wrangling._reset_high_water_mark():
        pytest.skip("this system has no resettable high-water mark")
    measure_sql_cells(shell)
    # SQLite builds a 200 MB blob inside the kernel process and frees it before returning.
    out = run(shell, "%%sql\nSELECT length(randomblob(200000000)) AS n", capsys)
    [increment] = MEMIT_LINE.findall(out)
    assert float(increment) > 150


def test_a_failing_query_is_measured_and_still_fails_its_cell(shell, capsys):
    measure_sql_cells(shell)
    done = shell.run_cell("%%sql\nSELECT * FROM no_such_table", store_history=False)
    assert not done.success
    assert "no such table" in str(done.error_in_exec)
    assert len(MEMIT_LINE.findall(capsys.readouterr().out)) == 1
    # and the meter is ready for the next cell
    assert len(MEMIT_LINE.findall(run(shell, "%%sql\nSELECT 1", capsys))) == 1
