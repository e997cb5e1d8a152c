"""GENRECLF_TEST_PROJECT: a project built by an earlier run is reused only if built from this code."""

from __future__ import annotations

import re
import shutil

import pytest

from tests.support import pipeline_project
from tests.support.helpers import ROOT
from tests.support.pipeline_project import (
    FINGERPRINT_NAME,
    FINGERPRINTED,
    code_fingerprint,
    record_fingerprint,
    reused_project,
)


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
        "tests/support/pipeline_project.py",
        "tests/support/helpers.py",
    ):
        assert name in files, name
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]


def test_a_project_built_from_the_same_code_is_reused(checkout):
    root, project = checkout
    assert reused_project(project, root) == project


@pytest.mark.parametrize("changed", ["genreclf/models/predictors.py", "params.yaml", "tests/support/helpers.py"])
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
    with pytest.raises(pytest.fail.Exception, match="(?s)another test process failed.*convert: no audio"):
        pipeline_project.shared_build(tmp_path / "pipeline", tmp_path / "audio")
    assert calls == [tmp_path / "pipeline" / "project"]
