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
    """A fresh, mutable copy of a rendered variant (parsed once per run)."""

    def _load(variant):
        return copy.deepcopy(render.load(variant))

    return _load
