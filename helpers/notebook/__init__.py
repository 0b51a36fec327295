"""Only what the notebooks call: tables, charts and demonstrations over the other rooms.

    processing  the processing notebook's investigation, counts and read-back checks
    crash_demo  a run killed with SIGKILL and resumed, compared with a clean run
    wrangling   the wrangling notebook's answer tables, charts and %%memit support
    runner      papermill over the notebooks, with HTML reports

These modules need the `notebooks` extra (pandas, IPython, matplotlib, papermill); ingest,
warehouse and rawgen never import them.
"""
