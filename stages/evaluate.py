"""Score one trained model on the test split: python -m stages.evaluate <name>.

Reads models/<name>/ and its data (data/features for scikit-learn models, data/shards
for Keras models: the files, or the objects its shard_manifest.json lists); writes
metrics/models/<name>.json (accuracy, macro-F1, per-genre scores, the number of test clips,
and the window/segment accuracy of the Keras models that score parts of clips) and
evaluation/<name>/test_predictions.csv (the confusion plot's data).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genreclf.artifacts import DATA_DIR, MODEL_METRICS_DIR, MODELS_DIR, PREPROCESSING_FILE, write_model_metrics
from genreclf.io import write_csv
from stages.common import model_folders, run_stage, stage_logger

EVALUATION_DIR = Path("evaluation")
SPLIT = "test"

log = stage_logger("evaluate")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.evaluate", description=__doc__)
    trained = model_folders(MODELS_DIR, PREPROCESSING_FILE)
    parser.add_argument(
        "model",
        metavar="MODEL",
        choices=trained,
        help=f"a trained model (a folder under {MODELS_DIR}/ holding a {PREPROCESSING_FILE}): "
        f"{', '.join(trained) or 'none yet'}",
    )
    name = parser.parse_args().model
    # the models load scikit-learn or TensorFlow (seconds): only once the argument is good
    from genreclf.evaluation.metrics import evaluation_report
    from genreclf.models.predictors import load_predictor

    predictor = load_predictor(MODELS_DIR / name)
    log.info(
        "loaded %s (%s, %d genres, %d Hz)",
        MODELS_DIR / name,
        predictor.family,
        len(predictor.labels),
        predictor.sample_rate,
    )
    result = predictor.predict_split(DATA_DIR, SPLIT)
    extra = result.extra_metrics
    metrics, predictions = evaluation_report(
        result.track_ids,
        result.y_true,
        result.probabilities,
        predictor.labels,
        family=predictor.family,
        extra_metrics=extra,
        source=f"{name} on the {SPLIT} split",
    )
    log.info(
        "%s on %d %s clips: accuracy %.3f, macro-F1 %.3f%s",
        name,
        metrics["n_test"],
        SPLIT,
        metrics["accuracy"],
        metrics["macro_f1"],
        "".join(f", {key} {value:.3f}" for key, value in sorted(extra.items())),
    )

    metrics_path = MODEL_METRICS_DIR / f"{name}.json"
    predictions_path = EVALUATION_DIR / name / f"{SPLIT}_predictions.csv"
    write_model_metrics(metrics_path, metrics)
    write_csv(predictions_path, predictions)
    log.info("wrote %s and %s", metrics_path, predictions_path)


if __name__ == "__main__":
    run_stage("evaluate", main)
