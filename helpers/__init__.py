"""Tested helpers behind the Chinook data-engineering notebooks.

Each pipeline stage is one module with one entry function; `python -m helpers <command>`
is a thin command line over the same functions the notebooks call.
"""

__version__ = "0.1.0"
