"""The README's results table, from a project where `dvc repro` ran.

    python benchmarks/results_table.py PROJECT [--log FILE]

PROJECT is a DVC project of this repository after `dvc repro` (for the end-to-end test's
project: <basetemp>/pipeline/project, see tests/pipeline_project.py). Printed: one markdown
row per model of metrics/models/<name>.json (test accuracy, macro-F1, window or segment
accuracy) with the training time that the train stage logged, read from --log (default:
first_repro.log beside PROJECT, what the test's `dvc repro` printed). Training times are
in the logs only, never in an output, so outputs stay byte-identical.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

STAGE = re.compile(r"Running stage '(?:train_sklearn|train_keras)@([^']+)'")
SKLEARN_TIME = re.compile(r"trained \S+ in ([0-9.]+) s")
KERAS_TIME = re.compile(r"training time: ([0-9.]+) s for (\d+) epoch")
UNIT_METRICS = ("window_accuracy", "segment_accuracy")


def training_times(log_text: str) -> dict[str, str]:
    """model -> its training time as the train stage logged it (e.g. '1.40 s', '83.1 s (30 epochs)')."""
    times, model = {}, None
    for line in log_text.splitlines():
        if stage := STAGE.search(line):
            model = stage.group(1)
        elif model and (found := SKLEARN_TIME.search(line)):
            times[model] = f"{found.group(1)} s"
        elif model and (found := KERAS_TIME.search(line)):
            times[model] = f"{found.group(1)} s ({found.group(2)} epochs)"
    return times


def table(project: Path, log_text: str) -> str:
    times = training_times(log_text)
    rows = [
        "| model | test accuracy | macro-F1 | unit accuracy | training time |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for path in sorted((project / "metrics" / "models").glob("*.json")):
        metrics = json.loads(path.read_text())
        units = [f"{key.split('_')[0]} {metrics[key]:.3f}" for key in UNIT_METRICS if key in metrics]
        rows.append(
            f"| {path.stem} | {metrics['accuracy']:.3f} | {metrics['macro_f1']:.3f} | {' '.join(units)} "
            f"| {times.get(path.stem, 'not in the log')} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--log", type=Path, help="what dvc repro printed (default: PROJECT/../first_repro.log)")
    args = parser.parse_args()
    log = args.log or args.project.parent / "first_repro.log"
    if not (args.project / "metrics" / "models").is_dir():
        raise SystemExit(f"{args.project}/metrics/models: missing; run dvc repro in {args.project} first")
    if not log.is_file():
        raise SystemExit(f"{log}: missing; pass --log with what dvc repro printed")
    print(table(args.project, log.read_text()))


if __name__ == "__main__":
    main()
