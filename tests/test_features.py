"""The FMA feature set (genreclf.features) and the features stage.

Synthetic signals with known answers (sines, noise, silence), the fast paths checked
against librosa's own functions, the column names, determinism, THE FEATURE CHECK
against the public GTZAN feature table on the 100 real clips of ../shared/data/gtzan_mini,
and the stage run as a subprocess in a scratch project.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import pytest
import scipy.stats
import soundfile as sf
import yaml

from genreclf import artifacts
from genreclf.artifacts import read_feature_info, read_feature_split, write_split
from genreclf.errors import DataError, ParamError
from genreclf.features import fma_features as features
from genreclf.io import write_csv
from stages.config import load_config
from tests.support.helpers import make_project, run_stage, tone
from tests.support.plain_librosa import plain_features

SR = 22050
PARAMS = features.DEFAULT_PARAMS
COLUMN_INDEX = {name: i for i, name in enumerate(features.FEATURE_COLUMNS)}

# FMA's feature sizes; its columns are the sorted (feature, statistic, number) triples.
FMA_SIZES = {
    "chroma_stft": 12,
    "chroma_cqt": 12,
    "chroma_cens": 12,
    "tonnetz": 6,
    "mfcc": 20,
    "rmse": 1,
    "zcr": 1,
    "spectral_centroid": 1,
    "spectral_bandwidth": 1,
    "spectral_contrast": 7,
    "spectral_rolloff": 1,
}
FMA_MOMENTS = ("mean", "std", "skew", "kurtosis", "median", "min", "max")


def noise(seconds: float = 5.0, scale: float = 0.1, seed: int = 0) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def named(vector: np.ndarray) -> dict[str, float]:
    return dict(zip(features.FEATURE_COLUMNS, vector))


def chroma_means(values: dict[str, float], name: str) -> np.ndarray:
    return np.array([values[f"{name}_mean_{i:02d}"] for i in range(1, 13)])


def read_clip(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float32")[0]


# ---- columns and params


def test_columns_are_fma_sorted_triples():
    expected = [
        "_".join(triple)
        for triple in sorted(
            (name, moment, f"{i + 1:02d}")
            for name, size in FMA_SIZES.items()
            for moment in FMA_MOMENTS
            for i in range(size)
        )
    ]
    assert list(features.FEATURE_COLUMNS) == expected
    assert len(features.FEATURE_COLUMNS) == len(set(features.FEATURE_COLUMNS)) == 518
    assert features.FEATURE_COLUMNS[0] == "chroma_cens_kurtosis_01"
    assert features.FEATURE_COLUMNS[-1] == "zcr_std_01"
    for name in ("mfcc_mean_01", "rmse_std_01", "spectral_contrast_kurtosis_07", "tonnetz_skew_06"):
        assert name in COLUMN_INDEX
    assert "spectral_contrast_kurtosis_08" not in COLUMN_INDEX


@pytest.mark.parametrize(
    "changes, n_columns",
    [({}, 518), ({"n_mfcc": 13}, 518 - 7 * 7), ({"n_bands": 4}, 518 - 2 * 7), ({"n_chroma": 24}, 518 + 3 * 12 * 7)],
)
def test_columns_follow_params(changes, n_columns):
    params = features.FeatureParams(**changes)
    assert len(features.feature_columns(params)) == n_columns
    vector = features.clip_features(tone(2.0, SR, 440.0, dtype=np.float32), SR, params)
    assert vector.shape == (n_columns,) and np.isfinite(vector).all()


def test_params_yaml_section_gives_the_fma_defaults(repo_root):
    section = yaml.safe_load((repo_root / "params.yaml").read_text())["features"]
    assert features.recipe_params(section) == features.DEFAULT_PARAMS
    assert features.params_from_dict(features.params_to_dict(PARAMS)) == PARAMS
    # as the stage builds them from the validated section (source, families and max_missing aside)
    validated = load_config(repo_root / "params.yaml").features.model_dump()
    assert features.recipe_params(validated) == features.DEFAULT_PARAMS


@pytest.mark.parametrize("key", ["n_fft", "hop_length", "n_mfcc", "n_chroma", "n_octaves", "n_bands"])
def test_the_library_and_the_config_take_the_same_smallest_values(repo_root, tmp_path, key):
    """Both check feature settings (the config params.yaml's, the library a model's): the same limits."""
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    smallest = {"n_fft": 16}.get(key, 1)
    for value, ok in ((smallest, True), (smallest - 1, False)):
        params["features"] = {**params["features"], "hop_length": 16, key: value}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        for check in (
            lambda: load_config(tmp_path / "params.yaml"),
            lambda: features.recipe_params(params["features"]),
        ):
            if ok:
                check()
            else:
                with pytest.raises(ParamError, match=key):
                    check()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"n_fft": None}, "feature settings: n_fft = None; expected an integer >= 16"),
        ({"n_fft": "2048"}, "feature settings: n_fft = '2048'; expected an integer >= 16"),
        ({"hop_length": True}, "feature settings: hop_length = True; expected an integer >= 1"),
        ({"n_mfcc": 0}, "feature settings: n_mfcc = 0; expected an integer >= 1"),
        ({"n_bands": -1}, "feature settings: n_bands = -1"),
        ({"n_octaves": 7.0}, "feature settings: n_octaves = 7.0"),
        ({"hop_length": 4096}, "hop_length = 4096 is more than n_fft = 2048"),
        ({"n_mfcc": 200}, "n_mfcc = 200; expected at most the 128 mel bands"),
        ({"n_mel": 128}, "feature settings: unknown keys ['n_mel']; expected exactly the keys ['n_fft', "),
    ],
)
def test_bad_params_are_refused(changes, message):
    """The library's own check of feature settings (a model's preprocessing.json); params.yaml's
    features section is checked by stages/config.py (tests/test_config.py)."""
    section = {**features.params_to_dict(PARAMS), **changes}
    with pytest.raises(ParamError, match=re.escape(message)) as error:
        features.params_from_dict(section)
    assert "params.yaml" not in str(error.value)


def test_missing_param_is_named():
    section = features.params_to_dict(PARAMS)
    del section["n_chroma"]
    with pytest.raises(ParamError, match=r"models/x/preprocessing.json: missing keys \['n_chroma'\]"):
        features.params_from_dict(section, where="models/x/preprocessing.json")


@pytest.mark.parametrize("sample_rate", [8000, 11025])
def test_params_that_exceed_the_nyquist_frequency_are_refused(sample_rate):
    # 7 CQT octaves from C1 reach 3951 Hz; 6 contrast bands start at 6400 Hz.
    with pytest.raises(ParamError, match=f"does not work at {sample_rate} Hz"):
        features.check_params(PARAMS, sample_rate)
    features.check_params(features.FeatureParams(n_octaves=6, n_bands=4), sample_rate)


# ---- synthetic signals with known answers


@pytest.mark.parametrize("note, pitch_class", [("A3", 9), ("A4", 9), ("C5", 0), ("E4", 4), ("G#5", 8), ("D6", 2)])
def test_sine(note, pitch_class):
    freq = float(librosa.note_to_hz(note))
    values = named(features.clip_features(tone(5.0, SR, freq, amplitude=0.5, dtype=np.float32), SR, PARAMS))
    bin_hz = SR / PARAMS.n_fft
    assert abs(values["spectral_centroid_mean_01"] - freq) < 2 * bin_hz  # the window's leakage
    assert abs(values["spectral_centroid_median_01"] - freq) < bin_hz  # away from the clip's edges
    assert values["zcr_mean_01"] == pytest.approx(2 * freq / SR, rel=0.015)
    assert values["rmse_median_01"] == pytest.approx(0.5 / np.sqrt(2), rel=5e-3)
    assert abs(values["spectral_rolloff_mean_01"] - freq) < 3 * bin_hz
    assert values["spectral_bandwidth_mean_01"] < 4 * bin_hz  # one spectral peak
    for chroma in ("chroma_stft", "chroma_cqt", "chroma_cens"):
        assert np.argmax(chroma_means(values, chroma)) == pitch_class, chroma
    assert values["chroma_cqt_max_01"] <= 1.0 and values["chroma_cens_min_01"] >= 0.0


def test_white_noise():
    values = named(features.clip_features(noise(scale=0.1), SR, PARAMS))
    nyquist = SR / 2
    assert values["spectral_centroid_mean_01"] == pytest.approx(nyquist / 2, rel=0.01)
    assert values["spectral_bandwidth_mean_01"] == pytest.approx(nyquist / np.sqrt(12), rel=0.01)  # uniform
    assert values["spectral_rolloff_mean_01"] == pytest.approx(0.85 * nyquist, rel=0.01)
    assert values["zcr_mean_01"] == pytest.approx(0.5, rel=0.01)
    assert values["rmse_mean_01"] == pytest.approx(0.1, rel=0.01)
    # A flat spectrum: every pitch class is present (a tone leaves the others near 0).
    chroma = chroma_means(values, "chroma_stft")
    assert chroma.min() > 0.7 * chroma.max()


def test_silence_gives_zeros_and_the_mfcc_floor():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warnings, no NaN
        values = named(features.clip_features(np.zeros(3 * SR, np.float32), SR, PARAMS))
    mfcc_floor = -100 * np.sqrt(features.N_MELS)  # power_to_db's -100 dB floor through the orthonormal DCT
    expected = {name: 0.0 for name in features.FEATURE_COLUMNS}
    expected.update({f"mfcc_{s}_01": mfcc_floor for s in ("mean", "median", "min", "max")})
    assert values == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("scale", [0.01, 10.0])
def test_loudness_scales_rms_only(scale):
    quiet = named(features.clip_features(noise(scale=0.1), SR, PARAMS))
    other = named(features.clip_features(noise(scale=0.1 * scale), SR, PARAMS))
    assert other["rmse_mean_01"] == pytest.approx(scale * quiet["rmse_mean_01"], rel=1e-4)
    for name in ("spectral_centroid_mean_01", "zcr_mean_01", "chroma_stft_mean_01", "tonnetz_mean_01"):
        assert other[name] == pytest.approx(quiet[name], rel=1e-3, abs=1e-6)


@pytest.mark.parametrize(
    "samples, message",
    [
        (np.zeros(1000, np.float32), "fewer than one frame"),
        (np.zeros((2, 5 * SR), np.float32), "expected mono float samples"),
        (np.zeros(5 * SR, np.int16), "expected mono float samples"),
        (np.full(5 * SR, np.nan, np.float32), "NaN or infinite"),
    ],
)
def test_bad_samples_are_refused(samples, message):
    with pytest.raises(DataError, match=message):
        features.clip_features(samples, SR, PARAMS)


# ---- statistics


@pytest.mark.parametrize("seed", [0, 1])
def test_frame_statistics_match_numpy_and_scipy(seed):
    values = np.random.default_rng(seed).gamma(2.0, size=(5, 300))
    stats = dict(zip(features.STATISTICS, features.frame_statistics(values)))
    np.testing.assert_allclose(stats["mean"], values.mean(axis=1))
    np.testing.assert_allclose(stats["std"], values.std(axis=1))
    np.testing.assert_allclose(stats["skew"], scipy.stats.skew(values, axis=1))
    np.testing.assert_allclose(stats["kurtosis"], scipy.stats.kurtosis(values, axis=1))
    np.testing.assert_allclose(stats["median"], np.median(values, axis=1))
    np.testing.assert_allclose(stats["min"], values.min(axis=1))
    np.testing.assert_allclose(stats["max"], values.max(axis=1))


def test_frame_statistics_of_known_rows():
    rows = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 4.0], [-1.0, 1.0, -1.0, 1.0]])
    stats = dict(zip(features.STATISTICS, features.frame_statistics(rows)))
    assert stats["mean"].tolist() == [1.0, 1.0, 0.0]
    assert stats["std"] == pytest.approx([0.0, np.sqrt(3.0), 1.0])
    assert stats["median"].tolist() == [1.0, 0.0, 0.0]
    # [0, 0, 0, 4]: deviations -1, -1, -1, 3: m2 = 12/4 = 3, m3 = 24/4 = 6, m4 = 84/4 = 21.
    assert stats["skew"] == pytest.approx([0.0, 6 / 3**1.5, 0.0])
    assert stats["kurtosis"] == pytest.approx([0.0, 21 / 9 - 3, -2.0])  # constant row: 0, not NaN


# ---- the fast paths agree with librosa


def signals(gtzan_mini) -> dict[str, np.ndarray]:
    detuned_hz = float(librosa.note_to_hz("A4")) * 2 ** (30 / 1200)  # +30 cents
    return {
        "detuned_tone": tone(5.0, SR, detuned_hz, dtype=np.float32),
        "chord": sum(tone(5.0, SR, f, dtype=np.float32) for f in (261.63, 329.63, 392.0)),
        "noise": noise(),
        "silence_then_tone": np.concatenate([np.zeros(SR, np.float32), tone(2.0, SR, 880.0, dtype=np.float32)]),
        "real_clip": read_clip(gtzan_mini / "jazz" / "jazz.00000.wav"),
    }


SIGNAL_NAMES = ["detuned_tone", "chord", "noise", "silence_then_tone", "real_clip"]


@pytest.mark.parametrize("signal", SIGNAL_NAMES)
def test_fast_paths_equal_librosa(gtzan_mini, signal):
    y = signals(gtzan_mini)[signal]
    magnitude = np.abs(librosa.stft(y, n_fft=PARAMS.n_fft, hop_length=PARAMS.hop_length))
    freqs = librosa.fft_frequencies(sr=SR, n_fft=PARAMS.n_fft)
    # Tuning: the CQT's own estimate (from the signal) and chroma_stft's (from the power spectrogram).
    assert features.estimate_tuning(magnitude, SR, 12) == librosa.estimate_tuning(y=y, sr=SR, bins_per_octave=12)
    assert features.estimate_tuning(magnitude**2, SR, 12) == librosa.estimate_tuning(
        S=magnitude**2, sr=SR, bins_per_octave=12
    )
    centroid, bandwidth = features.spectral_centroid_bandwidth(magnitude, freqs)
    np.testing.assert_allclose(centroid, librosa.feature.spectral_centroid(S=magnitude, sr=SR), rtol=1e-6)
    np.testing.assert_allclose(bandwidth, librosa.feature.spectral_bandwidth(S=magnitude, sr=SR), rtol=1e-5)
    np.testing.assert_array_equal(
        features.spectral_rolloff(magnitude, freqs), librosa.feature.spectral_rolloff(S=magnitude, sr=SR)
    )
    np.testing.assert_array_equal(
        features.zero_crossing_rate(y, PARAMS.n_fft, PARAMS.hop_length),
        librosa.feature.zero_crossing_rate(y, frame_length=PARAMS.n_fft, hop_length=PARAMS.hop_length),
    )


@pytest.mark.parametrize("signal", SIGNAL_NAMES)
def test_cqt_equals_librosa(gtzan_mini, signal):
    """The CQT with filters built once per tuning: librosa.cqt's values, bit for bit, call after call."""
    y = signals(gtzan_mini)[signal]
    for tuning in (0.0, -0.5, 0.17):
        expected = np.abs(librosa.cqt(y, sr=SR, hop_length=512, n_bins=84, bins_per_octave=12, tuning=tuning))
        for _ in range(2):  # the second call reuses the cached filters
            np.testing.assert_array_equal(features.cqt_magnitude(y, SR, 512, 84, 12, tuning), expected)


@pytest.mark.parametrize("n_samples", [100, 256, 257, 5000, 22050])
@pytest.mark.parametrize("n_fft, hop_length", [(256, 512), (256, 8), (64, 64), (512, 100)])
def test_plain_stft_equals_librosa(n_samples, n_fft, hop_length):
    y = noise(seconds=n_samples / SR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # librosa: n_fft longer than the signal
        expected = librosa.stft(
            y, n_fft=n_fft, hop_length=hop_length, window="ones", pad_mode="constant", dtype=np.complex64
        )
    np.testing.assert_array_equal(features.plain_stft(y, n_fft, hop_length, np.complex64), expected)


@pytest.mark.parametrize("sample_rate, fmin, n_bins", [(22050, 2093.0, 12), (5512.5, 523.25, 12), (16000, 100.0, 24)])
def test_wavelet_basis_equals_librosa(sample_rate, fmin, n_bins):
    """With the relative bandwidths computed here, the basis librosa builds when it derives them itself."""
    freqs = librosa.cqt_frequencies(n_bins, fmin=fmin, bins_per_octave=12)
    basis, lengths = features.wavelet_basis(freqs, sample_rate, features.relative_bandwidth(freqs))
    expected, expected_lengths = librosa.filters.wavelet(freqs=freqs, sr=sample_rate, norm=1)
    np.testing.assert_array_equal(basis, expected)
    np.testing.assert_array_equal(lengths, expected_lengths)


def test_relative_bandwidth_is_the_one_librosa_derives():
    """Unevenly spaced frequencies (each end and the middle differ): the filter lengths librosa
    gives for our bandwidths equal those it gives when it derives them itself."""
    freqs = np.array([55.0, 61.0, 80.0, 200.0, 210.0, 1000.0])
    ours = librosa.filters.wavelet_lengths(freqs=freqs, sr=22050, alpha=features.relative_bandwidth(freqs))
    theirs = librosa.filters.wavelet_lengths(freqs=freqs, sr=22050)
    np.testing.assert_array_equal(ours[0], theirs[0])
    assert ours[1] == theirs[1]


@pytest.mark.parametrize("quantile", [0.0, 0.01, 0.3])
def test_sparsify_rows_equals_librosa(quantile):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 40)) * np.exp(rng.standard_normal((5, 40))) + 1j * rng.standard_normal((5, 40))
    x[2, :10] = 0.0  # exact zeros stay out of the sparse matrix
    expected = librosa.util.sparsify_rows(x, quantile=quantile, dtype=np.complex64)
    result = features.sparsify_rows(x, quantile, np.complex64)
    assert result.dtype == expected.dtype and result.nnz == expected.nnz
    np.testing.assert_array_equal(result.indptr, expected.indptr)
    np.testing.assert_array_equal(result.indices, expected.indices)
    np.testing.assert_array_equal(result.data, expected.data)


@pytest.mark.parametrize(
    "sample_rate, hop_length, n_bins, bins_per_octave",
    [(22050, 512, 84, 12), (22050, 256, 168, 24), (16000, 512, 72, 12), (44100, 1024, 84, 12), (22050, 300, 60, 12)],
)
def test_cqt_equals_librosa_at_other_settings(sample_rate, hop_length, n_bins, bins_per_octave):
    # 44.1 kHz with hop 1024: librosa downsamples the input before the first octave.
    y = noise(seconds=3.0)
    expected = librosa.cqt(
        y, sr=sample_rate, hop_length=hop_length, n_bins=n_bins, bins_per_octave=bins_per_octave, tuning=0.25
    )
    np.testing.assert_array_equal(
        features.cqt_magnitude(y, sample_rate, hop_length, n_bins, bins_per_octave, 0.25), np.abs(expected)
    )


def test_cqt_above_the_nyquist_frequency_is_refused_like_librosa():
    with pytest.raises(librosa.util.exceptions.ParameterError, match="exceed the Nyquist"):
        librosa.cqt(noise(1.0), sr=8000, n_bins=84, bins_per_octave=12, tuning=0.0)
    with pytest.raises(librosa.util.exceptions.ParameterError, match="exceed the Nyquist"):
        features.cqt_magnitude(noise(1.0), 8000, 512, 84, 12, 0.0)


@pytest.mark.parametrize("genre", ["blues", "classical", "country", "disco", "hiphop", "metal", "pop", "reggae"])
def test_tuning_equals_librosa_on_real_clips(gtzan_mini, genre):
    y = read_clip(gtzan_mini / genre / f"{genre}.00001.wav")
    magnitude = np.abs(librosa.stft(y, n_fft=PARAMS.n_fft, hop_length=PARAMS.hop_length))
    assert features.estimate_tuning(magnitude, SR, 12) == librosa.estimate_tuning(y=y, sr=SR, bins_per_octave=12)
    power = magnitude**2
    assert features.estimate_tuning(power, SR, 12) == librosa.estimate_tuning(S=power, sr=SR, bins_per_octave=12)


def test_one_clip_equals_fma_recipe_in_plain_librosa(gtzan_mini):
    """The whole vector against FMA's recipe written with librosa's functions only."""
    y = read_clip(gtzan_mini / "rock" / "rock.00000.wav")
    expected = plain_features(y, SR)  # benchmarks/plain_librosa.py, the benchmark's baseline too
    values = named(features.clip_features(y, SR, PARAMS))
    assert values == pytest.approx(expected, rel=1e-5, abs=1e-6)


# ---- determinism and the parallel path


def test_parallel_rows_equal_serial_rows_and_repeat(gtzan_mini):
    paths = [
        gtzan_mini / "blues" / "blues.00000.wav",
        gtzan_mini / "metal" / "metal.00000.wav",
        gtzan_mini / "blues" / "blues.00000.wav",
    ]
    parallel = np.array(list(features.iter_wav_features(paths, SR, PARAMS, workers=2, progress=False)))
    serial = np.array([features.wav_features(p, SR, PARAMS) for p in paths])
    assert parallel.tobytes() == serial.tobytes()  # bit for bit, in input order
    assert parallel[0].tobytes() == parallel[2].tobytes()
    assert not np.array_equal(parallel[0], parallel[1])


def test_wav_at_another_sample_rate_is_refused(gtzan_mini, tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, sf.read(gtzan_mini / "blues" / "blues.00000.wav", dtype="int16")[0][:SR], 16000, subtype="PCM_16")
    with pytest.raises(DataError, match=r"clip\.wav: sample rate 16000 Hz, expected 22050 Hz"):
        list(features.iter_wav_features([path], SR, PARAMS, workers=1, progress=False))


# ---- THE FEATURE CHECK: the public GTZAN table

TABLE_COLUMNS = {  # GTZAN table column -> feature column (chroma_stft: mean over the 12 bins)
    "rms_mean": "rmse_mean_01",
    "spectral_centroid_mean": "spectral_centroid_mean_01",
    "spectral_bandwidth_mean": "spectral_bandwidth_mean_01",
    "rolloff_mean": "spectral_rolloff_mean_01",
    "zero_crossing_rate_mean": "zcr_mean_01",
    **{f"mfcc{k}_mean": f"mfcc_mean_{k:02d}" for k in range(1, 21)},
}


# The fast tier checks the first clip of each genre; the full suite all 100 clips of gtzan_mini.
@pytest.mark.parametrize("clips_per_genre", [1, pytest.param(10, marks=pytest.mark.slow)])
def test_features_match_the_public_gtzan_table(shared_data, gtzan_mini, clips_per_genre):
    table = pd.read_csv(shared_data / "gtzan_features_30_sec.csv").set_index("filename")
    genres = sorted(p for p in gtzan_mini.iterdir() if p.is_dir())
    paths = [p for genre in genres for p in sorted(genre.glob("*.wav"))[:clips_per_genre]]
    assert len(genres) == 10 and len(paths) == 10 * clips_per_genre and all(p.name in table.index for p in paths)
    # The stage's path: int16 WAV -> float32 (in this process: the worker processes give the same bytes,
    # test_parallel_rows_equal_serial_rows_and_repeat).
    rows = [features.wav_features(path, SR, PARAMS) for path in paths]
    failures = []
    for path, row in zip(paths, rows):
        ours = {table_column: row[COLUMN_INDEX[column]] for table_column, column in TABLE_COLUMNS.items()}
        ours["chroma_stft_mean"] = np.mean([row[COLUMN_INDEX[f"chroma_stft_mean_{i:02d}"]] for i in range(1, 13)])
        for column, value in ours.items():
            reference = table.loc[path.name, column]
            close = abs(value - reference) <= 0.01 * abs(reference)
            if column.startswith("mfcc"):
                close = close or abs(value - reference) <= 0.5
            if not close:
                failures.append(f"{path.name} {column}: {value:.6g} vs {reference:.6g}")
    assert not failures, f"{len(failures)} values off the table: {failures[:10]}"


# ---- the stage

STAGE_GENRES = ["blues", "metal"]
STAGE_SPLITS = ["train", "train", "val", "test"]
STAGE_SECONDS = 6


def make_features_project(gtzan_mini: Path, root: Path, params: dict | None = None) -> pd.DataFrame:
    """A scratch project: the code, params.yaml, short WAVs of real clips and a split."""
    make_project(root, params)
    (root / "data" / "wav").mkdir(parents=True)
    (root / "data" / "split").mkdir()
    rows = []
    for label, genre in enumerate(STAGE_GENRES):
        for source, split in zip(sorted((gtzan_mini / genre).glob("*.wav")), STAGE_SPLITS):
            samples, sr = sf.read(source, dtype="int16")
            path = f"data/wav/{source.stem}.wav"
            sf.write(root / path, samples[: STAGE_SECONDS * sr], sr, subtype="PCM_16")
            rows.append({"track_id": source.stem, "path": path, "genre": genre, "label": label, "split": split})
    manifest = pd.DataFrame(rows)
    write_split(root / "data" / "split", manifest, STAGE_GENRES)
    return manifest


@pytest.fixture(scope="module")
def stage_project(gtzan_mini, tmp_path_factory):
    root = tmp_path_factory.mktemp("features_project")
    manifest = make_features_project(gtzan_mini, root)
    return root, manifest, run_stage(root, "features")


@pytest.mark.slow
def test_stage_writes_the_tables(stage_project):
    root, manifest, result = stage_project
    out = root / "data" / "features"
    assert sorted(p.name for p in out.iterdir()) == ["feature_info.json", "test.csv", "train.csv", "val.csv"]
    info = json.loads((out / "feature_info.json").read_text())
    assert info == {
        "sample_rate": SR,
        "params": features.params_to_dict(PARAMS),
        "columns": list(features.FEATURE_COLUMNS),
    }
    assert read_feature_info(out) == info
    for split in ("train", "val", "test"):
        table = pd.read_csv(out / f"{split}.csv", dtype={"track_id": str})
        expected = manifest[manifest["split"] == split]
        assert list(table.columns) == ["track_id", "label", "genre", *features.FEATURE_COLUMNS]
        assert table["track_id"].tolist() == expected["track_id"].tolist()
        assert table["label"].tolist() == expected["label"].tolist()
        assert table["genre"].tolist() == expected["genre"].tolist()
        # The very features of each clip, as written with 9 significant digits.
        computed = np.array([features.wav_features(root / p, SR, PARAMS) for p in expected["path"]])
        np.testing.assert_allclose(table[list(features.FEATURE_COLUMNS)].to_numpy(), computed, rtol=1e-8, atol=1e-12)
        checked = read_feature_split(out, split, info["columns"])  # the contract's reader accepts it
        assert checked.track_ids == table["track_id"].tolist() and checked.genres == table["genre"].tolist()
    assert "computed 8 clips" in result.stderr and "wrote data/features" in result.stderr


@pytest.mark.slow
def test_stage_output_is_byte_identical_on_a_rerun(stage_project):
    root, _, _ = stage_project
    out = root / "data" / "features"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    run_stage(root, "features")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_streamed_table_has_the_bytes_of_write_csv(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "ROWS_PER_WRITE", 2)
    columns = ["a_mean_01", "b_std_01"]
    ids = pd.DataFrame(
        {
            "track_id": ["000002", "000005", "000140", "000141", "000190"],
            "label": [0, 1, 1, 0, 2],
            "genre": ["Rock", "Pop", "Pop", "Rock", "Folk"],
        }
    )
    values = np.random.default_rng(0).normal(size=(5, 2)) * [1e-7, 1e5]
    for n in (5, 4, 0):
        rows = iter(list(values[:n]))
        artifacts.write_feature_table(tmp_path / "streamed.csv", ids.iloc[:n], rows, columns)
        write_csv(tmp_path / "whole.csv", pd.concat([ids.iloc[:n], pd.DataFrame(values[:n], columns=columns)], axis=1))
        assert (tmp_path / "streamed.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no_manifest", "data/split/split_manifest.csv does not exist; run `dvc repro split`"),
        (
            "no_wav",
            "data/split/split_manifest.csv lists 1 WAV files that do not exist (e.g. "
            "['data/wav/blues.00000.wav']); run `dvc repro convert`",
        ),
        ("bad_label", "labels do not match the genres of data/split/labels.json"),
        ("bad_param", "params.yaml: features.n_mfcc = 0: Input should be greater than 0"),
    ],
)
@pytest.mark.slow  # the stage loads librosa in its own process before it refuses
def test_stage_refuses_bad_inputs_before_any_work(gtzan_mini, tmp_path, breakage, message):
    params = {"features": {"n_mfcc": 0}} if breakage == "bad_param" else None
    manifest = make_features_project(gtzan_mini, tmp_path, params)
    if breakage == "no_manifest":
        (tmp_path / "data" / "split" / "split_manifest.csv").unlink()
    elif breakage == "no_wav":
        (tmp_path / manifest["path"][0]).unlink()
    elif breakage == "bad_label":
        (tmp_path / "data" / "split" / "labels.json").write_text(json.dumps(STAGE_GENRES[::-1]))
    result = run_stage(tmp_path, "features", check=False)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "features").exists()


@pytest.mark.slow
def test_stage_names_a_clip_it_cannot_read(gtzan_mini, tmp_path):
    manifest = make_features_project(gtzan_mini, tmp_path)
    broken = manifest["path"].iloc[-1]
    (tmp_path / broken).write_bytes(b"RIFF but not really a WAV file")
    result = run_stage(tmp_path, "features", check=False)
    assert result.returncode == 1
    assert f"error: {broken}: cannot read it as WAV" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "features").exists()
