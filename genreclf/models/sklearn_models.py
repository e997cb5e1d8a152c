"""scikit-learn models on the feature table: standardise -> optional PCA -> classifier.

Each model is one small builder. The fitted pipeline is saved with skops (no pickle)
in a canonical form, so the same model always gives the same bytes, and loaded back
only if every type in the file is on an explicit allow-list.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import skops.io as sio
from joblib import parallel_config
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
from genreclf.io import atomic_path, reproducible_member

MODEL_NAMES = catalog.SKLEARN_MODELS

# The SVM's probabilities: temperature scaling (a softmax of the decision values over a
# temperature) fitted on cross-validated decision values. scikit-learn 1.9 deprecates
# SVC(probability=True) for CalibratedClassifierCV; its temperature method is multiclass by
# nature and keeps the SVM's own decisions (the arg-max), where one-vs-rest Platt scaling
# lost about 6 points of cross-validated accuracy on GTZAN.
CALIBRATION_FOLDS = 5
CALIBRATION_METHOD = "temperature"
# libsvm's kernel cache (MB): speed only. It is allocated as used and never exceeds the kernel
# matrix of one pair of genres (libsvm trains one SVM per pair): 4 bytes x (clips of the two
# genres)^2, 10 MB for fma_small's 1600 training clips per pair; this bound matters only beyond.
SVC_CACHE_MB = 1000
# The SVM's cross-validation runs its fits in threads, not processes: libsvm releases the GIL,
# so they still use every core, while processes each held their own copy of the interpreter,
# of scikit-learn and of the training data (memory-mapped, counted once per process).
SEARCH_BACKEND = "threading"
MODEL_COPY_BYTES = 1 << 20  # block size when an array member is copied into the canonical model file

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
    return CalibratedClassifierCV(
        SVC(C=C, kernel=kernel, gamma=gamma, cache_size=SVC_CACHE_MB),
        method=CALIBRATION_METHOD,
        cv=folds,
        ensemble=False,
    )


def musicnn_classifier(C: float, max_iter: int, seed: int) -> LogisticRegression:
    """The musicnn model: a logistic regression on the (standardised) pretrained embeddings."""
    return LogisticRegression(C=C, max_iter=max_iter, random_state=seed)


CLASSIFIER_BUILDERS = {
    "gnb": gnb_classifier,
    "knn": knn_classifier,
    "logreg": logreg_classifier,
    "svm": svm_classifier,
    "musicnn": musicnn_classifier,
}


def build_pipeline(name: str, pca_components: int | None, copy: bool = True, **classifier_options) -> Pipeline:
    """standardise -> PCA (if ``pca_components``) -> the classifier ``name`` built from its options.

    PCA uses the exact (full) SVD, so it needs no seed to be deterministic. ``copy=False``
    makes the scaler standardise the arrays it is given in place (see fit_in_place).
    """
    if name not in CLASSIFIER_BUILDERS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
    steps = [("standardize", StandardScaler(copy=copy))]
    if pca_components is not None:
        steps.append(("pca", PCA(n_components=pca_components, svd_solver="full")))
    steps.append(("classifier", CLASSIFIER_BUILDERS[name](**classifier_options)))
    return Pipeline(steps)


def select_svm_settings(
    features: np.ndarray,
    labels: np.ndarray,
    pca_components: int | None,
    kernel: str,
    Cs: list,
    gammas: list,
    folds: int,
    seed: int,
) -> tuple[dict, float, list]:
    """Choose the SVM's C and gamma by stratified k-fold cross-validation on the given (train) clips.

    Every (C, gamma) pair is scored by the mean accuracy of standardise -> PCA -> SVC over
    ``folds`` seeded, shuffled, stratified folds; ties go to the first pair in the order
    given. Returns ({"C", "gamma"}, its mean accuracy, [(C, gamma, mean accuracy), ...]).
    """
    # The scaler works in place: each fit gets its fold's clips as a new array (scikit-learn
    # indexes them out of ``features``), so standardising it in place changes nothing else.
    pipeline = build_pipeline("svm", pca_components, copy=False, C=1.0, kernel=kernel, gamma="scale", seed=seed)
    pipeline.steps[-1] = ("classifier", SVC(kernel=kernel, cache_size=SVC_CACHE_MB))  # no calibration while choosing
    search = GridSearchCV(
        pipeline,
        {"classifier__C": list(Cs), "classifier__gamma": list(gammas)},
        scoring="accuracy",
        refit=False,
        n_jobs=-1,  # one fit per core; the scores do not depend on the number of workers
        cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed),
    )
    with parallel_config(backend=SEARCH_BACKEND):
        search.fit(features, labels)
    results = search.cv_results_
    table = [
        (p["classifier__C"], p["classifier__gamma"], float(score))
        for p, score in zip(results["params"], results["mean_test_score"])
    ]
    best = search.best_params_
    return ({"C": best["classifier__C"], "gamma": best["classifier__gamma"]}, float(search.best_score_), table)


def select_musicnn_C(
    features: np.ndarray, labels: np.ndarray, pca_components: int | None, Cs: list, folds: int, max_iter: int, seed: int
) -> tuple[float, float, list]:
    """Choose the musicnn model's C by stratified k-fold cross-validation on the given (train) clips,
    as select_svm_settings does: (C, its mean accuracy, [(C, mean accuracy), ...]); ties go to the first."""
    pipeline = build_pipeline("musicnn", pca_components, C=1.0, max_iter=max_iter, seed=seed)
    search = GridSearchCV(
        pipeline,
        {"classifier__C": list(Cs)},
        scoring="accuracy",
        refit=False,
        n_jobs=-1,
        cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed),
    )
    search.fit(features, labels)
    results = search.cv_results_
    table = [(p["classifier__C"], float(score)) for p, score in zip(results["params"], results["mean_test_score"])]
    return search.best_params_["classifier__C"], float(search.best_score_), table


def fit_in_place(pipeline: Pipeline, features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Fit ``pipeline`` as Pipeline.fit does, standardising ``features`` in place; return them.

    The same model, to the byte, as ``pipeline.fit(features, labels)``, without its standardised
    copy of the matrix: ``features`` is overwritten with what the steps after the scaler were
    fitted on (``pipeline[1:]`` predicts from it), and a model that keeps its training data
    (kNN) keeps that very array. The scaler keeps its own setting (copy=True by default),
    so the fitted pipeline standardises a copy of whatever it is given later.
    """
    scaler = pipeline.steps[0][1]
    if not isinstance(scaler, StandardScaler):
        raise TypeError(f"the pipeline's first step is {type(scaler).__name__}, not StandardScaler")
    if features.dtype != np.float64 or not features.flags.c_contiguous or not features.flags.writeable:
        raise ValueError("fit_in_place needs a writeable C-ordered float64 array")
    scaled = scaler.fit(features, labels).transform(features, copy=False)
    pipeline[1:].fit(scaled, labels)
    return scaled


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


def write_model(pipeline: Pipeline, out: BinaryIO) -> None:
    """Write the skops file of a fitted pipeline to the seekable ``out``, canonical: the same
    model always gives the same bytes.

    skops names objects (and the array files in the zip) by their id() in memory,
    which differs from run to run; they are renumbered in schema order (from 1:
    skops ignores an id of 0), and the members are written in name order with fixed
    timestamps (genreclf.io.reproducible_member). skops builds its zip in memory, then it
    goes to a temporary file, and each array is copied from there in blocks: a model that
    holds its training data (kNN) is not copied several times over in memory.
    """
    ids: dict[int, int] = {}
    with tempfile.TemporaryFile() as raw:
        sio.dump(pipeline, raw)
        raw.seek(0)
        with zipfile.ZipFile(raw) as src, zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
            schema = json.dumps(_renumber_ids(json.loads(src.read("schema.json")), ids), indent=2)
            members = {"schema.json": None}
            for name in src.namelist():
                if name == "schema.json":
                    continue
                match = SKOPS_ARRAY_FILE.match(name)
                if match is None or int(match[1]) not in ids:
                    raise ValueError(f"skops wrote a member {name!r} that its schema does not name")
                members[f"{ids[int(match[1])]}{match[2]}"] = name
            for name in sorted(members):
                if members[name] is None:
                    dst.writestr(reproducible_member(name), schema)
                    continue
                with src.open(members[name]) as member, dst.open(reproducible_member(name), "w") as copy:
                    shutil.copyfileobj(member, copy, MODEL_COPY_BYTES)


def model_bytes(pipeline: Pipeline) -> bytes:
    """The canonical skops file of a fitted pipeline (write_model), as bytes."""
    out = io.BytesIO()
    write_model(pipeline, out)
    return out.getvalue()


def save_pipeline(pipeline: Pipeline, path: str | Path) -> None:
    """Write the canonical skops file (write_model) to ``path``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        write_model(pipeline, out)


def load_pipeline(path: str | Path) -> Pipeline:
    """Load a model file, refusing it if it holds any type outside skops' defaults and TRUSTED_TYPES."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist", path=path)
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as e:
        raise DataError(f"{path}: not a readable skops model file ({e})", path=path) from None
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise DataError(
            f"{path}: refused to load, it holds types that are not on the allow-list "
            f"of genreclf.models.sklearn_models.TRUSTED_TYPES: {refused}",
            path=path,
        )
    model = sio.load(path, trusted=list(TRUSTED_TYPES))
    if not isinstance(model, Pipeline):
        raise DataError(f"{path}: expected a scikit-learn Pipeline, got {type(model).__name__}", path=path)
    return model
