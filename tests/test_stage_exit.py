"""How a stage process (stages/common.py ``run_stage``) and the ``genreclf`` command
(genreclf/cli.py ``run``) end: every object still alive is frozen, so that the garbage collection
Python runs as it exits skips them; the exit status is unchanged."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.helpers import ROOT, subprocess_env

# A stage whose main returns (or raises), in a process that prints, at exit, how many objects are
# frozen.
PROBE = """
import atexit, gc, sys
from genreclf.errors import DataError
from stages.common import run_stage

def main():
    if sys.argv[1] == "fail":
        raise DataError("probe.csv: expected a column; add it")

atexit.register(lambda: print("frozen", gc.get_freeze_count()))
run_stage("probe", main)
"""


@pytest.mark.parametrize(("outcome", "status"), [("pass", 0), ("fail", 1)])
def test_a_stage_freezes_what_is_alive_before_it_exits(outcome, status):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, outcome], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True
    )
    assert proc.returncode == status, proc.stderr
    frozen = int(proc.stdout.split()[-1])
    assert frozen > 1000, proc.stdout  # at least the objects of the imports
    if status:
        assert "error: probe.csv: expected a column; add it" in proc.stderr and "Traceback" not in proc.stderr


# The genreclf command in a folder that is no project: status 1, one line.
CLI_PROBE = """
import atexit, gc, sys
from genreclf.cli import run

atexit.register(lambda: print("frozen", gc.get_freeze_count()))
sys.argv = ["genreclf", "models", "--project", sys.argv[1]]
run()
"""


def test_the_genreclf_command_freezes_what_is_alive_before_it_exits(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", CLI_PROBE, str(tmp_path)], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True
    )
    assert proc.returncode == 1, proc.stderr
    assert "not a genreclf project" in proc.stderr and "Traceback" not in proc.stderr
    assert int(proc.stdout.split()[-1]) > 1000, proc.stdout
