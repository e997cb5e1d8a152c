"""FMA's feature recipe written with librosa's own functions only, one clip at a time.

The baseline of ``benchmarks/bench_data.py --plain`` and ``benchmarks/bench_features.py``, and the reference of
tests/test_features.py: the same 518 values as genreclf.features.fma_features.clip_features (to
about 1e-5), computed the plain way (librosa's tuning estimate inside the CQT and in
chroma_stft, its spectral functions, scipy.stats for skew and kurtosis).
"""

from __future__ import annotations

import os
import warnings

import librosa
import numpy as np
import scipy.stats
from threadpoolctl import threadpool_limits

from genreclf.data.audio import read_wav
from genreclf.features import fma_features as features


def plain_frames(y: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    """Each feature of FMA's recipe as a [rows, frames] matrix, at FMA's default settings."""
    stft = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
    cqt = np.abs(librosa.cqt(y, sr=sr, hop_length=512, bins_per_octave=12, n_bins=7 * 12, tuning=None))
    cens = librosa.feature.chroma_cens(C=cqt, n_chroma=12, n_octaves=7, bins_per_octave=12)
    mel = librosa.feature.melspectrogram(sr=sr, S=stft**2)
    return {
        "chroma_cens": cens,
        "chroma_cqt": librosa.feature.chroma_cqt(C=cqt, n_chroma=12, n_octaves=7, bins_per_octave=12),
        "chroma_stft": librosa.feature.chroma_stft(S=stft**2, sr=sr, n_chroma=12),
        "mfcc": librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20),
        "rmse": librosa.feature.rms(y=y, frame_length=2048, hop_length=512),
        "spectral_bandwidth": librosa.feature.spectral_bandwidth(S=stft, sr=sr),
        "spectral_centroid": librosa.feature.spectral_centroid(S=stft, sr=sr),
        "spectral_contrast": librosa.feature.spectral_contrast(S=stft, sr=sr, n_bands=6),
        "spectral_rolloff": librosa.feature.spectral_rolloff(S=stft, sr=sr),
        "tonnetz": librosa.feature.tonnetz(chroma=cens),
        "zcr": librosa.feature.zero_crossing_rate(y, frame_length=2048, hop_length=512),
    }


def plain_features(y: np.ndarray, sr: int) -> dict[str, float]:
    """The 518 features by column name (features.FEATURE_COLUMNS)."""
    values = {}
    frames = plain_frames(y, sr)
    for name in features.FEATURES:
        f = frames[name].astype(np.float64)
        moments = {
            "mean": f.mean(1),
            "std": f.std(1),
            "skew": scipy.stats.skew(f, 1),
            "kurtosis": scipy.stats.kurtosis(f, 1),
            "median": np.median(f, 1),
            "min": f.min(1),
            "max": f.max(1),
        }
        for moment, row_values in moments.items():
            for row, value in enumerate(row_values):
                values[f"{name}_{moment}_{row + 1:02d}"] = value
    return values


def plain_wav_features(path: str, sample_rate: int) -> np.ndarray:
    """The features of one WAV, the plain way, as a vector in FEATURE_COLUMNS order."""
    samples, _ = read_wav(path)
    with threadpool_limits(limits=1):  # one process per core, as the stage runs
        values = plain_features(features.int16_to_float(samples), sample_rate)
    return np.array([values[column] for column in features.FEATURE_COLUMNS])


def init_plain_worker(sample_rate: int) -> None:
    """As the stage's workers start: one thread each, numba compiled on a warm-up clip."""
    for variable in features.THREAD_ENV_VARS:
        os.environ[variable] = "1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy: the warm-up clip has constant rows
        plain_features(features.warmup_clip(sample_rate), sample_rate)
