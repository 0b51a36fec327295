"""What the Chinook data is: the lowest room, imported by every other and importing none.

    tables    the Chinook schema, declared once: tables, columns, types, nullability, keys
    datasets  the four raw datasets, derived from those tables: what `make-raw` writes, what
              `ingest` types and what `load` puts back into tables
"""
