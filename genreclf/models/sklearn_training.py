"""Training one scikit-learn model on its feature table: the checks that need the data, the choice
of the settings given as lists (cross-validation on the train split), the fit and its accuracy.

The stage (stages/train_sklearn.py) reads the table and the validated settings and writes the
model folder; everything between is here. ``where`` names the settings in messages (the
stage passes ``params.yaml: <model>``), ``table`` the training table at fault.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from genreclf.errors import DataError, ParamError
from genreclf.models import sklearn_models, svm_folds

log = logging.getLogger(__name__)

ACCURACY_CHUNK_ROWS = 1024  # clips scored at a time for the logged accuracies (Gaussian NB makes
# temporaries the size of what it scores, several per genre)


def check_settings_fit_data(
    name: str, pca_components: int | None, options: dict, train, labels: list[str], where: str, table: Path
) -> None:
    """The checks that need the data (``train``: a FeatureSplit): sizes the settings must not exceed,
    genres missing in train, too few clips per genre for the folds."""
    n_clips, n_features = train.features.shape
    if pca_components is not None and pca_components > min(n_clips, n_features):
        raise ParamError(
            f"{where}.pca_components = {pca_components} is more than the {n_features} features "
            f"or the {n_clips} training clips; use at most {min(n_clips, n_features)}, "
            "or null for no PCA"
        )
    if name == "knn" and options["n_neighbors"] > n_clips:
        raise ParamError(
            f"{where}.n_neighbors = {options['n_neighbors']} is more than the {n_clips} "
            "training clips; use fewer neighbours"
        )
    counts = np.bincount(train.labels, minlength=len(labels))
    missing = [genre for genre, count in zip(labels, counts) if count == 0]
    if missing:
        raise DataError(
            f"{table}: no training clip of the genres {missing}; "
            "a model cannot learn them (use more clips per genre, data.clips_per_genre)"
        )
    needs = {"svm": options.get("cv_folds"), "musicnn": options.get("cv_folds")}.get(name)
    if needs is not None and counts.min() < needs:
        few = [genre for genre, count in zip(labels, counts) if count < needs]
        raise DataError(
            f"{table}: {name}.cv_folds = {needs} needs at least {needs} training clips per genre; "
            f"{few} have fewer (lower {name}.cv_folds)"
        )
    folds = sklearn_models.CALIBRATION_FOLDS
    if name == "svm" and counts.min() < folds:
        few = [genre for genre, count in zip(labels, counts) if count < folds]
        raise DataError(
            f"{table}: the svm calibrates its probabilities on {folds} cross-validation folds and "
            f"needs at least {folds} training clips per genre; {few} have fewer"
        )


def choose_svm_settings(
    pca_components: int | None, options: dict, source, labels: np.ndarray, on_fit=None
) -> tuple[dict, dict]:
    """Resolve svm.C / svm.gamma lists by cross-validation on the train split (``source``: its
    rows, svm_folds); log the scores. (the SVM's options, what preprocessing.json records)."""
    Cs, gammas = options["C"], options["gamma"]
    final = {key: options[key] for key in ("kernel", "seed")}
    if len(Cs) == 1 and len(gammas) == 1:
        return {**final, "C": Cs[0], "gamma": gammas[0]}, {}
    best, score, table = svm_folds.select_svm_settings(
        source, labels, pca_components, options["kernel"], Cs, gammas, options["cv_folds"], options["seed"],
        workers=options["search_workers"], on_fit=on_fit,
    )  # fmt: skip
    for C, gamma, mean in table:
        log.info("svm cross-validation on the train split: C=%s gamma=%s accuracy %.3f", C, gamma, mean)
    folds = options["cv_folds"]
    log.info("svm: chose C=%s gamma=%s (mean %d-fold accuracy %.3f on the train split)", *best.values(), folds, score)
    return {**final, **best}, {"selected": {**best, "cv_accuracy": round(score, 6), "cv_folds": folds}}


def choose_musicnn_settings(
    pca_components: int | None, options: dict, features: np.ndarray, labels: np.ndarray
) -> tuple[dict, dict]:
    """Resolve a musicnn.C list by cross-validation on the train split; log the scores."""
    final = {key: options[key] for key in ("max_iter", "seed")}
    if len(options["C"]) == 1:
        return {**final, "C": options["C"][0]}, {}
    folds = options["cv_folds"]
    best, score, table = sklearn_models.select_musicnn_C(features, labels, pca_components, options["C"], folds, **final)
    for C, mean in table:
        log.info("musicnn cross-validation on the train split: C=%s accuracy %.3f", C, mean)
    log.info("musicnn: chose C=%s (mean %d-fold accuracy %.3f on the train split)", best, folds, score)
    return {**final, "C": best}, {"selected": {"C": best, "cv_accuracy": round(score, 6), "cv_folds": folds}}


def svm_fits(options: dict) -> int:
    """How many SVMs train_svm fits: the search's, the calibration's folds and the final one."""
    search = len(options["C"]) * len(options["gamma"])
    return (search * options["cv_folds"] if search > 1 else 0) + sklearn_models.CALIBRATION_FOLDS + 1


def train_svm(pca_components: int | None, options: dict, matrix: svm_folds.MatrixFile, labels: np.ndarray) -> tuple:
    """(the fitted svm pipeline, what preprocessing.json records of its choice, the training clips as
    ``pipeline[1:]`` takes them), from the train split's scratch file (``matrix``): the search holds
    one fold of it at a time; the final fit (CalibratedClassifierCV, fit_in_place) reads it whole."""
    with tqdm(total=svm_fits(options), desc="svm fits", unit="fit") as progress:
        options, selected = choose_svm_settings(pca_components, options, matrix, labels, progress.update)
        pipeline = sklearn_models.build_pipeline("svm", pca_components, **options)
        scaled = sklearn_models.fit_in_place(pipeline, matrix.all(), labels)
        progress.update(sklearn_models.CALIBRATION_FOLDS + 1)
    return pipeline, selected, scaled


def fit_model(name: str, pca_components: int | None, options: dict, features: np.ndarray, labels: np.ndarray):
    """(the fitted pipeline, what preprocessing.json records of its choice, the training clips as
    ``pipeline[1:]`` takes them): ``features`` is standardised in place (fit_in_place); for the
    SVM it is the train split's scratch file (svm_folds.MatrixFile, train_svm)."""
    if name == "svm":
        return train_svm(pca_components, options, features, labels)
    selected = {}
    if name == "musicnn":
        options, selected = choose_musicnn_settings(pca_components, options, features, labels)
    pipeline = sklearn_models.build_pipeline(name, pca_components, **options)
    return pipeline, selected, sklearn_models.fit_in_place(pipeline, features, labels)


def accuracy(pipeline, features: np.ndarray, labels: np.ndarray, n_labels: int) -> float:
    """The share of ``features`` whose most probable label is ``labels``, ACCURACY_CHUNK_ROWS clips at a time."""
    right = 0
    for start in range(0, len(labels), ACCURACY_CHUNK_ROWS):
        rows = slice(start, start + ACCURACY_CHUNK_ROWS)
        probs = sklearn_models.class_probabilities(pipeline, features[rows], n_labels)
        right += int(np.sum(probs.argmax(axis=1) == labels[rows]))
    return right / len(labels)


def model_preprocessing(name: str, info: dict, table: str | None, selected: dict) -> dict:
    """preprocessing.json of a model trained on a table (its feature_info ``info``; ``table``: its
    folder's name when not the features table)."""
    return {
        "family": "sklearn",
        "model": name,
        "sample_rate": info["sample_rate"],
        "features": info["params"],
        "columns": info["columns"],
        **({"table": table} if table is not None else {}),
        **selected,
    }
