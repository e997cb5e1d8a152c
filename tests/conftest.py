"""Shared test fixtures: where the repository and the real audio in ../shared are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import ROOT

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
        pytest.fail(
            f"{SHARED_DATA} is missing: the tests need ../shared/data beside the repository (see ../shared/README.md)"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def gtzan_mini(shared_data) -> Path:
    return shared_data / "gtzan_mini"


@pytest.fixture(scope="session")
def pipeline_project(tmp_path_factory, gtzan_mini) -> Path:
    """A git + DVC copy of this repository where the whole pipeline ran on gtzan_mini.

    `dvc repro` ran once with small settings (tests/pipeline_project.py, SMALL_PARAMS) and
    dvc.lock is committed. What it printed is in ``first_repro.log`` beside the project.
    Tests must not modify it: clone it (tests.pipeline_project.clone_with_shared_cache).
    GENRECLF_TEST_PROJECT reuses a project built by an earlier run, if built from this code.

    Under pytest-xdist (``-n 2``) the first worker that needs it builds it, under a file lock, in
    the run's shared temporary folder; the others wait for it and reuse it.
    """
    from tests.pipeline_project import REUSE_VARIABLE, reused_project, shared_build

    reuse = os.environ.get(REUSE_VARIABLE)
    if reuse:
        return reused_project(Path(reuse))
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker's basetemp is a folder of the run's
        base = base.parent
    return shared_build(base / "pipeline", gtzan_mini)


FIRST_FILE = "test_pipeline.py"  # its first test needs the end-to-end project


def pytest_collection_modifyitems(session, config, items):
    """FIRST_FILE first (the rest in their order): pytest-xdist (--dist loadfile) hands files out
    in this order, so one process starts building the end-to-end project at once while the
    other runs the tests that do not need it."""
    items.sort(key=lambda item: item.path.name != FIRST_FILE)
