"""One table comparing the models on the test split: python -m stages.summarize

Reads params models.sklearn and models.keras, then metrics/models/<model>.json of each
model (in that order); writes
metrics/summary.json ({"models": {name: {accuracy, macro_f1, n_test, family}}, ...})
and metrics/summary.md (a Markdown table, one row per model, plus the chance level).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genreclf.artifacts import MODEL_METRICS_DIR, SUMMARY_JSON, read_model_metrics, write_summary
from genreclf.errors import DataError
from genreclf.io import write_text
from stages.common import run_stage, stage_logger
from stages.config import load_config

SUMMARY_MD = Path("metrics/summary.md")
SUMMARY_KEYS = ("accuracy", "family", "macro_f1", "n_test")

log = stage_logger("summarize")


def summarize(all_metrics: dict[str, dict]) -> dict:
    """The summary of the models, in the order given, and the chance level of their test split."""
    genres = {name: sorted(metrics["per_class"]) for name, metrics in all_metrics.items()}
    first = next(iter(all_metrics))
    for name, names in genres.items():
        if names != genres[first]:
            raise DataError(
                f"{MODEL_METRICS_DIR}/{name}.json and {MODEL_METRICS_DIR}/{first}.json score different "
                "genres; re-run the pipeline so that every model is evaluated on the same test split"
            )
    supports = [counts["support"] for counts in all_metrics[first]["per_class"].values()]
    # Keys sorted everywhere except the models, which keep the order given.
    return {
        "chance": {"majority_accuracy": max(supports) / sum(supports), "uniform_accuracy": 1 / len(supports)},
        "models": {name: {key: metrics[key] for key in SUMMARY_KEYS} for name, metrics in all_metrics.items()},
    }


def markdown_table(summary: dict) -> str:
    rows = ["| model | family | accuracy | macro-F1 | test clips |", "| --- | --- | ---: | ---: | ---: |"]
    for name, scores in summary["models"].items():
        rows.append(
            f"| {name} | {scores['family']} | {scores['accuracy']:.3f} | {scores['macro_f1']:.3f} "
            f"| {scores['n_test']} |"
        )
    chance = summary["chance"]
    n_genres = round(1 / chance["uniform_accuracy"])
    return (
        "# Test-split scores\n\n" + "\n".join(rows) + "\n\n"
        f"Chance level: accuracy {chance['uniform_accuracy']:.3f} for a uniform guess among "
        f"{n_genres} genres; {chance['majority_accuracy']:.3f} for always answering the most "
        "common genre of the test split.\n"
    )


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    families = load_config().models.family_of()
    names = list(families)

    summary = summarize({name: read_model_metrics(MODEL_METRICS_DIR / f"{name}.json") for name in names})
    log.info("read %s", ", ".join(f"{MODEL_METRICS_DIR}/{name}.json" for name in names))
    write_summary(SUMMARY_JSON, summary)
    write_text(SUMMARY_MD, markdown_table(summary))
    best = max(names, key=lambda name: summary["models"][name]["accuracy"])
    log.info(
        "wrote %s and %s; best accuracy: %s (%.3f)", SUMMARY_JSON, SUMMARY_MD, best, summary["models"][best]["accuracy"]
    )


if __name__ == "__main__":
    run_stage("summarize", main)
