"""Scores of a model on a split, computed from its predictions.

A model's prediction for a clip is the genre of highest probability; every score
below (accuracy, macro-F1, per-genre precision/recall/F1) is computed from those
predictions and the true genres, with scikit-learn's metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from genreclf.errors import DataError

PROB_PREFIX = "prob_"


def check_predictions(
    track_ids: Sequence[str], y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str], source: str
) -> None:
    """Raise DataError unless the predictions are consistent: one row per clip, one column per genre."""
    y_true = np.asarray(y_true)
    probs = np.asarray(probs)
    n_labels = len(labels)
    if probs.ndim != 2 or probs.shape[1] != n_labels:
        raise DataError(
            f"{source}: expected probabilities of shape (clips, {n_labels}) for the genres "
            f"{list(labels)}, got shape {probs.shape}; retrain or re-evaluate the model"
        )
    if not len(track_ids) == len(y_true) == probs.shape[0]:
        raise DataError(
            f"{source}: {len(track_ids)} track ids, {len(y_true)} true labels and "
            f"{probs.shape[0]} rows of probabilities; they must be as many"
        )
    if len(y_true) == 0:
        raise DataError(f"{source}: no clips to evaluate; check the split (data/split/split_manifest.csv)")
    if y_true.min() < 0 or y_true.max() >= n_labels:
        raise DataError(
            f"{source}: true labels must lie in 0..{n_labels - 1} (the genres {list(labels)}), "
            f"got {y_true.min()}..{y_true.max()}"
        )
    if not np.all(np.isfinite(probs)):
        raise DataError(f"{source}: some probabilities are NaN or infinite")


def predicted_labels(probs: np.ndarray) -> np.ndarray:
    """Index of the most probable genre of each row (the first one on a tie)."""
    return np.argmax(np.asarray(probs), axis=1)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1 and per-genre precision, recall, F1 and support.

    Every genre of ``labels`` is scored, whether or not it occurs; a score whose
    denominator is zero (a genre never predicted, or absent from ``y_true``) is 0.
    """
    indices = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=indices, zero_division=0)
    per_class = {
        genre: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, genre in enumerate(labels)
    }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=indices, average="macro", zero_division=0)),
        "n_test": int(len(y_true)),
        "per_class": per_class,
    }


def predictions_table(
    track_ids: Sequence[str], y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str]
) -> pd.DataFrame:
    """One row per clip: track_id, actual and predicted genre names, then prob_<genre> per genre."""
    names = np.asarray(labels, dtype=object)
    table = pd.DataFrame(
        {
            "track_id": [str(t) for t in track_ids],
            "actual": names[np.asarray(y_true)],
            "predicted": names[predicted_labels(probs)],
        }
    )
    prob_columns = pd.DataFrame(
        np.asarray(probs, dtype=np.float64), columns=[f"{PROB_PREFIX}{genre}" for genre in labels]
    )
    return pd.concat([table, prob_columns], axis=1)


def evaluation_report(
    track_ids: Sequence[str],
    y_true: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    *,
    family: str,
    extra_metrics: dict | None = None,
    source: str = "predictions",
) -> tuple[dict, pd.DataFrame]:
    """The metrics (a JSON-ready dict) and the predictions table of one model on one split.

    ``extra_metrics`` (e.g. ``{"window_accuracy": 0.61}``) are added as they are.
    """
    check_predictions(track_ids, y_true, probs, labels, source)
    y_true = np.asarray(y_true, dtype=np.int64)
    metrics = classification_metrics(y_true, predicted_labels(probs), labels)
    metrics["family"] = family
    for key, value in sorted((extra_metrics or {}).items()):
        if key in metrics:
            raise DataError(f"{source}: extra metric '{key}' would overwrite a computed one")
        metrics[key] = float(value)
    return metrics, predictions_table(track_ids, y_true, probs, labels)
