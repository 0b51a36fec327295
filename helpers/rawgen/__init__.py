"""`make-raw`: messy raw_data/ generated from Chinook, with MANIFEST.json as its ground truth.

    formats   the plan of files per dataset and how each file's bytes are rendered
    generate  the files at any scale, in constant memory, the same per arguments

In: db/sqlite/chinook.db. Out: raw_data/<dataset>/* and raw_data/MANIFEST.json.
"""
