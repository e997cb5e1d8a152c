"""The beam engine through DVC: `dvc repro -f -s convert shard features` on the beam engine, with
2 worker processes, in a DVC project where the local engine ran them: dvc.lock must not change.

Its own small project (50 gtzan_mini clips), not the end-to-end one.
"""

from __future__ import annotations

import re
import sys

import pytest

from genreclf.engine import BEAM, ENGINE_VARIABLE, OPTIONS_VARIABLE
from tests.support.helpers import run_command, subprocess_env
from tests.support.pipeline_project import git, make_dvc_project, stages_ran

pytest.importorskip("genreclf.beam", reason="the beam engine needs `pip install -r requirements-beam.txt`")

BEAM_PROJECT_CLIPS_PER_GENRE = 5  # 50 of gtzan_mini's clips: every genre, 3 splits


@pytest.mark.slow
def test_the_beam_engine_reproduces_the_data_stages_byte_for_byte(gtzan_mini, tmp_path):
    """In a DVC project of this repository where `dvc repro shard features` ran on the local
    engine (50 gtzan_mini clips, dvc.lock committed), the beam engine runs the data stages again."""
    clone = make_dvc_project(
        tmp_path / "project", gtzan_mini, {"data": {"clips_per_genre": BEAM_PROJECT_CLIPS_PER_GENRE}}
    )
    local = run_command([sys.executable, "-m", "dvc", "repro", "shard", "features"], clone, timeout=1200)
    assert stages_ran(local.stdout + local.stderr) == {"fetch", "convert", "split", "shard", "features"}
    git(["add", "dvc.lock"], clone)
    git(["commit", "-q", "-m", "the data stages on the local engine"], clone)
    env = {**subprocess_env(), ENGINE_VARIABLE: BEAM, OPTIONS_VARIABLE: "--direct_num_workers=2"}
    result = run_command(
        [sys.executable, "-m", "dvc", "repro", "-f", "-s", "convert", "shard", "features"], clone, env=env, timeout=1200
    )
    output = result.stdout + result.stderr
    assert stages_ran(output) == {"convert", "shard", "features"}  # -s: not fetch and split again
    options = "--runner=FnApiRunner --direct_running_mode=multi_processing --direct_num_workers=2"
    for stage in ("convert", "shard", "features"):
        assert re.search(rf"stages\.{stage}: read .*; engine beam \({options}\)\n", output), output[-3000:]
    assert output.count("genreclf.beam: beam: ") == 6  # each stage's pipeline: its items, then its results
    assert git(["status", "--porcelain", "dvc.lock"], clone).stdout == ""
    assert git(["diff", "dvc.lock"], clone).stdout == ""
