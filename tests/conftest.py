"""Fixtures shared by several test files. Shared helper code lives in plain modules next to
the tests (toys.py, fake_world.py, data_files.py, authors_like.py, workflow_helpers.py); test
files never import each other."""

import pytest

from fake_world import FakeModel, FakeSequences
from msp import eval_protocols, evaluate


@pytest.fixture
def fake_world(monkeypatch):
    seen = []

    def make_generator(config, *, split, T, seed, device, root=None, source=None, **options):
        seen.append(dict(split=split, T=T, seed=seed, root=root, **options))
        return FakeSequences(T=T, seed=seed, **options)

    config = {"dataset": {"name": "mnist", "root": "data", "source": "embedded", "options": {}}}
    monkeypatch.setattr(evaluate, "load_checkpoint", lambda path, device: (FakeModel(), config))
    monkeypatch.setattr(eval_protocols, "make_generator", make_generator)
    return seen


def pytest_collection_modifyitems(config, items):
    """Files with slow or SLURM tests first (stable otherwise): with `-n auto --dist loadfile`
    (README) the longest files start early rather than at the end of the alphabet, leaving the
    short files to fill both workers at the end."""
    heavy_files = {item.path for item in items if item.get_closest_marker("slow") or item.get_closest_marker("slurm")}
    items.sort(key=lambda item: item.path not in heavy_files)
