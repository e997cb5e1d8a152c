"""Train one scikit-learn model on the feature table: python -m stages.train_sklearn <logreg|knn|gnb|svm>.

Reads params.yaml section <name>, data/features/{train,val}.csv and feature_info.json;
writes models/<name>/ (model.skops, preprocessing.json, labels.json).

svm.C and svm.gamma may each be one value or a list: the pair used is then chosen by
stratified cross-validation (svm.cv_folds folds, seeded by svm.seed) on the train split
only, logged, and recorded in preprocessing.json ("selected").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from genreclf.errors import DataError, ParamError
from genreclf.io import atomic_dir, write_json
from genreclf.models import sklearn_models
from stages.common import run_stage, stage_logger
from stages.config import get, load_params, section

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
    "svm": ("pca_components", "C", "kernel", "gamma", "cv_folds", "seed"),
}

log = stage_logger("train_sklearn")


def positive_number(sec: dict, key: str, where: str) -> float:
    value = get(sec, key, where, types=NUMBER)
    if not value > 0:
        raise ParamError(f"{where}.{key} = {value!r}; expected a number > 0")
    return float(value)


def svm_candidates(sec: dict, key: str, where: str, words: tuple[str, ...]) -> list:
    """svm.C / svm.gamma: one value or a non-empty list of values (numbers > 0, or the given words)."""
    value = get(sec, key, where, types=(str, int, float, list))
    values = value if isinstance(value, list) else [value]
    expected = "a number > 0" + (f" or one of {list(words)}" if words else "") + ", or a list of them"
    if not values:
        raise ParamError(f"{where}.{key} = []; expected {expected}")
    for v in values:
        ok = (isinstance(v, str) and v in words) or (
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0)
        if not ok:
            raise ParamError(f"{where}.{key} = {value!r}; expected {expected}")
    return [v if isinstance(v, str) else float(v) for v in values]


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
        options = {"C": svm_candidates(sec, "C", where, words=()),
                   "kernel": get(sec, "kernel", where, types=str, choices=SVM_KERNELS),
                   "gamma": svm_candidates(sec, "gamma", where, words=SVM_GAMMA_WORDS),
                   "cv_folds": get(sec, "cv_folds", where, types=int, minimum=2),
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
    if name == "svm" and counts.min() < options["cv_folds"]:
        few = [genre for genre, count in zip(labels, counts) if count < options["cv_folds"]]
        raise DataError(f"{FEATURES_DIR / 'train.csv'}: svm.cv_folds = {options['cv_folds']} needs at least "
                        f"{options['cv_folds']} training clips per genre; {few} have fewer (lower svm.cv_folds)")
    if name == "svm" and counts.min() < sklearn_models.CALIBRATION_FOLDS:
        few = [genre for genre, count in zip(labels, counts) if count < sklearn_models.CALIBRATION_FOLDS]
        raise DataError(f"{FEATURES_DIR / 'train.csv'}: the svm calibrates its probabilities on "
                        f"{sklearn_models.CALIBRATION_FOLDS} cross-validation folds and needs at least "
                        f"{sklearn_models.CALIBRATION_FOLDS} training clips per genre; {few} have fewer")


def choose_svm_settings(pca_components: int | None, options: dict,
                        train: sklearn_models.FeatureSplit) -> tuple[dict, dict]:
    """Resolve svm.C / svm.gamma lists by cross-validation on the train split; log the scores."""
    Cs, gammas = options["C"], options["gamma"]
    final = {key: options[key] for key in ("kernel", "seed")}
    if len(Cs) == 1 and len(gammas) == 1:
        return {**final, "C": Cs[0], "gamma": gammas[0]}, {}
    best, score, table = sklearn_models.select_svm_settings(
        train.features, train.labels, pca_components, options["kernel"], Cs, gammas,
        options["cv_folds"], options["seed"])
    for C, gamma, mean in table:
        log.info("svm cross-validation on the train split: C=%s gamma=%s accuracy %.3f", C, gamma, mean)
    log.info("svm: chose C=%s gamma=%s (mean %d-fold accuracy %.3f on the train split)",
             best["C"], best["gamma"], options["cv_folds"], score)
    return {**final, **best}, {"selected": {**best, "cv_accuracy": round(score, 6),
                                             "cv_folds": options["cv_folds"]}}


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

    started = time.perf_counter()
    selected = {}
    if name == "svm":
        options, selected = choose_svm_settings(pca_components, options, train)
    pipeline = sklearn_models.build_pipeline(name, pca_components, **options)
    pipeline.fit(train.features, train.labels)
    log.info("trained %s in %.2f s (log only)", name, time.perf_counter() - started)
    log.info("%s: train accuracy %.3f, val accuracy %.3f", name,
             accuracy(pipeline, train, len(labels)), accuracy(pipeline, val, len(labels)))

    preprocessing = {"family": "sklearn", "model": name, "sample_rate": info["sample_rate"],
                     "features": info["params"], "columns": info["columns"], **selected}
    model_dir = MODELS_DIR / name
    with atomic_dir(model_dir) as tmp:
        sklearn_models.save_pipeline(pipeline, tmp / sklearn_models.MODEL_FILE)
        write_json(tmp / "preprocessing.json", preprocessing)
        write_json(tmp / "labels.json", labels)
    log.info("wrote %s/ (%s, preprocessing.json, labels.json)", model_dir, sklearn_models.MODEL_FILE)


if __name__ == "__main__":
    run_stage("train_sklearn", main)
