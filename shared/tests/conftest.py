import os

import pytest


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A private $PAPERWORKS_CACHE so cache tests never touch (or reuse) the user's cache."""
    monkeypatch.setenv("PAPERWORKS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


os.environ.setdefault("HF_HUB_OFFLINE", "1")
