"""A per-clip stage killed half-way: how long its next run takes, against a whole run.

    python benchmarks/bench_resume.py [--clips 1000] [--workdir DIR] [--keep] [--json PATH]

The clips: the 100 of ../shared/data/gtzan_mini repeated under new names (symbolic links
``<name>.r<k>.wav``) up to --clips, listed in data/raw/clips.csv of two scratch projects (a copy
of genreclf/, stages/ and params.yaml each) under --workdir. For each per-clip stage that
resumes (convert, then features on the WAVs that convert wrote and a split of them: every
fifth clip val, every fifth test):

1. the whole run, in project ``full`` (``python -m stages.<stage>``, wall time);
2. in project ``killed``: the stage started, SIGKILLed (with its worker processes) once its
   scratch (.genreclf-scratch/<stage>/, genreclf/resume.py) holds half the clips, its outputs
   deleted (as DVC deletes them before a run), and run again: that rerun's wall time, and the
   clips it reused and computed (from its log). Its outputs are checked to be the same bytes as
   those of the whole run.

Printed: a table of stage, whole-run seconds, killed at (clips in the scratch), rerun seconds,
rerun/whole ratio (the bar: at most 0.60), the same for the CPU seconds of the stage's process
and its workers (which other work on a shared machine does not inflate as it does wall time),
clips reused and computed. The times include the start of the process (imports, reading the
inputs, starting the workers), as a ``dvc repro`` of the stage does.

The JSON (--json, default benchmarks/results/bench_resume.json; benchmarks/record.py's
document) holds in ``figures``: ``clips`` and ``stages``: one object per stage with ``stage``,
``full_seconds``, ``killed_at``, ``rerun_seconds``, ``ratio``, ``full_cpu_seconds``,
``rerun_cpu_seconds``, ``cpu_ratio``, ``reused``, ``computed`` and ``same_bytes``. Other work
on the machine slows every wall-clock figure: the load average is recorded.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402
from genreclf.artifacts import CLIP_COLUMNS, read_converted, write_clips, write_split  # noqa: E402
from genreclf.resume import RESULT_SUFFIX, SCRATCH_ROOT  # noqa: E402

DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "gtzan_mini"
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "bench_resume.json"
OUTPUTS = {
    "convert": ["data/wav", "data/converted.csv", "data/convert_skipped.csv", "metrics/convert.json"],
    "features": ["data/features"],
}
BAR = 0.60
RESUMED = re.compile(r"resume: reused (\d+) clips \(finished by a run that stopped\), (?:computed|decoded) (\d+)")


def stage_env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)
    return env


def make_project(folder: Path, source: Path, clips: int) -> Path:
    """A project: the code, params.yaml and data/raw/clips.csv of ``clips`` linked gtzan_mini clips."""
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "params.yaml", folder / "params.yaml")
    for name in ("genreclf", "stages"):
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wavs = sorted(source.glob("*/*.wav"))
    rows = []
    for i in range(clips):
        wav = wavs[i % len(wavs)]
        genre, name = wav.parent.name, f"{wav.stem}.r{i // len(wavs)}.wav"
        link = folder / "data" / "raw" / "audio" / genre / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(wav)
        rows.append((f"{i:06d}", genre, f"data/raw/audio/{genre}/{name}", ""))
    write_clips(folder / "data" / "raw" / "clips.csv", pd.DataFrame(rows, columns=CLIP_COLUMNS))
    return folder


def write_project_split(project: Path) -> None:
    """data/split from data/converted.csv: every fifth clip val, every fifth test, the rest train."""
    converted = read_converted(project / "data" / "converted.csv")
    genres = sorted(converted["genre"].unique())
    manifest = converted[["track_id", "path", "genre"]].copy()
    manifest["label"] = [genres.index(g) for g in manifest["genre"]]
    manifest["split"] = [("val" if i % 5 == 1 else "test" if i % 5 == 2 else "train") for i in range(len(manifest))]
    write_split(project / "data" / "split", manifest, genres)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(project: Path, stage: str) -> tuple[float, float, str]:
    """Run the stage to completion: (wall seconds, CPU seconds of it and its workers, its log)."""
    started, cpu = time.perf_counter(), children_cpu_seconds()
    proc = subprocess.run(
        [sys.executable, "-m", f"stages.{stage}"], cwd=project, env=stage_env(), capture_output=True, text=True
    )
    seconds, cpu = time.perf_counter() - started, children_cpu_seconds() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"{stage} failed in {project} ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, cpu, proc.stderr


def stored(project: Path, stage: str) -> int:
    return len(list((project / SCRATCH_ROOT / stage).glob(f"*/*{RESULT_SUFFIX}")))


def run_and_kill(project: Path, stage: str, at: int) -> int:
    """Start the stage, SIGKILL its process group once its scratch holds ``at`` clips; the count then."""
    with open(project / f"{stage}-killed.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"stages.{stage}"],
            cwd=project,
            env=stage_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            while (count := stored(project, stage)) < at:
                if proc.poll() is not None:
                    raise SystemExit(f"{stage} ended ({proc.returncode}) before {at} clips were in its scratch")
                time.sleep(0.002)
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return count


def tree_bytes(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def measure(full: Path, killed: Path, stage: str, clips: int) -> dict:
    full_seconds, full_cpu, _ = run(full, stage)
    killed_at = run_and_kill(killed, stage, clips // 2)
    for output in OUTPUTS[stage]:  # as DVC does before it runs a stage
        path = killed / output
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    rerun_seconds, rerun_cpu, log = run(killed, stage)
    match = RESUMED.search(log)
    same = all(tree_bytes(full / o) == tree_bytes(killed / o) for o in OUTPUTS[stage])
    return {
        "stage": stage,
        "full_seconds": round(full_seconds, 2),
        "killed_at": killed_at,
        "rerun_seconds": round(rerun_seconds, 2),
        "ratio": round(rerun_seconds / full_seconds, 3),
        "full_cpu_seconds": round(full_cpu, 2),
        "rerun_cpu_seconds": round(rerun_cpu, 2),
        "cpu_ratio": round(rerun_cpu / full_cpu, 3),
        "reused": int(match[1]) if match else None,
        "computed": int(match[2]) if match else None,
        "same_bytes": same,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| stage | full run s | killed at (clips) | rerun s | rerun/full | CPU s full → rerun | CPU rerun/full "
        "| reused | computed | same bytes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['stage']} | {r['full_seconds']:.1f} | {r['killed_at']} | {r['rerun_seconds']:.1f} | "
            f"{r['ratio']:.2f}{'' if r['ratio'] <= BAR else ' (over ' + str(BAR) + ')'} | "
            f"{r['full_cpu_seconds']:.1f} → {r['rerun_cpu_seconds']:.1f} | {r['cpu_ratio']:.2f} | {r['reused']} | "
            f"{r['computed']} | {'yes' if r['same_bytes'] else 'NO'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="gtzan_mini (genre folders of WAVs)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the projects go (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the projects")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    if args.clips < 10:
        parser.error("--clips must be at least 10 (a split of every genre)")
    run_record = record.start("bench_resume")
    workdir = Path(tempfile.mkdtemp(prefix="bench_resume.", dir=args.workdir))
    try:
        full = make_project(workdir / "full", args.source, args.clips)
        killed = make_project(workdir / "killed", args.source, args.clips)
        rows = [measure(full, killed, "convert", args.clips)]
        for project in (full, killed):
            write_project_split(project)
        rows.append(measure(full, killed, "features", args.clips))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"{args.clips} clips; load average {run_record.load_at_start} at the start, {os.getloadavg()[0]:.2f} now")
    print(table(rows))
    record.write(args.json, run_record, {"clips": args.clips, "stages": rows})
    if not all(r["same_bytes"] for r in rows):
        raise SystemExit("a resumed run wrote other bytes than the whole run")


if __name__ == "__main__":
    main()
