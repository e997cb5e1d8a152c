"""The three model builders: architecture of each study, output layer, losses, weights files, saving."""

from __future__ import annotations

import json
import zipfile

import keras
import numpy as np
import pytest
import yaml

from genreclf.artifacts import write_model_folder
from genreclf.errors import DataError
from genreclf.features import spectrograms
from genreclf.models import keras_models, predictors, tfdata, training


@pytest.fixture(scope="module")
def params(repo_root):
    return yaml.safe_load((repo_root / "params.yaml").read_text())


@pytest.fixture(scope="module")
def base_weights(tmp_path_factory):
    """A MobileNetV2 base (alpha 0.35, 32x32) with seeded random weights, saved once: (file, its weights)."""
    keras.utils.set_random_seed(3)
    source = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None, pooling="avg"
    )
    path = tmp_path_factory.mktemp("mobilenet") / "base.weights.h5"
    source.save_weights(path)
    return path, [variable.numpy() for variable in source.weights]


def layer_summary(model):
    return [(type(layer).__name__, layer.output.shape[1:]) for layer in model.layers[1:]]


def test_cnn1d_is_the_fma_study_network(params):
    sec = params["cnn1d"]
    window = 1000  # small window: same layers as window_size 10000
    model = keras_models.build_cnn1d(
        window, 8, sec["conv_filters"], sec["kernel_size"], sec["pool_size"], sec["dense_units"], sec["dropout"]
    )
    assert layer_summary(model) == [
        ("Conv1D", (998, 128)),
        ("MaxPooling1D", (499, 128)),
        ("Conv1D", (497, 64)),
        ("MaxPooling1D", (248, 64)),
        ("Flatten", (248 * 64,)),
        ("Dense", (100,)),
        ("Dropout", (100,)),
        ("Dense", (20,)),
        ("Dropout", (20,)),
        ("Dense", (8,)),
    ]
    assert [layer.activation.__name__ for layer in model.layers if hasattr(layer, "activation")] == [
        "relu",
        "relu",
        "relu",
        "relu",
        "softmax",
    ]
    assert {layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)} == {0.5}
    params_count = (3 * 128 + 128) + (3 * 128 * 64 + 64) + (248 * 64 * 100 + 100) + (100 * 20 + 20) + (20 * 8 + 8)
    assert model.count_params() == params_count
    probs = model.predict_on_batch(np.random.default_rng(0).normal(size=(4, window, 1)).astype("float32"))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("loss", ["softmax", "sigmoid"])
def test_cnn2d_is_the_gtzan_study_network(params, loss):
    sec = params["cnn2d"]
    model = keras_models.build_cnn2d(
        sec["image_size"], 10, sec["filters"], sec["pools"], sec["dense_units"], sec["dropout"], loss
    )
    assert layer_summary(model) == [
        ("Conv2D", (256, 256, 64)),
        ("MaxPooling2D", (128, 128, 64)),
        ("Conv2D", (128, 128, 128)),
        ("MaxPooling2D", (32, 32, 128)),
        ("Conv2D", (32, 32, 256)),
        ("MaxPooling2D", (8, 8, 256)),
        ("Conv2D", (8, 8, 512)),
        ("MaxPooling2D", (2, 2, 512)),
        ("Flatten", (2048,)),
        ("Dense", (128,)),
        ("Dropout", (128,)),
        ("Dense", (10,)),
    ]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" and c.activation.__name__ == "elu" for c in convs)
    assert model.get_layer("dense").activation.__name__ == "elu"
    assert model.get_layer("genre").activation.__name__ == loss


def test_cnn2d_pools_with_same_padding_on_odd_sizes():
    model = keras_models.build_cnn2d(30, 3, [2, 2, 2, 2], [2, 4, 4, 4], 4, 0.5)
    assert model.get_layer("flatten").output.shape[1:] == (1 * 1 * 2,)  # 30 -> 15 -> 4 -> 1 -> 1


@pytest.mark.parametrize(
    "loss, expected", [("softmax", keras.losses.CategoricalCrossentropy), ("sigmoid", keras.losses.BinaryCrossentropy)]
)
def test_compile_losses_and_accuracy(loss, expected):
    model = keras_models.build_cnn2d(16, 3, [2, 2], [2, 2], 4, 0.0, loss)
    keras_models.compile_model(model, 0.01, loss)
    assert isinstance(model.loss, expected)
    x = np.random.default_rng(0).random((6, 16, 16, 1)).astype("float32")
    y = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2]]
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    predicted = model.predict_on_batch(x).argmax(axis=1)
    assert logs["accuracy"] == pytest.approx(np.mean(predicted == y.argmax(axis=1)))
    with pytest.raises(ValueError, match="output_activation"):
        keras_models.compile_model(model, 0.01, "relu")


def test_mobilenet_without_weights_trains_the_whole_network():
    model = keras_models.build_mobilenet(32, 4, weights=None, alpha=0.35, dense_units=8, dropout=0.25)
    base = keras_models.mobilenet_base(model)
    assert base.trainable and all(layer.trainable for layer in base.layers)
    norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.momentum == keras_models.SCRATCH_BATCHNORM_MOMENTUM for layer in norms)
    assert len(model.trainable_weights) == len(base.trainable_weights) + 4
    assert model.get_layer("head_dropout").rate == 0.25
    assert model.output.shape[1:] == (4,)
    probs = model.predict_on_batch(np.zeros((2, 32, 32, 3), "float32"))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_mobilenet_loads_a_local_weights_file(base_weights):
    path, saved_weights = base_weights
    keras.utils.set_random_seed(4)  # another seed: the base's own initialisation differs
    model = keras_models.build_mobilenet(32, 3, weights=str(path), alpha=0.35, dense_units=8)
    base = keras_models.mobilenet_base(model)
    for loaded, saved in zip(base.weights, saved_weights, strict=True):
        np.testing.assert_array_equal(loaded.numpy(), saved)


def test_mobilenet_with_weights_has_a_frozen_base_and_a_new_head(base_weights):
    path, _ = base_weights
    model = keras_models.build_mobilenet(32, 4, weights=str(path), alpha=0.35, dense_units=8)
    base = keras_models.mobilenet_base(model)
    assert not base.trainable and not any(layer.trainable for layer in base.layers)
    assert [w.path for w in model.trainable_weights] == [
        "head_dense/kernel",
        "head_dense/bias",
        "genre/kernel",
        "genre/bias",
    ]


@pytest.mark.parametrize("count", [1, 10])
def test_unfreeze_top_layers(count, base_weights):
    path, _ = base_weights
    model = keras_models.build_mobilenet(32, 3, weights=str(path), alpha=0.35, dense_units=8)
    keras_models.unfreeze_top_layers(model, count)
    base = keras_models.mobilenet_base(model)
    assert [layer.trainable for layer in base.layers] == [False] * (len(base.layers) - count) + [True] * count
    weighted_top = [layer for layer in base.layers[-count:] if layer.weights]
    assert len(model.trainable_weights) == 4 + sum(len(layer.trainable_weights) for layer in weighted_top)


def test_mixed_precision_keeps_the_output_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        models = [
            keras_models.build_cnn1d(64, 3, [4], 3, 2, [8], 0.5),
            keras_models.build_cnn2d(16, 3, [2, 2], [2, 2], 4, 0.5, "sigmoid"),
        ]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for model in models:
        assert model.layers[1].compute_dtype == "float16"
        assert model.get_layer("genre").compute_dtype == "float32"
        assert model.output.dtype == "float32"


def test_save_model_gives_the_same_bytes_and_loads_back(tmp_path):
    def build_and_save(path):
        keras.utils.set_random_seed(0)
        model = keras_models.build_cnn2d(16, 3, [2, 2], [2, 2], 4, 0.5)
        keras_models.compile_model(model, 0.01)
        training.save_model(model, path)
        return model

    model = build_and_save(tmp_path / "a.keras")
    build_and_save(tmp_path / "b.keras")
    a, b = (tmp_path / "a.keras").read_bytes(), (tmp_path / "b.keras").read_bytes()
    assert a == b
    members = training.keras_zip_members(tmp_path / "a.keras")
    assert sorted(members) == ["config.json", "metadata.json", "model.weights.h5"]
    assert "date_saved" not in json.loads(members["metadata.json"])
    assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in zipfile.ZipFile(tmp_path / "a.keras").infolist())
    loaded = keras.models.load_model(tmp_path / "a.keras")
    assert not loaded.compiled and "optimizer" not in members["model.weights.h5"].decode("latin-1")
    x = np.random.default_rng(0).random((2, 16, 16, 1)).astype("float32")
    np.testing.assert_array_equal(loaded.predict_on_batch(x), model.predict_on_batch(x))


def test_renumber_shared_objects_keeps_the_sharing():
    config = {
        "a": {"dtype": {"shared_object_id": 140001, "x": 1}},
        "layers": [{"shared_object_id": 99}, {"shared_object_id": 140001}, {"other": 140001}],
    }
    assert training.renumber_shared_objects(config) == {
        "a": {"dtype": {"shared_object_id": 1, "x": 1}},
        "layers": [{"shared_object_id": 2}, {"shared_object_id": 1}, {"other": 140001}],
    }


# ---- the spectrogram layer inside a model, and models saved without it -----------------------

SPECTROGRAM_SETTINGS = {
    "mobilenet": dict(
        weights=None, image_size=32, n_mels=16, n_fft=256, hop_length=64, alpha=0.35, dense_units=4, dropout=0.5
    ),
    "cnn2d": dict(
        image_size=16,
        n_fft=128,
        hop_length=32,
        segments_per_clip=2,
        filters=[2, 2],
        pools=[2, 2],
        dense_units=4,
        dropout=0.5,
        loss="softmax",
    ),
}


def saved_audio_model(model_name, path):
    """A seeded model of an audio input with its spectrogram layer, saved by training.save_model."""
    settings = SPECTROGRAM_SETTINGS[model_name]
    prep = training.preprocessing_for(model_name, 4000, ["a", "b", "c"], settings, clip_samples=3000)
    keras.backend.clear_session()  # MobileNetV2's auto-named inner layers count what the process built before
    keras.utils.set_random_seed(0)
    model = training.build_model(model_name, settings, 3, prep)
    training.save_model(model, path)
    return model, prep


@pytest.mark.parametrize(
    "model_name, kind",
    # two MobileNetV2s: 15 s, in the slow tier
    [pytest.param("mobilenet", "audio_clip", marks=pytest.mark.slow), ("cnn2d", "audio_segments")],
)
def test_a_saved_model_with_the_spectrogram_layer_loads_and_predicts_the_same(tmp_path, model_name, kind):
    model, prep = saved_audio_model(model_name, tmp_path / "a.keras")
    saved_audio_model(model_name, tmp_path / "b.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    assert prep["input"] == kind and model.input.dtype == "int16"
    loaded = keras.saving.load_model(tmp_path / "a.keras")  # no custom_objects: the layer is registered
    assert isinstance(loaded.get_layer("spectrogram"), spectrograms.SpectrogramLayer)
    audio = (np.random.default_rng(1).standard_normal(3500) * 3000).astype(np.int16)
    units = tfdata.units_of_clip(audio, prep).numpy()
    assert units.dtype == np.int16 and len(units) == (1 if kind == "audio_clip" else 2)
    np.testing.assert_array_equal(loaded.predict_on_batch(units), model.predict_on_batch(units))


def test_a_model_folder_of_an_unknown_input_is_refused_clearly(tmp_path):
    """A preprocessing.json whose "input" this project does not make (mel_segments: images computed
    in tf.data, a design the project no longer has) is one clear error, before the model loads."""
    keras.utils.set_random_seed(0)
    model = keras_models.build_cnn2d(16, 3, [2, 2], [2, 2], 4, 0.5)
    prep = {"family": "keras", "model": "cnn2d", "input": "mel_segments", "sample_rate": 4000, "image_size": 16}
    write_model_folder(tmp_path / "old", prep, ["a", "b", "c"], lambda path: training.save_model(model, path))
    with pytest.raises(DataError, match=r"old/preprocessing.json: not the preprocessing of a Keras model"):
        predictors.load_predictor(tmp_path / "old")
