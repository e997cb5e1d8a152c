"""Spectrogram ops (against librosa) and the tf.data pipelines on tiny synthetic shards."""

from __future__ import annotations

import json

import librosa
import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from genreclf.artifacts import read_dataset_info, write_dataset_info
from genreclf.errors import DataError
from genreclf.features import spectrograms
from genreclf.models import tfdata
from tests.support.keras_fixture import LABELS, SAMPLE_RATE, genre_clip, write_tiny_shards


def librosa_log_mel(audio, sr, n_fft, hop, n_mels):
    mel = librosa.feature.melspectrogram(
        y=audio.astype(np.float64),
        sr=sr,
        n_fft=n_fft,
        hop_length=hop,
        n_mels=n_mels,
        center=True,
        pad_mode="constant",
        power=2.0,
    )
    return librosa.power_to_db(mel, ref=np.max, top_db=80.0).T


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    shard_dir = tmp_path_factory.mktemp("shards")
    return shard_dir, write_tiny_shards(shard_dir)


WAVEFORM = {"input": "waveform_windows", "window_size": 256, "sample_rate": SAMPLE_RATE}
SPECTROGRAM = {"sample_rate": SAMPLE_RATE, "n_fft": 256, "hop_length": 64, "image_size": 32}
AUDIO_CLIP = {**SPECTROGRAM, "input": "audio_clip", "n_mels": 16, "clip_samples": 4000}
AUDIO_SEGMENTS = {**SPECTROGRAM, "input": "audio_segments", "n_mels": 32, "segments_per_clip": 3}
AUDIO_CLIP_SAMPLES = 4000
SEGMENT_SAMPLES = (32 - 1) * 64 + 256  # image_size frames of hop 64 and n_fft 256


# ---- spectrograms -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "sr, n_fft, hop, n_mels, seconds",
    [(4000, 256, 64, 16, 0.9), (22050, 2048, 512, 128, 1.0), (22050, 1024, 256, 64, 0.37)],
)
def test_log_mel_matches_librosa_on_a_tone(sr, n_fft, hop, n_mels, seconds):
    t = np.arange(int(sr * seconds)) / sr
    audio = (0.5 * np.sin(2 * np.pi * 440.0 * t) + 0.1 * np.sin(2 * np.pi * 1234.0 * t)).astype(np.float32)
    ours = spectrograms.log_mel_spectrogram(audio, sr, n_fft, hop, n_mels).numpy()
    expected = librosa_log_mel(audio, sr, n_fft, hop, n_mels)
    assert ours.shape == expected.shape == (spectrograms.num_frames(len(audio), hop), n_mels)
    np.testing.assert_allclose(ours, expected, atol=0.05)
    # the loudest band is the one holding 440 Hz
    centres = librosa.mel_frequencies(n_mels + 2, fmax=sr / 2)[1:-1]
    assert abs(centres[ours.mean(axis=0).argmax()] - 440.0) < 0.2 * 440.0


def test_log_mel_matches_librosa_on_a_real_clip(gtzan_mini):
    audio, sr = sf.read(gtzan_mini / "blues" / "blues.00000.wav", dtype="int16", frames=3 * 22050)
    ours = spectrograms.log_mel_spectrogram(spectrograms.audio_to_float(audio), sr, 2048, 512, 128).numpy()
    expected = librosa_log_mel(audio / 32768.0, sr, 2048, 512, 128)
    np.testing.assert_allclose(ours, expected, atol=0.05)
    assert ours.max() == 0.0 and ours.min() >= -80.0


def test_mel_filterbank_is_librosa():
    np.testing.assert_allclose(
        spectrograms.mel_filterbank(22050, 2048, 128),
        librosa.filters.mel(sr=22050, n_fft=2048, n_mels=128).T,
        rtol=1e-6,
    )


def test_spectrogram_image_puts_low_bands_at_the_bottom():
    log_mel = tf.constant(np.arange(12, dtype=np.float32).reshape(3, 4))  # 3 frames x 4 bands
    image = spectrograms.spectrogram_image(log_mel).numpy()[..., 0]
    assert image.shape == (4, 3)
    np.testing.assert_array_equal(image[-1], [0, 4, 8])  # band 0 on the last row
    np.testing.assert_array_equal(image[0], [3, 7, 11])


@pytest.mark.parametrize("length, window", [(1000, 256), (1024, 256), (255, 256), (7, 1)])
def test_waveform_windows_are_consecutive(length, window):
    audio = np.arange(length, dtype=np.int16)
    windows = spectrograms.waveform_windows(audio, window).numpy()
    assert windows.shape == (length // window, window, 1)
    np.testing.assert_array_equal(windows.reshape(-1) * 32768.0, audio[: (length // window) * window])


def test_random_window_is_seeded_and_inside_the_clip():
    audio = np.arange(5000, dtype=np.int16)

    def start(seed):
        window = spectrograms.random_waveform_window(audio, 300, tf.constant(seed, tf.int64)).numpy()
        first = int(round(window[0, 0] * 32768))
        np.testing.assert_array_equal(np.round(window[:, 0] * 32768), np.arange(first, first + 300))
        return first

    starts = [start([s, 7]) for s in range(20)]
    assert all(0 <= s <= 4700 for s in starts)
    assert start([3, 7]) == starts[3]
    assert len(set(starts)) > 10


@pytest.mark.parametrize(
    "frames, size, count, expected",
    [(100, 32, 3, [0, 34, 68]), (32, 32, 2, [0, 0]), (50, 10, 1, [0]), (41, 32, 4, [0, 3, 6, 9])],
)
def test_segment_starts_are_evenly_spaced(frames, size, count, expected):
    assert spectrograms.segment_starts(tf.constant(frames), size, count).numpy().tolist() == expected


def test_mel_image_and_mobilenet_pixels_ranges():
    audio = genre_clip(2, 3500, np.random.default_rng(2))
    image = spectrograms.mel_image(audio, SAMPLE_RATE, 256, 64, 16, 32)
    assert image.shape == (32, 32, 1)
    assert 0.0 <= float(tf.reduce_min(image)) and float(tf.reduce_max(image)) <= 1.0
    pixels = spectrograms.mobilenet_pixels(image).numpy()
    assert pixels.shape == (32, 32, 3)
    np.testing.assert_allclose(pixels[..., 0], image.numpy()[..., 0] * 2 - 1, atol=1e-5)
    np.testing.assert_array_equal(pixels[..., 0], pixels[..., 2])


# ---- shards and pipelines ------------------------------------------------------------------


def test_read_dataset_info_and_errors(shards, tmp_path):
    shard_dir, info = shards
    assert read_dataset_info(shard_dir) == info
    with pytest.raises(DataError, match="dataset_info.json does not exist") as missing:
        read_dataset_info(tmp_path)
    assert missing.value.path == str(tmp_path / "dataset_info.json") and "dvc repro" not in str(missing.value)
    (tmp_path / "dataset_info.json").write_text(json.dumps({"sample_rate": 4000}))
    with pytest.raises(DataError, match="dataset_info.json: expected"):
        read_dataset_info(tmp_path)
    write_dataset_info(tmp_path, 4000, ["a", "b"], {"train": {"clips": 2, "min_samples": 9, "max_samples": "10"}})
    with pytest.raises(DataError, match="split 'train' needs integer clips, min_samples, max_samples"):
        read_dataset_info(tmp_path)
    with pytest.raises(DataError, match="no 'train-\\*.tfrecord' shards") as no_shards:
        tfdata.shard_files(tmp_path, "train")
    assert no_shards.value.path == str(tmp_path) and "dvc repro" not in str(no_shards.value)


def test_read_clips_gives_every_clip_once(shards):
    shard_dir, info = shards
    clips = list(tfdata.read_clips(shard_dir, "train").as_numpy_iterator())
    assert len(clips) == info["splits"]["train"]["clips"]
    assert len({c["track_id"] for c in clips}) == len(clips)
    for clip in clips:
        assert clip["audio"].dtype == np.int16
        assert LABELS[clip["label"]] in clip["track_id"].decode()


@pytest.mark.parametrize(
    "preprocessing, unit_shape, units_per_clip",
    [
        (WAVEFORM, (256, 1), 1),
        (AUDIO_CLIP, (AUDIO_CLIP_SAMPLES,), 1),
        (AUDIO_SEGMENTS, (SEGMENT_SAMPLES,), 3),
    ],
)
def test_training_dataset_is_seeded_and_reshuffled(shards, preprocessing, unit_shape, units_per_clip):
    shard_dir, info = shards
    clips = info["splits"]["train"]["clips"]

    def epochs(seed, cache):
        dataset = tfdata.training_dataset(shard_dir, "train", preprocessing, 3, 5, seed, clips, cache=cache)
        return [[(x.numpy(), y.numpy()) for x, y in dataset] for _ in range(2)]

    first, again, other = epochs(0, True), epochs(0, False), epochs(1, True)
    batches = first[0]
    assert clips == 18 and len(batches) == {1: 4, 3: 11}[units_per_clip]  # 18 or 54 units in batches of 5
    assert batches[0][0].shape == (5, *unit_shape) and batches[0][1].shape == (5, 3)
    labels = np.concatenate([y for _, y in batches])
    assert labels.shape == (clips * units_per_clip, 3) and set(labels.sum(axis=1)) == {1.0}
    assert np.bincount(labels.argmax(axis=1)).tolist() == [clips * units_per_clip // 3] * 3

    def same(a, b):
        return all(np.array_equal(x1, x2) and np.array_equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))

    assert same(first[0], epochs(0, True)[0]) and same(first[1], epochs(0, True)[1])  # seeded
    assert not same(first[0], first[1])  # new order each epoch
    assert not same(first[0], other[0])
    # cache or not (it depends on the machine's memory): the same batches, epoch after epoch
    assert same(first[0], again[0]) and same(first[1], again[1])


@pytest.mark.parametrize("preprocessing", [WAVEFORM, AUDIO_CLIP, AUDIO_SEGMENTS])
def test_evaluation_dataset_units_belong_to_their_clip(shards, preprocessing):
    shard_dir, info = shards
    clips = {c["track_id"]: c for c in tfdata.read_clips(shard_dir, "val").as_numpy_iterator()}
    units, index, labels, track_ids = (
        np.concatenate(parts)
        for parts in zip(
            *[[t.numpy() for t in batch] for batch in tfdata.evaluation_dataset(shard_dir, "val", preprocessing, 7)]
        )
    )
    assert index.max() + 1 == len(clips) == info["splits"]["val"]["clips"]
    assert np.all(np.diff(index) >= 0)  # units of a clip are consecutive
    for i in range(len(clips)):
        clip = clips[track_ids[index == i][0]]
        expected = tfdata.units_of_clip(clip["audio"], preprocessing).numpy()
        np.testing.assert_allclose(units[index == i], expected, atol=1e-6)
        assert set(labels[index == i]) == {clip["label"]}
        if preprocessing is WAVEFORM:
            assert len(expected) == len(clip["audio"]) // 256
    validation = [
        (x.numpy(), y.numpy()) for x, y in tfdata.validation_dataset(shard_dir, "val", preprocessing, 3, 7, cache=True)
    ]
    np.testing.assert_allclose(np.concatenate([x for x, _ in validation]), units, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([y for _, y in validation]).argmax(axis=1), labels)


@pytest.mark.parametrize(
    ("count", "limit", "expected"),
    [
        (66, 8, [4, 12, 20, 28, 37, 45, 53, 61]),  # a 30 s clip's 10000-sample windows at 22050 Hz
        (8, 8, list(range(8))),
        (3, 8, [0, 1, 2]),  # fewer units than the limit: all of them
        (10, 1, [5]),
        (10, 2, [2, 7]),
    ],
)
def test_spaced_units_are_the_middles_of_equal_stretches(count, limit, expected):
    units = tf.reshape(tf.range(count * 2), [count, 2])
    picked = tfdata.spaced_units(units, limit).numpy()
    np.testing.assert_array_equal(picked[:, 0] // 2, expected)


def test_validation_on_spaced_windows_keeps_those_of_every_clip(shards):
    shard_dir, info = shards
    every = [(x.numpy(), y.numpy()) for x, y in tfdata.validation_dataset(shard_dir, "val", WAVEFORM, 3, 7)]
    spaced = [
        (x.numpy(), y.numpy()) for x, y in tfdata.validation_dataset(shard_dir, "val", WAVEFORM, 3, 7, units_per_clip=2)
    ]
    units, labels = (np.concatenate(parts) for parts in zip(*spaced))
    assert len(units) == 2 * info["splits"]["val"]["clips"]  # every clip has >= 2 windows
    expected = []
    for clip in tfdata.read_clips(shard_dir, "val").as_numpy_iterator():
        windows = tfdata.units_of_clip(clip["audio"], WAVEFORM).numpy()
        expected.extend(windows[[len(windows) // 4, 3 * len(windows) // 4]])
    np.testing.assert_allclose(units, np.stack(expected), atol=1e-6)
    assert set(np.concatenate([y for _, y in every]).argmax(axis=1)) == set(labels.argmax(axis=1))


@pytest.mark.parametrize("preprocessing", [WAVEFORM, AUDIO_CLIP, AUDIO_SEGMENTS])
def test_bytes_per_clip_are_those_of_the_cached_features(preprocessing):
    audio = genre_clip(0, 3000, np.random.default_rng(3))
    cached = tfdata.clip_features(tf.constant(audio), preprocessing).numpy()  # what cache() keeps
    assert tfdata.feature_bytes_per_clip(preprocessing, len(audio)) == cached.nbytes


def test_minimum_clip_is_the_shortest_that_gives_a_unit():
    shortest = tfdata.min_clip_samples(WAVEFORM)
    assert tfdata.units_of_clip(np.zeros(shortest - 1, np.int16), WAVEFORM).shape[0] == 0
    assert tfdata.units_of_clip(np.zeros(shortest, np.int16), WAVEFORM).shape == (1, 256, 1)
    # a segment is 32 frames wide: librosa's centred STFT gives 32 frames from the shortest clip, 31 from less
    shortest = tfdata.min_clip_samples(AUDIO_SEGMENTS)
    frames = [
        librosa.feature.melspectrogram(y=np.zeros(n), sr=SAMPLE_RATE, n_fft=256, hop_length=64, n_mels=32).shape[1]
        for n in (shortest - 1, shortest)
    ]
    assert frames == [31, 32]
    assert tfdata.units_of_clip(np.zeros(shortest, np.int16), AUDIO_SEGMENTS).shape == (3, SEGMENT_SAMPLES)


def test_cache_decision_and_memory():
    assert tfdata.should_cache(100, 200) and not tfdata.should_cache(101, 200)
    assert not tfdata.should_cache(1, None)
    assert tfdata.available_memory_bytes() > 0
    gib = 2**30  # the fixed limit applies whatever the machine has
    assert tfdata.should_cache(gib, 100 * gib, limit_bytes=gib) and not tfdata.should_cache(
        gib + 1, 100 * gib, limit_bytes=gib
    )


@pytest.mark.parametrize(("value", "limit"), [(None, tfdata.CACHE_LIMIT_MIB * 2**20), ("0", 0), ("3", 3 * 2**20)])
def test_cache_limit_comes_from_the_environment_variable(value, limit):
    environ = {} if value is None else {tfdata.CACHE_LIMIT_VARIABLE: value}
    assert tfdata.cache_limit_bytes(environ) == limit


@pytest.mark.parametrize("value", ["-1", "1.5", "lots", ""])
def test_a_bad_cache_limit_is_refused_naming_the_variable(value):
    with pytest.raises(ValueError, match=f"{tfdata.CACHE_LIMIT_VARIABLE}=.*whole number of MiB"):
        tfdata.cache_limit_bytes({tfdata.CACHE_LIMIT_VARIABLE: value})


# ---- audio shipped by tf.data, spectrograms in the model (SpectrogramLayer) ------------------


@pytest.mark.parametrize("length, expected", [(5, [0, 1, 2, 3]), (3, [0, 1, 2, 0]), (4, [0, 1, 2, 3])])
def test_fixed_length_crops_or_pads_at_the_end(length, expected):
    fixed = spectrograms.fixed_length(np.arange(length, dtype=np.int16), 4).numpy()
    assert fixed.dtype == np.int16 and fixed.tolist() == expected


def test_segment_audio_spans_the_frames_of_the_clip_spectrogram():
    # the segments' frames are exactly the clip's centred-STFT frames; only the dB reference differs
    audio = genre_clip(1, 4000, np.random.default_rng(1))
    segments = spectrograms.segment_audio(audio, 256, 64, 32, 3)
    assert segments.dtype == tf.int16 and segments.shape == (3, SEGMENT_SAMPLES)
    images = spectrograms.segment_images(segments, SAMPLE_RATE, 256, 64, 32).numpy()[..., 0]
    whole = spectrograms.log_mel_spectrogram(spectrograms.audio_to_float(audio), SAMPLE_RATE, 256, 64, 32).numpy()
    starts = spectrograms.segment_starts(tf.constant(len(whole)), 32, 3).numpy()
    assert images.shape == (3, 32, 32)
    for image, begin in zip(images, starts):
        frames = whole[begin : begin + 32]
        decibels = np.maximum(frames - frames.max(), -80.0)  # relative to the segment's maximum
        expected = spectrograms.spectrogram_image(spectrograms.scale_decibels(decibels)).numpy()[..., 0]
        np.testing.assert_allclose(image, expected, atol=2e-5)


def test_segment_images_match_librosa_without_centring():
    audio = genre_clip(2, SEGMENT_SAMPLES, np.random.default_rng(4))
    ours = spectrograms.segment_images(audio, SAMPLE_RATE, 256, 64, 32).numpy()[..., 0]
    mel = librosa.feature.melspectrogram(
        y=audio / 32768.0, sr=SAMPLE_RATE, n_fft=256, hop_length=64, n_mels=32, center=False, power=2.0
    )
    expected = (librosa.power_to_db(mel, ref=np.max, top_db=80.0)[::-1] + 80.0) / 80.0
    assert ours.shape == expected.shape == (32, 32)
    np.testing.assert_allclose(ours, expected, atol=0.05 / 80)


@pytest.mark.parametrize("preprocessing", [AUDIO_CLIP, AUDIO_SEGMENTS])
def test_spectrogram_layer_is_the_tf_data_side_ops_on_the_same_audio(preprocessing):
    from genreclf.models import training

    audio = genre_clip(0, 3700, np.random.default_rng(5))
    units = tfdata.units_of_clip(audio, preprocessing)  # what tf.data ships: int16
    assert units.dtype == tf.int16
    layer = training.front_end_for(preprocessing).layer
    out = layer(units).numpy()
    if preprocessing is AUDIO_CLIP:  # the clip's image, computed on the padded clip
        fixed = spectrograms.fixed_length(audio, AUDIO_CLIP_SAMPLES)
        expected = spectrograms.mobilenet_pixels(spectrograms.mel_image(fixed, SAMPLE_RATE, 256, 64, 16, 32))
        expected = expected.numpy()[np.newaxis]
        assert out.shape == (1, 32, 32, 3)
    else:
        expected = np.stack([spectrograms.segment_images(u, SAMPLE_RATE, 256, 64, 32).numpy() for u in units])
        assert out.shape == (3, 32, 32, 1)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert layer.compute_dtype == "float32"


@pytest.mark.parametrize("preprocessing", [AUDIO_CLIP, AUDIO_SEGMENTS])
def test_training_and_evaluation_ship_the_same_units(shards, preprocessing):
    # training (shuffled, cached or not), evaluation and units_of_clip give the same units of each clip
    shard_dir, info = shards
    clips = info["splits"]["train"]["clips"]

    def rows(x):
        return sorted(map(bytes, np.asarray(x).reshape(len(x), -1).view(np.uint8)))

    expected = rows(
        np.concatenate(
            [
                tfdata.units_of_clip(c["audio"], preprocessing)
                for c in tfdata.read_clips(shard_dir, "train").as_numpy_iterator()
            ]
        )
    )
    for cache in (False, True):
        batches = tfdata.training_dataset(shard_dir, "train", preprocessing, 3, 5, 0, clips, cache=cache)
        assert rows(np.concatenate([x.numpy() for x, _ in batches])) == expected
    evaluation = tfdata.evaluation_dataset(shard_dir, "train", preprocessing, 7)
    assert rows(np.concatenate([batch[0].numpy() for batch in evaluation])) == expected
