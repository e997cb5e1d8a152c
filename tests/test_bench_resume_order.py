"""benchmarks/bench_resume.py checked without running a stage: the order of the whole run and the
killed run in its repeats (its steps replaced by ones that note what they were asked), and the
project it times stages in."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

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


def test_the_projects_code_is_compiled_before_any_timed_run(tmp_path):
    source = tmp_path / "source"
    for genre in ("blues", "rock"):
        (source / genre).mkdir(parents=True)
        (source / genre / f"{genre}.00000.wav").write_bytes(b"not read: only linked")
    project = bench_resume.make_project(tmp_path / "project", source, 4, {"data": {}})
    modules = [*project.glob("stages/*.py"), *project.glob("genreclf/**/*.py")]
    assert len(modules) > 20
    for module in modules:  # the bytecode that an import of the module would load
        assert Path(importlib.util.cache_from_source(str(module))).is_file(), module
    assert len(list(project.glob("data/raw/audio/*/*.wav"))) == 4


def test_each_timed_run_starts_after_the_sync_the_pause_and_the_warming(monkeypatch, tmp_path):
    taken = []
    monkeypatch.setattr(bench_resume.os, "sync", lambda: taken.append("sync"))
    monkeypatch.setattr(bench_resume.time, "sleep", lambda seconds: taken.append(("sleep", seconds)))
    monkeypatch.setattr(bench_resume, "warm_memory", lambda mib: taken.append(("warm", mib)))

    def stage(command, **kwargs):
        taken.append(("stage", command[-1]))
        return subprocess.CompletedProcess(command, 0, "", "the stage's log")

    monkeypatch.setattr(bench_resume.subprocess, "run", stage)
    *_, log = bench_resume.run(tmp_path, "shard", bench_resume.Start(settle_seconds=5.0, warm_mib=3000))
    assert taken == ["sync", ("sleep", 5.0), ("warm", 3000), ("stage", "stages.shard")]
    assert log == "the stage's log"


def test_the_warming_writes_every_page_of_its_memory():
    """The process's peak resident memory (VmHWM: of this process image, unlike ru_maxrss, which a
    child carries over from its parent) reaches what it held before the warming plus the 256 MiB
    warmed: the pages were written, not only reserved (an untouched allocation stays out of it)."""
    script = (
        "import re; from benchmarks.bench_resume import warm_memory\n"
        "kib = lambda key: int(re.search(key + r':\\s+(\\d+) kB', open('/proc/self/status').read())[1])\n"
        "resident = kib('VmRSS'); warm_memory(256); print((kib('VmHWM') - resident) / 1024)"
    )
    root = Path(bench_resume.__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True)
    grown_mib = float(proc.stdout)
    assert 250 <= grown_mib <= 300, grown_mib


def test_convert_runs_once_untimed_when_only_later_stages_are_timed(monkeypatch, tmp_path):
    taken = []
    monkeypatch.setattr(bench_resume, "make_project", lambda folder, source, clips, params: folder)
    monkeypatch.setattr(bench_resume, "write_project_split", lambda project: taken.append("split"))
    monkeypatch.setattr(bench_resume, "run", lambda project, stage, start=None: taken.append(("run", stage)))
    monkeypatch.setattr(bench_resume, "measure", lambda project, stage, *a, **k: taken.append(("measure", stage)))
    args = bench_resume.parse_args(["--stages", "shard", "--clips", "100", "--json", str(tmp_path / "b.json")])
    assert args.stages == ["shard"] and args.warm_mib == bench_resume.WARM_MIB_PER_CLIP * 100
    bench_resume.measure_stages(tmp_path, args)
    assert taken == [("run", "convert"), "split", ("measure", "shard")]
    taken.clear()
    bench_resume.measure_stages(tmp_path, bench_resume.parse_args(["--stages", "convert,embed"]))
    assert taken == [("measure", "convert"), "split", ("run", "pretrained"), ("measure", "embed")]


def test_an_unknown_stage_is_refused_by_name(capsys):
    with pytest.raises(SystemExit):
        bench_resume.parse_args(["--stages", "shard,shrad"])
    assert "--stages: expected names of convert,convert_mp3,shard,features,embed,train_keras, got 'shard,shrad'" in (
        capsys.readouterr().err
    )
