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
   data by; the SHA-256 of each stage's outputs is in the JSON, so that two versions
   of the code can be shown to give the same bytes. Other work on the machine changes the times
   much and the RSS little: the load average is recorded.

The data of step 2 is made by tests/support/fma_like_tables.py (checked by
tests/test_bench_sklearn_memory.py). The JSON (--json, default
benchmarks/results/bench_sklearn_memory.json; benchmarks/record.py's document) holds in
``figures``: the settings (``sizes``, ``models``, ``svm_grid``, ``seed``, ``noise``, ``mix``);
``stages``: one object per stage run, in order: ``stage`` (``train_sklearn@svm``,
``evaluate@svm``), ``clips``, ``seconds``, ``peak_tree_rss_mib``,
``peak_largest_process_rss_mib``, ``processes``; ``growth``: per stage, from the smallest size
to the largest (``from_clips``, ``to_clips``): ``tree_growth_percent``,
``largest_process_growth_percent``; ``facts``: per ``<model>@<clips>`` (and
``<model>@gtzan_mini``): ``test_accuracy``, ``train_clips``, and for the SVM
``support_vectors``, ``C``, ``gamma``; ``output_sha256``: per ``<stage>@<clips>``, each
output file's SHA-256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402
from benchmarks.rehearsal_stages import run_measured  # noqa: E402
from genreclf.data.audio import read_wav  # noqa: E402
from genreclf.features import fma_features as features  # noqa: E402
from tests.support.fma_like_tables import fma_like_tables, gtzan_mini_tables  # noqa: E402
from tests.support.sklearn_fixture import write_feature_tables  # noqa: E402

DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "gtzan_mini"
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "genreclf-sklearn-memory"
DEFAULT_MODELS = ("logreg", "knn", "gnb", "svm")
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "bench_sklearn_memory.json"
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


def data_facts(project: Path, model: str, train_clips: int) -> dict:
    """The test accuracy and, for the SVM, its support vectors, C and gamma: what the data did to the model."""
    metrics = json.loads((project / "metrics" / "models" / f"{model}.json").read_text())
    facts = {"test_accuracy": metrics["accuracy"], "train_clips": train_clips}
    if model == "svm":
        from genreclf.models.sklearn_models import load_pipeline

        calibrated = load_pipeline(project / "models" / model / "model.skops").named_steps["classifier"]
        svc = calibrated.calibrated_classifiers_[0].estimator
        selected = json.loads((project / "models" / model / "preprocessing.json").read_text()).get("selected", {})
        facts |= {"support_vectors": len(svc.support_), "C": selected.get("C"), "gamma": selected.get("gamma")}
    return facts


def facts_line(facts: dict) -> str:
    line = f"test accuracy {facts['test_accuracy']:.3f}"
    if "support_vectors" in facts:
        line += (
            f", {facts['support_vectors']} support vectors of {facts['train_clips']} training clips"
            f" (C={facts['C']}, gamma={facts['gamma']})"
        )
    return line


def growth(runs: list[StageRun], sizes: list[int]) -> list[dict]:
    """Per stage: the peaks at the smallest and the largest size, and their growth in %."""
    low, high = min(sizes), max(sizes)
    by_key = {(r.stage, r.clips): r for r in runs}
    rows = []
    for stage in dict.fromkeys(r.stage for r in runs):
        a, b = by_key.get((stage, low)), by_key.get((stage, high))
        if a and b and low != high:
            rows.append(
                {
                    "stage": stage,
                    "from_clips": low,
                    "to_clips": high,
                    "tree_growth_percent": round(100 * (b.tree_rss / a.tree_rss - 1), 1),
                    "largest_process_growth_percent": round(100 * (b.largest_rss / a.largest_rss - 1), 1),
                }
            )
    return rows


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
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="the figures' JSON (default %(default)s)")
    args = parser.parse_args(argv)
    if min(args.clips) < MIN_CLIPS:
        parser.error(f"--clips {min(args.clips)}: at least {MIN_CLIPS}")
    return args


def main(argv: list[str] | None = None) -> int:
    run_record = record.start("bench_sklearn_memory", argv if argv is None else [__file__, *argv])
    args = parse_args(argv)
    workdir, code = args.workdir.resolve(), args.code.resolve()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"scikit-learn stages of {code} in {workdir} ({os.cpu_count()} cores, load average {load})", flush=True)
    real, paths = real_features(args.source.resolve(), workdir)
    real_genres = [p.parent.name for p in paths]
    runs: list[StageRun] = []
    facts, outputs = {}, {}
    if args.gtzan_mini:  # the real clips, as the pipeline splits them: is each model as accurate as before?
        project = workdir / "gtzan-mini"
        real_tables = gtzan_mini_tables(real, paths, code)
        build_project(project, real_tables, code)
        for model in args.models:
            for module in ("train_sklearn", "evaluate"):
                outputs[f"{module}@{model}@gtzan_mini"] = run_one(
                    project, module, model, len(real), code, workdir / "logs"
                ).outputs
            facts[f"{model}@gtzan_mini"] = data_facts(project, model, len(real_tables["train"]))
            print(f"gtzan_mini {model}: {facts_line(facts[f'{model}@gtzan_mini'])}", flush=True)
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
            print(f"  {model}: {facts_line(facts[f'{model}@{clips}'])}", flush=True)
    print()
    print(table(runs, args.clips))
    outputs |= {f"{r.stage}@{r.clips}": r.outputs for r in runs}
    figures = {
        "sizes": args.clips,
        "models": args.models,
        "svm_grid": args.svm_grid,
        "seed": args.seed,
        "noise": args.noise,
        "mix": args.mix,
        "stages": [
            {
                "stage": r.stage,
                "clips": r.clips,
                "seconds": round(r.seconds, 2),
                "peak_tree_rss_mib": round(r.tree_rss / MIB, 1),
                "peak_largest_process_rss_mib": round(r.largest_rss / MIB, 1),
                "processes": r.processes,
            }
            for r in runs
        ],
        "growth": growth(runs, args.clips),
        "facts": facts,
        "output_sha256": outputs,
    }
    record.write(args.json, run_record, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
