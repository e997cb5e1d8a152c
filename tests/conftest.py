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


@pytest.fixture(scope="session")
def pipeline_project(tmp_path_factory, gtzan_mini) -> Path:
    """A git + DVC copy of this repository where the whole pipeline ran on gtzan_mini.

    `dvc repro` ran once with small settings (tests/pipeline_project.py, SMALL_PARAMS) and
    dvc.lock is committed. What it printed is in ``first_repro.log`` beside the project.
    Tests must not modify it: clone it (tests.pipeline_project.clone_with_shared_cache).
    """
    from tests.pipeline_project import dvc, git, make_project

    reuse = os.environ.get("GENRECLF_TEST_PROJECT")   # a project built by an earlier run, for iterating
    if reuse:
        return Path(reuse)
    project = make_project(tmp_path_factory.mktemp("pipeline") / "project", gtzan_mini)
    result = dvc(["repro"], project, timeout=2400)
    (project.parent / "first_repro.log").write_text(result.stdout)
    (project.parent / "first_repro_git_status.txt").write_text(
        git(["status", "--porcelain", "--untracked-files=all"], project).stdout)
    git(["add", "-A"], project)
    git(["commit", "-q", "-m", "dvc repro"], project)
    return project
