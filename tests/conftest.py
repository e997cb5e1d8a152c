"""Fixtures shared by the tests. The markers are declared in pytest.ini."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.helpers import ROOT
from tests.support.pipeline_project import REUSE_VARIABLE, reused_project, shared_build
from tests.support.shared_data import SHARED_DATA, require_shared_data

# gcsfs otherwise waits 60 s on a gRPC probe at every call (see docs/scaling.md, 'Remote').
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    """Under pytest-xdist, the main process compiles librosa's cached gufuncs before the test
    processes start (genreclf/features/librosa_cache.py, numba issue 10128).

    A hook, not a fixture: the test processes import librosa while they collect the test
    modules, before any fixture runs, and two processes that compile the cache together can
    leave it so that a third crashes on loading it. After the setup step
    (`python -m genreclf.features.librosa_cache`) this only loads the cache (a few seconds);
    it keeps plain `pytest` safe on a fresh install without that step.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER") and getattr(config.option, "numprocesses", None):
        from genreclf.features.librosa_cache import compile_librosa_gufuncs

        compile_librosa_gufuncs()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repository: real GTZAN and FMA clips (never committed).
    Missing: the test skips, or fails under CI=true (tests/support/shared_data.py)."""
    return require_shared_data(SHARED_DATA, os.environ)


@pytest.fixture(scope="session")
def gtzan_mini(shared_data) -> Path:
    return shared_data / "gtzan_mini"


@pytest.fixture(scope="session")
def pipeline_project(tmp_path_factory, worker_id, gtzan_mini) -> Path:
    """A git + DVC copy of this repository where the whole pipeline ran on gtzan_mini.

    `dvc repro` ran once with small settings (tests/support/pipeline_project.py, SMALL_PARAMS)
    and dvc.lock is committed. What it printed is in ``first_repro.log`` beside the project.
    Tests must not modify it: clone it (tests.support.pipeline_project.clone_with_shared_cache).
    GENRECLF_TEST_PROJECT reuses a project built by an earlier run, if built from this code.

    Built once per test run: under pytest-xdist in the run's temporary folder, which all the
    test processes share, by the first that asks, under a file lock that the others wait on.
    """
    reuse = os.environ.get(REUSE_VARIABLE)
    if reuse:
        return reused_project(Path(reuse))
    base = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # a test process's basetemp is a folder of the run's
        base = base.parent
    return shared_build(base / "pipeline", gtzan_mini)
