"""Train one scikit-learn model on its table: python -m stages.train_sklearn <logreg|knn|gnb|svm|musicnn>.

Reads params.yaml section <name> and models.sklearn.<name>, the table the model is trained on:
data/<table>/{train,val}.csv and feature_info.json (features, or the musicnn embeddings);
writes models/<name>/ (model.skops, preprocessing.json, labels.json).

svm.C and svm.gamma may each be one value or a list: the pair used is then chosen by
stratified cross-validation (svm.cv_folds folds, seeded by svm.seed) on the train split
only, logged, and recorded in preprocessing.json ("selected"); so may musicnn.C. The SVM is
fitted one fold at a time, its training matrix in a scratch file of the system's temporary
folder meanwhile (svm_folds.MatrixFile: 8 bytes per clip and feature, deleted after).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time

import numpy as np
from tqdm import tqdm

from genreclf.artifacts import (
    DATA_DIR,
    FEATURES_DIR,
    LABELS_FILE,
    MODEL_FILES,
    MODELS_DIR,
    PREPROCESSING_FILE,
    FeatureSplit,
    genre_labels,
    read_feature_info,
    read_feature_split,
    write_model_folder,
)
from genreclf.errors import DataError, ParamError
from genreclf.models import sklearn_models, svm_folds
from stages.common import run_stage, stage_logger
from stages.config import PARAMS_FILE, Section, load_config

TRAIN_CSV = FEATURES_DIR / "train.csv"

log = stage_logger("train_sklearn")


def model_settings(section: Section) -> tuple[int | None, dict]:
    """(pca_components, the classifier's options) of a model's validated section."""
    options = section.model_dump()
    return options.pop("pca_components"), options


def check_settings_fit_data(
    name: str, pca_components: int | None, options: dict, train: FeatureSplit, labels: list[str]
) -> None:
    """The checks that need the data: sizes the settings must not exceed, genres missing in train."""
    where = f"{PARAMS_FILE}: {name}"
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
            f"{TRAIN_CSV}: no training clip of the genres {missing}; "
            "a model cannot learn them (use more clips per genre, data.clips_per_genre)"
        )
    if name in ("svm", "musicnn") and counts.min() < options["cv_folds"]:
        few = [genre for genre, count in zip(labels, counts) if count < options["cv_folds"]]
        raise DataError(
            f"{TRAIN_CSV}: {name}.cv_folds = {options['cv_folds']} needs at least "
            f"{options['cv_folds']} training clips per genre; {few} have fewer (lower {name}.cv_folds)"
        )
    if name == "svm" and counts.min() < sklearn_models.CALIBRATION_FOLDS:
        few = [genre for genre, count in zip(labels, counts) if count < sklearn_models.CALIBRATION_FOLDS]
        raise DataError(
            f"{TRAIN_CSV}: the svm calibrates its probabilities on "
            f"{sklearn_models.CALIBRATION_FOLDS} cross-validation folds and needs at least "
            f"{sklearn_models.CALIBRATION_FOLDS} training clips per genre; {few} have fewer"
        )


def choose_svm_settings(
    pca_components: int | None, options: dict, source, labels: np.ndarray, on_fit=None
) -> tuple[dict, dict]:
    """Resolve svm.C / svm.gamma lists by cross-validation on the train split (``source``: its
    rows, svm_folds); log the scores."""
    Cs, gammas = options["C"], options["gamma"]
    final = {key: options[key] for key in ("kernel", "seed")}
    if len(Cs) == 1 and len(gammas) == 1:
        return {**final, "C": Cs[0], "gamma": gammas[0]}, {}
    best, score, table = svm_folds.select_svm_settings(
        source,
        labels,
        pca_components,
        options["kernel"],
        Cs,
        gammas,
        options["cv_folds"],
        options["seed"],
        workers=options["search_workers"],
        on_fit=on_fit,
    )
    for C, gamma, mean in table:
        log.info("svm cross-validation on the train split: C=%s gamma=%s accuracy %.3f", C, gamma, mean)
    log.info(
        "svm: chose C=%s gamma=%s (mean %d-fold accuracy %.3f on the train split)",
        best["C"],
        best["gamma"],
        options["cv_folds"],
        score,
    )
    return {**final, **best}, {"selected": {**best, "cv_accuracy": round(score, 6), "cv_folds": options["cv_folds"]}}


def svm_fits(options: dict) -> int:
    """How many SVMs train_svm fits: the search's, the calibration's folds and the final one."""
    search = len(options["C"]) * len(options["gamma"])
    return (search * options["cv_folds"] if search > 1 else 0) + sklearn_models.CALIBRATION_FOLDS + 1


def train_svm(pca_components: int | None, options: dict, matrix: svm_folds.MatrixFile, labels: np.ndarray):
    """(the fitted svm pipeline, what preprocessing.json records of its choice), from the train
    split's scratch file: one fold of it in memory while the folds are fitted."""
    with tqdm(total=svm_fits(options), desc="svm fits", unit="fit") as progress:
        options, selected = choose_svm_settings(pca_components, options, matrix, labels, progress.update)
        pipeline = sklearn_models.build_pipeline("svm", pca_components, **options)
        svm_folds.fit_svm_pipeline(pipeline, matrix, labels, progress.update)
    return pipeline, selected


def choose_musicnn_settings(
    pca_components: int | None, options: dict, features: np.ndarray, labels: np.ndarray
) -> tuple[dict, dict]:
    """Resolve a musicnn.C list by cross-validation on the train split; log the scores."""
    final = {key: options[key] for key in ("max_iter", "seed")}
    if len(options["C"]) == 1:
        return {**final, "C": options["C"][0]}, {}
    best, score, table = sklearn_models.select_musicnn_C(
        features, labels, pca_components, options["C"], options["cv_folds"], **final
    )
    for C, mean in table:
        log.info("musicnn cross-validation on the train split: C=%s accuracy %.3f", C, mean)
    log.info("musicnn: chose C=%s (mean %d-fold accuracy %.3f on the train split)", best, options["cv_folds"], score)
    return {**final, "C": best}, {
        "selected": {"C": best, "cv_accuracy": round(score, 6), "cv_folds": options["cv_folds"]}
    }


ACCURACY_CHUNK_ROWS = 1024  # clips scored at a time for the logged accuracies (Gaussian NB makes
# temporaries the size of what it scores, several per genre)


def accuracy(pipeline, features, labels: np.ndarray, n_labels: int) -> float:
    """The share of ``features`` (an array, or a row source such as svm_folds.MatrixFile) whose most
    probable label is ``labels``, ACCURACY_CHUNK_ROWS clips at a time."""
    right = 0
    for start in range(0, len(labels), ACCURACY_CHUNK_ROWS):
        rows = slice(start, start + ACCURACY_CHUNK_ROWS)
        chunk = features[rows] if isinstance(features, np.ndarray) else features.take(np.arange(len(labels))[rows])
        probs = sklearn_models.class_probabilities(pipeline, chunk, n_labels)
        right += int(np.sum(probs.argmax(axis=1) == labels[rows]))
    return right / len(labels)


def model_preprocessing(name: str, info: dict, table_dir, selected: dict) -> dict:
    """preprocessing.json of a model trained on the table in ``table_dir`` (its feature_info ``info``)."""
    return {
        "family": "sklearn",
        "model": name,
        "sample_rate": info["sample_rate"],
        "features": info["params"],
        "columns": info["columns"],
        **({"table": table_dir.name} if table_dir != FEATURES_DIR else {}),
        **selected,
    }


def fit_model(name: str, pca_components: int | None, options: dict, features, labels: np.ndarray) -> tuple:
    """(the fitted pipeline, what preprocessing.json records of its choice, the training clips as
    the pipeline's ``scored`` steps take them, those steps) from ``features``: the training matrix,
    or for the SVM its scratch file (svm_folds.MatrixFile), fitted fold by fold."""
    if name == "svm":
        pipeline, selected = train_svm(pca_components, options, features, labels)
        return pipeline, selected, features, pipeline
    selected = {}
    if name == "musicnn":
        options, selected = choose_musicnn_settings(pca_components, options, features, labels)
    pipeline = sklearn_models.build_pipeline(name, pca_components, **options)
    # standardised in place: the matrix no longer holds the table's values
    return pipeline, selected, sklearn_models.fit_in_place(pipeline, features, labels), pipeline[1:]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.train_sklearn", description=__doc__)
    parser.add_argument("model", choices=sklearn_models.MODEL_NAMES, help="the model to train")
    name = parser.parse_args().model

    config = load_config()
    pca_components, options = model_settings(config.model_section(name))
    if name not in config.models.sklearn:
        raise ParamError(f"params.yaml: models.sklearn: lists no {name}; add `{name}: features` (or embeddings)")
    if name == "svm" and not svm_folds.map_large_blocks():
        log.info("svm: could not have malloc unmap large blocks when freed (not glibc): the peak may be higher")
    log.info(
        "%s: pca_components=%s %s", name, pca_components, " ".join(f"{key}={value}" for key, value in options.items())
    )

    table_dir = DATA_DIR / config.models.sklearn[name]
    info = read_feature_info(table_dir)
    splits = {split: read_feature_split(table_dir, split, info["columns"]) for split in ("train", "val")}
    labels = genre_labels(splits, table_dir)
    train, val = splits.pop("train"), splits.pop("val")
    log.info(
        "read %s: %d train and %d val clips, %d features, %d genres",
        table_dir,
        len(train.labels),
        len(val.labels),
        len(info["columns"]),
        len(labels),
    )
    check_settings_fit_data(name, pca_components, options, train, labels)

    with contextlib.ExitStack() as scratch:
        features = train.features
        if name == "svm":  # it fits fold after fold: the matrix waits in a scratch file, out of memory
            features = scratch.enter_context(svm_folds.MatrixFile(features))
        train = dataclasses.replace(train, features=None)
        started = time.perf_counter()
        pipeline, selected, train_features, scored = fit_model(name, pca_components, options, features, train.labels)
        del features
        log.info("trained %s in %.2f s (log only)", name, time.perf_counter() - started)
        model_dir = MODELS_DIR / name
        # Written before it predicts anything: a kNN model's k-d tree counts its queries, and the
        # file would depend on them.
        write_model_folder(
            model_dir,
            model_preprocessing(name, info, table_dir, selected),
            labels,
            lambda path: sklearn_models.save_pipeline(pipeline, path),
        )
        log.info("wrote %s/ (%s, %s, %s)", model_dir, MODEL_FILES["sklearn"], PREPROCESSING_FILE, LABELS_FILE)
        log.info(
            "%s: train accuracy %.3f, val accuracy %.3f",
            name,
            accuracy(scored, train_features, train.labels, len(labels)),
            accuracy(pipeline, val.features, val.labels, len(labels)),
        )


if __name__ == "__main__":
    run_stage("train_sklearn", main)
