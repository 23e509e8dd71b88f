"""Read each sample volume once per test session: the training tests build many datasets."""

from __future__ import annotations

import functools

import pytest

from fagan.data import datasets


@pytest.fixture(autouse=True)
def _read_volumes_once(monkeypatch):
    monkeypatch.setattr(datasets, "read_volume", _cached_read)


@functools.lru_cache(maxsize=8)
def _cached_read(path, frame=None):
    return _original(path, frame=frame)


_original = datasets.read_volume
