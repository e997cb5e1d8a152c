"""Score one trained model on the test split: python -m stages.evaluate <name>.

Reads models/<name>/ and its data (data/features for scikit-learn models, data/shards
for Keras models); writes metrics/models/<name>.json (accuracy, macro-F1, per-genre scores,
the number of test clips, and the window/segment accuracy of the Keras models that
score parts of clips) and evaluation/<name>/test_predictions.csv (the confusion plot's data).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genreclf.evaluation.metrics import evaluation_report
from genreclf.io import write_csv, write_json
from genreclf.models.predictors import load_predictor
from stages.common import run_stage, stage_logger

DATA_DIR = Path("data")
MODELS_DIR = Path("models")
METRICS_DIR = Path("metrics/models")
EVALUATION_DIR = Path("evaluation")
SPLIT = "test"

log = stage_logger("evaluate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="a model folder under models/, e.g. svm or cnn1d")
    name = parser.parse_args().model

    predictor = load_predictor(MODELS_DIR / name)
    log.info("loaded %s (%s, %d genres, %d Hz)", MODELS_DIR / name, predictor.family,
             len(predictor.labels), predictor.sample_rate)
    track_ids, y_true, probs, extra = predictor.predict_split(DATA_DIR, SPLIT)
    metrics, predictions = evaluation_report(track_ids, y_true, probs, predictor.labels,
                                             family=predictor.family, extra_metrics=extra,
                                             source=f"{name} on the {SPLIT} split")
    log.info("%s on %d %s clips: accuracy %.3f, macro-F1 %.3f%s", name, metrics["n_test"], SPLIT,
             metrics["accuracy"], metrics["macro_f1"],
             "".join(f", {key} {value:.3f}" for key, value in sorted(extra.items())))

    metrics_path = METRICS_DIR / f"{name}.json"
    predictions_path = EVALUATION_DIR / name / f"{SPLIT}_predictions.csv"
    write_json(metrics_path, metrics)
    write_csv(predictions_path, predictions)
    log.info("wrote %s and %s", metrics_path, predictions_path)


if __name__ == "__main__":
    run_stage("evaluate", main)
