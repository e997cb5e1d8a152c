"""The kernel SVM's cross-validated choice of C and gamma, one fold of clips in memory at a time.

GridSearchCV indexes each fold out of a training matrix it holds whole, so a fit holds the
matrix, its fold's copy and its support vectors at once: at fma_small (5120 training clips x
518 features) 26 + 21 + 17 MB. Here the clips come from a row source (``MatrixRows``: an array
in memory; ``MatrixFile``: a scratch file of the matrix) that makes each fold's copy when it is
needed, so the caller may drop the matrix while folds are fitted; and the test folds are scored
PREDICT_CHUNK_ROWS clips at a time. The scores and the choice are those of GridSearchCV to the
bit (the tests compare them): the same folds, fitted on the same rows in the same order, and
libsvm scores a clip alone. The search's fits run in ``workers`` threads, one at a time by
default: each fit in flight holds its own support vectors and kernel cache (48 MiB more at 8000
clips for two). The chosen model is then fitted by scikit-learn's own CalibratedClassifierCV
(sklearn_models.fit_in_place).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.metrics import accuracy_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC

from genreclf.models.sklearn_models import SVC_CACHE_MB, BlockScaler

PREDICT_CHUNK_ROWS = 256  # test clips scored at a time (libsvm scores each clip on its own)
FILE_BLOCK_ROWS = 1024  # rows written to a MatrixFile at a time


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
