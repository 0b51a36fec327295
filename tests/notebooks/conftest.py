"""The notebooks here exercise the papermill runner (tests/test_notebooks.py). They are not
walkthrough notebooks, so `pytest --nbval` must never collect them: broken.ipynb fails on purpose.
"""

collect_ignore_glob = ["*.ipynb"]
