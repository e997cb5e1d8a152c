"""Train one scikit-learn model on its table: python -m stages.train_sklearn <logreg|knn|gnb|svm|musicnn>.

Reads params.yaml section <name> and models.sklearn.<name>, the table the model is trained on:
data/<table>/{train,val}.csv and feature_info.json (features, or the musicnn embeddings);
writes models/<name>/ (model.skops, preprocessing.json, labels.json).

svm.C and svm.gamma may each be one value or a list: the pair used is then chosen by
stratified cross-validation (svm.cv_folds folds, seeded by svm.seed) on the train split
only, logged, and recorded in preprocessing.json ("selected"); so may musicnn.C. The SVM's
search reads one fold at a time from a scratch file of the training matrix in the system's
temporary folder (svm_folds.MatrixFile: 8 bytes per clip and feature, deleted after). The
checks, the choice and the fit are in genreclf.models.sklearn_training.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time

from genreclf.artifacts import (
    DATA_DIR,
    FEATURES_DIR,
    LABELS_FILE,
    MODEL_FILES,
    MODELS_DIR,
    PREPROCESSING_FILE,
    genre_labels,
    read_feature_info,
    read_feature_split,
    write_model_folder,
)
from genreclf.errors import ParamError
from genreclf.models import sklearn_models, svm_folds
from genreclf.models.sklearn_training import accuracy, check_settings_fit_data, fit_model, model_preprocessing
from stages.common import run_stage, stage_logger
from stages.config import PARAMS_FILE, Section, load_config

log = stage_logger("train_sklearn")


def model_settings(section: Section) -> tuple[int | None, dict]:
    """(pca_components, the classifier's options) of a model's validated section."""
    options = section.model_dump()
    return options.pop("pca_components"), options


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.train_sklearn", description=__doc__)
    parser.add_argument("model", choices=sklearn_models.MODEL_NAMES, help="the model to train")
    name = parser.parse_args().model

    config = load_config()
    pca_components, options = model_settings(config.model_section(name))
    if name not in config.models.sklearn:
        raise ParamError(f"{PARAMS_FILE}: models.sklearn: lists no {name}; add `{name}: features` (or embeddings)")
    settings = " ".join(f"{key}={value}" for key, value in options.items())
    log.info("%s: pca_components=%s %s", name, pca_components, settings)

    table_dir = DATA_DIR / config.models.sklearn[name]
    info = read_feature_info(table_dir)
    splits = {split: read_feature_split(table_dir, split, info["columns"]) for split in ("train", "val")}
    labels = genre_labels(splits, table_dir)
    train, val = splits.pop("train"), splits.pop("val")
    counts = (len(train.labels), len(val.labels), len(info["columns"]), len(labels))
    log.info("read %s: %d train and %d val clips, %d features, %d genres", table_dir, *counts)
    where = f"{PARAMS_FILE}: {name}"
    check_settings_fit_data(name, pca_components, options, train, labels, where, table_dir / "train.csv")

    with contextlib.ExitStack() as scratch:
        features = train.features
        if name == "svm":  # its search reads fold after fold: the matrix waits in a scratch file, out of memory
            features = scratch.enter_context(svm_folds.MatrixFile(features))
        train = dataclasses.replace(train, features=None)
        started = time.perf_counter()
        pipeline, selected, train_features = fit_model(name, pca_components, options, features, train.labels)
        del features
    log.info("trained %s in %.2f s (log only)", name, time.perf_counter() - started)
    model_dir = MODELS_DIR / name
    table = table_dir.name if table_dir != FEATURES_DIR else None
    # Written before it predicts anything: a kNN model's k-d tree counts its queries, and the
    # file would depend on them.
    write_model_folder(
        model_dir,
        model_preprocessing(name, info, table, selected),
        labels,
        lambda path: sklearn_models.save_pipeline(pipeline, path),
    )
    log.info("wrote %s/ (%s, %s, %s)", model_dir, MODEL_FILES["sklearn"], PREPROCESSING_FILE, LABELS_FILE)
    train_accuracy = accuracy(pipeline[1:], train_features, train.labels, len(labels))
    val_accuracy = accuracy(pipeline, val.features, val.labels, len(labels))
    log.info("%s: train accuracy %.3f, val accuracy %.3f", name, train_accuracy, val_accuracy)


if __name__ == "__main__":
    run_stage("train_sklearn", main)
