"""The kernel SVM's cross-validated choice and its calibrated fit, one fold of clips in memory at a time.

GridSearchCV and CalibratedClassifierCV index each fold out of a training matrix they hold
whole, so a fit holds the matrix, its fold's copy and its support vectors at once: at fma_small
(5120 training clips x 518 features) 26 + 21 + 17 MB. Here the clips come from a row source
(``MatrixRows``: an array in memory; ``MatrixFile``: a scratch file of the matrix) that makes
each fold's copy when it is needed, so the caller may drop the matrix while folds are fitted;
and the test folds are scored PREDICT_CHUNK_ROWS clips at a time. The scores, the choice and the
fitted model are those of GridSearchCV and CalibratedClassifierCV to the bit (the tests compare
them): the same folds, fitted on the same rows in the same order, and libsvm scores a clip
alone. The search's fits run in ``workers`` threads, one at a time by default: each fit in
flight holds its own support vectors and kernel cache (48 MiB more at 8000 clips for two).
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from sklearn.calibration import CalibratedClassifierCV, _fit_calibrator  # private: scikit-learn is pinned
from sklearn.decomposition import PCA
from sklearn.metrics import accuracy_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder, StandardScaler
from sklearn.svm import SVC
from sklearn.utils._array_api import get_namespace
from threadpoolctl import threadpool_limits

from genreclf.models.sklearn_models import FIT_BLAS_THREADS, SVC_CACHE_MB, BlockScaler, fit_scaler

MMAP_THRESHOLD_BYTES = 1 << 20  # see map_large_blocks
M_MMAP_THRESHOLD = -3  # mallopt(3)
PREDICT_CHUNK_ROWS = 256  # test clips scored at a time (libsvm scores each clip on its own)
FILE_BLOCK_ROWS = 1024  # rows written to a MatrixFile at a time


def map_large_blocks(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Have glibc's malloc map each block of ``threshold`` bytes or more on its own, and unmap it
    when it is freed; False where that cannot be set (not glibc): nothing changed.

    glibc's default threshold rises to the size of the largest mapped block freed (up to 32 MiB),
    so once a fold's copy is freed, blocks of its size come from the heap, which keeps what is
    freed inside it: the SVM stage's peak at 8000 clips was 283 MiB in one run and 307 in
    another, on the same data; with the threshold fixed, 286.5 and 286.7.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))


class MatrixRows:
    """The rows of a matrix in memory."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix

    def take(self, rows: np.ndarray) -> np.ndarray:
        """A new C-ordered array of ``rows`` (ascending indices), as scikit-learn indexes a fold out."""
        return self.matrix[rows]

    def all(self) -> np.ndarray:
        return self.matrix


class MatrixFile:
    """A float64 matrix written row after row to a scratch file in ``directory`` (the system's temporary
    folder by default); ``take`` reads rows back into a new array, so only they are in memory.
    Deleted by ``close`` (a context manager)."""

    def __init__(self, matrix: np.ndarray, directory: str | Path | None = None) -> None:
        if matrix.dtype != np.float64 or matrix.ndim != 2:
            raise ValueError("MatrixFile holds a 2-d float64 matrix")
        self.shape = matrix.shape
        fd, name = tempfile.mkstemp(prefix="genreclf-matrix-", suffix=".f64", dir=directory)
        self.path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                for start in range(0, len(matrix), FILE_BLOCK_ROWS):
                    out.write(np.ascontiguousarray(matrix[start : start + FILE_BLOCK_ROWS]).data)
        except BaseException:  # a full disk, an interrupt: no scratch file left behind
            self.close()
            raise

    def take(self, rows: np.ndarray) -> np.ndarray:
        """A new C-ordered array of ``rows`` (ascending indices); each run of consecutive rows is one read."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.shape[1]), dtype=np.float64)
        if not len(rows):
            return out
        row_bytes = self.shape[1] * 8
        runs = np.flatnonzero(np.diff(rows) != 1) + 1
        with open(self.path, "rb", buffering=0) as file:
            for start, stop in zip([0, *runs.tolist()], [*runs.tolist(), len(rows)]):
                file.seek(int(rows[start]) * row_bytes)
                view, done = memoryview(out[start:stop]).cast("B"), 0
                while done < len(view):
                    read = file.readinto(view[done:])
                    if not read:
                        raise OSError(f"{self.path}: the scratch matrix ends early")
                    done += read
        return out

    def all(self) -> np.ndarray:
        return self.take(np.arange(self.shape[0]))

    def close(self) -> None:
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> MatrixFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ScaledRows:
    """The rows of ``source`` standardised by a fitted ``scaler`` (in place, in the new array)."""

    def __init__(self, source, scaler: StandardScaler) -> None:
        self.source, self.scaler = source, scaler

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self.scaler.transform(self.source.take(rows), copy=False)

    def all(self) -> np.ndarray:
        return self.scaler.transform(self.source.all(), copy=isinstance(self.source, MatrixRows))


def fit_fold_steps(features: np.ndarray, pca_components: int | None) -> tuple[list, np.ndarray]:
    """Standardise (in place, in column blocks) and reduce a fold's clips as the search's pipeline
    does: (the fitted steps, what the SVC is fitted on)."""
    scaler = BlockScaler(copy=False).fit(features)
    features = scaler.transform(features, copy=False)
    if pca_components is None:
        return [scaler], features
    pca = PCA(n_components=pca_components, svd_solver="full")
    return [scaler, pca], pca.fit_transform(features)


def fold_predictions(model, steps: list, source, rows: np.ndarray, method: str) -> np.ndarray:
    """``model.<method>`` of ``rows`` of ``source`` passed through ``steps``, PREDICT_CHUNK_ROWS at a time."""
    parts = []
    for start in range(0, len(rows), PREDICT_CHUNK_ROWS):
        features = source.take(rows[start : start + PREDICT_CHUNK_ROWS])
        for step in steps:
            features = step.transform(features)  # the scaler works in place: a chunk of its own
        parts.append(getattr(model, method)(features))
    return np.concatenate(parts)


def fold_scores(pool, candidates, kernel, steps, fitted_on, fold_labels, source, test, on_fit) -> list[float]:
    """The accuracy on the ``test`` clips of an SVC of each (C, gamma) of ``candidates`` fitted on
    ``fitted_on`` (a fold's clips through ``steps``), fitted by ``pool``'s threads."""
    train_labels, test_labels = fold_labels

    def score(candidate: tuple) -> float:
        C, gamma = candidate
        model = SVC(C=C, kernel=kernel, gamma=gamma, cache_size=SVC_CACHE_MB).fit(fitted_on, train_labels)
        accuracy = accuracy_score(test_labels, fold_predictions(model, steps, source, test, "predict"))
        if on_fit is not None:
            on_fit()
        return accuracy

    return list(pool.map(score, candidates))


def select_svm_settings(
    source,
    labels: np.ndarray,
    pca_components: int | None,
    kernel: str,
    Cs: list,
    gammas: list,
    folds: int,
    seed: int,
    workers: int = 1,
    on_fit: Callable[[], None] | None = None,
) -> tuple[dict, float, list]:
    """Choose the SVM's C and gamma by stratified k-fold cross-validation on the clips of ``source``
    (a row source, or an array: left as it is).

    Every (C, gamma) pair is scored by the mean accuracy of standardise -> PCA -> SVC over
    ``folds`` seeded, shuffled, stratified folds, as GridSearchCV scores that pipeline; ties go
    to the first pair in the order given (C, then gamma). Each fold is read and standardised once
    for all the pairs, which ``workers`` threads fit (libsvm releases the GIL): each fit in flight
    holds its own support vectors and kernel cache; the scores do not depend on ``workers``.
    ``on_fit()`` after each fit (a progress bar). Returns ({"C", "gamma"}, its mean accuracy,
    [(C, gamma, mean accuracy), ...]).
    """
    source = MatrixRows(source) if isinstance(source, np.ndarray) else source
    candidates = [(C, gamma) for C in Cs for gamma in gammas]
    scores = np.empty((len(candidates), folds), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for fold, (train, test) in enumerate(splitter.split(np.zeros((len(labels), 1)), labels)):
            steps, fitted_on = fit_fold_steps(source.take(train), pca_components)
            fold_labels = (labels[train], labels[test])
            scores[:, fold] = fold_scores(pool, candidates, kernel, steps, fitted_on, fold_labels, source, test, on_fit)
            del steps, fitted_on
    means = np.average(scores, axis=1)  # GridSearchCV's mean_test_score
    best = int(np.argmax(means))  # the first of the best
    table = [(C, gamma, float(mean)) for (C, gamma), mean in zip(candidates, means)]
    return {"C": candidates[best][0], "gamma": candidates[best][1]}, float(means[best]), table


def fit_calibrated(model: CalibratedClassifierCV, source, labels: np.ndarray, on_fit=None) -> CalibratedClassifierCV:
    """``model.fit(source.all(), labels)``, the same fitted model to the bit, for an SVC calibrated on
    cross-validated decision values (``ensemble=False``), holding one fold's copy at a time.

    As CalibratedClassifierCV.fit: the decision values of each fold's clips by an SVC fitted on the
    others (with the labels encoded, as cross_val_predict fits), then the SVC fitted on every clip,
    then the calibrator fitted on those values.
    """
    if model.ensemble is not False or type(model.estimator) is not SVC or isinstance(model.cv, int):
        raise ValueError("fit_calibrated takes a CalibratedClassifierCV of an SVC, ensemble=False, with a splitter")
    model.calibrated_classifiers_ = []
    model.classes_ = LabelEncoder().fit(labels).classes_
    encoded = LabelEncoder().fit_transform(labels)
    decisions = None
    for train, test in model.cv.split(np.zeros((len(labels), 1)), encoded):  # as cross_val_predict splits
        fold = SVC(**model.estimator.get_params()).fit(source.take(train), encoded[train])
        values = fold_predictions(fold, [], source, test, "decision_function")
        del fold
        if decisions is None:
            decisions = np.empty((len(labels), *values.shape[1:]), dtype=values.dtype)
        decisions[test] = values
        if on_fit is not None:
            on_fit()
    if decisions.ndim == 1:  # two genres: CalibratedClassifierCV's (clips, 1)
        decisions = decisions.reshape(-1, 1)
    final = SVC(**model.estimator.get_params()).fit(source.all(), labels)
    model.calibrated_classifiers_.append(
        _fit_calibrator(final, decisions, labels, model.classes_, model.method, xp=get_namespace(decisions)[0])
    )
    model.n_features_in_ = final.n_features_in_
    if on_fit is not None:
        on_fit()
    return model


def fit_svm_pipeline(pipeline: Pipeline, source, labels: np.ndarray, on_fit=None) -> Pipeline:
    """``pipeline.fit(source.all(), labels)`` for standardise -> [PCA] -> calibrated SVC, the same model
    to the bit as fit_in_place gives (FIT_BLAS_THREADS BLAS threads), holding at most a fold of the
    clips while the calibration's folds are fitted; the whole matrix, standardised, only for the
    final fit (and, with PCA, its reduction throughout)."""
    scaler, calibrated = pipeline.steps[0][1], pipeline.steps[-1][1]
    if not isinstance(scaler, StandardScaler) or not isinstance(calibrated, CalibratedClassifierCV):
        raise TypeError("fit_svm_pipeline takes a standardise -> [PCA] -> CalibratedClassifierCV pipeline")
    features = source.all()
    fit_scaler(scaler, features)
    with threadpool_limits(limits=FIT_BLAS_THREADS, user_api="blas"):
        if len(pipeline) == 3:  # PCA: its reduction of every clip, in memory
            in_place = not isinstance(source, MatrixRows)  # a read of the file is the stage's own copy
            reduced = pipeline[1].fit_transform(scaler.transform(features, copy=not in_place))
            del features
            fit_calibrated(calibrated, MatrixRows(reduced), labels, on_fit)
        else:
            del features
            fit_calibrated(calibrated, ScaledRows(source, scaler), labels, on_fit)
    return pipeline
