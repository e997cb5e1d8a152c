"""Shared test fixtures: where the repository and the real audio in ../shared are."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.pipeline_project import REUSE_VARIABLE

SHARED_DATA = ROOT.parent / "shared" / "data"
BACKGROUND_BUILD = pytest.StashKey[subprocess.Popen]()
# How much lower the test processes' CPU priority is than the background build's (Linux CFS:
# against a busy build process on the same core, a process 10 steps nicer gets about a tenth).
# At 5 steps (a quarter) the build still took 14 min and the test processes then waited
# 476 s and 156 s for it: they have the slack to yield more.
WORKER_NICENESS = 10

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
    from tests.pipeline_project import reused_project, shared_build

    reuse = os.environ.get(REUSE_VARIABLE)
    if reuse:
        return reused_project(Path(reuse))
    return shared_build(pipeline_folder(tmp_path_factory), gtzan_mini)


def pipeline_folder(tmp_path_factory) -> Path:
    """Where the run's end-to-end project is built: one folder for all the test processes."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker's basetemp is a folder of the run's
        base = base.parent
    return base / "pipeline"


def runs_the_whole_suite(config) -> bool:
    """No marker or keyword selection and no test file named: every test runs, the end-to-end ones too."""
    named = [arg for arg in config.args if not Path(arg.split("::")[0]).is_dir()]
    return not (config.option.markexpr or config.option.keyword or named)


def pytest_configure(config):
    """Under pytest-xdist:

    - the main process compiles librosa's cached gufuncs before the test processes start, so
      that they and the stages they run load one consistent numba cache instead of compiling
      it together (a fresh install could then crash one of them:
      genreclf/features/librosa_cache.py). About 7 s with the cache written, 45 s without;
    - with the background build, each test process lowers its own CPU priority (and so that of
      the commands it runs) by WORKER_NICENESS: the build is the run's critical path, and the
      other tests fill the CPU time it leaves.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        if background_build_runs(config):
            os.nice(WORKER_NICENESS)
    elif getattr(config.option, "numprocesses", None):
        from genreclf.features.librosa_cache import compile_librosa_gufuncs

        compile_librosa_gufuncs()


def background_build_runs(config) -> bool:
    """Whether the main process builds the end-to-end project in the background: the full suite
    under pytest-xdist, with ../shared/data and without GENRECLF_TEST_PROJECT. (A test process
    sees numprocesses unset: that it is one says pytest-xdist runs.)"""
    under_xdist = bool(os.environ.get("PYTEST_XDIST_WORKER") or getattr(config.option, "numprocesses", None))
    return (
        under_xdist
        and not os.environ.get(REUSE_VARIABLE)
        and runs_the_whole_suite(config)
        and (SHARED_DATA / "gtzan_mini").is_dir()
    )


def pytest_sessionstart(session):
    """In the full suite under pytest-xdist, the main process starts building the end-to-end
    project at once, in the background (tests/pipeline_project.py, shared_build: the test
    processes wait for it under the same file lock), instead of when a test process has
    collected the tests and reached the first test that needs it."""
    config = session.config
    if os.environ.get("PYTEST_XDIST_WORKER") or not background_build_runs(config):
        return
    folder = pipeline_folder(config._tmp_path_factory)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "background_build.log", "w") as log:
        config.stash[BACKGROUND_BUILD] = subprocess.Popen(
            [sys.executable, "-m", "tests.pipeline_project", str(folder), str(SHARED_DATA / "gtzan_mini")],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with dvc and the stage it runs
        )


def pytest_sessionfinish(session):
    """Stop a background build that no test waited for (a run cut short)."""
    build = session.config.stash.get(BACKGROUND_BUILD, None)
    if build is not None and build.poll() is None:
        os.killpg(build.pid, signal.SIGTERM)
        build.wait(timeout=60)


FIRST_FILE = "test_pipeline.py"  # its first test needs the end-to-end project
# With the background build, the files that need the end-to-end project go last, the longest
# after the build first (measured in CI: the push and pull of the whole project, the forced
# reruns, the queued sweep), so that the two test processes finish them together.
AFTER_THE_BUILD = ("test_remote_gcs.py", "test_experiments.py", "test_pipeline.py")


def file_order(item, needing: set, background: bool) -> tuple:
    """The sort key of a test's file (see pytest_collection_modifyitems)."""
    name = item.path.name
    if not background:
        return (name != FIRST_FILE,)
    rank = AFTER_THE_BUILD.index(name) if name in AFTER_THE_BUILD else len(AFTER_THE_BUILD)
    return (item.path in needing, rank)


def pytest_collection_modifyitems(session, config, items):
    """The order in which pytest-xdist (--dist loadfile, --no-loadscope-reorder) hands out the files.

    - With the background build: the files with a test that needs the end-to-end project go
      last (AFTER_THE_BUILD's order first among them), so that both test processes run the
      other tests while the project builds, instead of waiting for it.
    - Without: FIRST_FILE first, so that one process starts building the project at once while
      the other runs the tests that do not need it.
    """
    background = background_build_runs(config)
    needing = {item.path for item in items if "pipeline_project" in item.fixturenames}
    items.sort(key=lambda item: file_order(item, needing, background))
