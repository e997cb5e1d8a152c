"""GENRECLF_TEST_PROJECT: a project built by an earlier run is reused only if built from this code."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from tests import pipeline_project
from tests.helpers import ROOT
from tests.pipeline_project import FINGERPRINT_NAME, FINGERPRINTED, code_fingerprint, record_fingerprint, reused_project


@pytest.fixture
def checkout(tmp_path):
    """A copy of the fingerprinted files of this repository, and a 'built' project recorded from it."""
    root = tmp_path / "checkout"
    for name in FINGERPRINTED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, root / name)
    project = tmp_path / "built" / "project"
    project.mkdir(parents=True)
    (project / "dvc.lock").write_text("schema: '2.0'\n")
    record_fingerprint(project, root)
    return root, project


def test_fingerprint_covers_the_code_the_pipeline_and_how_the_project_is_made():
    files = code_fingerprint()
    for name in (
        "dvc.yaml",
        "params.yaml",
        "genreclf/models/training.py",
        "stages/train_keras.py",
        "tests/pipeline_project.py",
        "tests/helpers.py",
    ):
        assert name in files, name
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]


def test_a_project_built_from_the_same_code_is_reused(checkout):
    root, project = checkout
    assert reused_project(project, root) == project


@pytest.mark.parametrize("changed", ["genreclf/models/predictors.py", "params.yaml", "tests/helpers.py"])
def test_one_byte_changed_is_refused_naming_the_file(checkout, changed):
    root, project = checkout
    data = bytearray((root / changed).read_bytes())
    data[len(data) // 2] ^= 0x01
    (root / changed).write_bytes(bytes(data))
    expected = rf"\(1 file\(s\) differ: changed: {re.escape(changed)}\); build a new one"
    with pytest.raises(pytest.fail.Exception, match=expected):
        reused_project(project, root)


def test_a_new_module_is_refused(checkout):
    root, project = checkout
    (root / "genreclf" / "models" / "extra.py").write_text("X = 1\n")
    with pytest.raises(pytest.fail.Exception, match=r"added: genreclf/models/extra\.py"):
        reused_project(project, root)


def test_a_project_without_a_fingerprint_is_refused(checkout):
    root, project = checkout
    (project.parent / FINGERPRINT_NAME).unlink()
    with pytest.raises(pytest.fail.Exception, match=rf"{FINGERPRINT_NAME} is missing.*GENRECLF_TEST_PROJECT="):
        reused_project(project, root)


def test_a_folder_that_is_not_a_built_project_is_refused(tmp_path):
    with pytest.raises(pytest.fail.Exception, match="not a built pipeline project"):
        reused_project(tmp_path)


# ---- the build shared by the test processes (pytest-xdist)


def test_a_shared_build_already_made_from_this_code_is_reused_without_building(tmp_path):
    project = tmp_path / "pipeline" / "project"
    project.mkdir(parents=True)
    (project / "dvc.lock").write_text("schema: '2.0'\n")
    record_fingerprint(project)
    # A build would fail: there is no audio at this path.
    assert pipeline_project.shared_build(tmp_path / "pipeline", tmp_path / "no_audio") == project


def test_a_failed_shared_build_is_recorded_and_the_next_worker_fails_at_once(tmp_path, monkeypatch):
    calls = []

    def failing_build(dest, gtzan_dir):
        calls.append(dest)
        raise AssertionError("dvc repro failed (2) in the project: convert: no audio")

    monkeypatch.setattr(pipeline_project, "build_pipeline_project", failing_build)
    with pytest.raises(AssertionError, match="no audio"):
        pipeline_project.shared_build(tmp_path / "pipeline", tmp_path / "audio")
    with pytest.raises(pytest.fail.Exception, match="(?s)another test worker failed.*convert: no audio"):
        pipeline_project.shared_build(tmp_path / "pipeline", tmp_path / "audio")
    assert calls == [tmp_path / "pipeline" / "project"]


def test_test_processes_yield_the_cpu_to_the_background_build(pytestconfig):
    """In the full suite under pytest-xdist the test processes run WORKER_NICENESS steps nicer
    than the main process that starts the end-to-end build; otherwise at its priority."""
    from tests.conftest import WORKER_NICENESS, background_build_runs

    lowered = bool(os.environ.get("PYTEST_XDIST_WORKER")) and background_build_runs(pytestconfig)
    parent = os.getpriority(os.PRIO_PROCESS, os.getppid())
    assert os.getpriority(os.PRIO_PROCESS, 0) == parent + (WORKER_NICENESS if lowered else 0)


def test_with_the_background_build_the_files_that_need_it_go_last_longest_first():
    from types import SimpleNamespace

    from tests.conftest import AFTER_THE_BUILD, file_order

    names = ["test_pipeline.py", "test_audio.py", "test_experiments.py", "test_zzz.py", "test_remote_gcs.py"]
    items = [SimpleNamespace(path=ROOT / "tests" / name) for name in names]
    needing = {item.path for item in items if item.path.name in AFTER_THE_BUILD}
    with_build = sorted(items, key=lambda item: file_order(item, needing, True))
    assert [item.path.name for item in with_build] == ["test_audio.py", "test_zzz.py", *AFTER_THE_BUILD]
    without = sorted(items, key=lambda item: file_order(item, needing, False))
    assert [item.path.name for item in without] == ["test_pipeline.py", *[n for n in names if n != "test_pipeline.py"]]
