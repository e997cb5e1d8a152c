"""Every model's test accuracy over several split seeds: the real pipeline, run again per seed.

    python benchmarks/split_seeds.py --project P --workdir W [--seeds 0 1 2 3 4]

P is a DVC project of this repository after `dvc repro` (for the end-to-end test's project:
<basetemp>/pipeline/project, see tests/support/pipeline_project.py); it is not modified. In a git
clone of P in W that reads and writes P's DVC cache, each seed runs as an experiment,
`dvc exp run -S split.seed=N`: the split, then every stage that depends on it (shard, features,
embed, each model's training and evaluation, summarize). Nothing is chosen on a test split:
the stages choose their settings on train (CV) and val, as always. Printed: each seed's
wall time and test accuracies (metrics/summary.json), then a markdown table with each model's
accuracy per seed and its mean and standard deviation over the seeds (numpy's, ddof 0).

The JSON (--json, default benchmarks/results/split_seeds.json; benchmarks/record.py's
document) holds in ``figures``: ``seeds`` (the list), ``runs``: one object per seed: ``seed``,
``seconds`` (its `dvc exp run`), ``accuracy`` (model -> test accuracy); ``models``: one object
per model (metrics/summary.json's order): ``model``, ``mean_accuracy``, ``std_accuracy``,
``accuracies`` (one per seed, in the seeds' order).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "split_seeds.json"
SUMMARY = Path("metrics") / "summary.json"
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "split_seeds", "GIT_COMMITTER_NAME": "split_seeds"}
GIT_EMAIL = {"GIT_AUTHOR_EMAIL": "split_seeds@example.invalid", "GIT_COMMITTER_EMAIL": "split_seeds@example.invalid"}


def run(args: list[str], cwd: Path) -> str:
    """Run a command (this interpreter's bin first on PATH); its output, or exit with it on failure."""
    env = dict(os.environ, **GIT_IDENTITY, **GIT_EMAIL)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        output = proc.stdout[-3000:] + proc.stderr[-3000:]
        sys.exit(f"{' '.join(args)} failed in {cwd} (exit {proc.returncode}):\n{output}")
    return proc.stdout + proc.stderr


def clone(project: Path, dest: Path) -> Path:
    """A git clone of ``project`` whose DVC cache is ``project``'s, with its outputs checked out."""
    if dest.exists():
        sys.exit(f"{dest} exists: give a --workdir without a 'clone' folder")
    run(["git", "clone", "-q", str(project), str(dest)], dest.parent)
    run([sys.executable, "-m", "dvc", "cache", "dir", "--local", str(project / ".dvc" / "cache")], dest)
    run([sys.executable, "-m", "dvc", "checkout", "-q"], dest)
    return dest


def model_accuracies(summary: dict) -> dict[str, float]:
    """model -> test accuracy, from a metrics/summary.json."""
    return {name: float(model["accuracy"]) for name, model in summary["models"].items()}


def seeds_table(by_seed: dict[int, dict[str, float]]) -> str:
    """Markdown: one row per model (in the summary's order), its accuracy per seed, mean and std."""
    seeds = list(by_seed)
    models = list(by_seed[seeds[0]])
    lines = [
        "| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | std |",
        "| --- | " + " | ".join("---:" for _ in seeds) + " | ---: | ---: |",
    ]
    for model in models:
        values = np.array([by_seed[s][model] for s in seeds])
        cells = " | ".join(f"{v:.3f}" for v in values)
        lines.append(f"| {model} | {cells} | {values.mean():.3f} | {values.std():.3f} |")
    return "\n".join(lines)


def model_figures(by_seed: dict[int, dict[str, float]]) -> list[dict]:
    """Per model: its accuracies over the seeds, their mean and standard deviation (ddof 0)."""
    seeds = list(by_seed)
    rows = []
    for model in by_seed[seeds[0]]:
        values = np.array([by_seed[s][model] for s in seeds])
        rows.append(
            {
                "model": model,
                "mean_accuracy": round(float(values.mean()), 6),
                "std_accuracy": round(float(values.std()), 6),
                "accuracies": [float(v) for v in values],
            }
        )
    return rows


def main() -> None:
    run_record = record.start("split_seeds")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, required=True, help="a project where `dvc repro` ran")
    parser.add_argument("--workdir", type=Path, required=True, help="an empty folder for the clone")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="the figures' JSON (default %(default)s)")
    args = parser.parse_args()
    if not (args.project / SUMMARY).is_file():
        sys.exit(f"{args.project / SUMMARY}: missing; run `dvc repro` in {args.project} first")
    args.workdir.mkdir(parents=True, exist_ok=True)
    repo = clone(args.project.resolve(), args.workdir.resolve() / "clone")
    by_seed, runs = {}, []
    for seed in args.seeds:
        started = time.perf_counter()
        run([sys.executable, "-m", "dvc", "exp", "run", "-S", f"split.seed={seed}"], repo)
        seconds = time.perf_counter() - started
        by_seed[seed] = model_accuracies(json.loads((repo / SUMMARY).read_text()))
        runs.append({"seed": seed, "seconds": round(seconds, 1), "accuracy": by_seed[seed]})
        scores = ", ".join(f"{name} {value:.3f}" for name, value in by_seed[seed].items())
        print(f"split seed {seed}: {seconds:.0f} s; test accuracy {scores}", flush=True)
    print()
    print(seeds_table(by_seed))
    record.write(args.json, run_record, {"seeds": args.seeds, "runs": runs, "models": model_figures(by_seed)})


if __name__ == "__main__":
    main()
