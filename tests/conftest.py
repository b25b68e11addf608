"""Shared fixtures: the project root, composed configs and small data files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_DATA = Path(os.environ.get("TRIAGE_DATA_ROOT", ROOT.parent / "shared" / "data"))

# Tests never reach a hub: fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


needs_public_data = pytest.mark.skipif(
    not PUBLIC_DATA.is_dir(), reason=f"public data not found at {PUBLIC_DATA}"
)
