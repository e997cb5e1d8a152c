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
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

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
MODEL_COPY_BYTES = 1 << 20  # block size when an array member is copied into the canonical model file
# Columns a StandardScaler is fitted on at a time (fit_scaler): its fit makes temporaries the size of
# what it is given (X minus the mean), a whole copy of the training matrix for a plain fit.
SCALER_BLOCK_COLUMNS = 64
# BLAS threads while a classifier is fitted (fit_in_place). The logistic regression's products
# (clips x features by features x genres) gain nothing from more on a shared machine: with
# OpenBLAS's 2 threads on 2 busy cores its fit took 22-38 s against 4 s in one, and 13 MB more
# at 8000 clips (the second thread's buffers). One thread also makes the model's bytes the same
# whatever the number of cores: OpenBLAS splits a product's sums differently by thread count.
FIT_BLAS_THREADS = 1

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


def column_blocks(n_columns: int, width: int) -> list[tuple[int, int]]:
    """(start, stop) of consecutive blocks of ``width`` columns, none of a single column (the last
    takes a lone column in): numpy sums a single column pairwise, and several row after row, as
    it sums a whole C-ordered matrix along its rows."""
    starts = list(range(0, n_columns, width))
    if len(starts) > 1 and n_columns - starts[-1] == 1:
        starts.pop()
    return list(zip(starts, [*starts[1:], n_columns]))


def fit_scaler(scaler: StandardScaler, features: np.ndarray) -> StandardScaler:
    """``scaler.fit(features)``, SCALER_BLOCK_COLUMNS columns at a time; returns ``scaler``.

    The same fitted attributes, to the bit and in the same order: a column's mean and variance
    depend on that column alone and are summed row after row either way (column_blocks). The
    fit's temporaries are the size of a block, not copies of the whole matrix. A matrix with
    NaN (a count of clips per column) is fitted whole.
    """
    blocks = column_blocks(features.shape[1], SCALER_BLOCK_COLUMNS)
    if len(blocks) == 1:
        return StandardScaler.fit(scaler, features)
    fitted = [StandardScaler(**scaler.get_params()).fit(features[:, start:stop]) for start, stop in blocks]
    if any(np.ndim(part.n_samples_seen_) for part in fitted):
        return StandardScaler.fit(scaler, features)
    for key, value in vars(fitted[0]).items():
        if key.endswith("_"):
            joined = np.concatenate([vars(part)[key] for part in fitted]) if isinstance(value, np.ndarray) else value
            setattr(scaler, key, features.shape[1] if key == "n_features_in_" else joined)
    return scaler


class BlockScaler(StandardScaler):
    """A StandardScaler that fits a block of columns at a time (fit_scaler): for the SVM's search,
    whose models are never saved (a saved model holds a plain StandardScaler)."""

    def fit(self, X, y=None, sample_weight=None):
        if sample_weight is not None:
            raise ValueError("BlockScaler takes no sample weights")
        return fit_scaler(self, X)


def select_musicnn_C(
    features: np.ndarray, labels: np.ndarray, pca_components: int | None, Cs: list, folds: int, max_iter: int, seed: int
) -> tuple[float, float, list]:
    """Choose the musicnn model's C by stratified k-fold cross-validation on the given (train) clips,
    as svm_folds.select_svm_settings chooses the SVM's: (C, its mean accuracy, [(C, mean accuracy),
    ...]); ties go to the first."""
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

    The same model, to the byte, as ``pipeline.fit(features, labels)`` with FIT_BLAS_THREADS BLAS
    threads, without its standardised copy of the matrix nor the scaler's (fit_scaler):
    ``features`` is overwritten with what the steps after the scaler were fitted on
    (``pipeline[1:]`` predicts from it), and a model that keeps its training data (kNN) keeps
    that very array. The scaler keeps its own setting (copy=True by default), so the fitted
    pipeline standardises a copy of whatever it is given later.
    """
    scaler = pipeline.steps[0][1]
    if not isinstance(scaler, StandardScaler):
        raise TypeError(f"the pipeline's first step is {type(scaler).__name__}, not StandardScaler")
    if features.dtype != np.float64 or not features.flags.c_contiguous or not features.flags.writeable:
        raise ValueError("fit_in_place needs a writeable C-ordered float64 array")
    scaled = fit_scaler(scaler, features).transform(features, copy=False)
    with threadpool_limits(limits=FIT_BLAS_THREADS, user_api="blas"):
        if len(pipeline) == 2 and type(pipeline[-1]) is GaussianNB:
            fit_gaussian_nb(pipeline[-1], scaled, labels)
        else:
            pipeline[1:].fit(scaled, labels)
    return scaled


def fit_gaussian_nb(model: GaussianNB, features: np.ndarray, labels: np.ndarray) -> GaussianNB:
    """``model.fit(features, labels)``, SCALER_BLOCK_COLUMNS columns at a time; returns ``model``.

    The same fitted attributes, to the bit: a column's class means and variances depend on that
    column alone (column_blocks), and the one number that spans columns, var_smoothing times the
    largest column variance, is added once to the joined variances, as GaussianNB.fit adds it.
    Its temporaries are the size of a block: GaussianNB.fit takes np.var of the whole matrix.
    """
    blocks = column_blocks(features.shape[1], SCALER_BLOCK_COLUMNS)
    if len(blocks) == 1 or model.priors is not None:
        return model.fit(features, labels)
    parts, largest = [], []
    for start, stop in blocks:
        block = features[:, start:stop]
        largest.append(np.var(block, axis=0).max())
        parts.append(GaussianNB(var_smoothing=0.0).fit(block, labels))  # adds no smoothing
    model.classes_ = parts[0].classes_  # the attributes in GaussianNB.fit's order: skops saves them so
    model.n_features_in_ = features.shape[1]
    model.epsilon_ = model.var_smoothing * max(largest)
    model.theta_ = np.concatenate([part.theta_ for part in parts], axis=1)
    model.var_ = np.concatenate([part.var_ for part in parts], axis=1)
    model.var_ += model.epsilon_
    model.class_count_ = parts[0].class_count_
    model.class_prior_ = parts[0].class_prior_
    return model


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
    timestamps (genreclf.io.reproducible_member). skops' zip (``skops.io.dump``) goes to a
    temporary file, and each member is copied from there in blocks.
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
    try:
        model = sio.load(path, trusted=list(TRUSTED_TYPES))
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable skops model file ({e})", path=path) from None
    if not isinstance(model, Pipeline):
        raise DataError(f"{path}: expected a scikit-learn Pipeline, got {type(model).__name__}", path=path)
    return model
