import copy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import render  # noqa: E402
from k8s_schema import Validator  # noqa: E402


@pytest.fixture(scope="session")
def validator():
    return Validator()


@pytest.fixture
def load():
    """A fresh, mutable copy of a rendered variant."""
    cache = {}

    def _load(variant):
        if variant not in cache:
            cache[variant] = render.load(variant)
        return copy.deepcopy(cache[variant])

    return _load
