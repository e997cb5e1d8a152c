"""Train one scikit-learn model on the feature table: python -m stages.train_sklearn <logreg|knn|gnb|svm>.

Reads params.yaml section <name>, data/features/{train,val}.csv and feature_info.json;
writes models/<name>/ (model.skops, preprocessing.json, labels.json).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from genreclf import sklearn_models
from genreclf.cli import run_stage
from genreclf.errors import DataError, ParamError
from genreclf.io import atomic_dir, write_json
from genreclf.logs import get_logger
from genreclf.params import get, load_params, section

FEATURES_DIR = Path("data/features")
MODELS_DIR = Path("models")
SVM_KERNELS = ("linear", "poly", "rbf", "sigmoid")
SVM_GAMMA_WORDS = ("scale", "auto")
KNN_WEIGHTS = ("uniform", "distance")
NUMBER = (int, float)

# The keys of each model's section in params.yaml (pca_components: null or an int).
MODEL_KEYS = {
    "gnb": ("pca_components", "var_smoothing"),
    "knn": ("pca_components", "n_neighbors", "weights"),
    "logreg": ("pca_components", "C", "max_iter", "seed"),
    "svm": ("pca_components", "C", "kernel", "gamma", "seed"),
}

log = get_logger("train_sklearn")


def positive_number(sec: dict, key: str, where: str) -> float:
    value = get(sec, key, where, types=NUMBER)
    if not value > 0:
        raise ParamError(f"{where}.{key} = {value!r}; expected a number > 0")
    return float(value)


def read_model_settings(params: dict, name: str) -> tuple[int | None, dict]:
    """Check params.yaml section ``name``; return (pca_components, the classifier's options)."""
    if name not in MODEL_KEYS:
        raise ParamError(f"unknown scikit-learn model '{name}'; known models: {', '.join(MODEL_KEYS)}")
    sec = section(params, name)
    where = f"params.yaml: {name}"
    unknown = sorted(set(sec) - set(MODEL_KEYS[name]))
    if unknown:
        raise ParamError(f"{where}: unknown keys {unknown}; the keys of this section are "
                         f"{list(MODEL_KEYS[name])}")
    pca_components = get(sec, "pca_components", where, types=int, minimum=1, allow_none=True)
    if name == "logreg":
        options = {"C": positive_number(sec, "C", where),
                   "max_iter": get(sec, "max_iter", where, types=int, minimum=1),
                   "seed": get(sec, "seed", where, types=int, minimum=0)}
    elif name == "knn":
        options = {"n_neighbors": get(sec, "n_neighbors", where, types=int, minimum=1),
                   "weights": get(sec, "weights", where, types=str, choices=KNN_WEIGHTS)}
    elif name == "gnb":
        options = {"var_smoothing": float(get(sec, "var_smoothing", where, types=NUMBER, minimum=0))}
    else:
        gamma = get(sec, "gamma", where, types=(str, int, float))
        if isinstance(gamma, str) and gamma not in SVM_GAMMA_WORDS:
            raise ParamError(f"{where}.gamma = {gamma!r}; expected 'scale', 'auto' or a number > 0")
        if not isinstance(gamma, str):
            gamma = positive_number(sec, "gamma", where)
        options = {"C": positive_number(sec, "C", where),
                   "kernel": get(sec, "kernel", where, types=str, choices=SVM_KERNELS),
                   "gamma": gamma,
                   "seed": get(sec, "seed", where, types=int, minimum=0)}
    return pca_components, options


def check_settings_fit_data(name: str, pca_components: int | None, options: dict,
                            train: sklearn_models.FeatureSplit, labels: list[str]) -> None:
    """The checks that need the data: sizes the settings must not exceed, genres missing in train."""
    where = f"params.yaml: {name}"
    n_clips, n_features = train.features.shape
    if pca_components is not None and pca_components > min(n_clips, n_features):
        raise ParamError(f"{where}.pca_components = {pca_components} is more than the {n_features} features "
                         f"or the {n_clips} training clips; use at most {min(n_clips, n_features)}, "
                         "or null for no PCA")
    if name == "knn" and options["n_neighbors"] > n_clips:
        raise ParamError(f"{where}.n_neighbors = {options['n_neighbors']} is more than the {n_clips} "
                         "training clips; use fewer neighbours")
    counts = np.bincount(train.labels, minlength=len(labels))
    missing = [genre for genre, count in zip(labels, counts) if count == 0]
    if missing:
        raise DataError(f"{FEATURES_DIR / 'train.csv'}: no training clip of the genres {missing}; "
                        "a model cannot learn them (use more clips per genre, data.clips_per_genre)")
    if name == "svm" and counts.min() < sklearn_models.CALIBRATION_FOLDS:
        few = [genre for genre, count in zip(labels, counts) if count < sklearn_models.CALIBRATION_FOLDS]
        raise DataError(f"{FEATURES_DIR / 'train.csv'}: the svm calibrates its probabilities on "
                        f"{sklearn_models.CALIBRATION_FOLDS} cross-validation folds and needs at least "
                        f"{sklearn_models.CALIBRATION_FOLDS} training clips per genre; {few} have fewer")


def accuracy(pipeline, split: sklearn_models.FeatureSplit, n_labels: int) -> float:
    probs = sklearn_models.class_probabilities(pipeline, split.features, n_labels)
    return float(np.mean(probs.argmax(axis=1) == split.labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help=f"one of {', '.join(MODEL_KEYS)}")
    name = parser.parse_args().model

    pca_components, options = read_model_settings(load_params(), name)
    log.info("%s: pca_components=%s %s", name, pca_components,
             " ".join(f"{key}={value}" for key, value in options.items()))

    info = sklearn_models.read_feature_info(FEATURES_DIR)
    splits = {split: sklearn_models.read_feature_split(FEATURES_DIR, split, info["columns"])
              for split in ("train", "val")}
    labels = sklearn_models.genre_labels(splits, str(FEATURES_DIR))
    train, val = splits["train"], splits["val"]
    log.info("read %s: %d train and %d val clips, %d features, %d genres",
             FEATURES_DIR, len(train.labels), len(val.labels), len(info["columns"]), len(labels))
    check_settings_fit_data(name, pca_components, options, train, labels)

    pipeline = sklearn_models.build_pipeline(name, pca_components, **options)
    started = time.perf_counter()
    pipeline.fit(train.features, train.labels)
    log.info("trained %s in %.1f s", name, time.perf_counter() - started)
    log.info("%s: train accuracy %.3f, val accuracy %.3f", name,
             accuracy(pipeline, train, len(labels)), accuracy(pipeline, val, len(labels)))

    preprocessing = {"family": "sklearn", "model": name, "sample_rate": info["sample_rate"],
                     "features": info["params"], "columns": info["columns"]}
    model_dir = MODELS_DIR / name
    with atomic_dir(model_dir) as tmp:
        sklearn_models.save_pipeline(pipeline, tmp / sklearn_models.MODEL_FILE)
        write_json(tmp / "preprocessing.json", preprocessing)
        write_json(tmp / "labels.json", labels)
    log.info("wrote %s/ (%s, preprocessing.json, labels.json)", model_dir, sklearn_models.MODEL_FILE)


if __name__ == "__main__":
    run_stage("train_sklearn", main)
