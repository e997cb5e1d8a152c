"""Running and measuring the rehearsal's stages: each `dvc repro --single-item` with its wall time,
its process tree's peak RSS, what it wrote and what its log says (benchmarks/rehearsal.py); the
disk use of the project."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks.process_tree import TreePeak, peak_rss
from benchmarks.rehearsal_project import KERAS_STAGES, dvc_env

# What a stage's log says its own work took (without starting Python, reading params, DVC's hashing):
WORK_SECONDS_RE = {
    "convert": re.compile(r"decoded \d+ clips in ([0-9.]+) s"),
    "shard": re.compile(r"wrote \d+ files to \S+ in ([0-9.]+) s"),
    "features": re.compile(r"computed \d+ clips in ([0-9.]+) s"),
    "train_sklearn": re.compile(r"trained \S+ in ([0-9.]+) s"),  # the CV search and the fit
    "train_keras": re.compile(r"training time: ([0-9.]+) s"),  # the fit
    "embed": re.compile(r"embedded \d+ clips in ([0-9.]+) s"),
}
LOG_TIME_RE = re.compile(r"^(\d\d):(\d\d):(\d\d) stages\.", re.MULTILINE)  # a stage's log line
STEP_COUNT_RE = re.compile(r"step times: (\d+) training step")
FIRST_STEP_RE = re.compile(r"step times: \d+ training step\(s\): the first ([0-9.]+) s")
STEADY_STEP_RE = re.compile(r"then ([0-9.]+) s/step over \d+ step")
LOG_TAIL_CHARS = 4000
MIB = 2**20


def run_measured(args: list[str], cwd: Path, env: dict, log_path: Path) -> tuple[int, float, TreePeak]:
    """Run a command (output to ``log_path``), sampling its process tree; return (status, seconds, peak)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log_file:
        started = time.perf_counter()
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        with peak_rss(process.pid) as peak:
            status = process.wait()
        seconds = time.perf_counter() - started
    return status, seconds, peak


def disk_usage(path: Path, exclude: tuple[Path, ...] = ()) -> int:
    """Bytes on disk (allocated blocks) under ``path``, each inode counted once, ``exclude`` left out."""
    seen, total = set(), 0
    excluded = {p.resolve() for p in exclude}
    for folder, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if (Path(folder) / d).resolve() not in excluded]
        for name in files:
            try:
                stat = os.lstat(Path(folder) / name)
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_blocks * 512
    return total


AUDIO_OUTS = ("data/wav", "data/shards")  # the stage outputs that hold the decoded int16 audio


def audio_copies(project: Path) -> float:
    """How many copies of the decoded audio the workspace and the DVC cache hold together.

    The bytes of every distinct inode among the files of AUDIO_OUTS and their cache objects
    (from the directory manifests that dvc.lock names), over the bytes of the WAVs: 2.0 when
    the workspace files are links to the cache, 4.0 when they are copies.
    """
    lock = yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8"))
    cache = project / ".dvc" / "cache" / "files" / "md5"
    sizes, wav_bytes = {}, 0
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] not in AUDIO_OUTS:
                continue
            manifest = json.loads((cache / out["md5"][:2] / out["md5"][2:]).read_text(encoding="utf-8"))
            for entry in manifest:
                for file in (project / out["path"] / entry["relpath"], cache / entry["md5"][:2] / entry["md5"][2:]):
                    if file.is_file():
                        stat = file.stat()
                        sizes[(stat.st_dev, stat.st_ino)] = stat.st_size
                        if out["path"] == "data/wav" and file.parent.parent != cache:
                            wav_bytes += stat.st_size
    return sum(sizes.values()) / wav_bytes if wav_bytes else float("nan")


def apparent_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (what was written)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def stage_outs(project: Path, stage: str) -> list[str]:
    """The paths of a stage's outs (with metrics and plots DVC caches) as dvc.lock records them."""
    lock = yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8")) or {}
    return [out["path"] for out in lock.get("stages", {}).get(stage, {}).get("outs", [])]


@dataclass
class StageResult:
    stage: str
    seconds: float
    clips: int
    peak_tree_rss: int
    peak_leaf_rss: int
    processes_at_peak: int
    bytes_written: int
    status: int
    work_seconds: float | None = None  # the stage's own timing of its work, from its log (Keras: the fit)
    steps: int | None = None  # Keras: the training steps it ran (the limit if its log does not say)
    batch_size: int | None = None
    first_step_seconds: float | None = None  # Keras: the first step (tracing, input start-up)
    seconds_per_step: float | None = None  # Keras: the mean of the other steps

    @property
    def clips_per_second(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else math.nan


def log_tail(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]


def run_stage(
    project: Path, stage: str, clips: int, logs: Path, steps: int | None = None, batch_size: int | None = None
) -> StageResult:
    log_path = logs / f"{stage.replace('@', '-')}.log"
    status, seconds, peak = run_measured(
        [sys.executable, "-m", "dvc", "repro", "--single-item", stage], project, dvc_env(), log_path
    )
    written = (
        sum(apparent_size(project / out) for out in stage_outs(project, stage) if (project / out).exists())
        if status == 0
        else 0
    )
    text = log_path.read_text(encoding="utf-8", errors="replace")
    pattern = WORK_SECONDS_RE.get(stage.split("@", 1)[0])
    work, first, steady = (
        (pattern.search(text) if pattern else None),
        FIRST_STEP_RE.search(text),
        STEADY_STEP_RE.search(text),
    )
    count = STEP_COUNT_RE.search(text) if steps is not None else None
    return StageResult(
        stage,
        seconds,
        clips,
        peak.tree_rss,
        peak.leaf_rss,
        peak.processes,
        written,
        status,
        _number(work) if work else log_span(text),
        int(count.group(1)) if count else steps,
        batch_size,
        _number(first),
        _number(steady),
    )


def log_span(text: str) -> float | None:
    """Seconds from the stage's first timestamped log line to its last (1 s resolution), or None:
    the work of a stage that does not time it (evaluate, summarize), without Python's start-up."""
    stamps = [int(h) * 3600 + int(m) * 60 + int(s) for h, m, s in LOG_TIME_RE.findall(text)]
    if not stamps:
        return None
    return float((stamps[-1] - stamps[0]) % 86_400)


def _number(match: re.Match | None) -> float | None:
    return float(match.group(1)) if match else None


def time_command(project: Path, args: list[str], logs: Path, name: str) -> float:
    started = time.perf_counter()
    with open(logs / f"{name}.log", "w", encoding="utf-8") as log_file:
        subprocess.run(
            [sys.executable, "-m", "dvc", *args],
            cwd=project,
            env=dvc_env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            check=False,
        )
    return time.perf_counter() - started


def run_pipeline(
    project: Path, params: dict, planned: list[str], clips: int, logs: Path, keras_limit: int | None, log=print
) -> tuple[list[StageResult], list[str]]:
    """Every planned stage in order, stopping at the first that fails; returns the results and the stages that ran."""
    results, ran = [], []
    for stage in planned:
        steps = batch = None
        if stage.split("@", 1)[0] in KERAS_STAGES:
            model = stage.split("@", 1)[1]
            steps, batch = keras_limit, params[model]["batch_size"]
        log(f"running {stage}" + (f" ({model}.max_steps = {steps})" if steps else "") + " ...")
        result = run_stage(project, stage, clips, logs, steps, batch)
        results.append(result)
        if result.status != 0:
            log(
                f"{stage} FAILED (exit {result.status}); the end of {logs}/{stage.replace('@', '-')}.log:\n"
                + log_tail(logs / f"{stage.replace('@', '-')}.log")
            )
            break
        ran.append(stage)
        rate = (
            f"{result.clips_per_second:.1f} clips/s"
            if steps is None
            else f"first step {result.first_step_seconds} s, then "
            + (f"{result.seconds_per_step} s/step" if result.seconds_per_step else "none (one step ran)")
        )
        log(
            f"  {result.seconds:.1f} s, {rate}, peak RSS {result.peak_tree_rss / MIB:,.0f} MiB "
            f"({result.processes_at_peak} processes), wrote {result.bytes_written / 1e6:,.1f} MB"
        )
    return results, ran


def bookkeeping(project: Path, targets: list[str], logs: Path) -> dict:
    """The time of a no-op ``dvc repro`` of ``targets``, and of ``dvc status``."""
    noop = time_command(project, ["repro", *targets], logs, "noop-repro")
    reran = re.findall(r"Running stage '([^']+)'", (logs / "noop-repro.log").read_text(encoding="utf-8"))
    status = time_command(project, ["status"], logs, "status")
    return {
        "noop_repro_command": shlex.join(["dvc", "repro", *targets]),
        "noop_repro_seconds": round(noop, 2),
        "status_seconds": round(status, 2),
        "noop_repro_reran": reran,
    }
