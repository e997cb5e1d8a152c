"""The SVM fitted a fold at a time: the model and scores of scikit-learn's own fit, to the bit, from less memory."""

from __future__ import annotations

import platform
import subprocess
import sys
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


@pytest.mark.parametrize("n_genres", [2, 3])
@pytest.mark.parametrize("pca_components", [None, 3])
@pytest.mark.parametrize("in_file", [False, True], ids=["array", "file"])
def test_the_svm_fitted_fold_by_fold_is_that_of_pipeline_fit(small_chunks, tmp_path, n_genres, pca_components, in_file):
    x, y = overlapping_genres(n_genres)
    original = x.copy()
    plain = sklearn_models.build_pipeline("svm", pca_components, **SVM).fit(x, y)
    pipeline = sklearn_models.build_pipeline("svm", pca_components, **SVM)
    fits = []
    if in_file:
        with svm_folds.MatrixFile(x, tmp_path) as source:
            svm_folds.fit_svm_pipeline(pipeline, source, y, on_fit=lambda: fits.append(1))
    else:
        svm_folds.fit_svm_pipeline(pipeline, svm_folds.MatrixRows(x), y, on_fit=lambda: fits.append(1))
    assert sklearn_models.model_bytes(pipeline) == sklearn_models.model_bytes(plain)
    np.testing.assert_array_equal(pipeline.predict_proba(x), plain.predict_proba(x))
    assert len(fits) == sklearn_models.CALIBRATION_FOLDS + 1
    np.testing.assert_array_equal(x, original)  # an array given is left as it was
    assert list(tmp_path.iterdir()) == []  # the scratch file is gone


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


FREED_BLOCK_SCRIPT = """
import sys
import numpy as np
from genreclf.models import svm_folds
def anon():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon")) * 1024
if sys.argv[1] == "mapped":
    assert svm_folds.map_large_blocks()
big = np.ones(30 << 17); del big  # 30 MiB, mapped then unmapped: glibc raises its threshold to it
block = np.ones(3 << 17)  # 3 MiB, below numpy's 4 MiB huge-page advice
pin = np.ones(1 << 12)  # 32 KiB after it: the heap cannot shrink from its top
before = anon(); del block
print((before - anon()) / 2**20)
"""


@pytest.mark.slow  # 7 s: two interpreters import scikit-learn
def test_a_large_block_freed_goes_back_to_the_system_once_blocks_are_mapped():
    """After a 30 MiB array is freed, glibc serves a 3 MiB one from its heap and keeps it when it
    is freed; with map_large_blocks it is unmapped: the RSS drops by its size. Where the C
    library is not glibc, map_large_blocks says it changed nothing."""
    if platform.libc_ver()[0] != "glibc":
        assert svm_folds.map_large_blocks() is False
        return
    returned = {}
    for mode in ("mapped", "default"):
        run = subprocess.run(
            [sys.executable, "-c", FREED_BLOCK_SCRIPT, mode], capture_output=True, text=True, check=True, cwd=ROOT
        )
        returned[mode] = float(run.stdout)
    assert returned["mapped"] > 2.9 and returned["default"] < 1.0, returned


def test_a_matrix_file_that_cannot_be_written_leaves_nothing(tmp_path, monkeypatch):
    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(svm_folds.np, "ascontiguousarray", full_disk)
    with pytest.raises(OSError, match="No space left"):
        svm_folds.MatrixFile(np.ones((4, 3)), tmp_path)
    assert list(tmp_path.iterdir()) == []
