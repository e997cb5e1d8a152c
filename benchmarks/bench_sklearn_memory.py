"""Peak memory of the scikit-learn stages at two sizes of an fma_small-like feature table.

    python benchmarks/bench_sklearn_memory.py --clips 1000 8000 [--seed 0] [--noise 0.5]
                                              [--models logreg knn gnb svm] [--code DIR]
                                              [--workdir DIR] [--json PATH]

1. **The real features.** The 518 FMA feature columns of the 100 real clips of
   ``../shared/data/gtzan_mini`` (10 genres), computed once by the project's own features
   code (``genreclf.features.fma_features``, default params, one worker) and cached in
   --workdir by the list of files and the params.
2. **N clips like fma_small's.** 8 genres (gtzan_mini's first 8: clip i has genre i mod 8),
   split 80/10/10 as fma_small, stratified by genre by the split stage's own function, seeded
   (8000 clips: 6400/800/800; 1000: 800/100/100).
   Clip i is one of the 10 real clips of its genre mixed with a real clip of any genre (the
   latter's share uniform in [0, --mix]) plus Gaussian noise of --noise times each column's
   standard deviation over the 80 real clips, drawn from (seed, N). Mixing blurs the genres
   into one another as real data does: at the defaults (mix 1, noise 0.5) the SVM is right on
   about 57 % of the test clips and most training clips are its support vectors, as on
   fma_small (48 % in the FMA study); unmixed copies were all classified right. The tables
   are written by the features stage's writer (``genreclf.artifacts.write_features``) into
   ``<workdir>/clips-N/data/features`` beside an unchanged copy of params.yaml (every model
   at its defaults, the SVM's 25-pair cross-validated grid included; ``--svm-grid small``: 4
   of those pairs, for the same peak in a fifth of the time). ``--gtzan-mini`` first runs the
   models on the 100 real clips themselves, split as the split stage splits them, and prints
   their test accuracy (the end-to-end test's data).
3. **What runs.** For each model, ``python -m stages.train_sklearn <m>`` then
   ``python -m stages.evaluate <m>``, each a subprocess in that folder with --code (default:
   this repository) on PYTHONPATH, as DVC runs them, one at a time. The process tree of each
   (the stage and any worker it starts) is sampled every 0.2 s by benchmarks/process_tree.py.
4. **What it prints.** Per stage and size: the wall time, the peak RSS of the tree (the RSS of
   every process summed at one instant: pages shared by several processes, such as joblib's
   memory-mapped copy of the data or the shared libraries, count once per process that maps
   them), the peak RSS of the largest single process, then the growth from the smallest to the
   largest size in %. The SVM's support vectors and the test accuracy are printed to judge the
   data by; the SHA-256 of each stage's outputs is in the JSON (--json), so that two versions
   of the code can be shown to give the same bytes. Other work on the machine changes the times
   much and the RSS little: the load average is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.rehearsal import run_measured  # noqa: E402
from genreclf.data.audio import read_wav  # noqa: E402
from genreclf.data.splits import stratified_split  # noqa: E402
from genreclf.features import fma_features as features  # noqa: E402
from tests.sklearn_fixture import write_feature_tables  # noqa: E402

DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "gtzan_mini"
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "genreclf-sklearn-memory"
DEFAULT_MODELS = ("logreg", "knn", "gnb", "svm")
N_GENRES = 8  # as fma_small
SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}  # fma_small's official split: 80/10/10
MIN_CLIPS = 80  # the SVM's 5 cross-validation folds need 5 training clips of each of the 8 genres
BASE_VERSION = 1  # part of the cache key of the real features: bump when their computation changes
MIB = 2**20
# --svm-grid: the search of params.yaml (25 pairs x 5 folds), or 4 of its pairs: each fit is the
# same size (a fold of the train split) and runs in the same workers, so the peak is that of the
# whole search, in a fifth of the time; the SVM it chooses may differ.
SVM_GRIDS = {"params": None, "small": {"C": [10, 30], "gamma": ["scale", 0.0001]}}


# ---- the data


def real_features(source: Path, workdir: Path) -> tuple[np.ndarray, list[Path]]:
    """(features [clips, 518], the files: <genre>/<track_id>.wav) of every WAV under ``source``,
    cached in ``workdir``."""
    paths = sorted(source.rglob("*.wav"))
    if not paths:
        sys.exit(f"{source}: no WAV files")
    params = features.DEFAULT_PARAMS
    key = hashlib.sha256(
        json.dumps([BASE_VERSION, [str(p) for p in paths], features.params_to_dict(params)]).encode()
    ).hexdigest()[:16]
    cache = workdir / f"real-features-{key}.npz"
    if cache.is_file():
        return np.load(cache)["features"], paths
    sample_rate = read_wav(paths[0])[1]
    print(f"computing the features of {len(paths)} clips of {source} (once; cached in {cache}) ...", flush=True)
    rows = features.iter_wav_features(paths, sample_rate, params, workers=1)
    try:
        values = np.array(list(rows), dtype=np.float64)
    finally:
        rows.close()
    workdir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, features=values)
    return values, paths


def fma_like_tables(real: np.ndarray, real_genres: list[str], clips: int, seed: int, noise: float, mix: float) -> dict:
    """{split: DataFrame of track_id, label, genre and the feature columns} for ``clips`` clips.

    Clip i, of genre g = i mod 8: (1 - w) x a real clip of g + w x a real clip of any of the 8
    genres, w uniform in [0, ``mix``], plus Gaussian noise of ``noise`` x each column's standard
    deviation over those real clips; all drawn from (seed, clips).
    """
    names = sorted(set(real_genres))[:N_GENRES]
    by_genre = [np.flatnonzero(np.array(real_genres) == name) for name in names]
    pool = np.concatenate(by_genre)
    scale = real[pool].std(axis=0)
    rng = np.random.default_rng([seed, clips])
    labels = np.arange(clips) % N_GENRES
    own = real[[rng.choice(by_genre[label]) for label in labels]]
    other = real[rng.choice(pool, size=clips)]
    weight = rng.uniform(0.0, mix, size=(clips, 1))
    values = (1 - weight) * own + weight * other + rng.normal(size=own.shape) * (noise * scale)
    track_ids = [f"{i:06d}" for i in range(clips)]
    splits = np.array(stratified_split(track_ids, labels.tolist(), SPLIT_FRACTIONS, seed))
    table = pd.DataFrame(values, columns=list(features.FEATURE_COLUMNS))
    table.insert(0, "genre", [names[label] for label in labels])
    table.insert(0, "label", labels)
    table.insert(0, "track_id", track_ids)
    return {split: table[splits == split].reset_index(drop=True) for split in ("train", "val", "test")}


def gtzan_mini_tables(real: np.ndarray, paths: list[Path], code: Path) -> dict:
    """The real clips in the split of the pipeline's split stage (params.yaml of ``code``)."""
    split = yaml.safe_load((code / "params.yaml").read_text(encoding="utf-8"))["split"]
    real_genres, track_ids = [p.parent.name for p in paths], [p.stem for p in paths]
    names = sorted(set(real_genres))
    splits = np.array(stratified_split(track_ids, real_genres, split["fractions"], split["seed"]))
    table = pd.DataFrame(real, columns=list(features.FEATURE_COLUMNS))
    table.insert(0, "genre", real_genres)
    table.insert(0, "label", [names.index(genre) for genre in real_genres])
    table.insert(0, "track_id", track_ids)
    return {name: table[splits == name].reset_index(drop=True) for name in ("train", "val", "test")}


def build_project(project: Path, tables: dict, code: Path, svm_grid: dict | None = None) -> None:
    """params.yaml of ``code`` (svm.C and svm.gamma replaced by ``svm_grid`` if given) and
    data/features written by the features stage's writer."""
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    if svm_grid is None:
        shutil.copyfile(code / "params.yaml", project / "params.yaml")
    else:
        params = yaml.safe_load((code / "params.yaml").read_text(encoding="utf-8"))
        params["svm"].update(svm_grid)
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    write_feature_tables(project, tables)  # the 518 columns, by the features stage's writer


# ---- the runs


@dataclass
class StageRun:
    stage: str
    clips: int
    seconds: float
    tree_rss: int
    largest_rss: int
    processes: int
    outputs: dict  # path -> sha256


def digests(project: Path, paths: list[str]) -> dict:
    found = {}
    for rel in paths:
        for path in sorted((project / rel).rglob("*")) if (project / rel).is_dir() else [project / rel]:
            if path.is_file():
                found[str(path.relative_to(project))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


STAGE_OUTPUTS = {
    "train_sklearn": lambda m: [f"models/{m}"],
    "evaluate": lambda m: [f"metrics/models/{m}.json", f"evaluation/{m}"],
}


def run_one(project: Path, module: str, model: str, clips: int, code: Path, logs: Path) -> StageRun:
    env = dict(os.environ, PYTHONPATH=str(code), PYTHONUNBUFFERED="1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    log_path = logs / f"{module}-{model}-{clips}.log"
    status, seconds, peak = run_measured([sys.executable, "-m", f"stages.{module}", model], project, env, log_path)
    if status != 0:
        sys.exit(f"{module} {model} failed ({status}):\n{log_path.read_text()[-3000:]}")
    return StageRun(
        f"{module}@{model}",
        clips,
        seconds,
        peak.tree_rss,
        max(peak.root_rss, peak.leaf_rss),
        peak.processes,
        digests(project, STAGE_OUTPUTS[module](model)),
    )


def data_facts(project: Path, model: str, train_clips: int) -> str:
    """The test accuracy and, for the SVM, its support vectors: what the data did to the model."""
    metrics = json.loads((project / "metrics" / "models" / f"{model}.json").read_text())
    facts = f"test accuracy {metrics['accuracy']:.3f}"
    if model == "svm":
        from genreclf.models.sklearn_models import load_pipeline

        calibrated = load_pipeline(project / "models" / model / "model.skops").named_steps["classifier"]
        svc = calibrated.calibrated_classifiers_[0].estimator
        selected = json.loads((project / "models" / model / "preprocessing.json").read_text()).get("selected", {})
        facts += (
            f", {len(svc.support_)} support vectors of {train_clips} training clips"
            f" (C={selected.get('C')}, gamma={selected.get('gamma')})"
        )
    return facts


def mib(value: int) -> str:
    return f"{value / MIB:,.0f}"


def table(runs: list[StageRun], sizes: list[int]) -> str:
    low, high = min(sizes), max(sizes)
    lines = [
        "| stage | clips | seconds | peak RSS, tree (MiB) | peak RSS, largest process (MiB) | processes |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    by_key = {(r.stage, r.clips): r for r in runs}
    for r in runs:
        lines.append(
            f"| `{r.stage}` | {r.clips} | {r.seconds:.1f} | {mib(r.tree_rss)} | {mib(r.largest_rss)} | {r.processes} |"
        )
    lines += ["", f"| stage | tree {low} → {high} | growth | largest process {low} → {high} | growth |"]
    lines.append("| --- | ---: | ---: | ---: | ---: |")
    for stage in dict.fromkeys(r.stage for r in runs):
        a, b = by_key.get((stage, low)), by_key.get((stage, high))
        if a and b:
            lines.append(
                f"| `{stage}` | {mib(a.tree_rss)} → {mib(b.tree_rss)} | {100 * (b.tree_rss / a.tree_rss - 1):+.0f} % "
                f"| {mib(a.largest_rss)} → {mib(b.largest_rss)} | {100 * (b.largest_rss / a.largest_rss - 1):+.0f} % |"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, nargs="+", default=[1000, 8000], help=f"sizes (at least {MIN_CLIPS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.5, help="noise, in standard deviations of each column")
    parser.add_argument("--mix", type=float, default=1.0, help="largest share of a clip of any genre in a clip")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=DEFAULT_MODELS)
    parser.add_argument("--code", type=Path, default=ROOT, help="the repository whose stages run (default: this)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the real clips (WAV)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument(
        "--svm-grid", choices=SVM_GRIDS, default="params", help="the SVM's search: params.yaml's, or 4 of its pairs"
    )
    parser.add_argument(
        "--gtzan-mini", action="store_true", help="first run the models on the real clips, in the pipeline's split"
    )
    parser.add_argument("--json", type=Path, help="write every figure and output digest here")
    args = parser.parse_args(argv)
    if min(args.clips) < MIN_CLIPS:
        parser.error(f"--clips {min(args.clips)}: at least {MIN_CLIPS}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir, code = args.workdir.resolve(), args.code.resolve()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"scikit-learn stages of {code} in {workdir} ({os.cpu_count()} cores, load average {load})", flush=True)
    real, paths = real_features(args.source.resolve(), workdir)
    real_genres = [p.parent.name for p in paths]
    runs: list[StageRun] = []
    facts = {}
    if args.gtzan_mini:  # the real clips, as the pipeline splits them: is each model as accurate as before?
        project = workdir / "gtzan-mini"
        real_tables = gtzan_mini_tables(real, paths, code)
        build_project(project, real_tables, code)
        for model in args.models:
            for module in ("train_sklearn", "evaluate"):
                facts[f"{module}@{model}@gtzan_mini"] = run_one(
                    project, module, model, len(real), code, workdir / "logs"
                ).outputs
            facts[f"{model}@gtzan_mini"] = data_facts(project, model, len(real_tables["train"]))
            print(f"gtzan_mini {model}: {facts[f'{model}@gtzan_mini']}", flush=True)
    for clips in args.clips:
        project = workdir / f"clips-{clips}"
        tables = fma_like_tables(real, real_genres, clips, args.seed, args.noise, args.mix)
        build_project(project, tables, code, SVM_GRIDS[args.svm_grid])
        sizes = ", ".join(f"{split} {len(t)}" for split, t in tables.items())
        print(f"{clips} clips ({sizes}) in {project}", flush=True)
        for model in args.models:
            for module in ("train_sklearn", "evaluate"):
                run = run_one(project, module, model, clips, code, workdir / "logs")
                runs.append(run)
                print(f"  {run.stage}: {run.seconds:.1f} s, tree {mib(run.tree_rss)} MiB", flush=True)
            facts[f"{model}@{clips}"] = data_facts(project, model, len(tables["train"]))
            print(f"  {model}: {facts[f'{model}@{clips}']}", flush=True)
    print()
    print(table(runs, args.clips))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {"code": str(code), "load_average": load, "args": vars(args), "facts": facts}
        report["runs"] = [asdict(r) for r in runs]
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
