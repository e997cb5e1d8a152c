"""The SVM's search a fold at a time: the scores and choice of GridSearchCV, to the bit, from less memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from genreclf.models import sklearn_models, svm_folds

ROOT = Path(__file__).resolve().parents[1]
SVM = {"C": 10.0, "kernel": "rbf", "gamma": "scale", "seed": 3}


def overlapping_genres(n_genres: int, per_genre: int = 12, n_features: int = 7, seed: int = 0):
    """Genres whose clips overlap (noise as large as the distance between centres): the SVM errs,
    so its decision values and the calibration are not trivial."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_genres), per_genre)
    centres = rng.normal(scale=3.0, size=(n_genres, n_features))
    noise = rng.normal(scale=3.0, size=(len(labels), n_features)) * rng.uniform(1, 5, n_features)
    return centres[labels] + noise, labels


@pytest.fixture
def small_chunks(monkeypatch):
    """Every test fold scored and the scaler fitted in several pieces."""
    monkeypatch.setattr(svm_folds, "PREDICT_CHUNK_ROWS", 2)
    monkeypatch.setattr(sklearn_models, "SCALER_BLOCK_COLUMNS", 2)


def test_the_search_from_a_file_scores_as_a_plain_grid_search(small_chunks, tmp_path):
    x, y = overlapping_genres(3, per_genre=15)
    Cs, gammas = [0.3, 3.0, 30.0], ["scale", 0.01, 3.0]
    with svm_folds.MatrixFile(x, tmp_path) as source:
        best, score, table = svm_folds.select_svm_settings(source, y, None, "rbf", Cs, gammas, folds=4, seed=2)
    plain = GridSearchCV(
        Pipeline([("standardize", StandardScaler()), ("classifier", SVC())]),
        {"classifier__C": Cs, "classifier__gamma": gammas},
        cv=StratifiedKFold(n_splits=4, shuffle=True, random_state=2),
    ).fit(x, y)
    assert len(set(plain.cv_results_["mean_test_score"])) > 3
    assert [s for _, _, s in table] == plain.cv_results_["mean_test_score"].tolist()
    assert best == {"C": plain.best_params_["classifier__C"], "gamma": plain.best_params_["classifier__gamma"]}
    assert score == plain.best_score_


def test_the_search_chooses_the_same_with_any_number_of_workers(small_chunks):
    x, y = overlapping_genres(3, per_genre=15)
    searches = [
        svm_folds.select_svm_settings(x, y, None, "rbf", [0.3, 3.0, 30.0], ["scale", 0.01], 4, 2, workers=workers)
        for workers in (1, 3)
    ]
    assert len({s for _, _, s in searches[0][2]}) > 2
    assert searches[0] == searches[1]


@pytest.mark.parametrize(
    "rows", [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [0, 2, 3, 4, 9], [9], [1, 2, 3], [0, 8, 9], []], ids=str
)
def test_a_matrix_file_gives_back_the_rows_asked_for(tmp_path, monkeypatch, rows):
    monkeypatch.setattr(svm_folds, "FILE_BLOCK_ROWS", 3)  # written in several blocks
    x = np.random.default_rng(0).normal(size=(10, 4))
    with svm_folds.MatrixFile(x, tmp_path) as source:
        taken = source.take(np.array(rows, dtype=np.int64))
        assert source.path.stat().st_size == x.nbytes
        np.testing.assert_array_equal(source.all(), x)
    np.testing.assert_array_equal(taken, x[rows])
    assert taken.flags.c_contiguous and taken.flags.writeable
    assert not source.path.exists()


@pytest.mark.parametrize("matrix", [np.zeros((3, 2), dtype=np.float32), np.zeros(3)], ids=["float32", "1-d"])
def test_a_matrix_file_holds_2d_float64_only(tmp_path, matrix):
    with pytest.raises(ValueError, match="2-d float64"):
        svm_folds.MatrixFile(matrix, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_matrix_file_cut_short_is_a_clear_error(tmp_path):
    with svm_folds.MatrixFile(np.ones((4, 3)), tmp_path) as source:
        source.path.write_bytes(source.path.read_bytes()[:50])
        with pytest.raises(OSError, match="ends early"):
            source.take(np.arange(4))


@pytest.mark.slow  # 5 s: tracemalloc slows the fits
def test_the_search_from_a_file_holds_a_fold_not_the_matrix(small_chunks, tmp_path):
    """Arrays allocated (tracemalloc) while the search runs from a file: a fold's copy and a fit's
    support vectors (here every clip is one), and np.var's temporary for gamma="scale": at most 1.6 times
    the matrix and a little, never the whole matrix beside them (GridSearchCV holds all three: 2.6)."""
    x, y = overlapping_genres(3, per_genre=400, n_features=60)
    with svm_folds.MatrixFile(x, tmp_path) as source:
        tracemalloc.start()
        try:
            svm_folds.select_svm_settings(source, y, None, "rbf", [1.0], ["scale", 0.1], folds=5, seed=0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 2.0 * x.nbytes, f"peak {peak / x.nbytes:.2f} times the matrix"


def test_a_matrix_file_that_cannot_be_written_leaves_nothing(tmp_path, monkeypatch):
    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(svm_folds.np, "ascontiguousarray", full_disk)
    with pytest.raises(OSError, match="No space left"):
        svm_folds.MatrixFile(np.ones((4, 3)), tmp_path)
    assert list(tmp_path.iterdir()) == []
