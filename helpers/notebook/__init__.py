"""Only what the notebooks call: tables, charts and demonstrations over the other rooms.

    processing  the processing notebook's investigation, counts and read-back checks
    scaling     the approach's source, memory against input size, the benchmark's figures
    crash_demo  a run killed with SIGKILL and resumed, compared with a clean run
    append_demo a folder that gains a file: only that file read, appended, as a clean run
    schema      the schema read from a database's catalogue, and its drawn ER diagram
    wrangling   the wrangling notebook's answer sentences, charts and the memory of each %%sql cell
    run_summary what `make run` prints last: the answers and where every output is
    runner      papermill over the notebooks, with HTML reports

These modules need the `notebooks` extra (pandas, IPython, matplotlib, papermill); ingest,
warehouse and rawgen never import them.
"""
