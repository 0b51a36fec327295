"""The whole loop: messy raw files, ingested, loaded into SQLite, answer every wrangling question
exactly as the original database does."""

import sqlite3

import nbformat
import pandas as pd
import pytest

from helpers.ingest.engine import ingest
from helpers.rawgen.generate import make_raw
from helpers.warehouse.load import load
from tests.wrangling_util import NOTEBOOK, QUESTIONS, question_sql


@pytest.fixture(scope="module")
def warehouse(chinook_db, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    make_raw(chinook_db, root / "raw", scale=2, faults=True)
    ingest(root / "raw", root / "processed", progress=False, log_dir=None)
    report = load(root / "processed", root / "warehouse.db", chinook_db)
    assert report.ok
    return root / "warehouse.db"


@pytest.mark.parametrize("tag", QUESTIONS)
def test_every_question_has_the_same_answer_on_the_loaded_warehouse(warehouse, chinook_db, tag):
    sql = question_sql(nbformat.read(NOTEBOOK, as_version=4), tag)
    with sqlite3.connect(chinook_db) as base, sqlite3.connect(warehouse) as loaded:
        expected = pd.read_sql(sql, base)
        got = pd.read_sql(sql, loaded)
    assert not expected.empty
    pd.testing.assert_frame_equal(got, expected)
