"""No switch that DVC cannot see: every GENRECLF_* environment variable leaves the outputs byte-identical.

DVC tracks params.yaml, the code and the data, not the environment. A variable that changed
what a stage writes would let ``dvc repro`` cache other outputs under a valid dvc.lock and push
them, so whatever changes the outputs is a param. The variables the code may read are the ones
that only choose how the work is done (engine, memory, a check of the free space), and each
must give the same bytes.

The test finds every ``GENRECLF_*`` name in the code of genreclf/ and stages/ (a new one fails
until it gets a check here) and, for each, runs a stage it affects on tiny data with and without
it and compares every byte. ``tests/test_engine.py`` checks each per-clip function of convert,
shard and features on both engines, and a ``dvc repro`` on the beam engine; here the shard stage
runs whole on both.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.support.helpers import ROOT, call_stage, directory_bytes
from tests.support.keras_fixture import shard_tiny_project, write_tiny_repo

SWITCH_RE = re.compile(r"\bGENRECLF_[A-Z0-9_]+")
# Read by the tests and their support code only (tests/conftest.py, tests/support/), never by a
# stage in a real run: what they change is the test harness, not an output of the pipeline.
TEST_ONLY_PREFIX = "GENRECLF_TEST_"
BEAM_IN_PROCESS = "--runner=FnApiRunner"


def switches_in_code(root: Path = ROOT) -> set[str]:
    """Every GENRECLF_* name written in the code under genreclf/ and stages/, test-only ones aside."""
    found = set()
    for folder in ("genreclf", "stages"):
        for path in (root / folder).rglob("*.py"):
            found |= set(SWITCH_RE.findall(path.read_text(encoding="utf-8")))
    return {name for name in found if not name.startswith(TEST_ONLY_PREFIX)}


def shard_outputs(project: Path, environ: dict, monkeypatch) -> dict[str, bytes]:
    """data/shards of the tiny project after the shard stage ran under ``environ``."""
    shutil.rmtree(project / "data" / "shards", ignore_errors=True)
    with monkeypatch.context() as patch:
        for name, value in environ.items():
            patch.setenv(name, value)
        call_stage(project, "shard")
    return directory_bytes(project / "data" / "shards")


def check_shard_stage(tmp_path: Path, environ: dict, monkeypatch) -> None:
    if environ.get("GENRECLF_ENGINE") == "beam":
        pytest.importorskip("apache_beam", reason="the beam engine needs `pip install -r requirements-beam.txt`")
    project = tmp_path / "project"
    shard_tiny_project(project, seed=0, clips_per_label={"train": 3, "val": 1, "test": 1})
    unset = shard_outputs(project, {}, monkeypatch)
    assert unset and shard_outputs(project, environ, monkeypatch) == unset


def check_train_keras(tmp_path: Path, environ: dict, monkeypatch, caplog) -> None:
    outputs = {}
    for name, env in (("unset", {}), ("set", environ)):
        project = tmp_path / name
        write_tiny_repo(project)
        caplog.clear()
        with monkeypatch.context() as patch, caplog.at_level("INFO"):
            for variable, value in env.items():
                patch.setenv(variable, value)
            call_stage(project, "train_keras", "cnn1d")
        outputs[name] = {folder: directory_bytes(project / folder) for folder in ("models/cnn1d", "dvclive/cnn1d")}
        messages = [r.getMessage() for r in caplog.records]
        outputs[name]["cache"] = next(m for m in messages if m.startswith("cache train"))
    assert outputs["unset"]["cache"].startswith("cache train: yes")  # the tiny split fits the default limit
    assert outputs["set"]["cache"].startswith("cache train: no")  # the variable did change the plan
    for folder in ("models/cnn1d", "dvclive/cnn1d"):
        assert outputs["set"][folder] == outputs["unset"][folder], folder


# Each variable: the value that changes the most, and the check of the outputs it could change.
CHECKS = {
    "GENRECLF_ENGINE": (
        {"GENRECLF_ENGINE": "beam", "GENRECLF_BEAM_OPTIONS": BEAM_IN_PROCESS},
        check_shard_stage,
    ),
    "GENRECLF_BEAM_OPTIONS": (
        {"GENRECLF_ENGINE": "beam", "GENRECLF_BEAM_OPTIONS": f"{BEAM_IN_PROCESS} --direct_num_workers=1"},
        check_shard_stage,
    ),
    "GENRECLF_TFDATA_CACHE_MIB": ({"GENRECLF_TFDATA_CACHE_MIB": "0"}, check_train_keras),
    "GENRECLF_SPACE_CHECK": ({"GENRECLF_SPACE_CHECK": "off"}, check_shard_stage),  # the stages' free-space check
}


def test_every_variable_the_code_reads_has_a_check():
    found = switches_in_code()
    assert found, "no GENRECLF_* name found: the search is broken"
    unchecked = sorted(found - set(CHECKS))
    assert not unchecked, (
        f"{unchecked}: read by genreclf/ or stages/ but not checked here; make it a param in "
        "params.yaml if it changes what a stage writes, else add a check to CHECKS"
    )
    assert not set(CHECKS) - found, "CHECKS names a variable the code no longer reads: remove it"


def test_the_search_finds_a_new_variable(tmp_path):
    (tmp_path / "stages").mkdir()
    (tmp_path / "genreclf").mkdir()
    (tmp_path / "stages" / "x.py").write_text('LIMIT = os.environ.get("GENRECLF_NEW_LIMIT")\n')
    (tmp_path / "genreclf" / "y.py").write_text('LOG = "GENRECLF_TEST_READS_LOG"\n')
    assert switches_in_code(tmp_path) == {"GENRECLF_NEW_LIMIT"}


@pytest.mark.parametrize("variable", sorted(CHECKS))
def test_the_variable_leaves_the_outputs_byte_identical(variable, tmp_path, monkeypatch, caplog):
    environ, check = CHECKS[variable]
    if check is check_train_keras:
        check(tmp_path, environ, monkeypatch, caplog)
    else:
        check(tmp_path, environ, monkeypatch)
