"""The local stack of `make test` (dev/stack.sh), for the checks that run
something against it. Missing means failing, never skipping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def stack_env() -> dict:
    """The stack's connection settings from .stack/env (or $STACK_ENV)."""
    env_file = Path(os.environ.get("STACK_ENV", ROOT / ".stack" / "env"))
    if not env_file.is_file():
        pytest.fail(f"the local stack is not up ({env_file} is missing): `make stack` or `bash dev/stack.sh up` first")
    env = {}
    for line in env_file.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            k, v = line[len("export "):].split("=", 1)
            env[k] = v
    return env
