"""The pipeline's results per model, from a project where `dvc repro` ran: the JSON behind docs/results.md.

    python benchmarks/results_table.py PROJECT [--log FILE] [--json PATH]

PROJECT is a DVC project of this repository after `dvc repro` (for the end-to-end test's
project: <basetemp>/pipeline/project, see tests/support/pipeline_project.py). For each model of
metrics/models/<name>.json: its test accuracy, macro-F1 and window or segment accuracy, and
the training time that the train stage logged, read from --log (default: first_repro.log
beside PROJECT, what the test's `dvc repro` printed). Training times are in the logs only,
never in an output, so outputs stay byte-identical. Printed as a Markdown table.

The JSON (--json, default benchmarks/results/results_table.json; benchmarks/record.py's
document) holds in ``figures``: ``models``: one object per model, by name: ``model``,
``accuracy``, ``macro_f1``, ``unit_accuracy`` (the window or segment accuracy, or null),
``unit`` (``window``, ``segment`` or null), ``training_seconds`` (null when the log has none)
and ``epochs`` (the Keras models; null for the others).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "results_table.json"
STAGE = re.compile(r"Running stage '(?:train_sklearn|train_keras)@([^']+)'")
SKLEARN_TIME = re.compile(r"trained \S+ in ([0-9.]+) s")
KERAS_TIME = re.compile(r"training time: ([0-9.]+) s for (\d+) epoch")
UNIT_METRICS = ("window_accuracy", "segment_accuracy")


def training_times(log_text: str) -> dict[str, tuple[float, int | None]]:
    """model -> (its training seconds, its epochs or None) as the train stage logged them."""
    times, model = {}, None
    for line in log_text.splitlines():
        if stage := STAGE.search(line):
            model = stage.group(1)
        elif model and (found := SKLEARN_TIME.search(line)):
            times[model] = (float(found.group(1)), None)
        elif model and (found := KERAS_TIME.search(line)):
            times[model] = (float(found.group(1)), int(found.group(2)))
    return times


def model_rows(project: Path, log_text: str) -> list[dict]:
    times = training_times(log_text)
    rows = []
    for path in sorted((project / "metrics" / "models").glob("*.json")):
        metrics = json.loads(path.read_text())
        unit = next((key for key in UNIT_METRICS if key in metrics), None)
        seconds, epochs = times.get(path.stem, (None, None))
        rows.append(
            {
                "model": path.stem,
                "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                "unit_accuracy": metrics[unit] if unit else None,
                "unit": unit.split("_")[0] if unit else None,
                "training_seconds": seconds,
                "epochs": epochs,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| model | test accuracy | macro-F1 | unit accuracy | training time |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        unit = f"{r['unit']} {r['unit_accuracy']:.3f}" if r["unit"] else ""
        if r["training_seconds"] is None:
            time = "not in the log"
        else:
            time = f"{r['training_seconds']:.2f} s" + (f" ({r['epochs']} epochs)" if r["epochs"] else "")
        lines.append(f"| {r['model']} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | {unit} | {time} |")
    return "\n".join(lines)


def main() -> None:
    run = record.start("results_table")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--log", type=Path, help="what dvc repro printed (default: PROJECT/../first_repro.log)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="the figures' JSON (default %(default)s)")
    args = parser.parse_args()
    log = args.log or args.project.parent / "first_repro.log"
    if not (args.project / "metrics" / "models").is_dir():
        raise SystemExit(f"{args.project}/metrics/models: missing; run dvc repro in {args.project} first")
    if not log.is_file():
        raise SystemExit(f"{log}: missing; pass --log with what dvc repro printed")
    rows = model_rows(args.project, log.read_text())
    print(table(rows))
    record.write(args.json, run, {"models": rows})


if __name__ == "__main__":
    main()
