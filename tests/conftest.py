"""Shared test fixtures: where the repository and the real audio in ../shared are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# gcsfs otherwise waits 60 s on a gRPC probe at every call (see README, 'Remote').
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repository: real GTZAN and FMA clips (never committed)."""
    if not (SHARED_DATA / "gtzan_mini").is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: the tests need ../shared/data beside the repository "
                    "(see ../shared/README.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def gtzan_mini(shared_data) -> Path:
    return shared_data / "gtzan_mini"
