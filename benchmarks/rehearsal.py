"""Scale rehearsal: the real pipeline on N clips built from ../shared/data, measured stage by stage.

    python benchmarks/rehearsal.py --clips 1000 [--seed 0] [--workdir DIR] [--json PATH]
                                   [--keras-steps 20] [--skip-keras] [--set KEY=VALUE ...]
                                   [--workers N] [--keep]

1. **The source.** N clips made from the real audio in ``../shared/data``, laid out as an
   unpacked local FMA copy of fma_small (8 balanced genres, FMA's official 80/10/10 split)
   that the fetch stage reads with ``data.source=<dir>``: tests/support/fma_source.py builds
   it (how: its docstring) and caches it in --workdir by (N, seed); a rerun reuses it.
2. **What runs.** A ``git clone`` of this repository's HEAD into --workdir (a fresh one at
   every run, deleted at the end unless --keep; uncommitted changes are not in it: a warning
   says so), with params.yaml changed by the yaml library only in ``data.source`` (the built
   source), ``data.dataset`` (fma_small), ``data.clips_per_genre`` (null),
   ``mobilenet.weights`` (null: ImageNet weights cannot be downloaded offline) and any
   ``--set key=value``. Then ``dvc repro --single-item`` of every stage of the clone's
   dvc.yaml, each foreach item apart (``train_sklearn@svm``), in dependency order: fetch,
   convert, split, shard, features, pretrained (the musicnn wheel: pip-downloaded into
   ``pretrained.cache_dir`` once), embed, train_sklearn, train_keras, evaluate_sklearn,
   evaluate_keras, summarize, recommend_index. ``--skip-keras`` leaves out train_keras and
   every stage that needs its models. The Keras stages run with ``<model>.max_steps`` =
   --keras-steps in the clone's params.yaml: the stage then stops training after that many
   batches (over as many epochs as that takes, each validated on at most as many batches;
   early stopping may end it sooner) and logs the step times (stages/train_keras.py: a
   Keras callback, a benchmark-only param, null in normal runs). N must be at least
   MIN_CLIPS. The Keras stage's time also covers starting TensorFlow, building the model,
   its prediction of the whole val split and saving it; from its log come the fit's time,
   the number of steps, the first step (which traces the model and starts the input
   pipeline) and the mean of the others (examples/s = batch / that mean).
3. **What it prints.** Per stage: wall time, clips/s, peak RSS of the whole process tree
   (benchmarks/process_tree.py, every 0.2 s: the RSS of dvc and all its descendants summed
   at each sample, the maximum kept; pages shared between processes count once per process)
   and the bytes the stage wrote (its outs in dvc.lock, apparent size). Then the disk use of
   the workspace (the clone without .git and .dvc/cache) and of the DVC cache, each inode
   counted once, the time of a no-op ``dvc repro`` and of ``dvc status``, and a projection
   for fma_large (``project_large``: assumptions in its docstring), as Markdown tables.

**The JSON** (--json, default benchmarks/results/rehearsal.json; benchmarks/record.py's
document) holds in ``figures``:

- ``clips``, ``seed``, ``keras_step_limit`` (null with --skip-keras), ``complete`` (every
  planned stage ran and succeeded), ``planned`` (the stage names, in order);
- ``stages``: one object per stage that ran, in order: ``stage``, ``status`` (exit status),
  ``seconds`` (wall), ``work_seconds`` (what the stage's log says its work took; for a stage
  that does not say, the span from its first timestamped log line to its last, 1 s
  resolution, which misses what it does before its first line; null without either),
  ``clips_per_s`` (null for the Keras training stages), ``peak_tree_rss_mib``,
  ``peak_leaf_rss_mib``, ``processes_at_peak``, ``written_mb``; the Keras training stages
  add ``steps``, ``batch_size``, ``units_per_clip``, ``first_step_seconds``,
  ``seconds_per_step``, ``examples_per_s``;
- ``disk``: ``workspace_bytes``, ``workspace_data_bytes``, ``cache_bytes``,
  ``workspace_and_cache_bytes``, ``audio_copies`` (copies of the decoded audio in the
  workspace and the cache together), ``source_bytes``;
- ``bookkeeping``: ``noop_repro_command``, ``noop_repro_seconds``, ``status_seconds``,
  ``noop_repro_reran`` (the stages the no-op repro ran: should be empty);
- ``projection`` (null unless complete): fma_large's ``clips``, ``measured_cores``,
  ``reference_cores``, ``data_hours``, ``sklearn_hours``, ``other_hours`` (each
  ``{"measured_cores": h, "reference_cores": h}``), ``keras`` (per training stage:
  ``steps_per_epoch``, ``seconds_per_step``, ``upper_bound``, ``hours_per_epoch``),
  ``stages`` (per stage: ``hours``, ``peak_rss_bytes``), ``workspace_bytes``,
  ``cache_bytes``, ``combined_bytes``, ``peak_rss_bytes``.

Other work on the machine slows every wall-clock figure: the load average is recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402
from benchmarks.process_tree import TreePeak, peak_rss  # noqa: E402
from tests.support.fma_source import DATASET, GENRES, build_source  # noqa: E402

DEFAULT_SHARED = ROOT.parent / "shared" / "data"
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "genreclf-rehearsal"
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "rehearsal.json"

# ---- the run
FMA_LARGE_CLIPS = 106_574
DATA_STAGES = ("fetch", "convert", "split", "shard", "features", "pretrained", "embed")
POOL_STAGES = ("convert", "features")  # one worker process per core
QUADRATIC_STAGES = ("train_sklearn@svm",)  # kernel SVM training grows at least as clips squared
DEFAULT_KERAS_STEPS = 20
MIN_CLIPS = 10 * len(GENRES)  # the SVM's 5 CV folds need 5 training clips per genre (0.64 x 8 > 5)

REFERENCE_CORES = 32
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
GIB = 2**30
MIB = 2**20


# ===================================================================== measuring


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


# ===================================================================== the run


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


def dvc_env(extra: dict | None = None) -> dict:
    """The environment of dvc and the stages: this interpreter's folder first on PATH."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def git_output(args: list[str], cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, stdout=subprocess.PIPE, text=True).stdout.strip()


def clone_project(dest: Path, log=print) -> str:
    """A fresh ``git clone`` of this repository's HEAD at ``dest``; returns the commit."""
    commit = git_output(["rev-parse", "HEAD"], ROOT)
    if git_output(["status", "--porcelain"], ROOT):
        log(f"warning: {ROOT} has uncommitted changes; the rehearsal runs the committed HEAD {commit[:10]}")
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(dest)], check=True)
    return commit


def rehearsal_params(params: dict, source: Path, overrides: list[str] = (), keras_steps: int | None = None) -> dict:
    """params.yaml with the rehearsal's source; every other key as committed except mobilenet.weights,
    each Keras model's max_steps (``keras_steps``) and the ``overrides`` ("a.b=value", the value read as YAML)."""
    params = json.loads(json.dumps(params))
    params["data"].update({"dataset": DATASET, "source": str(source), "clips_per_genre": None})
    params["mobilenet"]["weights"] = None  # ImageNet weights cannot be downloaded offline
    for model in params["models"]["keras"]:
        params[model]["max_steps"] = keras_steps
    for override in overrides:
        dotted, value = override.split("=", 1)
        *parents, key = dotted.split(".")
        node = params
        for parent in parents:
            node = node[parent]
        if key not in node:
            raise SystemExit(f"--set {override}: params.yaml has no key {dotted}")
        node[key] = yaml.safe_load(value)
    return params


def set_params(project: Path, source: Path, overrides: list[str] = (), keras_steps: int | None = None) -> dict:
    path = project / "params.yaml"
    params = rehearsal_params(yaml.safe_load(path.read_text(encoding="utf-8")), source, overrides, keras_steps)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return params


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


OUT_FIELDS = ("outs", "metrics", "plots")  # what a dvc.yaml stage writes
KERAS_STAGES = ("train_keras",)  # left out by --skip-keras, with every stage that depends on them


def _foreach_items(value, params: dict):
    """(key, item) pairs of a dvc.yaml foreach: a list or a mapping, or ``${a.b}`` naming one in params."""
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        for key in value[2:-1].split("."):
            params = params[key]
        value = params
    return list(value.items()) if isinstance(value, dict) else [(item, item) for item in value]


def _paths(entries: list | None, key: str = "", item: str = "") -> list[str]:
    """The paths of a dvc.yaml deps/outs list (an entry is a path or {path: options}), ${key}/${item} filled."""
    paths = [next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries or []]
    return [str(path).replace("${key}", str(key)).replace("${item}", str(item)) for path in paths]


def _overlaps(a: str, b: str) -> bool:
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def dvc_stages(dvc_yaml: dict, params: dict) -> dict[str, dict]:
    """Every stage of a dvc.yaml, foreach items as ``stage@key``: name -> {"deps": [...], "outs": [...]},
    in dependency order (a stage after every stage whose outputs it reads; else dvc.yaml's order)."""
    stages = {}
    for name, stage in dvc_yaml["stages"].items():
        if "foreach" in stage:
            for key, item in _foreach_items(stage["foreach"], params):
                body = stage["do"]
                outs = [p for field in OUT_FIELDS for p in _paths(body.get(field), key, item)]
                stages[f"{name}@{key}"] = {"deps": _paths(body.get("deps"), key, item), "outs": outs}
        else:
            outs = [p for field in OUT_FIELDS for p in _paths(stage.get(field))]
            stages[name] = {"deps": _paths(stage.get("deps")), "outs": outs}
    for name, stage in stages.items():
        stage["upstream"] = {
            other
            for other, before in stages.items()
            if other != name and any(_overlaps(d, o) for d in stage["deps"] for o in before["outs"])
        }
    ordered, done = {}, set()
    while len(ordered) < len(stages):
        ready = [n for n in stages if n not in done and stages[n]["upstream"] <= done]
        if not ready:
            raise ValueError(f"dvc.yaml: these stages depend on one another: {sorted(set(stages) - done)}")
        ordered[ready[0]] = stages[ready[0]]
        done.add(ready[0])
    return ordered


def pipeline_stages(stages: dict[str, dict], skip_keras: bool) -> list[str]:
    """The stages to run, in order: all of them, or (skip_keras) all but KERAS_STAGES and what depends on them."""
    dropped = {n for n in stages if skip_keras and n.split("@", 1)[0] in KERAS_STAGES}
    grown = True
    while grown:
        more = {n for n, s in stages.items() if n not in dropped and s["upstream"] & dropped}
        dropped |= more
        grown = bool(more)
    return [n for n in stages if n not in dropped]


# ===================================================================== the projection


def scaled_hours(seconds: float, clips: int, target: int, exponent: int = 1) -> float:
    """Hours for ``target`` clips from ``seconds`` for ``clips``, growing as clips**exponent."""
    return seconds * (target / clips) ** exponent / 3600


def keras_epoch_steps(clips: int, train_fraction: float, units_per_clip: int, batch_size: int) -> int:
    """Training batches in one epoch over ``clips`` clips (the last batch may be short)."""
    return math.ceil(round(clips * train_fraction) * units_per_clip / batch_size)


def project_large(
    stages: list[dict],
    clips: int,
    cores: int,
    disk: dict[str, float],
    train_fraction: float,
    target: int = FMA_LARGE_CLIPS,
    reference_cores: int = REFERENCE_CORES,
) -> dict:
    """fma_large figures from the measured per-clip costs. The assumptions:

    - a stage's work (``work_seconds``: what its log times, else the span of its log lines; else
      its whole ``seconds``) grows
      linearly with clips, except in QUADRATIC_STAGES (kernel SVM: as clips squared, a lower
      bound); the rest of its wall time (starting Python, reading params, DVC's hashing at
      this size) is counted once; a Keras epoch is its batches times the measured seconds per step:
      the mean step after the first (``seconds_per_step``), else, when only one step ran,
      the fit's seconds over its steps (``work_seconds``, else the stage's ``seconds``): an
      upper bound, as it includes tracing the model and the validation batches;
    - on ``reference_cores`` cores the POOL_STAGES (one process per core) run
      ``reference_cores / cores`` times faster and the Keras steps too (TensorFlow's
      threads: ideal scaling, an optimistic bound); the other stages run on one core
      and do not speed up;
    - disk (``disk``: bytes of the "workspace", of its "data" folder and of the DVC "cache"):
      what the workspace holds under data/ grows linearly with clips,
      the rest of it (models, metrics) does not; the DVC cache holds that rest once too
      and its other bytes grow linearly;
    - memory is flat in clips (what issue 8 asks; compare two runs to check it); with
      more cores a POOL_STAGE adds one worker per extra core, each as large as the
      largest leaf process measured.

    ``stages``: dicts with stage, seconds, peak_tree_rss, peak_leaf_rss, and for Keras
    stages steps, batch_size, units_per_clip, seconds_per_step and work_seconds (either may be None).
    """
    speedup = reference_cores / cores
    workspace_bytes, data_bytes, cache_bytes = disk["workspace"], disk["data"], disk["cache"]
    fixed_bytes = max(0, workspace_bytes - data_bytes)
    rows, keras = {}, {}
    for stage in stages:
        name = stage["stage"]
        pool = name in POOL_STAGES
        leaf_more = (reference_cores - cores) * stage["peak_leaf_rss"] if pool else 0
        memory = {"measured_cores": stage["peak_tree_rss"], "reference_cores": stage["peak_tree_rss"] + leaf_more}
        if stage.get("steps"):
            per_step = stage.get("seconds_per_step") or (stage.get("work_seconds") or stage["seconds"]) / stage["steps"]
            epoch_steps = keras_epoch_steps(target, train_fraction, stage["units_per_clip"], stage["batch_size"])
            hours = epoch_steps * per_step / 3600
            keras[name] = {
                "seconds_per_step": per_step,
                "upper_bound": not stage.get("seconds_per_step"),
                "steps_per_epoch": epoch_steps,
                "hours_per_epoch": {"measured_cores": hours, "reference_cores": hours / speedup},
                "peak_rss_bytes": memory,
            }
            continue
        work = stage["seconds"] if stage.get("work_seconds") is None else stage["work_seconds"]
        fixed = (stage["seconds"] - work) / 3600
        hours = scaled_hours(work, clips, target, 2 if name in QUADRATIC_STAGES else 1)
        rows[name] = {
            "hours": {"measured_cores": fixed + hours, "reference_cores": fixed + (hours / speedup if pool else hours)},
            "peak_rss_bytes": memory,
        }

    def total(names, cores_key):
        return sum(rows[n]["hours"][cores_key] for n in names)

    data = [n for n in rows if n in DATA_STAGES]
    sklearn = [n for n in rows if n.split("@", 1)[0] in ("train_sklearn", "evaluate_sklearn")]
    other = [n for n in rows if n not in data and n not in sklearn]
    every = [*rows.values(), *keras.values()]
    return {
        "clips": target,
        "measured_clips": clips,
        "measured_cores": cores,
        "reference_cores": reference_cores,
        "stages": rows,
        "keras": keras,
        "data_hours": {k: total(data, k) for k in ("measured_cores", "reference_cores")},
        "sklearn_hours": {k: total(sklearn, k) for k in ("measured_cores", "reference_cores")},
        "other_hours": {k: total(other, k) for k in ("measured_cores", "reference_cores")},
        "workspace_bytes": fixed_bytes + data_bytes * target / clips,
        "cache_bytes": min(fixed_bytes, cache_bytes) + max(0, cache_bytes - fixed_bytes) * target / clips,
        # workspace and cache together, each file once (outputs are links to the cache): only data/ grows
        "combined_bytes": disk.get("combined", workspace_bytes + cache_bytes) + data_bytes * (target / clips - 1),
        "peak_rss_bytes": {
            k: max((r["peak_rss_bytes"][k] for r in every), default=0) for k in ("measured_cores", "reference_cores")
        },
    }


# ===================================================================== the report


def _hours(value: float) -> str:
    return f"{value:.2f}" if value < 1 else f"{value:,.1f}"


def _copies(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _gb(value: float) -> str:
    return f"{value / 1e9:,.2f}"


def _cell(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _name(row: dict) -> str:
    return f"`{row['stage']}`" + (f" **failed** (exit {row['status']})" if row["status"] else "")


def stage_table(rows: list[dict]) -> str:
    """One row per stage that ran (the Keras training stages too: bounded, see keras_table)."""
    lines = [
        "| stage | wall (s) | of which its work (s) | clips/s | peak RSS, process tree (MiB) | written (MB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {_name(r)} | {r['seconds']:.1f} | {_cell(r['work_seconds'], '.1f')} | {_cell(r['clips_per_s'], '.1f')} "
            f"| {r['peak_tree_rss_mib']:,.0f} | {r['written_mb']:,.1f} |"
        )
    return "\n".join(lines)


def keras_table(rows: list[dict]) -> str:
    lines = [
        (
            "| stage, bounded | steps × batch | wall (s) | of which the fit (s) | first step (s) "
            "| then s/step | examples/s | peak RSS, process tree (MiB) | written (MB) |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if r.get("steps") is not None:
            lines.append(
                f"| {_name(r)} | {r['steps']} × {r['batch_size']} | {r['seconds']:.1f} "
                f"| {_cell(r['work_seconds'], '.1f')} | {_cell(r['first_step_seconds'], '.1f')} "
                f"| {_cell(r['seconds_per_step'], '.2f')} | {_cell(r['examples_per_s'], '.0f')} "
                f"| {r['peak_tree_rss_mib']:,.0f} | {r['written_mb']:,.1f} |"
            )
    return "\n".join(lines) if len(lines) > 2 else ""


def projection_table(p: dict) -> str:
    cores, ref = p["measured_cores"], p["reference_cores"]
    lines = [
        f"| fma_large, {p['clips']:,} clips | {cores} cores | {ref} cores |",
        "| --- | ---: | ---: |",
    ]
    for key, label in (
        ("data_hours", "fetch … embed (h)"),
        ("sklearn_hours", "sklearn models, trained and evaluated (h)"),
        ("other_hours", "Keras evaluation, summarize, recommend_index (h)"),
    ):
        lines.append(f"| {label} | {_hours(p[key]['measured_cores'])} | {_hours(p[key]['reference_cores'])} |")
    for stage, k in p["keras"].items():
        bound = " (upper bound: one step measured)" if k["upper_bound"] else ""
        hours = k["hours_per_epoch"]
        lines.append(
            f"| `{stage}`, one epoch of {k['steps_per_epoch']:,} steps (h){bound} "
            f"| {_hours(hours['measured_cores'])} | {_hours(hours['reference_cores'])} |"
        )
    lines += [
        f"| workspace (GB) | {_gb(p['workspace_bytes'])} | {_gb(p['workspace_bytes'])} |",
        f"| DVC cache (GB) | {_gb(p['cache_bytes'])} | {_gb(p['cache_bytes'])} |",
        f"| both, each file once (GB) | {_gb(p['combined_bytes'])} | {_gb(p['combined_bytes'])} |",
        (
            f"| peak RSS of a stage (GiB) | {p['peak_rss_bytes']['measured_cores'] / GIB:.1f} "
            f"| {p['peak_rss_bytes']['reference_cores'] / GIB:.1f} |"
        ),
    ]
    return "\n".join(lines)


PROJECTION_NOTE = (
    "Projection: each stage's work (as its log times it, else its wall time) linear in clips "
    "(kernel SVM: clips squared), the rest of its wall time once; on more cores only convert, "
    "features and the Keras steps speed up, ideally; disk under data/ linear in clips, models once; "
    "memory flat in clips, plus one worker per extra core in convert and features. Keras: the mean "
    "step after the first of a bounded run, times the steps of one fma_large epoch."
)


def report_markdown(doc: dict) -> str:
    """The Markdown tables of a rehearsal's document (what record.write wrote)."""
    f = doc["figures"]
    disk, book, p = f["disk"], f["bookkeeping"], f["projection"]
    parts = [
        (
            f"Rehearsal: {f['clips']:,} clips (seed {f['seed']}), commit {(doc['commit'] or '?')[:10]}, "
            f"{record.machine_line(doc)}, {doc['seconds'] / 60:.1f} min in all"
        ),
        "",
        stage_table(f["stages"]),
    ]
    keras = keras_table(f["stages"])
    if keras:
        parts += ["", keras]
    parts += [
        "",
        "| workspace (GB) | DVC cache (GB) | both, each file once (GB) | copies of the audio "
        "| source mp3s (GB) | no-op `dvc repro` (s) | `dvc status` (s) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        (
            f"| {_gb(disk['workspace_bytes'])} | {_gb(disk['cache_bytes'])} "
            f"| {_gb(disk['workspace_and_cache_bytes'])} | {_copies(disk['audio_copies'])} "
            f"| {_gb(disk['source_bytes'])} "
            f"| {book['noop_repro_seconds']:.1f} | {book['status_seconds']:.1f} |"
        ),
    ]
    if p:
        parts += ["", projection_table(p), "", PROJECTION_NOTE]
    return "\n".join(parts)


# ===================================================================== main


def keras_units_per_clip(params: dict, model: str) -> int:
    """Training units per clip: cnn2d trains on every segment, the others on one unit per clip."""
    return int(params[model]["segments_per_clip"]) if model == "cnn2d" else 1


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


def noop_targets(ran: list[str], planned: list[str], stages: dict[str, dict]) -> list[str]:
    """``dvc repro`` arguments naming the stages that ran (and so every stage before them).

    When every stage of dvc.yaml ran: none (a plain ``dvc repro``). When every planned stage
    ran: the planned stages that no other planned stage depends on, a foreach whose items are
    all such stages as one ``--glob`` pattern (``evaluate_sklearn@*``): DVC reads dvc.yaml and
    dvc.lock again for each target, so naming many stages costs seconds that a user's plain
    ``dvc repro`` does not pay. Otherwise (a run that stopped early) the stages themselves.
    """
    if ran != planned:
        return ran
    if set(planned) == set(stages):
        return []
    leaves = [n for n in planned if not any(n in stages[m]["upstream"] for m in planned)]
    targets = []
    for name in leaves:
        group = name.split("@", 1)[0]
        items = [n for n in stages if n.startswith(group + "@")]
        if "@" in name and all(n in leaves for n in items):
            if f"{group}@*" not in targets:
                targets.append(f"{group}@*")
        else:
            targets.append(name)
    return ["--glob", *targets]


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


def stage_row(r: StageResult, params: dict) -> dict:
    """A stage's figures as the JSON holds them."""
    row = {
        "stage": r.stage,
        "status": r.status,
        "seconds": round(r.seconds, 2),
        "work_seconds": r.work_seconds,
        "clips_per_s": round(r.clips_per_second, 3) if r.steps is None else None,
        "peak_tree_rss_mib": round(r.peak_tree_rss / MIB, 1),
        "peak_leaf_rss_mib": round(r.peak_leaf_rss / MIB, 1),
        "processes_at_peak": r.processes_at_peak,
        "written_mb": round(r.bytes_written / 1e6, 3),
    }
    if r.steps is not None:
        row |= {
            "steps": r.steps,
            "batch_size": r.batch_size,
            "units_per_clip": keras_units_per_clip(params, r.stage.split("@", 1)[1]),
            "first_step_seconds": r.first_step_seconds,
            "seconds_per_step": r.seconds_per_step,
            "examples_per_s": round(r.batch_size / r.seconds_per_step, 1) if r.seconds_per_step else None,
        }
    return row


def figures(args, planned: list[str], project: Path, source: Path, params: dict, results, book: dict) -> dict:
    """What the JSON's ``figures`` holds (the layout is in the module's docstring)."""
    cores = os.cpu_count() or 1
    workspace = disk_usage(project, exclude=(project / ".git", project / ".dvc" / "cache"))
    cache = disk_usage(project / ".dvc" / "cache")
    data = disk_usage(project / "data")
    combined = disk_usage(project, exclude=(project / ".git",))  # workspace + cache, each inode once
    complete = len(results) == len(planned) and all(r.status == 0 for r in results)
    projection = None
    if complete:
        measured = [
            dataclasses.asdict(r) | ({"units_per_clip": keras_units_per_clip(params, r.stage.split("@", 1)[1])})
            if r.steps is not None
            else dataclasses.asdict(r)
            for r in results
        ]
        projection = project_large(
            measured,
            args.clips,
            cores,
            {"workspace": workspace, "data": data, "cache": cache, "combined": combined},
            float(params["split"]["fractions"]["train"]),
        )
    return {
        "clips": args.clips,
        "seed": args.seed,
        "keras_step_limit": None if args.skip_keras else args.keras_steps,
        "complete": complete,
        "planned": planned,
        "stages": [stage_row(r, params) for r in results],
        "disk": {
            "workspace_bytes": workspace,
            "workspace_data_bytes": data,
            "cache_bytes": cache,
            "workspace_and_cache_bytes": combined,
            "audio_copies": audio_copies(project) if complete else None,
            "source_bytes": disk_usage(source),
        },
        "bookkeeping": book,
        "projection": projection,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, required=True, help="N: clips in the source")
    parser.add_argument("--seed", type=int, default=0, help="the source's changes (default 0)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"source cache, scratch clone, logs (default {DEFAULT_WORKDIR})",
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help="where to write the figures (default %(default)s)"
    )
    parser.add_argument(
        "--keras-steps",
        type=int,
        default=DEFAULT_KERAS_STEPS,
        help=f"training steps of each Keras model (default {DEFAULT_KERAS_STEPS})",
    )
    parser.add_argument("--skip-keras", action="store_true", help="do not run the Keras stages (nor what needs them)")
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="one more params.yaml change in the clone (YAML value; e.g. cnn2d.image_size=64); repeatable",
    )
    parser.add_argument(
        "--shared", type=Path, default=DEFAULT_SHARED, help=f"the real audio (default {DEFAULT_SHARED})"
    )
    parser.add_argument("--workers", type=int, default=None, help="processes building the source (default: every core)")
    parser.add_argument("--keep", action="store_true", help="keep the project clone (default: deleted at the end)")
    args = parser.parse_args(argv)
    if args.clips < MIN_CLIPS:
        parser.error(
            f"--clips must be at least {MIN_CLIPS} ({MIN_CLIPS // len(GENRES)} per genre: the SVM's "
            "cross-validation needs 5 training clips per genre, and val and test one each)"
        )
    if args.keras_steps < 1:
        parser.error("--keras-steps must be at least 1")
    for override in args.overrides:
        if "=" not in override:
            parser.error(f"--set {override}: give KEY=VALUE")
    return args


def main(argv: list[str] | None = None) -> int:
    run = record.start("rehearsal", argv if argv is None else [__file__, *argv])
    args = parse_args(argv)
    workdir = args.workdir.resolve()
    tag = f"n{args.clips}-seed{args.seed}"
    print(
        f"rehearsal of {args.clips} clips in {workdir} ({os.cpu_count()} cores, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())})",
        flush=True,
    )
    source = build_source(args.clips, args.seed, args.shared.resolve(), workdir, args.workers)
    project = workdir / f"project-{tag}"
    commit = clone_project(project)
    keras_limit = None if args.skip_keras else args.keras_steps
    params = set_params(project, source, args.overrides, keras_limit)
    print(
        f"project: {project} (a clone of {commit[:10]}; params.yaml: data.source={source}, mobilenet.weights=null"
        + (f", max_steps={keras_limit} in each Keras model's section" if keras_limit else "")
        + "".join(f", {o}" for o in args.overrides)
        + ")",
        flush=True,
    )
    stages = dvc_stages(yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8")), params)
    planned = pipeline_stages(stages, args.skip_keras)
    logs = workdir / f"logs-{tag}"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    results, ran = run_pipeline(project, params, planned, args.clips, logs, keras_limit)
    book = bookkeeping(project, noop_targets(ran, planned, stages), logs)
    if book["noop_repro_reran"]:
        print(f"warning: the no-op dvc repro ran {book['noop_repro_reran']} again", flush=True)
    doc = record.write(args.json, run, figures(args, planned, project, source, params, results, book))
    print("\n" + report_markdown(doc), flush=True)
    print(f"\nlogs in {logs}")
    if args.keep:
        print(f"the project (delete when done): {project}")
    else:
        shutil.rmtree(project, ignore_errors=True)
    return 0 if doc["figures"]["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
