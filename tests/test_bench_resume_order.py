"""benchmarks/bench_resume.py's repeats: the order of the whole run and the killed run, checked
without running a stage (its steps replaced by ones that note what they were asked)."""

from __future__ import annotations

import pytest

from benchmarks import bench_resume


@pytest.fixture
def steps(monkeypatch, tmp_path):
    """The steps the repeats take, in order; every run writes the same output bytes."""
    taken = []
    clips = 10

    def run(project, stage, settle=0.0):
        taken.append("run")
        (tmp_path / "out").write_text("same bytes")
        reused = 5 if taken[-2:-1] == ["kill"] else 0
        return (
            2.0 if reused == 0 else 1.0,
            1.5,
            f"resume: reused {reused} clips (finished by a run that stopped), computed {clips - reused}",
        )

    def run_and_kill(project, stage, at):
        taken.append("kill")
        return at

    monkeypatch.setattr(bench_resume, "run", run)
    monkeypatch.setattr(bench_resume, "run_and_kill", run_and_kill)
    monkeypatch.setattr(bench_resume, "remove_outputs", lambda project, stage: None)
    monkeypatch.setattr(bench_resume, "clips_in", lambda project, stage: clips)
    monkeypatch.setattr(bench_resume, "outputs", lambda stage: [str(tmp_path / "out")])
    return taken


def test_the_whole_run_comes_first_then_last_in_turn(steps, tmp_path):
    row = bench_resume.measure(tmp_path, "shard", repeats=3)
    assert steps == ["run", "kill", "run"] + ["kill", "run", "run"] + ["run", "kill", "run"]
    assert [r["whole_first"] for r in row["runs"]] == [True, False, True]
    for r in row["runs"]:  # each repeat pairs the rerun after the kill with the whole run
        assert (r["full_seconds"], r["rerun_seconds"], r["reused"], r["computed"]) == (2.0, 1.0, 5, 5), r
        assert r["killed_at"] == 5 and r["same_bytes"]
    assert row["ratio"] == 0.5 and row["cpu_ratio"] == 1.0
