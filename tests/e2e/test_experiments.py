"""Experiments as the README documents them: exp run -S, a queued sweep, exp show, metrics diff."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.pipeline_project import clone_with_shared_cache, dvc, stages_ran

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exp_clone(pipeline_project, tmp_path_factory):
    return clone_with_shared_cache(pipeline_project, tmp_path_factory.mktemp("exp") / "clone")


def test_single_change_runs_only_that_model(exp_clone):
    out = dvc(["exp", "run", "-n", "svm-c1", "-S", "svm.C=1"], exp_clone, timeout=900).stdout
    assert stages_ran(out) == {"train_sklearn@svm", "evaluate_sklearn@svm", "summarize"}


def test_queued_sweep_then_show_and_metrics_diff(exp_clone):
    dvc(["exp", "run", "--queue", "-S", "svm.C=0.1,1,10"], exp_clone)
    dvc(["queue", "start", "-j", "1"], exp_clone)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = dvc(["queue", "status"], exp_clone).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    assert "Failed" not in status, status
    assert status.count("Success") >= 3, status

    shown = json.loads(dvc(["exp", "show", "--json"], exp_clone).stdout)
    exps = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                data = rev.get("data") or {}
                name = rev.get("name") or data.get("name")
                c = data.get("params", {}).get("params.yaml", {}).get("data", {}).get("svm", {}).get("C")
                if name and c is not None:
                    exps[name] = c
    assert {0.1, 1, 10} <= set(exps.values()), exps

    by_c = {c: name for name, c in exps.items()}
    diff = json.loads(dvc(["metrics", "diff", by_c[0.1], by_c[10], "--json"], exp_clone).stdout)
    assert "metrics/models/svm.json" in diff
    assert "accuracy" in diff["metrics/models/svm.json"]
    # Only the svm's metrics (and the summary) can differ between these two experiments.
    assert set(diff) <= {"metrics/models/svm.json", "metrics/summary.json"}
