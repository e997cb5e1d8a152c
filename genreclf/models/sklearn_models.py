"""scikit-learn models on the feature table: standardise -> optional PCA -> classifier.

Each model is one small builder. The fitted pipeline is saved with skops (no pickle)
in a canonical form, so the same model always gives the same bytes, and loaded back
only if every type in the file is on an explicit allow-list.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from genreclf import catalog
from genreclf.errors import DataError
from genreclf.io import reproducible_zip, write_bytes

MODEL_NAMES = catalog.SKLEARN_MODELS
MODEL_FILE = "model.skops"
FEATURE_INFO_FILE = "feature_info.json"
ID_COLUMNS = ("track_id", "label", "genre")

# The SVM's probabilities: temperature scaling (a softmax of the decision values over a
# temperature) fitted on cross-validated decision values. scikit-learn 1.9 deprecates
# SVC(probability=True) for CalibratedClassifierCV; its temperature method is multiclass by
# nature and keeps the SVM's own decisions (the arg-max), where one-vs-rest Platt scaling
# lost about 6 points of cross-validated accuracy on GTZAN.
CALIBRATION_FOLDS = 5
CALIBRATION_METHOD = "temperature"

# Types that skops does not trust by default but that the pipelines built here hold.
# A model file holding any other untrusted type is refused.
TRUSTED_TYPES = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._TemperatureScaling",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.neighbors._kd_tree.KDTree",
)

# skops names the arrays of a file after id() of the objects at saving time.
SKOPS_ARRAY_FILE = re.compile(r"^(\d+)(\.npy|\.npz)$")


# ---- the feature table written by the features stage

@dataclass(frozen=True)
class FeatureSplit:
    """One split of the feature table: a row of features per clip, its label index and genre."""

    track_ids: list[str]
    features: np.ndarray   # float64 [clips, columns]
    labels: np.ndarray     # int64 [clips]
    genres: list[str]


def read_feature_info(features_dir: str | Path) -> dict:
    """data/features/feature_info.json: {"sample_rate", "params", "columns"}."""
    path = Path(features_dir) / FEATURE_INFO_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} is missing; run the features stage (dvc repro features)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e}); run the features stage again") from None
    missing = [key for key in ("sample_rate", "params", "columns") if key not in info]
    if missing or not isinstance(info.get("columns"), list) or not info["columns"]:
        raise DataError(f"{path}: expected the keys sample_rate, params and a non-empty list columns "
                        f"(missing: {missing}); run the features stage again")
    return info


def read_feature_split(features_dir: str | Path, split: str, columns: list[str]) -> FeatureSplit:
    """Read data/features/<split>.csv, checking it has exactly the expected columns and no NaN."""
    path = Path(features_dir) / f"{split}.csv"
    try:
        table = pd.read_csv(path, dtype={"track_id": str, "genre": str})
    except FileNotFoundError:
        raise DataError(f"{path} is missing; run the features stage (dvc repro features)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV ({e}); run the features stage again") from None
    expected = [*ID_COLUMNS, *columns]
    if list(table.columns) != expected:
        unexpected = sorted(set(table.columns) - set(expected))
        missing = sorted(set(expected) - set(table.columns))
        raise DataError(f"{path}: expected the columns {list(ID_COLUMNS)} then the {len(columns)} feature "
                        f"columns of feature_info.json in order (missing: {missing[:5]}, unexpected: "
                        f"{unexpected[:5]}); run the features stage again")
    if table.empty:
        raise DataError(f"{path}: no clips; check the split (data/split/split_manifest.csv)")
    features = table[columns].to_numpy(dtype=np.float64)
    bad_rows = ~np.isfinite(features).all(axis=1)
    if bad_rows.any():
        raise DataError(f"{path}: NaN or infinite features for the clips "
                        f"{table.loc[bad_rows, 'track_id'].tolist()[:5]}; run the features stage again")
    return FeatureSplit(track_ids=table["track_id"].tolist(), features=features,
                        labels=table["label"].to_numpy(dtype=np.int64), genres=table["genre"].tolist())


def genre_labels(splits: dict[str, FeatureSplit], source: str) -> list[str]:
    """The ordered genre list (label i = labels[i]) read off the splits' (label, genre) pairs."""
    names: dict[int, str] = {}
    for split in splits.values():
        for label, genre in zip(split.labels.tolist(), split.genres):
            if names.setdefault(label, genre) != genre:
                raise DataError(f"{source}: label {label} is both '{names[label]}' and '{genre}'; "
                                "run the split and features stages again")
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{source}: labels {sorted(names)} are not 0..{len(names) - 1}; "
                        "run the split and features stages again")
    return [names[i] for i in range(len(names))]


# ---- the models

def logreg_classifier(C: float, max_iter: int, seed: int) -> LogisticRegression:
    return LogisticRegression(C=C, max_iter=max_iter, random_state=seed)


def knn_classifier(n_neighbors: int, weights: str) -> KNeighborsClassifier:
    return KNeighborsClassifier(n_neighbors=n_neighbors, weights=weights)


def gnb_classifier(var_smoothing: float) -> GaussianNB:
    return GaussianNB(var_smoothing=var_smoothing)


def svm_classifier(C: float, kernel: str, gamma: str | float, seed: int) -> CalibratedClassifierCV:
    """An SVC trained on all the clips, its probabilities calibrated on seeded, stratified folds."""
    folds = StratifiedKFold(n_splits=CALIBRATION_FOLDS, shuffle=True, random_state=seed)
    return CalibratedClassifierCV(SVC(C=C, kernel=kernel, gamma=gamma), method=CALIBRATION_METHOD,
                                  cv=folds, ensemble=False)


CLASSIFIER_BUILDERS = {
    "gnb": gnb_classifier,
    "knn": knn_classifier,
    "logreg": logreg_classifier,
    "svm": svm_classifier,
}


def build_pipeline(name: str, pca_components: int | None, **classifier_options) -> Pipeline:
    """standardise -> PCA (if ``pca_components``) -> the classifier ``name`` built from its options.

    PCA uses the exact (full) SVD, so it needs no seed to be deterministic.
    """
    if name not in CLASSIFIER_BUILDERS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
    steps = [("standardize", StandardScaler())]
    if pca_components is not None:
        steps.append(("pca", PCA(n_components=pca_components, svd_solver="full")))
    steps.append(("classifier", CLASSIFIER_BUILDERS[name](**classifier_options)))
    return Pipeline(steps)


def select_svm_settings(features: np.ndarray, labels: np.ndarray, pca_components: int | None,
                        kernel: str, Cs: list, gammas: list, folds: int, seed: int) -> tuple[dict, float, list]:
    """Choose the SVM's C and gamma by stratified k-fold cross-validation on the given (train) clips.

    Every (C, gamma) pair is scored by the mean accuracy of standardise -> PCA -> SVC over
    ``folds`` seeded, shuffled, stratified folds; ties go to the first pair in the order
    given. Returns ({"C", "gamma"}, its mean accuracy, [(C, gamma, mean accuracy), ...]).
    """
    pipeline = build_pipeline("svm", pca_components, C=1.0, kernel=kernel, gamma="scale", seed=seed)
    pipeline.steps[-1] = ("classifier", SVC(kernel=kernel))      # no calibration while choosing
    search = GridSearchCV(pipeline, {"classifier__C": list(Cs), "classifier__gamma": list(gammas)},
                          scoring="accuracy", refit=False, n_jobs=1,
                          cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed))
    search.fit(features, labels)
    results = search.cv_results_
    table = [(p["classifier__C"], p["classifier__gamma"], float(score))
             for p, score in zip(results["params"], results["mean_test_score"])]
    best = search.best_params_
    return ({"C": best["classifier__C"], "gamma": best["classifier__gamma"]}, float(search.best_score_), table)


def class_probabilities(pipeline: Pipeline, features: np.ndarray, n_labels: int) -> np.ndarray:
    """Probabilities [clips, n_labels], column i for label i (zero for a label never trained on)."""
    probs = np.zeros((len(features), n_labels), dtype=np.float64)
    probs[:, pipeline.classes_.astype(np.int64)] = pipeline.predict_proba(features)
    return probs


# ---- saving and loading with skops

def _renumber_ids(state, ids: dict[int, int]):
    """Copy of a skops schema with every object id replaced by its rank of first appearance."""
    if isinstance(state, list):
        return [_renumber_ids(item, ids) for item in state]
    if not isinstance(state, dict):
        return state
    renumbered = {}
    for key, value in state.items():
        if key == "__id__" and isinstance(value, int):
            renumbered[key] = ids.setdefault(value, len(ids) + 1)
        elif key == "file" and isinstance(value, str) and (match := SKOPS_ARRAY_FILE.match(value)):
            renumbered[key] = f"{ids.setdefault(int(match[1]), len(ids) + 1)}{match[2]}"
        else:
            renumbered[key] = _renumber_ids(value, ids)
    return renumbered


def model_bytes(pipeline: Pipeline) -> bytes:
    """The skops file of a fitted pipeline, canonical: the same model always gives the same bytes.

    skops names objects (and the array files in the zip) by their id() in memory,
    which differs from run to run; they are renumbered in schema order (from 1:
    skops ignores an id of 0), then the zip is rewritten with fixed timestamps.
    """
    ids: dict[int, int] = {}
    renamed = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(sio.dumps(pipeline))) as src, \
            zipfile.ZipFile(renamed, "w", compression=zipfile.ZIP_STORED) as dst:
        schema = _renumber_ids(json.loads(src.read("schema.json")), ids)
        dst.writestr("schema.json", json.dumps(schema, indent=2))
        for name in src.namelist():
            if name == "schema.json":
                continue
            match = SKOPS_ARRAY_FILE.match(name)
            if match is None or int(match[1]) not in ids:
                raise ValueError(f"skops wrote a member {name!r} that its schema does not name")
            dst.writestr(f"{ids[int(match[1])]}{match[2]}", src.read(name))
    return reproducible_zip(renamed.getvalue())


def save_pipeline(pipeline: Pipeline, path: str | Path) -> None:
    write_bytes(path, model_bytes(pipeline))


def load_pipeline(path: str | Path) -> Pipeline:
    """Load a model file, refusing it if it holds any type outside skops' defaults and TRUSTED_TYPES."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing; train the model first (dvc repro train_sklearn)")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as e:
        raise DataError(f"{path}: not a readable skops model file ({e}); train the model again") from None
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise DataError(f"{path}: refused to load, it holds types that are not on the allow-list "
                        f"of genreclf.sklearn_models.TRUSTED_TYPES: {refused}; "
                        "retrain the model with stages.train_sklearn")
    model = sio.load(path, trusted=list(TRUSTED_TYPES))
    if not isinstance(model, Pipeline):
        raise DataError(f"{path}: expected a scikit-learn Pipeline, got {type(model).__name__}")
    return model
