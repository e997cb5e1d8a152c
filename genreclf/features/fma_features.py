"""The FMA feature set: 518 statistics of 11 librosa features per clip.

The features that the FMA dataset's ``features.csv`` names (mdeff/fma, features.py), by
another recipe: a 30 s clip (FMA: the full track), one sample rate (FMA: the track's own),
today's librosa (FMA: 0.5), so the values differ (docs/features.md, "Two recipes"):
chroma_stft, chroma_cqt, chroma_cens, tonnetz, 20 MFCCs, rms (named ``rmse`` as in
FMA), zero-crossing rate (``zcr``), spectral centroid, bandwidth, contrast (7 rows for
6 bands) and rolloff; of each row its mean, std, skew, kurtosis, median, min and max
over the frames. Columns are named ``{feature}_{statistic}_{NN}`` in FMA's (sorted)
order, e.g. ``chroma_cens_kurtosis_01`` ... ``zcr_std_01``.

librosa's conventions throughout (n_fft 2048, hop 512, Hann window, centred frames).
Each clip gets ONE magnitude STFT and ONE constant-Q transform, shared as FMA does:

- from the CQT (84 bins from C1, 12 per octave, tuning estimated): chroma_cqt,
  chroma_cens, and tonnetz computed from chroma_cens;
- from the STFT: chroma_stft and the mel spectrogram -> MFCCs (on the power
  spectrogram), centroid, bandwidth, contrast and rolloff (on the magnitudes).

Where FMA's code and the public GTZAN feature table disagree, this follows librosa's
current definitions, which reproduce the table (see tests/test_features.py):

- rms is computed on the frames of the signal (``librosa.feature.rms(y=...)``): the
  rms of the Hann-windowed STFT frames is about 0.6 times smaller, and FMA's
  ``rmse(S=...)`` (librosa 0.5) was not normalised at all;
- every spectral feature uses the clip's real sample rate (FMA left ``sr`` at its
  22050 Hz default for its 44.1 kHz clips).

Speed: the costly parts of librosa are done here in equivalent cheaper ways, each
checked against librosa in the tests:

- the tuning estimate (run by the CQT and by chroma_stft) computes piptrack's peak
  shifts only at the peaks it keeps, not at every bin;
- the CQT (cqt_magnitude) is librosa.cqt's computation step by step, bit-identical, but
  its filters are built once per tuning in each process (a tuning is a multiple of 0.01
  bins: at most 100 builds) and in one pass (windows made once per length, rows
  sparsified at once), and each octave's frames are transformed in memory order;
- centroid, bandwidth and rolloff are matrix products over the shared spectrogram; the
  zero-crossing rate counts the crossings of the signal once instead of in every
  overlapping frame.

In one process on the 100 clips of gtzan_mini (30 s, 22050 Hz; benchmarks/bench_features.py
on a busy 2-core machine) a clip takes 0.155 CPU seconds, against 0.233 before the
tuning and CQT changes and 0.440 for FMA's recipe in plain librosa calls: 2.8 times
faster. What is left is spread out (one clip, filters already built, in milliseconds):
the CQT 34 (its octave transforms and resampling), the STFT 22, spectral contrast 19
(librosa's own sort is already fast), the mel spectrogram 13, the two tuning estimates 15,
the zero-crossing rate 9, rolloff 7, the statistics 7; a new tuning's filters 9 more.

BLAS runs on one thread inside ``clip_features``, so the same clip gives bit-identical
features in the stage's worker processes and in a single call (the predict command).
``iter_wav_features`` spreads many clips over one process per core.

Skew and kurtosis are scipy.stats' (biased, Fisher kurtosis). For a row that does not
vary over the clip they are undefined; this module gives 0 (no asymmetry, no tail) so a
silent clip has finite features: every feature of an all-zero clip is 0, except that
its mel spectrogram sits at power_to_db's -100 dB floor, so mfcc 1 is -100 * sqrt(128)
= -1131.37 (its mean, median, min and max).
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from itertools import islice
from multiprocessing import get_context
from pathlib import Path

import librosa
import numpy as np
import scipy.sparse
import scipy.stats
from threadpoolctl import ThreadpoolController
from tqdm import tqdm

from genreclf import catalog
from genreclf.data.audio import read_wav
from genreclf.errors import DataError, ParamError

# The features in FMA's column order, and how many rows each has (see feature_rows).
FEATURES = catalog.FMA_FEATURE_FAMILIES
STATISTICS = ("kurtosis", "max", "mean", "median", "min", "skew", "std")
TONNETZ_ROWS = 6

# librosa's defaults that the features rely on.
N_MELS = catalog.FEATURES_N_MELS  # mel bands under the MFCCs
ROLL_PERCENT = 0.85  # spectral rolloff
TUNING_FMIN = 150.0  # piptrack's search range for the tuning estimate
TUNING_FMAX = 4000.0
TUNING_THRESHOLD = 0.1  # piptrack: peaks below this fraction of the frame's maximum are ignored

CQT_WINDOW = "hann"  # librosa.cqt's defaults
CQT_SPARSITY = 0.01
CQT_RES_TYPE = "soxr_hq"
CQT_FILTER_CACHE = 256  # filter banks kept per process (one per tuning: at most 100 at one setting)

INT16_SCALE = 32768.0  # int16 PCM -> float32 in [-1, 1)
WARMUP_SECONDS = 2.0  # the synthetic clip that checks params and compiles numba code
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
IN_FLIGHT_PER_WORKER = 4  # clips queued per worker process: bounds memory, keeps workers busy
SETTINGS_WHERE = "feature settings"  # how messages name the settings unless told otherwise


@dataclass(frozen=True)
class FeatureParams:
    """The settings of the feature set (defaults: FMA's)."""

    n_fft: int = 2048  # STFT frame length (and rms / zcr frame length)
    hop_length: int = 512  # between frames, for every feature
    n_mfcc: int = 20
    n_chroma: int = 12  # chroma bins; also the CQT's bins per octave
    n_octaves: int = 7  # CQT range from C1, for chroma_cqt / chroma_cens / tonnetz
    n_bands: int = 6  # spectral contrast bands (n_bands + 1 rows)


# key -> smallest allowed value
PARAM_MINIMUMS = {"n_fft": 16, "hop_length": 1, "n_mfcc": 1, "n_chroma": 1, "n_octaves": 1, "n_bands": 1}


def params_from_dict(values, where: str = SETTINGS_WHERE) -> FeatureParams:
    """FeatureParams from a mapping of exactly its fields (e.g. a model's preprocessing.json),
    checked; ParamError naming ``where`` and the key otherwise."""
    if not isinstance(values, dict):
        raise ParamError(f"{where} = {values!r}; expected a mapping with the keys {list(PARAM_MINIMUMS)}")
    missing = [key for key in PARAM_MINIMUMS if key not in values]
    unknown = sorted(set(values) - set(PARAM_MINIMUMS))
    wrong = ([f"missing keys {missing}"] if missing else []) + ([f"unknown keys {unknown}"] if unknown else [])
    if wrong:
        raise ParamError(f"{where}: {'; '.join(wrong)}; expected exactly the keys {list(PARAM_MINIMUMS)}")
    for key, minimum in PARAM_MINIMUMS.items():
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ParamError(f"{where}: {key} = {value!r}; expected an integer >= {minimum}")
    if values["hop_length"] > values["n_fft"]:
        raise ParamError(
            f"{where}: hop_length = {values['hop_length']} is more than n_fft = {values['n_fft']}; "
            "frames would skip samples"
        )
    if values["n_mfcc"] > N_MELS:
        raise ParamError(f"{where}: n_mfcc = {values['n_mfcc']}; expected at most the {N_MELS} mel bands")
    return FeatureParams(**values)


def recipe_params(section: dict, where: str = SETTINGS_WHERE) -> FeatureParams:
    """FeatureParams from params.yaml's features section, checked: its recipe keys (n_fft ... n_bands);
    the others (source, families, max_missing) say which table, not how to compute it."""
    return params_from_dict({key: section[key] for key in PARAM_MINIMUMS if key in section}, where=where)


def params_to_dict(params: FeatureParams) -> dict:
    return asdict(params)


def feature_rows(params: FeatureParams) -> dict[str, int]:
    """Rows of each feature, in FEATURES order."""
    rows = {
        "chroma_cens": params.n_chroma,
        "chroma_cqt": params.n_chroma,
        "chroma_stft": params.n_chroma,
        "mfcc": params.n_mfcc,
        "rmse": 1,
        "spectral_bandwidth": 1,
        "spectral_centroid": 1,
        "spectral_contrast": params.n_bands + 1,
        "spectral_rolloff": 1,
        "tonnetz": TONNETZ_ROWS,
        "zcr": 1,
    }
    return {name: rows[name] for name in FEATURES}


def feature_columns(params: FeatureParams) -> list[str]:
    """Column names ``{feature}_{statistic}_{NN}`` in FMA's order (feature, statistic, row)."""
    return [
        f"{name}_{statistic}_{row + 1:02d}"
        for name, n_rows in feature_rows(params).items()
        for statistic in STATISTICS
        for row in range(n_rows)
    ]


DEFAULT_PARAMS = FeatureParams()
FEATURE_COLUMNS = tuple(feature_columns(DEFAULT_PARAMS))  # the 518 FMA columns


# ---- one clip


def clip_features(samples: np.ndarray, sample_rate: int, params: FeatureParams) -> np.ndarray:
    """The feature vector (float64, len(feature_columns(params))) of one mono float clip."""
    y = np.asarray(samples)
    if y.ndim != 1 or y.dtype.kind != "f":
        raise DataError(f"expected mono float samples, got an array of shape {y.shape} and type {y.dtype}")
    if y.size < params.n_fft:
        raise DataError(f"the clip has {y.size} samples, fewer than one frame (n_fft = {params.n_fft})")
    if not np.isfinite(y).all():
        raise DataError("the clip holds NaN or infinite samples")
    with one_thread():
        frames = frame_features(y, sample_rate, params)
        statistics = {}
        # One scipy call per group of rows with the same number of frames (normally all of them).
        for n_frames in sorted({values.shape[1] for values in frames.values()}):
            names = [name for name in FEATURES if frames[name].shape[1] == n_frames]
            stacked = frame_statistics(np.concatenate([frames[name] for name in names]))
            bounds = np.cumsum([0] + [frames[name].shape[0] for name in names])
            for name, start, stop in zip(names, bounds[:-1], bounds[1:]):
                statistics[name] = stacked[:, start:stop]
    vector = np.concatenate([statistics[name].ravel() for name in FEATURES])
    if not np.isfinite(vector).all():
        bad = [column for column, value in zip(feature_columns(params), vector) if not np.isfinite(value)]
        raise DataError(f"non-finite features {bad[:5]}")
    return vector


_thread_controller: ThreadpoolController | None = None


def one_thread():
    """A context in which BLAS and OpenMP use one thread.

    Features are always computed so: a matrix product split over threads sums in
    another order, and the stage's worker processes and a single call (the predict
    command) would then differ in the last bits.
    """
    global _thread_controller
    if _thread_controller is None:
        _thread_controller = ThreadpoolController()
    return _thread_controller.limit(limits=1)


def frame_features(y: np.ndarray, sample_rate: int, params: FeatureParams) -> dict[str, np.ndarray]:
    """Each feature as a [rows, frames] matrix, from one shared STFT and one shared CQT."""
    sr, hop = sample_rate, params.hop_length
    magnitude = np.abs(librosa.stft(y, n_fft=params.n_fft, hop_length=hop))
    power = magnitude**2
    freqs = librosa.fft_frequencies(sr=sr, n_fft=2 * (magnitude.shape[0] - 1))

    cqt = cqt_magnitude(
        y,
        sr,
        hop,
        n_bins=params.n_octaves * params.n_chroma,
        bins_per_octave=params.n_chroma,
        tuning=estimate_tuning(magnitude, sr, params.n_chroma),
    )
    # FMA's CQT has n_chroma bins per octave: say so (librosa's chroma default is 36).
    cqt_chroma = dict(n_chroma=params.n_chroma, n_octaves=params.n_octaves, bins_per_octave=params.n_chroma)
    chroma_cens = librosa.feature.chroma_cens(C=cqt, **cqt_chroma)
    centroid, bandwidth = spectral_centroid_bandwidth(magnitude, freqs)
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_mels=N_MELS)
    return {
        "chroma_cens": chroma_cens,
        "chroma_cqt": librosa.feature.chroma_cqt(C=cqt, **cqt_chroma),
        "chroma_stft": librosa.feature.chroma_stft(
            S=power, sr=sr, n_chroma=params.n_chroma, tuning=estimate_tuning(power, sr, params.n_chroma)
        ),
        "mfcc": librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=params.n_mfcc),
        "rmse": librosa.feature.rms(y=y, frame_length=params.n_fft, hop_length=hop),
        "spectral_bandwidth": bandwidth,
        "spectral_centroid": centroid,
        "spectral_contrast": librosa.feature.spectral_contrast(S=magnitude, sr=sr, n_bands=params.n_bands),
        "spectral_rolloff": spectral_rolloff(magnitude, freqs),
        "tonnetz": librosa.feature.tonnetz(chroma=chroma_cens),
        "zcr": zero_crossing_rate(y, params.n_fft, hop),
    }


def frame_statistics(values: np.ndarray) -> np.ndarray:
    """[7, rows] statistics over the frames of a [rows, frames] matrix, in STATISTICS order.

    Skew and kurtosis are scipy.stats' (biased; Fisher's kurtosis), and 0 for a row
    too constant for them to be defined (where scipy gives NaN).
    """
    values = np.asarray(values, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Precision loss occurred in moment calculation", RuntimeWarning)
        skew = scipy.stats.skew(values, axis=1)
        kurtosis = scipy.stats.kurtosis(values, axis=1)
    by_name = {
        "kurtosis": np.where(np.isnan(kurtosis), 0.0, kurtosis),
        "max": values.max(axis=1),
        "mean": values.mean(axis=1),
        "median": np.median(values, axis=1),
        "min": values.min(axis=1),
        "skew": np.where(np.isnan(skew), 0.0, skew),
        "std": values.std(axis=1),
    }
    return np.stack([by_name[name] for name in STATISTICS])


# ---- librosa's definitions, computed on the shared spectrogram at lower cost


def estimate_tuning(spectrogram: np.ndarray, sample_rate: int, bins_per_octave: int) -> float:
    """``librosa.estimate_tuning(S=spectrogram, sr=sample_rate, bins_per_octave=...)``, faster.

    librosa's piptrack computes a parabolic peak shift for every bin of the spectrogram
    and keeps those at the local maxima between 150 Hz and 4 kHz that exceed a tenth of
    their frame's maximum. This finds those maxima first and computes the same shift,
    pitch and magnitude (in librosa's precision) at them alone; the tuning is then
    librosa's ``pitch_tuning`` of the same pitches, hence the same value, in about a
    tenth of the time.
    """
    S = spectrogram
    n_fft = 2 * (S.shape[0] - 1)
    freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=n_fft)
    fmax = min(TUNING_FMAX, float(sample_rate) / 2)
    rows = np.flatnonzero((TUNING_FMIN <= freqs) & (freqs < fmax))
    rows = rows[(rows > 0) & (rows < S.shape[0] - 1)]  # librosa's shift is 0 at the edges: no peak there
    if rows.size == 0:
        return pitch_tuning(np.zeros(0, np.float32), bins_per_octave)
    lo, hi = rows[0], rows[-1] + 1
    ref = TUNING_THRESHOLD * S.max(axis=0)
    # piptrack's localmax of S * (S > ref) over the rows lo-1 .. hi (neighbours included).
    masked = S[lo - 1 : hi + 1] * (S[lo - 1 : hi + 1] > ref)
    centre = masked[1:-1]
    row, frame = np.nonzero((centre > masked[:-2]) & (centre >= masked[2:]))
    row += lo
    below, at, above = S[row - 1, frame], S[row, frame], S[row + 1, frame]
    # librosa's stencil (numba): a and b in float64, the shift stored in S's precision.
    a = (above + below).astype(np.float64) - 2 * at.astype(np.float64)
    b = (above - below).astype(np.float64) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(b) >= np.abs(a), 0.0, -b / a).astype(S.dtype)
    gradient = (above - below) / 2.0  # np.gradient inside the frame
    magnitudes = at + 0.5 * gradient * shift
    pitches = ((row + shift) * (float(sample_rate) / n_fft)).astype(S.dtype)
    found = pitches > 0
    threshold = np.median(magnitudes[found]) if found.any() else 0.0
    return pitch_tuning(pitches[(magnitudes >= threshold) & found], bins_per_octave)


def pitch_tuning(pitches: np.ndarray, bins_per_octave: int) -> float:
    """librosa.pitch_tuning (resolution 0.01); 0.0 without a warning when there is no pitch."""
    with warnings.catch_warnings():
        # A silent clip has no peaks: librosa warns and gives tuning 0.0.
        warnings.filterwarnings("ignore", "Trying to estimate tuning from empty frequency set")
        return float(librosa.pitch_tuning(pitches, bins_per_octave=bins_per_octave))


def spectral_centroid_bandwidth(magnitude: np.ndarray, freqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """librosa's spectral centroid and (p=2) bandwidth, [1, frames] each; 0 for a silent frame.

    centroid = sum(f S) / sum(S); bandwidth = sqrt(sum(S (f - centroid)^2) / sum(S)),
    from the moments of each frame's spectrum.
    """
    moments = np.stack([np.ones_like(freqs), freqs, freqs**2]) @ magnitude.astype(np.float64)
    total = moments[0]
    weight = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
    centroid = moments[1] * weight
    variance = np.maximum(moments[2] * weight - centroid**2, 0.0)
    return centroid[np.newaxis], np.sqrt(variance)[np.newaxis]


def spectral_rolloff(magnitude: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """librosa's spectral rolloff [1, frames]: the lowest bin frequency where the
    cumulative magnitude reaches ROLL_PERCENT of the frame's total (0 for silence)."""
    cumulative = np.cumsum(magnitude, axis=0)
    reached = cumulative >= ROLL_PERCENT * cumulative[-1]
    return freqs[np.argmax(reached, axis=0)][np.newaxis]


def cqt_magnitude(
    y: np.ndarray, sample_rate: int, hop_length: int, n_bins: int, bins_per_octave: int, tuning: float
) -> np.ndarray:
    """``np.abs(librosa.cqt(y, sr=..., hop_length=..., n_bins=..., bins_per_octave=..., tuning=...))``.

    librosa.cqt builds its filters (one FFT basis per octave) anew on every call, about
    a third of its time; they depend only on the settings and the tuning (a multiple of
    0.01 bins: at most 100 values), so each worker builds them once per tuning
    (cqt_filters) and reuses them. The rest is librosa's computation, step by step, with
    each octave's transform done as plain_stft.
    """
    if n_bins < 2:  # librosa's filters for a single bin are built another way: leave it to librosa
        return np.abs(
            librosa.cqt(
                y, sr=sample_rate, hop_length=hop_length, n_bins=n_bins, bins_per_octave=bins_per_octave, tuning=tuning
            )
        )
    bank = cqt_filters(float(sample_rate), hop_length, n_bins, bins_per_octave, float(tuning))
    dtype = librosa.util.dtype_r2c(y.dtype)
    my_y, my_hop = y, bank.hop_length
    if bank.downsample > 1:  # librosa's early downsampling
        if y.shape[-1] < bank.downsample:
            raise librosa.util.exceptions.ParameterError(
                f"Input signal length={len(y):d} is too short for {bank.n_octaves:d}-octave CQT"
            )
        my_y = librosa.resample(y, orig_sr=bank.downsample, target_sr=1, res_type=CQT_RES_TYPE, scale=True)
    responses = []
    for basis, n_fft in bank.octaves:
        responses.append(basis.dot(plain_stft(my_y, n_fft, my_hop, dtype)))
        if my_hop % 2 == 0:
            my_hop //= 2
            my_y = librosa.resample(my_y, orig_sr=2, target_sr=1, res_type=CQT_RES_TYPE, scale=True)
    # librosa's __trim_stack: octaves from the top down, all cut to the shortest.
    n_frames = min(response.shape[-1] for response in responses)
    cqt = np.empty((n_bins, n_frames), dtype=dtype, order="F")
    end = n_bins
    for response in responses:
        n_oct = response.shape[0]
        if end < n_oct:
            cqt[:end] = response[-end:, :n_frames]
        else:
            cqt[end - n_oct : end] = response[:, :n_frames]
        end -= n_oct
    cqt /= bank.sqrt_lengths
    return np.abs(cqt)


def plain_stft(y: np.ndarray, n_fft: int, hop_length: int, dtype) -> np.ndarray:
    """``librosa.stft(y, n_fft=..., hop_length=..., window="ones", pad_mode="constant", dtype=...)``.

    The CQT's transform of each octave: librosa multiplies every frame by its window of
    ones (in float64) and transforms the frames along the strided axis; here the frames,
    in float64 too, are transformed each in place in memory: the same numbers, twice as fast.
    """
    padded = np.pad(y, (n_fft // 2, n_fft // 2)).astype(np.float64)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]  # [frames, n_fft]
    return librosa.get_fftlib().rfft(frames, axis=-1).astype(dtype).T


@dataclass(frozen=True)
class CqtFilters:
    octaves: list  # [(sparse FFT basis [bins, n_fft // 2 + 1], n_fft)], top octave first
    sqrt_lengths: np.ndarray  # [n_bins, 1]: the filters' lengths at the input rate, square-rooted
    downsample: int  # the input's early downsampling factor (1: none)
    hop_length: int  # the hop at the first octave's rate
    n_octaves: int


@functools.lru_cache(maxsize=CQT_FILTER_CACHE)
def cqt_filters(sample_rate: float, hop_length: int, n_bins: int, bins_per_octave: int, tuning: float) -> CqtFilters:
    """The filters of librosa.cqt (librosa's vqt with gamma 0), built as librosa builds them."""
    n_octaves = int(np.ceil(float(n_bins) / bins_per_octave))
    n_filters = min(bins_per_octave, n_bins)
    fmin = librosa.note_to_hz("C1") * 2.0 ** (tuning / bins_per_octave)
    freqs = librosa.interval_frequencies(
        n_bins=n_bins, fmin=fmin, intervals="equal", bins_per_octave=bins_per_octave, sort=True
    )
    alpha = relative_bandwidth(freqs)
    _, filter_cutoff = librosa.filters.wavelet_lengths(
        freqs=freqs, sr=sample_rate, window=CQT_WINDOW, filter_scale=1, gamma=0, alpha=alpha
    )
    nyquist = sample_rate / 2.0
    if filter_cutoff > nyquist:
        raise librosa.util.exceptions.ParameterError(
            f"Wavelet basis with max frequency={np.max(freqs[-bins_per_octave:])} would exceed the Nyquist "
            f"frequency={nyquist}. Try reducing the number of frequency bins."
        )
    # librosa's __early_downsample_count
    count1 = max(0, int(np.ceil(np.log2(nyquist / filter_cutoff)) - 1) - 1)
    twos = 0
    while hop_length > 0 and (hop_length >> twos) % 2 == 0:
        twos += 1
    downsample = 2 ** min(count1, max(0, twos - n_octaves + 1))
    my_sr, my_hop = sample_rate / downsample, hop_length // downsample
    first_sr, dtype = my_sr, np.complex64
    lengths, _ = librosa.filters.wavelet_lengths(
        freqs=freqs, sr=first_sr, window=CQT_WINDOW, filter_scale=1, gamma=0, alpha=alpha
    )
    octaves = []
    for i in range(n_octaves):
        sl = slice(-n_filters, None) if i == 0 else slice(-n_filters * (i + 1), -n_filters * i)
        # librosa's __vqt_filter_fft
        basis, basis_lengths = wavelet_basis(freqs[sl], my_sr, alpha[sl])
        n_fft = basis.shape[1]
        basis *= basis_lengths[:, np.newaxis] / float(n_fft)
        fft_basis = librosa.get_fftlib().fft(basis, n=n_fft, axis=1)[:, : (n_fft // 2) + 1]
        fft_basis = sparsify_rows(fft_basis, CQT_SPARSITY, dtype)
        fft_basis.data *= np.sqrt(first_sr / my_sr)  # librosa: fft_basis[:] *= ..., the same products
        octaves.append((fft_basis, n_fft))
        if my_hop % 2 == 0:
            my_hop //= 2
            my_sr /= 2.0
    return CqtFilters(octaves, np.sqrt(lengths)[:, np.newaxis], downsample, hop_length // downsample, n_octaves)


def relative_bandwidth(freqs: np.ndarray) -> np.ndarray:
    """The relative bandwidth of each of 2 or more frequencies, as librosa's vqt derives it when
    given no ``alpha``: from the local octave resolution (a centred difference of log2 frequency,
    one-sided at either end). Computed over all of a CQT's frequencies, then sliced per octave,
    as librosa does (an octave's own ends would give other values)."""
    logf = np.log2(freqs)
    bins_per_octave = np.empty_like(freqs)
    bins_per_octave[0] = 1 / (logf[1] - logf[0])
    bins_per_octave[-1] = 1 / (logf[-1] - logf[-2])
    bins_per_octave[1:-1] = 2 / (logf[2:] - logf[:-2])
    return (2.0 ** (2 / bins_per_octave) - 1) / (2.0 ** (2 / bins_per_octave) + 1)


def wavelet_basis(freqs: np.ndarray, sample_rate: float, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``librosa.filters.wavelet(freqs=..., sr=..., alpha=...)`` at librosa.cqt's settings
    (Hann window, filter_scale 1, L1 norm, gamma 0, padded to a power of 2, complex64),
    built the same way with each window length's window made once per process."""
    lengths, _ = librosa.filters.wavelet_lengths(
        freqs=freqs, sr=sample_rate, window=CQT_WINDOW, filter_scale=1, gamma=0, alpha=alpha
    )
    size = int(2.0 ** (np.ceil(np.log2(max(lengths)))))
    basis = np.zeros((len(freqs), size), dtype=np.complex64)
    for row, (length, freq) in enumerate(zip(lengths, freqs)):
        sig = librosa.util.phasor(np.arange(-length // 2, length // 2, dtype=float) * 2 * np.pi * freq / sample_rate)
        sig *= hann_window(len(sig))
        norm = np.sum(np.abs(sig))  # librosa.util.normalize(sig, norm=1)
        if norm >= np.finfo(norm.dtype).tiny:
            sig = sig / norm
        start = (size - len(sig)) // 2
        basis[row, start : start + len(sig)] = sig
    return basis, lengths


@functools.cache
def hann_window(length: int) -> np.ndarray:
    """librosa's (periodic) Hann window of a whole number of samples, made once per length."""
    window = librosa.filters.get_window(CQT_WINDOW, length, fftbins=True)
    window.flags.writeable = False
    return window


def sparsify_rows(x: np.ndarray, quantile: float, dtype) -> scipy.sparse.csr_matrix:
    """``librosa.util.sparsify_rows(x, quantile=..., dtype=...)``: each row keeps its largest
    magnitudes, those that make up all but ``quantile`` of its L1 norm; in one pass over the
    rows instead of one sparse assignment per row."""
    mags = np.abs(x)
    norms = np.sum(mags, axis=1, keepdims=True)
    mag_sort = np.sort(mags, axis=1)
    cumulative_mag = np.cumsum(mag_sort / norms, axis=1)
    threshold_idx = np.argmin(cumulative_mag < quantile, axis=1)
    keep = mags >= mag_sort[np.arange(x.shape[0]), threshold_idx][:, np.newaxis]
    values = np.where(keep, x, 0).astype(dtype)
    return scipy.sparse.csr_matrix(values)  # the zeros left out, as librosa's assignment leaves them


def zero_crossing_rate(y: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """``librosa.feature.zero_crossing_rate(y, frame_length, hop_length)`` [1, frames].

    The crossings of the (edge-padded) signal are found once; each frame counts those
    between its own consecutive samples, as librosa does frame by frame.
    """
    half = frame_length // 2
    padded = np.pad(y, (half, half), mode="edge")
    crossings = librosa.zero_crossings(padded, pad=False)  # [i]: between samples i-1 and i
    counts = np.zeros(padded.size + 1, dtype=np.int64)
    np.cumsum(crossings, out=counts[1:])
    starts = hop_length * np.arange(1 + (padded.size - frame_length) // hop_length)
    in_frame = counts[starts + frame_length] - counts[starts + 1]
    return (in_frame / frame_length)[np.newaxis]


# ---- many clips, on every core


def int16_to_float(samples: np.ndarray) -> np.ndarray:
    """int16 PCM samples -> float32 in [-1, 1), as soundfile and librosa.load read them."""
    return np.asarray(samples, dtype=np.float32) / np.float32(INT16_SCALE)


def wav_features(path: str | Path, sample_rate: int, params: FeatureParams) -> np.ndarray:
    """The features of one mono 16-bit WAV written by the convert stage."""
    samples, file_rate = read_wav(path)
    if file_rate != sample_rate:
        raise DataError(
            f"{path}: sample rate {file_rate} Hz, expected {sample_rate} Hz like the other clips", path=path
        )
    try:
        return clip_features(int16_to_float(samples), sample_rate, params)
    except DataError as e:
        raise DataError(f"{path}: {e}", path=path) from None


def warmup_clip(sample_rate: int) -> np.ndarray:
    """A short deterministic test signal: a chord with a little noise."""
    t = np.arange(int(WARMUP_SECONDS * sample_rate)) / sample_rate
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63)) / 6
    noise = 0.01 * np.random.default_rng(0).standard_normal(t.size)
    return (chord + noise).astype(np.float32)


def check_params(params: FeatureParams, sample_rate: int, where: str = SETTINGS_WHERE) -> None:
    """Compute the features of a short test signal: ParamError if the settings do not fit
    the sample rate (e.g. a CQT or contrast band above the Nyquist frequency)."""
    try:
        clip_features(warmup_clip(sample_rate), sample_rate, params)
    except librosa.util.exceptions.ParameterError as e:
        raise ParamError(f"{where} = {params_to_dict(params)} does not work at {sample_rate} Hz: {e}") from None


def init_worker(sample_rate: int, params: FeatureParams) -> None:
    """Worker start-up: one thread for any thread pool a library starts later (the
    processes already use every core; clip_features limits BLAS itself), then one
    warm-up clip so that numba compiles before the first real clip."""
    for variable in THREAD_ENV_VARS:
        os.environ[variable] = "1"
    clip_features(warmup_clip(sample_rate), sample_rate, params)


def iter_wav_features(
    wav_paths: Sequence[str | Path],
    sample_rate: int,
    params: FeatureParams,
    workers: int | None = None,
    desc: str = "features",
    progress: bool = True,
) -> Iterator[np.ndarray]:
    """Yield the features of each WAV, in the order of ``wav_paths``, computed in parallel.

    ``workers`` processes (default: every core) each hold one clip at a time and at most
    IN_FLIGHT_PER_WORKER clips per worker are queued, so memory stays flat however many
    clips there are. A tqdm bar on stderr counts the clips. The first error (a bad file)
    stops the work and is raised here. Workers are spawned, so the calling script must
    guard its entry point with ``if __name__ == "__main__":`` (as the stages do).
    """
    workers = workers or os.cpu_count() or 1
    paths = iter(wav_paths)
    # "spawn": workers start clean (no copy of the caller's threads or locks).
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=init_worker, initargs=(sample_rate, params)
    )
    pending: deque[Future] = deque()

    def submit_next(count: int) -> None:
        for path in islice(paths, count):
            pending.append(pool.submit(wav_features, str(path), sample_rate, params))

    finished = False
    try:
        with tqdm(total=len(wav_paths), desc=desc, unit="clip", file=sys.stderr, disable=not progress) as bar:
            submit_next(IN_FLIGHT_PER_WORKER * workers)
            while pending:
                row = pending.popleft().result()
                submit_next(1)
                bar.update(1)
                yield row
        finished = True
    finally:
        pool.shutdown(wait=True, cancel_futures=not finished)
