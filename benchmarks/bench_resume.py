"""A stage killed half-way: how long its next run takes, against a whole run.

    python benchmarks/bench_resume.py [--clips 1000] [--embed-patches 3] [--keras-model cnn1d]
        [--keras-epochs 10] [--stages convert,convert_mp3,shard,features,embed,train_keras] [--repeats 1]
        [--workdir DIR] [--keep] [--json PATH]

The clips: the 100 of ../shared/data/gtzan_mini repeated under new names (symbolic links
``<name>.r<k>.wav``) up to --clips, listed in data/raw/clips.csv of a scratch project (a copy
of genreclf/, stages/ and params.yaml) under --workdir. The stages, in pipeline order:
convert (of those WAVs, already mono 16-bit at 22050 Hz: little more than a copy of each);
convert_mp3, the same stage on the 11 FMA mp3s of ../shared/data/fma/fma_audio repeated up to
--clips in a project of its own (44.1 kHz stereo mp3s decoded and resampled, the work of
convert on fma_small or fma_large); then, on the WAVs that convert wrote and a split of them
(every fifth clip val, every fifth test), shard (which resumes shard by shard), features, embed
(on the model of the ``pretrained`` stage, run once; the project's params.yaml has
``embed.patches_per_clip`` = --embed-patches, so the run is affordable)
and train_keras of --keras-model (its params.yaml section: ``epochs`` = ``patience`` =
--keras-epochs, ``val_windows_per_clip`` 2 for cnn1d and ``max_steps`` far above the batches
of the run, which only skips the val clip accuracy, as for a rehearsal). For each:

1. the whole run (``python -m stages.<stage>``, wall time);
2. the stage started, SIGKILLed (with its worker processes) once about
   half of its work is kept: for a per-clip stage, its scratch (.genreclf-scratch/<stage>/,
   genreclf/resume.py) holds half the clips (shard, whose unit of work is a shard: finished shards
   that hold half the clips, counted from their stored results; the splits' shards differ in size); for
   train_keras, its epoch backup (.genreclf-scratch/train_keras/<model>/<key>/epoch-NNNNN,
   genreclf/models/resume.py) shows half the epochs done. Its outputs are then deleted (as DVC
   deletes them before a run) and it is run again: that rerun's wall time, and what it reused and
   computed (from its log: clips, shards or epochs). Its outputs are checked to be the same bytes
   as those of the whole run.

Both runs are in the same project folder: a folder's history can change what writing into it
costs (whole shard runs at 1000 clips, timed in turn, took 2.1-2.8 s in one project folder of
this benchmark and 3.6-4.3 s in another), so a whole run and a rerun timed in two folders would
compare the folders as much as the runs.

Both timed runs of a stage start from the same state: the page cache's dirty pages written out
(``os.sync``), --settle-seconds (5) of pause, then --warm-mib of memory written and freed just
before the stage starts. A virtual machine that hands freed memory back to its host (free page
reporting, seconds after it is freed) makes the next write to such a page fault to the host, so
what a stage that writes gigabytes pays depends on what ran before it. Without the warming, in
this benchmark's order of runs (on a 2-core AMD EPYC VM), a shard rerun at 1000 clips paid 1.0 to
1.6 times what the whole run paid per clip for its writes, and whole runs took 1.1 s to 4.8 s.
The kernel hands the warmed pages to what is allocated next, pages the host backs, as all memory
of a machine without a hypervisor is: a shard rerun then paid 0.9 to 1.0 times the whole run's
cost per clip in 3 pairs of 4 (1.7 in the other). It does not remove all of the VM's variation:
with it, the whole shard runs of one 5-repeat run took 1.6 s to 4.5 s. The default, 3 MiB a
clip, is about twice what convert and shard write for a 30 s clip. With --repeats N both steps
are done N times per stage, the whole run first in the first, third... repeat and last in the
others (a machine whose speed drifts over a stage's repeats then favours neither), and the table
gives the medians; for the stages whose whole run takes seconds (convert, shard), use --repeats 5
or more.

Printed: a table of stage, whole-run seconds, killed at (clips or epochs kept), rerun
seconds, rerun/whole ratio (the bar: at most 0.60), the same for the CPU seconds of the stage's
process and its workers (which other work on a shared machine does not inflate as it does wall
time), what was reused and computed. The times include the start of the process (imports,
reading the inputs, starting the workers, TensorFlow's start), as a ``dvc repro`` of the stage does.

The JSON (--json, default benchmarks/results/bench_resume.json; benchmarks/record.py's
document) holds in ``figures``: ``clips``, ``embed_patches_per_clip``, ``keras_model``,
``keras_epochs``, ``repeats``, ``settle_seconds``, ``warm_mib`` and ``stages``: one object per
stage with ``stage``, ``unit`` (clips, shards or epochs: of ``reused`` and ``computed``),
``repeats``, the medians ``full_seconds``,
``rerun_seconds``, ``full_cpu_seconds`` and ``rerun_cpu_seconds``, their ratios ``ratio`` and
``cpu_ratio``, ``killed_at`` and ``killed_at_unit`` (clips or epochs), ``reused`` and ``computed``
(those of the run with the median rerun CPU time) and ``same_bytes`` (of every run);
train_keras's also ``resumed_from_epoch``; and ``runs``: each repeat's figures, with its ``stage`` and
``whole_first``.
Other work on the machine slows every wall-clock figure: the load average is recorded.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402
from genreclf.artifacts import (  # noqa: E402
    CLIP_COLUMNS,
    read_converted,
    read_split,
    write_clips,
    write_split,
)
from genreclf.resume import RESULT_SUFFIX, SCRATCH_ROOT  # noqa: E402

DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "gtzan_mini"
DEFAULT_MP3_SOURCE = ROOT.parent / "shared" / "data" / "fma" / "fma_audio"
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "bench_resume.json"
OUTPUTS = {
    "convert": ["data/wav", "data/converted.csv", "data/convert_skipped.csv", "metrics/convert.json"],
    "shard": ["data/shards"],
    "features": ["data/features"],
    "embed": ["data/embeddings"],
}
KERAS_MODELS = ("cnn1d", "cnn2d")
STAGES = ("convert", "convert_mp3", "shard", "features", "embed", "train_keras")
BAR = 0.60
RESUMED = re.compile(
    r"resume: reused (\d+) (clips|shards) \(finished by a run that stopped\), (?:computed|decoded) (\d+)"
)
RESUMED_EPOCHS = re.compile(r"resuming from the backup \S+: (\d+) epoch\(s\) done")
EPOCHS_RUN = re.compile(r"training time: [\d.]+ s for (\d+) epoch\(s\)")
EPOCH_DIR = re.compile(r"^epoch-(\d+)$")
# Longer than the 2 s after which Linux's free page reporting hands freed memory back to a VM's host.
DEFAULT_SETTLE_S = 5.0
WARM_MIB_PER_CLIP = 3  # about twice a 30 s clip's WAV (16-bit at 22050 Hz: 1.3 MB), which convert and shard write
MEDIAN_KEYS = ("full_seconds", "full_cpu_seconds", "rerun_seconds", "rerun_cpu_seconds")
NO_STEP_LIMIT = 1_000_000  # max_steps far above the batches of the run: only the val clip accuracy is skipped


def stage_env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)
    return env


def make_project(folder: Path, source: Path, clips: int, params: dict) -> Path:
    """A project: the code, ``params`` as params.yaml and data/raw/clips.csv of ``clips`` links to
    the audio files of ``source``'s folders (its WAVs and mp3s; a folder's name is its clips' genre).

    The code is compiled to bytecode once, as Python caches it on the first run of any checkout, so
    that no timed run compiles it again: with PYTHONDONTWRITEBYTECODE set (as on some CI machines)
    every stage process would otherwise compile the modules it imports, some 60 ms of shard's start."""
    folder.mkdir(parents=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for name in ("genreclf", "stages"):
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        if not compileall.compile_dir(folder / name, quiet=1):
            raise SystemExit(f"{folder / name}: could not compile the code")
    files = sorted([*source.glob("*/*.wav"), *source.glob("*/*.mp3")])
    if not files:
        raise SystemExit(f"{source}: expected folders of .wav or .mp3 files, found none")
    rows = []
    for i in range(clips):
        file = files[i % len(files)]
        genre, name = file.parent.name, f"{file.stem}.r{i // len(files)}{file.suffix}"
        link = folder / "data" / "raw" / "audio" / genre / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(file)
        rows.append((f"{i:06d}", genre, f"data/raw/audio/{genre}/{name}", ""))
    write_clips(folder / "data" / "raw" / "clips.csv", pd.DataFrame(rows, columns=CLIP_COLUMNS))
    return folder


def project_params(embed_patches: int, keras_model: str, keras_epochs: int) -> dict:
    """params.yaml with the embed patches and the small Keras training of the benchmark."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["embed"]["patches_per_clip"] = embed_patches
    section = params[keras_model]
    section.update(epochs=keras_epochs, patience=keras_epochs, max_steps=NO_STEP_LIMIT)
    if "val_windows_per_clip" in section:
        section["val_windows_per_clip"] = 2
    return params


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


def command(stage: str) -> list[str]:
    """``stage`` is a stage's module (convert) or a module and its argument (train_keras cnn1d)."""
    module, *args = stage.split()
    return [sys.executable, "-m", f"stages.{module}", *args]


@dataclass(frozen=True)
class Start:
    """How each timed run starts (see the module's docstring): the page cache written out, then
    ``settle_seconds`` of pause, then ``warm_mib`` MiB of memory written and freed."""

    settle_seconds: float = 0.0
    warm_mib: int = 0


def warm_memory(mib: int) -> None:
    """Write ``mib`` MiB of new memory (every page), then free it: pages the host backs again, which
    the kernel hands to what is allocated next."""
    if mib > 0:
        block = np.ones(mib << 20, dtype=np.uint8)
        del block


def run(project: Path, stage: str, start: Start = Start()) -> tuple[float, float, str]:
    """Run the stage to completion: (wall seconds, CPU seconds of it and its workers, its log). The
    page cache's dirty pages are written out first, so that no run pays for an earlier one's
    writes, then the pause and the warming of ``start`` (see the module's docstring)."""
    os.sync()
    time.sleep(start.settle_seconds)
    warm_memory(start.warm_mib)
    started, cpu = time.perf_counter(), children_cpu_seconds()
    proc = subprocess.run(command(stage), cwd=project, env=stage_env(), capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - started, children_cpu_seconds() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"{stage} failed in {project} ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, cpu, proc.stderr


def stored(project: Path, stage: str) -> int:
    """Clips in a per-clip stage's scratch: one result per clip, or for shard one per shard, which
    holds the sample counts of its clips (a list, first in its JSON)."""
    results = list((project / SCRATCH_ROOT / stage).glob(f"*/*{RESULT_SUFFIX}"))
    if stage != "shard":
        return len(results)
    clips = 0
    for result in results:
        with contextlib.suppress(OSError):  # written under a temporary name, renamed: complete if there
            clips += len(json.loads(result.read_bytes())[0])
    return clips


def epochs_backed_up(project: Path, model: str) -> int:
    """Epochs done by the last complete backup of train_keras ``model`` (0 if none)."""
    folder = project / SCRATCH_ROOT / "train_keras" / model
    done = [
        int(m[1]) for d in folder.glob("*/epoch-*") if (m := EPOCH_DIR.match(d.name)) and (d / "state.json").is_file()
    ]
    return max(done, default=0)


def progress(project: Path, stage: str) -> int:
    module, *args = stage.split()
    return epochs_backed_up(project, args[0]) if module == "train_keras" else stored(project, module)


def run_and_kill(project: Path, stage: str, at: int) -> int:
    """Start the stage, SIGKILL its process group once ``at`` clips (shards, epochs) are kept; the count then."""
    with open(project / f"{stage.replace(' ', '-')}-killed.log", "wb") as log:
        # at the lowest priority (its time is not measured): on a busy machine this poll still sees
        # the count reach ``at`` before the stage is much further
        proc = subprocess.Popen(
            ["nice", "-n", "19", *command(stage)],
            cwd=project,
            env=stage_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            while (count := progress(project, stage)) < at:
                if proc.poll() is not None:
                    raise SystemExit(f"{stage} ended ({proc.returncode}) before {at} were kept")
                time.sleep(0.002)
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return count


def clips_in(project: Path, stage: str) -> int:
    """The clips a per-clip stage works on: those of data/raw/clips.csv for convert, else of the split."""
    if stage == "convert":
        return len(pd.read_csv(project / "data" / "raw" / "clips.csv"))
    return len(read_split(project / "data" / "split", check_wavs=False)[0])


def tree_digests(path: Path) -> dict[str, str]:
    """The SHA-256 of each file under ``path`` (or of ``path``), read in blocks: the benchmark's own
    memory stays small, so that it does not change what the stages it times pay for memory."""

    def digest(file: Path) -> str:
        with open(file, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()

    if path.is_file():
        return {"": digest(path)}
    return {p.relative_to(path).as_posix(): digest(p) for p in sorted(path.rglob("*")) if p.is_file()}


def outputs(stage: str) -> list[str]:
    module, *args = stage.split()
    return [f"models/{args[0]}", f"dvclive/{args[0]}"] if module == "train_keras" else OUTPUTS[module]


def counts(log: str, stage: str, epochs: int) -> tuple[str, int | None, int | None]:
    """(unit, reused, computed) from a run's log."""
    if stage.startswith("train_keras"):
        resumed = RESUMED_EPOCHS.search(log)
        reused = int(resumed[1]) if resumed else 0
        ran = EPOCHS_RUN.search(log)
        return "epochs", reused, (int(ran[1]) - reused if ran else None)
    match = RESUMED.search(log)
    return (match[2], int(match[1]), int(match[3])) if match else ("clips", None, None)


def remove_outputs(project: Path, stage: str) -> None:
    """As DVC does before it runs a stage."""
    for output in outputs(stage):
        path = project / output
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def timed_outputs(project: Path, stage: str, start: Start) -> tuple[float, float, str, list]:
    """``run`` of the stage, then the SHA-256 of its outputs' files."""
    seconds, cpu, log = run(project, stage, start)
    return seconds, cpu, log, [tree_digests(project / o) for o in outputs(stage)]


def measure_once(project: Path, stage: str, epochs: int, start: Start, whole_first: bool = True) -> dict:
    """In ``project``: one whole run, and a run killed half-way with its rerun; the whole run
    first, or (``whole_first`` False) last."""
    total = epochs if stage.startswith("train_keras") else clips_in(project, stage)

    def whole() -> tuple:
        remove_outputs(project, stage)
        return timed_outputs(project, stage, start)

    def killed_and_rerun() -> tuple:
        remove_outputs(project, stage)
        killed_at = run_and_kill(project, stage, max(1, total // 2))
        remove_outputs(project, stage)
        return killed_at, *timed_outputs(project, stage, start)

    if whole_first:
        full_seconds, full_cpu, _, whole_digests = whole()
        killed_at, rerun_seconds, rerun_cpu, log, rerun_digests = killed_and_rerun()
    else:
        killed_at, rerun_seconds, rerun_cpu, log, rerun_digests = killed_and_rerun()
        full_seconds, full_cpu, _, whole_digests = whole()
    unit, reused, computed = counts(log, stage, epochs)
    return {
        "unit": unit,
        "whole_first": whole_first,
        "full_seconds": round(full_seconds, 2),
        "full_cpu_seconds": round(full_cpu, 2),
        "killed_at": killed_at,
        "rerun_seconds": round(rerun_seconds, 2),
        "rerun_cpu_seconds": round(rerun_cpu, 2),
        "reused": reused,
        "computed": computed,
        "same_bytes": whole_digests == rerun_digests,
    }


def measure(
    project: Path, stage: str, epochs: int = 0, repeats: int = 1, start: Start = Start(), label: str = ""
) -> dict:
    """``measure_once`` ``repeats`` times: the medians of its times and their ratios, and in
    ``runs`` each run's figures; ``label`` names the row (default: the stage, as dvc names it)."""
    # the whole run first in the first, third... repeat and last in the others, so that a machine
    # that slows down (or speeds up) over a stage's repeats does not favour one of the two
    runs = [measure_once(project, stage, epochs, start, whole_first=k % 2 == 0) for k in range(repeats)]
    label = label or stage.replace(" ", "@")
    median = {key: statistics.median(r[key] for r in runs) for key in MEDIAN_KEYS}
    middle = sorted(runs, key=lambda r: r["rerun_cpu_seconds"])[(repeats - 1) // 2]  # its counts are shown
    unit = runs[0]["unit"]
    row = {
        "stage": label,
        "unit": unit,
        "repeats": repeats,
        "full_seconds": median["full_seconds"],
        "killed_at": middle["killed_at"],
        "killed_at_unit": "epochs" if unit == "epochs" else "clips",
        "rerun_seconds": median["rerun_seconds"],
        "ratio": round(median["rerun_seconds"] / median["full_seconds"], 3),
        "full_cpu_seconds": median["full_cpu_seconds"],
        "rerun_cpu_seconds": median["rerun_cpu_seconds"],
        "cpu_ratio": round(median["rerun_cpu_seconds"] / median["full_cpu_seconds"], 3),
        "reused": middle["reused"],
        "computed": middle["computed"],
        "same_bytes": all(r["same_bytes"] for r in runs),
        "runs": [{"stage": label, **r} for r in runs],
    }
    if unit == "epochs":
        row["resumed_from_epoch"] = middle["reused"]
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| stage | full run s | killed at | rerun s | rerun/full | CPU s full → rerun | CPU rerun/full "
        "| reused | computed | same bytes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['stage']} | {r['full_seconds']:.1f} | {r['killed_at']} {r['killed_at_unit']} | "
            f"{r['rerun_seconds']:.1f} | "
            f"{r['ratio']:.2f}{'' if r['ratio'] <= BAR else ' (over ' + str(BAR) + ')'} | "
            f"{r['full_cpu_seconds']:.1f} → {r['rerun_cpu_seconds']:.1f} | {r['cpu_ratio']:.2f} | {r['reused']} | "
            f"{r['computed']} | {'yes' if r['same_bytes'] else 'NO'} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, checked; ``stages`` a list and ``warm_mib`` resolved."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--embed-patches", type=int, default=3, help="embed.patches_per_clip of the projects")
    parser.add_argument("--keras-model", choices=KERAS_MODELS, default="cnn1d", help="the train_keras stage timed")
    parser.add_argument("--keras-epochs", type=int, default=10, help="its epochs (and patience)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="gtzan_mini (genre folders of WAVs)")
    parser.add_argument(
        "--mp3-source", type=Path, default=DEFAULT_MP3_SOURCE, help="folders of mp3s for convert_mp3 (FMA's fma_audio)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where the projects go (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the projects")
    parser.add_argument(
        "--repeats", type=int, default=1, help="measure each stage this many times: medians are reported"
    )
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=DEFAULT_SETTLE_S,
        help="pause before each timed run, after the page cache is written out (see above)",
    )
    parser.add_argument(
        "--warm-mib",
        type=int,
        default=None,
        help=f"memory written and freed just before each timed run (see above); default {WARM_MIB_PER_CLIP} a clip",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument(
        "--stages",
        default=",".join(STAGES),
        help=f"the stages timed, comma-separated, of {','.join(STAGES)} (convert always runs: the rest read its WAVs)",
    )
    args = parser.parse_args(argv)
    if args.clips < 10:
        parser.error("--clips must be at least 10 (a split of every genre)")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.keras_epochs < 2 or args.embed_patches < 1:
        parser.error("--keras-epochs must be at least 2 (one to kill after) and --embed-patches at least 1")
    args.stages = args.stages.split(",")
    if not set(args.stages) <= set(STAGES):
        parser.error(f"--stages: expected names of {','.join(STAGES)}, got {','.join(args.stages)!r}")
    args.warm_mib = WARM_MIB_PER_CLIP * args.clips if args.warm_mib is None else args.warm_mib
    if args.warm_mib < 0:
        parser.error("--warm-mib must be 0 or more")
    return args


def measure_stages(workdir: Path, args: argparse.Namespace) -> list[dict]:
    """A row of ``measure`` for each stage of ``args.stages``, in pipeline order, in projects made
    under ``workdir``. Convert runs once untimed when it is not asked for: the others read its WAVs."""
    timing = {"repeats": args.repeats, "start": Start(args.settle_seconds, args.warm_mib)}
    params = project_params(args.embed_patches, args.keras_model, args.keras_epochs)
    project = make_project(workdir / "project", args.source, args.clips, params)
    rows = []
    if "convert" in args.stages:
        rows.append(measure(project, "convert", **timing))
    else:
        run(project, "convert")  # untimed: the WAVs the other stages read
    if "convert_mp3" in args.stages:
        mp3 = make_project(workdir / "project_mp3", args.mp3_source, args.clips, params)
        rows.append(measure(mp3, "convert", **timing, label="convert_mp3"))
        shutil.rmtree(mp3)  # its WAVs: no other stage reads them
    write_project_split(project)
    for stage in (stage for stage in ("shard", "features") if stage in args.stages):
        rows.append(measure(project, stage, **timing))
    if "embed" in args.stages:
        run(project, "pretrained")  # the musicnn model embed runs
        rows.append(measure(project, "embed", **timing))
    if "train_keras" in args.stages:
        rows.append(measure(project, f"train_keras {args.keras_model}", args.keras_epochs, **timing))
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_record = record.start("bench_resume")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench_resume.", dir=args.workdir))
    try:
        rows = measure_stages(workdir, args)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"{args.clips} clips; load average {run_record.load_at_start} at the start, {os.getloadavg()[0]:.2f} now")
    print(table(rows))
    figures = {
        "clips": args.clips,
        "embed_patches_per_clip": args.embed_patches,
        "keras_model": args.keras_model,
        "keras_epochs": args.keras_epochs,
        "repeats": args.repeats,
        "settle_seconds": args.settle_seconds,
        "warm_mib": args.warm_mib,
        "stages": [{key: value for key, value in row.items() if key != "runs"} for row in rows],
        "runs": [run for row in rows for run in row["runs"]],
    }
    record.write(args.json, run_record, figures)
    if not all(r["same_bytes"] for r in rows):
        raise SystemExit("a resumed run wrote other bytes than the whole run")


if __name__ == "__main__":
    main()
