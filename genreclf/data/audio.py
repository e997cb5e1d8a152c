"""Decoding audio clips to mono 16-bit PCM at one sample rate, and the WAVs the convert stage writes.

``decode_clip`` is the one place where a file becomes samples: the convert stage,
the predict command and the benchmarks all call it, so a model always sees audio
prepared exactly as its training data was.

A converted WAV is a local file, or, with a gs:// data root, an object on GCS named by its
content (``convert_clip_object``; listed with its size and MD5 in a WAV manifest,
``genreclf.artifacts.write_wav_manifest``); so is a raw clip, convert's input (listed in the raw
manifest that fetch writes). ``read_wav`` and ``decode_clip`` read either, by path or by URL;
``check_wavs`` and ``check_raw_clips`` check the objects on the bucket before a stage reads them.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from genreclf import catalog
from genreclf.artifacts import (
    RAW_MANIFEST_FILE,
    WAV_MANIFEST_FILE,
    ObjectEntry,
    read_raw_manifest,
    read_wav_manifest,
    wav_object_name,
)
from genreclf.data import gcs
from genreclf.errors import DataError
from genreclf.io import file_error, write_bytes

# File types the decoder reads (libsndfile: WAV, AU, MP3, FLAC, Ogg Vorbis). No ffmpeg is needed.
AUDIO_EXTENSIONS = (".au", ".flac", ".mp3", ".ogg", ".wav")
# The audit event (sys.audit) raised with a local audio file's path before libsndfile opens it: its
# C code opens the file, so Python's own "open" event never fires for the files a stage decodes.
AUDIO_OPEN_EVENT = "genreclf.audio.open"
# The resampler (soxr's "high quality"): fixed, so that the same file always gives the same samples.
RES_TYPE = "soxr_hq"
INT16_SCALE = np.float32(32768.0)
INT16_MIN, INT16_MAX = -32768, 32767
# libsndfile's error code for a file it cannot parse at all (its message wrongly says "does not exist").
LIBSNDFILE_UNREADABLE = 7
# libsndfile's error code for a failed system call ("System error."): it keeps no errno.
LIBSNDFILE_SYSTEM = 2

# Why a clip was not converted (the "kind" of a ConvertResult that is not ok).
NO_AUDIO = "no_audio"
TOO_SHORT = "too_short"
DECODE_ERROR = "decode_error"
NOT_AUDIO = "not_audio"
SKIP_KINDS = (NO_AUDIO, TOO_SHORT, DECODE_ERROR, NOT_AUDIO)

EXCERPT_FROM = catalog.EXCERPT_FROM  # where an excerpt of a longer clip is taken from


class AudioDecodeError(DataError):
    """A file could not be decoded; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: cannot decode audio: {reason}")
        self.path = str(path)
        self.reason = reason


class NoAudioError(AudioDecodeError):
    """A file that is empty or decodes to no samples at all."""


@dataclass(frozen=True)
class ConvertResult:
    """What ``convert_clip`` did with one clip: ``kind`` is "ok" or one of SKIP_KINDS."""

    ok: bool
    kind: str
    reason: str
    num_samples: int


def is_audio_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1) to int16: scaled by 32768, rounded (half to even), clipped.

    Done in float32 for float32 input: scaling by a power of two is exact, so the result is
    the same as in float64.
    """
    samples = np.asarray(samples)
    if samples.dtype != np.float32:
        samples = samples.astype(np.float64)
    scaled = np.round(samples * INT16_SCALE)
    return np.clip(scaled, INT16_MIN, INT16_MAX, out=scaled).astype(np.int16)


def to_mono(frames: np.ndarray) -> np.ndarray:
    """[frames, channels] float32 to [frames]: the channels' mean, summed in channel order.

    The same float32 arithmetic as ``librosa.to_mono`` (numpy's mean over the channel axis).
    """
    channels = frames.shape[1]
    if channels == 1:
        return np.ascontiguousarray(frames[:, 0])
    total = frames[:, 0] + frames[:, 1]
    for channel in range(2, channels):
        total += frames[:, channel]
    total /= np.float32(channels)
    return total


def resample(samples: np.ndarray, native_rate: int, sample_rate: int) -> np.ndarray:
    """Resample with RES_TYPE to ``sample_rate``; the length is ceil(n * ratio), as librosa gives."""
    if native_rate == sample_rate:
        return samples
    length = int(np.ceil(samples.size * (float(sample_rate) / native_rate)))
    resampled = soxr.resample(samples, native_rate, sample_rate, quality=RES_TYPE)
    if resampled.size < length:
        resampled = np.pad(resampled, (0, length - resampled.size))
    return np.asarray(resampled[:length], dtype=samples.dtype)


def audio_source(path: str | Path) -> tuple[Path | io.BytesIO, int]:
    """(what soundfile opens for ``path``, its size in bytes): a local file itself, or the content
    of the object at a gs:// URL, read whole in one request (a clip's WAV is about 1.3 MB, an FMA
    mp3 0.5-1 MB).
    AudioDecodeError if there is no such file; a DataError naming the URL if there is no such object."""
    if gcs.is_remote(path):
        content = gcs.read_bytes(path)
        return io.BytesIO(content), len(content)
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(path, "file not found")
    sys.audit(AUDIO_OPEN_EVENT, str(path))
    return path, path.stat().st_size


def raise_system_error(path: str | Path, error: sf.LibsndfileError) -> None:
    """For libsndfile's "System error." on a local file: the error that opening the file gives
    here (no such file, permission denied, too many open files), as a FileSystemError. Returns
    when it opens (the failure was not in opening it) or ``error`` is another kind."""
    if error.code != LIBSNDFILE_SYSTEM or gcs.is_remote(path):
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise file_error(e, path) from None


def decode_clip(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode an audio file (a path, or a gs:// URL) to mono int16 samples at ``sample_rate`` Hz.

    libsndfile decodes to float32, the channels are averaged, the signal is resampled
    with RES_TYPE, then rounded and clipped to 16 bits: the same samples as
    ``librosa.load(sr=sample_rate, mono=True, res_type=RES_TYPE)`` then ``to_int16``
    (tested), without librosa's extra copies and checks. Raises NoAudioError for an
    empty file or one with no samples, AudioDecodeError for anything else that cannot be read.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    path = path if gcs.is_remote(path) else Path(path)
    source, size = audio_source(path)
    if size == 0:
        raise NoAudioError(path, "empty file (0 bytes)")
    try:
        with sf.SoundFile(source) as audio_file:
            native_rate = audio_file.samplerate
            frames = audio_file.read(dtype="float32", always_2d=True)
        if frames.size == 0:
            raise NoAudioError(path, "no audio samples in the file")
        samples = resample(to_mono(frames), native_rate, int(sample_rate))
    except sf.LibsndfileError as e:
        raise_system_error(path, e)
        # The file exists (checked above): libsndfile's "File does not exist ..." (error 7)
        # here means it found nothing it can parse, e.g. an mp3 with no valid frames.
        detail = "no stream it can parse" if e.code == LIBSNDFILE_UNREADABLE else e.error_string.rstrip(".")
        raise AudioDecodeError(path, f"libsndfile cannot read it ({detail}; error {e.code})") from None
    except NoAudioError:
        raise
    except Exception as e:  # mpg123 or the resampler failing part-way through
        raise AudioDecodeError(path, f"{type(e).__name__}: {e or 'no details'}") from None
    return to_int16(samples)


@contextlib.contextmanager
def opened_wav(path: str | Path) -> Iterator[sf.SoundFile]:
    """A mono 16-bit WAV file written by ``write_wav``, or the object at a gs:// URL that
    ``convert_clip_object`` wrote, open for reading (a file: its header read so far); a DataError
    naming it if it is not one."""
    source = audio_source(path)[0] if gcs.is_remote(path) else path
    if source is path:
        sys.audit(AUDIO_OPEN_EVENT, str(path))
    try:
        with sf.SoundFile(source) as wav:
            if wav.channels != 1 or wav.subtype != "PCM_16":
                raise DataError(
                    f"{path}: expected mono 16-bit PCM, got {wav.channels} channels of {wav.subtype}", path=path
                )
            yield wav
    except sf.LibsndfileError as e:
        raise_system_error(path, e)
        raise DataError(f"{path}: cannot read it as WAV ({e.error_string.rstrip('.')})", path=path) from None


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """The (int16 samples, sample rate) of a WAV (``opened_wav``)."""
    with opened_wav(path) as wav:
        return wav.read(dtype="int16"), wav.samplerate


def wav_sample_rate(path: str | Path) -> int:
    """The sample rate of a WAV (``opened_wav``), from its header alone when it is a file."""
    with opened_wav(path) as wav:
        return wav.samplerate


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write int16 samples as a 16-bit PCM WAV file, atomically (same samples, same bytes).

    libsndfile encodes it in memory and Python writes the file: an error of the system (a full
    disk) is then a FileSystemError naming ``path``, not libsndfile's bare "System error."."""
    encoded = io.BytesIO()
    sf.write(encoded, np.asarray(samples, dtype=np.int16), sample_rate, subtype="PCM_16", format="WAV")
    write_bytes(path, encoded.getvalue())


def excerpt(samples: np.ndarray, sample_rate: int, seconds: float | None, where: str = "start") -> np.ndarray:
    """``round(seconds * sample_rate)`` samples of ``samples``, taken from its start, or from its
    middle (as many samples before the excerpt as after it, one fewer before when they cannot be
    equal); the whole of a clip no longer than that, or when ``seconds`` is None."""
    if where not in EXCERPT_FROM:
        raise ValueError(f"where must be one of {EXCERPT_FROM}, got {where!r}")
    if seconds is None:
        return samples
    length = round(seconds * sample_rate)
    if length <= 0:
        raise ValueError(f"seconds must give at least one sample at {sample_rate} Hz, got {seconds!r}")
    if samples.size <= length:
        return samples
    first = (samples.size - length) // 2 if where == "middle" else 0
    return samples[first : first + length]


def convert_clip(
    src: str | Path,
    dst: str | Path,
    sample_rate: int,
    min_seconds: float,
    excerpt_seconds: float | None = None,
    excerpt_from: str = "start",
) -> ConvertResult:
    """Decode ``src``, cut it to an excerpt of ``excerpt_seconds`` (``excerpt``; None: the whole
    clip), check its length and write it to ``dst`` as mono 16-bit WAV.

    Nothing is written for a clip that is skipped; the result says why.
    """
    if not is_audio_file(src):
        return ConvertResult(
            False,
            NOT_AUDIO,
            f"not an audio file: extension {Path(src).suffix!r} is none of {list(AUDIO_EXTENSIONS)}",
            0,
        )
    try:
        samples = decode_clip(src, sample_rate)
    except NoAudioError as e:
        return ConvertResult(False, NO_AUDIO, f"no audio: {e.reason}", 0)
    except AudioDecodeError as e:
        return ConvertResult(False, DECODE_ERROR, f"decode failed: {e.reason}", 0)
    samples = excerpt(samples, sample_rate, excerpt_seconds, excerpt_from)
    seconds = samples.size / sample_rate
    if seconds < min_seconds:
        return ConvertResult(
            False, TOO_SHORT, f"too short: {seconds:.2f} s < {float(min_seconds)} s", int(samples.size)
        )
    write_wav(dst, samples, sample_rate)
    return ConvertResult(True, "ok", "", int(samples.size))


def convert_clip_object(
    src: str | Path,
    track_id: str,
    prefix: str,
    sample_rate: int,
    min_seconds: float,
    excerpt_seconds: float | None = None,
    excerpt_from: str = "start",
) -> tuple[ConvertResult, ObjectEntry | None, bool]:
    """``convert_clip`` to a local temporary file, then that file uploaded as the object
    ``<prefix>/<track_id>.<its MD5>.wav`` (``gcs.upload``: nothing is uploaded when the object is
    there with these bytes already). Returns (the result, the object's entry or None for a clip
    that is skipped, whether it was uploaded). The object holds exactly the bytes of a local WAV."""
    with gcs.scratch_file(".wav") as local:
        result = convert_clip(src, local, sample_rate, min_seconds, excerpt_seconds, excerpt_from)
        if not result.ok:
            return result, None, False
        url = gcs.join(prefix, wav_object_name(track_id, gcs.file_digest(local)))
        entry, uploaded = gcs.upload(local, url)
    return result, entry, uploaded


def check_listed_objects(
    paths: Sequence[str], manifest_path: str | Path, read_manifest: Callable[[], tuple | None], what: str
) -> dict[str, ObjectEntry]:
    """The objects of the gs:// URLs among ``paths`` (the ``what`` a stage is about to read), checked
    before any work: each listed by the manifest at ``manifest_path`` (``read_manifest()`` gives its
    (prefix, {track id: object}), or None if there is none) and on the bucket with the size and MD5
    it gives (one listing: ``gcs.check_objects``, a RemoteObjectError naming the first that is not).
    Returns {url: its entry}; {} when every path is a local file (the manifest is not read)."""
    urls = [path for path in paths if gcs.is_remote(path)]
    if not urls:
        return {}
    path = Path(manifest_path)
    manifest = read_manifest()
    if manifest is None:
        raise DataError(f"{path} does not exist, but the {what} are objects on GCS (e.g. {urls[0]})", path=path)
    by_url = {entry.url: entry for entry in manifest[1].values()}
    unlisted = [url for url in urls if url not in by_url]
    if unlisted:
        raise DataError(f"{path} does not list {len(unlisted)} of the {what} to read (e.g. {unlisted[:3]})", path=path)
    expected = [by_url[url] for url in urls]
    gcs.check_objects(expected, path)
    return dict(zip(urls, expected))


def check_wavs(paths: Sequence[str], wav_dir: str | Path) -> dict[str, ObjectEntry]:
    """``check_listed_objects`` for the WAVs: the URLs among ``paths`` against <wav_dir>/wav_manifest.json."""
    return check_listed_objects(paths, Path(wav_dir) / WAV_MANIFEST_FILE, lambda: read_wav_manifest(wav_dir), "WAVs")


def check_raw_clips(paths: Sequence[str], raw_dir: str | Path) -> dict[str, ObjectEntry]:
    """``check_listed_objects`` for the raw clips (the convert stage's input): the URLs among
    ``paths`` against <raw_dir>/raw_manifest.json."""
    return check_listed_objects(
        paths, Path(raw_dir) / RAW_MANIFEST_FILE, lambda: read_raw_manifest(raw_dir), "raw clips"
    )
