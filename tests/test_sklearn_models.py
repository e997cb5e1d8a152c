"""The scikit-learn models: pipelines, known answers, canonical skops files, safe loading, the stage."""

from __future__ import annotations

import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_info

from genreclf import artifacts
from genreclf.errors import DataError, ParamError
from genreclf.models import sklearn_models, sklearn_training, svm_folds
from genreclf.models.sklearn_training import choose_musicnn_settings, choose_svm_settings
from stages.config import load_config
from stages.train_sklearn import model_settings
from tests.support.helpers import call_stage, run_stage
from tests.support.sklearn_fixture import feature_frame, write_feature_tables, write_params

OPTIONS = {
    "logreg": {"C": 1.0, "max_iter": 500, "seed": 0},
    "knn": {"n_neighbors": 3, "weights": "distance"},
    "gnb": {"var_smoothing": 1e-9},
    "svm": {"C": 10.0, "kernel": "rbf", "gamma": "scale", "seed": 0},
    "musicnn": {"C": 1.0, "max_iter": 500, "seed": 0},
}
GENRES = ["blues", "classical", "metal"]


def blobs(n_per_class: int, n_features: int = 6, seed: int = 0, spread: float = 1.0):
    """Three Gaussian blobs whose centres (the same for every seed) lie more than 25 standard
    deviations apart (6 features; more with more): any of the models separates them."""
    centres = np.random.default_rng(1234).normal(scale=8.0 * spread, size=(3, n_features))
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n_per_class)
    return centres[labels] + rng.normal(scale=spread, size=(len(labels), n_features)), labels


@pytest.mark.parametrize("name", sklearn_models.MODEL_NAMES)
@pytest.mark.parametrize("pca_components", [None, 4])
def test_classifier_sees_standardised_features_reduced_by_pca(name, pca_components):
    x, y = blobs(10)
    pipeline = sklearn_models.build_pipeline(name, pca_components, **OPTIONS[name]).fit(x, y)
    seen = pipeline[:-1].transform(x)  # what the classifier is given
    standardised = (x - x.mean(axis=0)) / x.std(axis=0)
    if pca_components is None:
        np.testing.assert_allclose(seen, standardised, atol=1e-12)
    else:
        # the projections on the first principal axes of the standardised features (signs are arbitrary)
        axes = np.linalg.svd(standardised, full_matrices=False)[2][:pca_components]
        expected = standardised @ axes.T
        np.testing.assert_allclose(np.abs(seen), np.abs(expected), atol=1e-9)


@pytest.mark.parametrize("name", sklearn_models.MODEL_NAMES)
@pytest.mark.parametrize("pca_components", [None, 4])
def test_probabilities_do_not_depend_on_the_units_of_the_features(name, pca_components):
    """Standardising first: rescaling and shifting each column (Hz vs kHz, dB offsets) changes nothing."""
    (train_x, train_y), (test_x, _) = blobs(10, seed=0), blobs(5, seed=1)
    scale, shift = np.array([1e-3, 1.0, 1e3, 7.0, 0.1, 50.0]), 100.0 * np.arange(6)
    plain = sklearn_models.build_pipeline(name, pca_components, **OPTIONS[name]).fit(train_x, train_y)
    rescaled = sklearn_models.build_pipeline(name, pca_components, **OPTIONS[name]).fit(
        train_x * scale + shift, train_y
    )
    np.testing.assert_allclose(
        sklearn_models.class_probabilities(rescaled, test_x * scale + shift, 3),
        sklearn_models.class_probabilities(plain, test_x, 3),
        atol=1e-9,
    )


@pytest.mark.parametrize("name", sklearn_models.MODEL_NAMES)
@pytest.mark.parametrize("pca_components", [None, 3])
def test_every_model_separates_distant_blobs(name, pca_components):
    train_x, train_y = blobs(10, seed=0)
    test_x, test_y = blobs(5, seed=1)
    pipeline = sklearn_models.build_pipeline(name, pca_components, **OPTIONS[name]).fit(train_x, train_y)
    probs = sklearn_models.class_probabilities(pipeline, test_x, 3)
    assert probs.shape == (15, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_array_equal(probs.argmax(axis=1), test_y)


def test_svm_probabilities_keep_the_svm_decisions():
    """Temperature scaling is a softmax of the decision values: the most probable genre is the SVM's own."""
    rng = np.random.default_rng(5)
    (train_x, train_y), (test_x, test_y) = blobs(10, seed=0), blobs(20, seed=1)
    train_x = train_x + rng.normal(scale=12.0, size=train_x.shape)  # blurred: some clips are misclassified
    test_x = test_x + rng.normal(scale=12.0, size=test_x.shape)
    pipeline = sklearn_models.build_pipeline("svm", None, **OPTIONS["svm"]).fit(train_x, train_y)
    svc = pipeline.named_steps["classifier"].calibrated_classifiers_[0].estimator
    decisions = svc.decision_function(pipeline.named_steps["standardize"].transform(test_x))
    probs = sklearn_models.class_probabilities(pipeline, test_x, 3)
    np.testing.assert_array_equal(probs.argmax(axis=1), decisions.argmax(axis=1))
    assert 0.4 < np.mean(probs.argmax(axis=1) == test_y) < 1.0


def test_probabilities_of_a_label_never_trained_on_are_zero():
    x, y = blobs(10)
    keep = y != 1
    pipeline = sklearn_models.build_pipeline("logreg", None, **OPTIONS["logreg"]).fit(x[keep], y[keep])
    probs = sklearn_models.class_probabilities(pipeline, x, 3)
    np.testing.assert_array_equal(probs[:, 1], 0.0)
    np.testing.assert_array_equal(probs[y == 2].argmax(axis=1), 2)


@pytest.mark.parametrize("name", sklearn_models.MODEL_NAMES)
def test_same_model_gives_the_same_bytes_and_loads_back(name, tmp_path):
    x, y = blobs(10)
    first = sklearn_models.build_pipeline(name, 3, **OPTIONS[name]).fit(x, y)
    second = sklearn_models.build_pipeline(name, 3, **OPTIONS[name]).fit(x, y)
    # skops alone names objects by their address in memory: two equal models differ ...
    assert sio.dumps(first) != sio.dumps(second)
    # ... the canonical form does not.
    assert sklearn_models.model_bytes(first) == sklearn_models.model_bytes(second)
    path = tmp_path / "model.skops"
    sklearn_models.save_pipeline(first, path)
    with zipfile.ZipFile(path) as archive:
        assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in archive.infolist())
    loaded = sklearn_models.load_pipeline(path)
    np.testing.assert_array_equal(loaded.predict_proba(x), first.predict_proba(x))


@pytest.mark.parametrize("name", sklearn_models.MODEL_NAMES)
@pytest.mark.parametrize("pca_components", [None, 3])
@pytest.mark.parametrize("block_columns", [64, 2], ids=["one-block", "blocks-of-2"])
def test_fitting_in_place_gives_the_same_model_without_a_copy(monkeypatch, name, pca_components, block_columns):
    monkeypatch.setattr(sklearn_models, "SCALER_BLOCK_COLUMNS", block_columns)
    x, y = blobs(10, n_features=7)
    plain = sklearn_models.build_pipeline(name, pca_components, **OPTIONS[name]).fit(x, y)
    features = x.copy()
    pipeline = sklearn_models.build_pipeline(name, pca_components, **OPTIONS[name])

    scaled = sklearn_models.fit_in_place(pipeline, features, y)

    assert scaled is features  # standardised where it was
    np.testing.assert_allclose(features, (x - x.mean(axis=0)) / x.std(axis=0), atol=1e-12)
    assert sklearn_models.model_bytes(pipeline) == sklearn_models.model_bytes(plain)
    np.testing.assert_array_equal(pipeline[1:].predict_proba(scaled), plain.predict_proba(x))
    # the saved scaler still copies what it is given: predicting leaves the caller's array alone
    again = x.copy()
    np.testing.assert_array_equal(pipeline.predict_proba(again), plain.predict_proba(x))
    np.testing.assert_array_equal(again, x)


@pytest.mark.parametrize(
    ("n_columns", "width", "blocks"), [(3, 64, [(0, 3)]), (10, 5, [(0, 5), (5, 10)]), (11, 5, [(0, 5), (5, 11)])]
)
def test_column_blocks_never_leave_a_lone_column(n_columns, width, blocks):
    assert sklearn_models.column_blocks(n_columns, width) == blocks


@pytest.mark.parametrize("block_columns", [2, 3, 5, 64])
def test_a_scaler_fitted_in_column_blocks_is_that_of_a_plain_fit(monkeypatch, block_columns):
    """Attributes equal to the bit and in the same order (skops writes them in that order)."""
    monkeypatch.setattr(sklearn_models, "SCALER_BLOCK_COLUMNS", block_columns)
    x = np.random.default_rng(3).lognormal(size=(300, 11)) * np.geomspace(1e-3, 1e4, 11)
    plain = StandardScaler().fit(x)
    blockwise = sklearn_models.fit_scaler(StandardScaler(), x)
    assert list(vars(blockwise)) == list(vars(plain))
    for key, value in vars(plain).items():
        assert type(vars(blockwise)[key]) is type(value)
        np.testing.assert_array_equal(vars(blockwise)[key], value)


def test_a_scaler_fitted_in_column_blocks_makes_small_temporaries():
    x = np.random.default_rng(4).normal(size=(2000, 256))  # 4 MB; blocks of 64 columns
    tracemalloc.start()
    try:
        sklearn_models.fit_scaler(StandardScaler(), x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * x.nbytes, f"peak {peak / x.nbytes:.2f} times the matrix"  # a plain fit: 1 or more


@pytest.mark.parametrize("pca_components", [None, 3])
def test_the_svm_search_in_column_blocks_scores_as_a_plain_grid_search(monkeypatch, pca_components):
    """Standardised in place, in column blocks: the scores and choice of a plain GridSearchCV, to the bit."""
    monkeypatch.setattr(sklearn_models, "SCALER_BLOCK_COLUMNS", 2)
    monkeypatch.setattr(svm_folds, "PREDICT_CHUNK_ROWS", 2)
    x, y = blobs(10, n_features=7)
    x += np.random.default_rng(5).normal(scale=20.0, size=x.shape)  # blobs that overlap: the candidates differ
    best, score, table = svm_folds.select_svm_settings(
        x, y, pca_components, "rbf", [0.1, 1.0, 10.0], ["scale", 0.5, 0.02], folds=5, seed=0
    )
    pca = [] if pca_components is None else [("pca", PCA(n_components=pca_components, svd_solver="full"))]
    plain = GridSearchCV(
        Pipeline([("standardize", StandardScaler()), *pca, ("classifier", SVC())]),
        {"classifier__C": [0.1, 1.0, 10.0], "classifier__gamma": ["scale", 0.5, 0.02]},
        cv=StratifiedKFold(n_splits=5, shuffle=True, random_state=0),
    ).fit(x, y)
    assert len(set(plain.cv_results_["mean_test_score"])) > 2
    assert [s for _, _, s in table] == plain.cv_results_["mean_test_score"].tolist()
    candidates = [(p["classifier__C"], p["classifier__gamma"]) for p in plain.cv_results_["params"]]
    assert [(c, g) for c, g, _ in table] == candidates
    assert best == {"C": plain.best_params_["classifier__C"], "gamma": plain.best_params_["classifier__gamma"]}
    assert score == plain.best_score_


@pytest.mark.parametrize("var_smoothing", [1e-9, 0.5])
def test_naive_bayes_fitted_in_column_blocks_is_the_plain_fit_to_the_bit(monkeypatch, var_smoothing):
    monkeypatch.setattr(sklearn_models, "SCALER_BLOCK_COLUMNS", 3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(90, 8)) * rng.uniform(0.1, 50.0, size=8)  # the largest variance in the last block
    y = rng.integers(0, 4, size=90)
    plain = GaussianNB(var_smoothing=var_smoothing).fit(x, y)
    blocked = sklearn_models.fit_gaussian_nb(GaussianNB(var_smoothing=var_smoothing), x, y)
    assert list(vars(blocked)) == list(vars(plain))  # in the same order
    for key, value in vars(plain).items():
        assert type(vars(blocked)[key]) is type(value), key
        np.testing.assert_array_equal(vars(blocked)[key], value, strict=True, err_msg=key)
    as_bytes = [sklearn_models.model_bytes(Pipeline([("classifier", model)])) for model in (blocked, plain)]
    assert as_bytes[0] == as_bytes[1]


def test_naive_bayes_fitted_in_column_blocks_makes_no_copy_of_the_matrix():
    x, y = blobs(400, n_features=256)
    tracemalloc.start()
    try:
        sklearn_models.fit_gaussian_nb(GaussianNB(), x, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * x.nbytes, f"peak {peak / x.nbytes:.2f} times the matrix"  # a plain fit: 1 or more


class RecordsBlasThreads(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        self.blas_threads_ = {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}
        return self


def test_the_classifier_is_fitted_with_one_blas_thread():
    x, y = blobs(10)
    pipeline = Pipeline([("standardize", StandardScaler()), ("classifier", RecordsBlasThreads())])
    sklearn_models.fit_in_place(pipeline, x, y)
    assert pipeline.named_steps["classifier"].blas_threads_ == {sklearn_models.FIT_BLAS_THREADS}


def test_knn_fitted_in_place_keeps_the_standardised_array_itself():
    x, y = blobs(10)
    features = x.copy()
    pipeline = sklearn_models.build_pipeline("knn", None, **OPTIONS["knn"])
    sklearn_models.fit_in_place(pipeline, features, y)
    assert pipeline.named_steps["classifier"]._fit_X is features  # no second copy of the data


def read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@pytest.mark.parametrize(
    "features",
    [np.ones((6, 2), dtype=np.float32), np.ones((2, 6)).T, read_only(np.ones((6, 2)))],
    ids=["float32", "fortran-order", "read-only"],
)
def test_fitting_in_place_needs_a_writeable_c_ordered_float64_array(features):
    with pytest.raises(ValueError, match="writeable C-ordered float64"):
        sklearn_models.fit_in_place(sklearn_models.build_pipeline("gnb", None, **OPTIONS["gnb"]), features, np.zeros(6))


def test_the_svm_search_leaves_its_features_as_they_were():
    """Its scaler works in place on each fold's own copy, never on the array it is given."""
    x, y = blobs(10)
    features = x.copy()
    svm_folds.select_svm_settings(features, y, None, "rbf", [1.0, 10.0], ["scale"], folds=5, seed=0)
    np.testing.assert_array_equal(features, x)


@pytest.mark.parametrize("name", sklearn_models.MODEL_NAMES)
def test_the_saved_file_is_the_canonical_bytes(name, tmp_path):
    x, y = blobs(10)
    pipeline = sklearn_models.build_pipeline(name, 3, **OPTIONS[name]).fit(x, y)
    sklearn_models.save_pipeline(pipeline, tmp_path / "model.skops")
    assert (tmp_path / "model.skops").read_bytes() == sklearn_models.model_bytes(pipeline)
    with zipfile.ZipFile(tmp_path / "model.skops") as archive:
        names = archive.namelist()
    assert names == sorted(names) and "schema.json" in names and all(n.startswith(tuple("123456789s")) for n in names)


def double(values):
    return values * 2


def test_a_model_file_with_an_untrusted_type_is_refused(tmp_path):
    x, y = blobs(10)
    pipeline = Pipeline([("double", FunctionTransformer(double)), ("classifier", GaussianNB())]).fit(x, y)
    path = tmp_path / "model.skops"
    sklearn_models.save_pipeline(pipeline, path)
    with pytest.raises(DataError, match=r"not on the allow-list.*tests\.test_sklearn_models\.double"):
        sklearn_models.load_pipeline(path)


def test_a_broken_or_missing_model_file_is_a_clear_error(tmp_path):
    (tmp_path / "model.skops").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable skops model file"):
        sklearn_models.load_pipeline(tmp_path / "model.skops")
    with pytest.raises(DataError, match="absent.skops does not exist") as missing:
        sklearn_models.load_pipeline(tmp_path / "absent.skops")
    assert missing.value.path == str(tmp_path / "absent.skops") and "dvc repro" not in str(missing.value)


@pytest.mark.parametrize("name", sklearn_models.MODEL_NAMES)
def test_a_model_loads_as_skops_loads_it(name, tmp_path):
    x, y = blobs(10)
    pipeline = sklearn_models.build_pipeline(name, 3, **OPTIONS[name]).fit(x, y)
    sklearn_models.save_pipeline(pipeline, tmp_path / "model.skops")
    loaded = sklearn_models.load_pipeline(tmp_path / "model.skops")
    plain = sio.load(tmp_path / "model.skops", trusted=list(sklearn_models.TRUSTED_TYPES))
    assert sklearn_models.model_bytes(loaded) == sklearn_models.model_bytes(plain)
    np.testing.assert_array_equal(loaded.predict_proba(x), plain.predict_proba(x), strict=True)


def test_a_damaged_array_in_a_model_file_is_a_clear_error(tmp_path):
    x, y = blobs(10)
    model = tmp_path / "model.skops"
    sklearn_models.save_pipeline(sklearn_models.build_pipeline("knn", None, **OPTIONS["knn"]).fit(x, y), model)
    with zipfile.ZipFile(model) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    largest = max(members, key=lambda name: len(members[name]))
    members[largest] = members[largest][:-8]  # an array 8 bytes short, its member intact
    with zipfile.ZipFile(model, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(DataError, match=r"model.skops: not a readable skops model file"):
        sklearn_models.load_pipeline(model)


# ---- the feature table


def test_feature_split_keeps_zero_padded_track_ids_and_checks_columns(tmp_path):
    columns = ["a", "b"]
    frame = feature_frame(["000182", "000002"], [0, 1], GENRES, np.ones((2, 2)), columns)
    write_feature_tables(tmp_path, {"train": frame}, columns)
    split = artifacts.read_feature_split(tmp_path / "data/features", "train", columns)
    assert split.track_ids == ["000182", "000002"]
    assert split.genres == ["blues", "classical"] and split.labels.tolist() == [0, 1]
    with pytest.raises(DataError, match="expected the columns") as wrong:
        artifacts.read_feature_split(tmp_path / "data/features", "train", ["b", "a"])
    assert wrong.value.path == str(tmp_path / "data/features/train.csv") and "dvc repro" not in str(wrong.value)
    with pytest.raises(DataError, match="val.csv does not exist"):
        artifacts.read_feature_split(tmp_path / "data/features", "val", columns)


def test_feature_split_with_nan_is_refused(tmp_path):
    columns = ["a", "b"]
    frame = feature_frame(["x", "y"], [0, 1], GENRES, np.array([[1.0, np.nan], [0.0, 1.0]]), columns)
    write_feature_tables(tmp_path, {"train": frame}, columns)
    with pytest.raises(DataError, match=r"NaN.*\['x'\]"):
        artifacts.read_feature_split(tmp_path / "data/features", "train", columns)


def test_genre_labels_come_from_the_tables_and_must_agree(tmp_path):
    def split(labels, genres):
        return artifacts.FeatureSplit([str(i) for i in labels], np.zeros((len(labels), 1)), np.array(labels), genres)

    good = {"train": split([1, 0], ["jazz", "blues"]), "val": split([2], ["rock"])}
    assert artifacts.genre_labels(good, "here") == ["blues", "jazz", "rock"]
    with pytest.raises(DataError, match="label 0 is both 'blues' and 'rock'"):
        artifacts.genre_labels({"train": split([0, 0], ["blues", "rock"])}, "here")
    with pytest.raises(DataError, match="not 0..1"):
        artifacts.genre_labels({"train": split([0, 2], ["blues", "rock"])}, "here")


# ---- params (their checks: tests/test_config.py)


def settings_of(tmp_path, name: str, overrides: dict | None = None) -> tuple[int | None, dict]:
    """(pca_components, options) that the stage takes from a params.yaml written by the fixture."""
    write_params(tmp_path, overrides)
    return model_settings(load_config(tmp_path / "params.yaml").model_section(name))


# What SKLEARN_PARAMS must set on each classifier (scikit-learn's names; svm: the SVC inside the calibration).
CLASSIFIER_SETTINGS = {
    "logreg": {"C": 1.0, "max_iter": 2000, "random_state": 0},
    "knn": {"n_neighbors": 1, "weights": "uniform"},
    "gnb": {"var_smoothing": 1e-9},
    "svm": {"estimator__C": 10.0, "estimator__kernel": "rbf", "estimator__gamma": "scale"},
    "musicnn": {"C": 1.0, "max_iter": 2000, "random_state": 0},
}


@pytest.mark.parametrize("name", sklearn_models.MODEL_NAMES)
def test_default_like_params_set_the_classifier_and_give_a_working_model(tmp_path, name):
    pca, options = settings_of(tmp_path, name)
    assert pca is None
    if name == "svm":  # one candidate each for C and gamma: nothing to cross-validate
        options, selected = choose_svm_settings(pca, options, source=None, labels=None)
        assert selected == {}
    if name == "musicnn":  # one candidate for C: nothing to cross-validate
        options, selected = choose_musicnn_settings(pca, options, features=None, labels=None)
        assert selected == {}
    (train_x, train_y), (test_x, test_y) = blobs(10, seed=0), blobs(5, seed=1)
    pipeline = sklearn_models.build_pipeline(name, pca, **options).fit(train_x, train_y)
    assert CLASSIFIER_SETTINGS[name].items() <= pipeline[-1].get_params().items()
    np.testing.assert_array_equal(pipeline.predict(test_x), test_y)


def test_svm_lists_become_candidates(tmp_path):
    pca, options = settings_of(tmp_path, "svm", {"svm": {"C": [1, 10], "gamma": ["scale", 0.001]}})
    assert pca is None and options == {
        "C": [1.0, 10.0],
        "kernel": "rbf",
        "gamma": ["scale", 0.001],
        "cv_folds": 5,
        "search_workers": 1,
        "seed": 0,
    }
    _, options = settings_of(tmp_path, "svm", {"svm": {"C": 10, "gamma": "scale"}})
    assert options["C"] == [10.0] and options["gamma"] == ["scale"]  # one value: one candidate


def test_svm_settings_are_chosen_by_cross_validation():
    """A huge gamma makes every kernel value between different clips ~0: it cannot generalise."""
    x, y = blobs(10, n_features=6)
    best, score, table = svm_folds.select_svm_settings(
        x, y, None, "rbf", [1.0, 10.0], [1000.0, "scale"], folds=5, seed=0
    )
    assert best == {"C": 1.0, "gamma": "scale"}  # ties go to the first candidate
    assert score == 1.0
    assert [(c, g) for c, g, _ in table] == [(1.0, 1000.0), (1.0, "scale"), (10.0, 1000.0), (10.0, "scale")]
    assert max(acc for _, g, acc in table if g == 1000.0) < 1.0


@pytest.mark.slow
def test_stage_records_the_svm_settings_it_chose(tmp_path):
    write_params(tmp_path, {"svm": {"C": [1, 10], "gamma": [1000.0, "scale"]}})
    write_blob_features(tmp_path)
    run_stage(tmp_path, "train_sklearn", "svm")
    preprocessing = artifacts.read_model_folder(tmp_path / "models/svm").preprocessing
    assert preprocessing["selected"] == {"C": 1.0, "gamma": "scale", "cv_accuracy": 1.0, "cv_folds": 5}
    svc = sklearn_models.load_pipeline(tmp_path / "models/svm/model.skops").named_steps["classifier"].estimator
    assert (svc.C, svc.gamma) == (1.0, "scale")


def small_split(n_per_class: int, n_features: int = 4):
    x, y = blobs(n_per_class, n_features=n_features)
    return artifacts.FeatureSplit([str(i) for i in range(len(y))], x, y, [GENRES[i] for i in y])


@pytest.mark.parametrize(
    "name, pca, options, error, message",
    [
        ("logreg", 5, OPTIONS["logreg"], ParamError, "pca_components = 5 is more than the 4 features"),
        ("gnb", 7, OPTIONS["gnb"], ParamError, "use at most 4"),
        ("knn", None, {"n_neighbors": 13, "weights": "uniform"}, ParamError, "more than the 12 training clips"),
        ("svm", None, {**OPTIONS["svm"], "cv_folds": 5}, DataError, "at least 5 training clips per genre"),
    ],
)
def test_settings_that_do_not_fit_the_data_are_refused(name, pca, options, error, message):
    with pytest.raises(error, match=message):
        check_settings_fit_data(name, pca, options, small_split(4), GENRES)


def check_settings_fit_data(name, pca, options, split, genres):
    where, table = f"params.yaml: {name}", Path("data/features/train.csv")
    sklearn_training.check_settings_fit_data(name, pca, options, split, genres, where, table)


def test_a_genre_missing_from_train_is_refused():
    split = small_split(4)
    with pytest.raises(DataError, match=r"no training clip of the genres \['rock'\]"):
        check_settings_fit_data("gnb", None, OPTIONS["gnb"], split, GENRES + ["rock"])


# ---- the stage, end to end

COLUMNS = [f"feature_{i:02d}" for i in range(12)]


def write_blob_features(project):
    tables = {}
    for split, n, seed in [("train", 8, 0), ("val", 3, 1)]:
        x, y = blobs(n, n_features=len(COLUMNS), seed=seed, spread=2.0)
        tables[split] = feature_frame([f"{split}.{i:03d}" for i in range(len(y))], y.tolist(), GENRES, x, COLUMNS)
    write_feature_tables(project, tables, COLUMNS, sample_rate=22050, feature_params={"n_fft": 2048})


@pytest.fixture(scope="module")
def trained_svm(tmp_path_factory):
    project = tmp_path_factory.mktemp("train_sklearn")
    write_params(project)
    write_blob_features(project)
    proc = run_stage(project, "train_sklearn", "svm")
    return project, proc


@pytest.mark.slow
def test_stage_writes_the_model_folder(trained_svm):
    project, proc = trained_svm
    model_dir = project / "models/svm"
    assert sorted(p.name for p in model_dir.iterdir()) == ["labels.json", "model.skops", "preprocessing.json"]
    folder = artifacts.read_model_folder(model_dir)
    assert folder.labels == GENRES and folder.model_file == model_dir / "model.skops"
    assert folder.preprocessing == {
        "family": "sklearn",
        "model": "svm",
        "sample_rate": 22050,
        "features": {"n_fft": 2048},
        "columns": COLUMNS,
    }
    assert "train accuracy 1.000, val accuracy 1.000" in proc.stderr
    assert sklearn_models.load_pipeline(model_dir / "model.skops").n_features_in_ == len(COLUMNS)


@pytest.mark.slow
def test_stage_rerun_is_byte_identical(trained_svm):
    project, _ = trained_svm
    before = {p.name: p.read_bytes() for p in (project / "models/svm").iterdir()}
    run_stage(project, "train_sklearn", "svm")
    after = {p.name: p.read_bytes() for p in (project / "models/svm").iterdir()}
    assert after == before


@pytest.mark.slow  # its process loads scikit-learn and librosa (seconds) before the stage refuses
def test_stage_with_bad_params_fails_clearly_and_writes_nothing(tmp_path):
    write_params(tmp_path, {"logreg": {"pca_components": 50}})
    write_blob_features(tmp_path)
    proc = run_stage(tmp_path, "train_sklearn", "logreg", check=False)
    assert proc.returncode == 1
    assert "logreg.pca_components = 50 is more than the 12 features" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "models").exists()
    proc = run_stage(tmp_path, "train_sklearn", "forest", check=False)
    assert proc.returncode == 2  # argparse's status for a bad argument
    choices = "'gnb', 'knn', 'logreg', 'svm', 'musicnn'"
    assert f"argument model: invalid choice: 'forest' (choose from {choices})" in proc.stderr


def test_musicnn_C_is_chosen_by_cross_validation_ties_to_the_first():
    x, y = blobs(10, n_features=6)
    best, score, table = sklearn_models.select_musicnn_C(x, y, None, [10.0, 1.0], folds=5, max_iter=2000, seed=0)
    assert (best, score) == (10.0, 1.0)  # both separate the blobs: the first candidate wins the tie
    assert table == [(10.0, 1.0), (1.0, 1.0)]


def write_blob_embeddings(project, splits: list[tuple[str, int, int]]) -> dict:
    """data/embeddings of blobs in the columns of musicnn's penultimate layer: (split, clips per genre,
    seed) each; the tables written, by split."""
    from genreclf.models import musicnn

    columns = musicnn.embedding_columns("penultimate")
    tables = {}
    for split, n, seed in splits:
        x, y = blobs(n, n_features=len(columns), seed=seed)
        tables[split] = feature_frame([f"{split}.{i:03d}" for i in range(len(y))], y.tolist(), GENRES, x, columns)
    artifacts.write_embeddings(
        project / artifacts.EMBEDDINGS_DIR,
        {split: table[artifacts.FEATURE_ID_COLUMNS] for split, table in tables.items()},
        (row for table in tables.values() for row in table[columns].to_numpy()),
        columns,
        16000,
        {"model": "models/musicnn_msd", "embedding": "penultimate", "patches_per_clip": None},
    )
    return tables


def test_the_musicnn_model_trains_and_predicts_on_the_embedding_tables_alone(tmp_path):
    """train_sklearn musicnn reads data/embeddings (no data/features here); the predictor reads them too."""
    from genreclf.models.predictors import load_predictor

    write_params(tmp_path, {"musicnn": {"C": [1.0, 10.0]}})
    tables = write_blob_embeddings(tmp_path, [("train", 8, 0), ("val", 3, 1), ("test", 3, 2)])
    call_stage(tmp_path, "train_sklearn", "musicnn")
    folder = artifacts.read_model_folder(tmp_path / "models/musicnn")
    assert folder.preprocessing["table"] == "embeddings" and folder.sample_rate == 16000
    assert folder.preprocessing["selected"] == {"C": 1.0, "cv_accuracy": 1.0, "cv_folds": 5}
    predictions = load_predictor(tmp_path / "models/musicnn").predict_split(tmp_path / "data", "test")
    assert predictions.track_ids == tables["test"]["track_id"].tolist() and predictions.clip_accuracy == 1.0


def test_a_model_is_trained_on_the_table_that_models_sklearn_names(tmp_path):
    """models.sklearn maps each model to its table: logreg set to the embeddings reads data/embeddings
    (no data/features here), and its model folder records the table for evaluate and predict."""
    from genreclf.models import musicnn

    write_params(tmp_path, {"models": {"sklearn": {"logreg": "embeddings"}}})
    write_blob_embeddings(tmp_path, [("train", 8, 0), ("val", 3, 1)])
    call_stage(tmp_path, "train_sklearn", "logreg")
    folder = artifacts.read_model_folder(tmp_path / "models/logreg")
    assert folder.preprocessing["table"] == "embeddings"
    assert folder.preprocessing["columns"] == musicnn.embedding_columns("penultimate")


@pytest.mark.parametrize("chunk_rows", [1, 7, 1024])
def test_logged_accuracy_is_the_same_in_chunks(monkeypatch, chunk_rows):
    (train_x, train_y), (test_x, test_y) = blobs(10, seed=0), blobs(20, seed=1)
    test_x = test_x + np.random.default_rng(5).normal(scale=12.0, size=test_x.shape)  # some clips wrong
    pipeline = sklearn_models.build_pipeline("gnb", None, **OPTIONS["gnb"]).fit(train_x, train_y)
    expected = np.mean(pipeline.predict(test_x) == test_y)
    assert 0.3 < expected < 1.0
    monkeypatch.setattr(sklearn_training, "ACCURACY_CHUNK_ROWS", chunk_rows)
    assert sklearn_training.accuracy(pipeline, test_x, test_y, 3) == expected


@pytest.mark.slow
@pytest.mark.parametrize("name", ["knn", "logreg", "svm"])
def test_stage_model_is_that_of_a_plain_fit(tmp_path, name):
    """The stage standardises the training matrix in place, and searches the SVM's settings fold by
    fold from a scratch file: the file is that of Pipeline.fit (for the SVM, with the C and gamma
    it chose)."""
    write_params(tmp_path, {"svm": {"C": [1, 10], "gamma": [0.3, "scale"]}})
    write_blob_features(tmp_path)
    run_stage(tmp_path, "train_sklearn", name)
    train = artifacts.read_feature_split(tmp_path / "data/features", "train", COLUMNS)
    pca, options = model_settings(load_config(tmp_path / "params.yaml").model_section(name))
    if name == "svm":
        chosen = artifacts.read_model_folder(tmp_path / "models/svm").preprocessing["selected"]
        options = {"kernel": options["kernel"], "seed": options["seed"], "C": chosen["C"], "gamma": chosen["gamma"]}
    plain = sklearn_models.build_pipeline(name, pca, **options).fit(train.features, train.labels)
    assert (tmp_path / "models" / name / "model.skops").read_bytes() == sklearn_models.model_bytes(plain)
