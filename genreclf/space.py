"""Will a stage's outputs fit on their disk? Estimates of what a stage writes, checked against the
free space before any work, so that a run that cannot fit stops at once with one line.

Pure functions over sizes and paths: the stage layer says what goes where (and which other
folders hold a copy of the outputs on another disk, e.g. a cache that links them).

- ``GENRECLF_SPACE_CHECK=off`` skips the check (when an estimate is known to be wrong).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genreclf.errors import NotEnoughSpaceError, ParamError
from genreclf.io import existing_ancestor, free_bytes, human_bytes

SPACE_VARIABLE = "GENRECLF_SPACE_CHECK"
# The margin over an estimate: a fraction of it, plus room for the small files and the file system.
MARGIN_FRACTION = 0.10
MARGIN_BYTES = 16 * 1024**2
WAV_HEADER_BYTES = 44
PCM16_BYTES = 2
# A TFRecord record's framing (length, two CRCs) and its example's fields besides the audio.
TFRECORD_RECORD_BYTES = 16 + 128
# A CSV value written with "%.9g" and its comma, at most.
CSV_VALUE_BYTES = 17
# Source files whose header is read to estimate the clips' length (at most: a fixed, small cost).
SAMPLED_SOURCES = 16


@dataclass(frozen=True)
class Need:
    """``size`` bytes of ``what`` that a stage will write under ``path``."""

    what: str
    size: int
    path: str | Path


def check_enabled(environ=None) -> bool:
    """Whether GENRECLF_SPACE_CHECK asks for the check (unset or "on": yes; "off": no)."""
    environ = os.environ if environ is None else environ
    raw = environ.get(SPACE_VARIABLE, "")
    value = raw.strip().lower() or "on"
    if value not in ("on", "off"):
        raise ParamError(
            f"{SPACE_VARIABLE}={raw!r}: expected on or off; unset it to check the free space before a stage writes"
        )
    return value == "on"


def with_margin(size: int) -> int:
    return int(size * (1 + MARGIN_FRACTION)) + MARGIN_BYTES


def wav_bytes(num_samples: Iterable[int]) -> int:
    """The bytes of 16-bit mono WAVs of these lengths (in samples)."""
    return sum(WAV_HEADER_BYTES + PCM16_BYTES * int(n) for n in num_samples)


def clip_seconds(paths: Sequence[str | Path], default_seconds: float) -> float:
    """The mean length in seconds of up to SAMPLED_SOURCES local audio files among ``paths``
    (evenly spaced; their headers read), or ``default_seconds`` if none can be read."""
    import soundfile as sf

    local = [p for p in paths if "://" not in str(p)]
    if not local:
        return default_seconds
    picked = sorted({int(i) for i in np.linspace(0, len(local) - 1, min(SAMPLED_SOURCES, len(local)))})
    seconds = []
    for i in picked:
        try:
            info = sf.info(str(local[i]))
        except Exception:  # not audio, or unreadable: convert reports it; it writes nothing for it
            continue
        if info.samplerate > 0 and info.frames > 0:
            seconds.append(info.frames / info.samplerate)
    return float(np.mean(seconds)) if seconds else default_seconds


def converted_wav_bytes(paths: Sequence[str | Path], sample_rate: int, default_seconds: float = 30.0) -> int:
    """What converting the audio files ``paths`` to mono 16-bit WAV at ``sample_rate`` writes, about."""
    seconds = clip_seconds(paths, default_seconds)
    return len(paths) * (WAV_HEADER_BYTES + PCM16_BYTES * round(seconds * sample_rate))


def shard_bytes(wav_paths: Sequence[str | Path]) -> int:
    """What sharding the local WAVs ``wav_paths`` writes, about: their samples again, in records."""
    total = 0
    for path in wav_paths:
        if "://" not in str(path):
            total += max(os.stat(path).st_size - WAV_HEADER_BYTES, 0) + TFRECORD_RECORD_BYTES
    return total


def table_bytes(rows: int, columns: int) -> int:
    """A CSV table of numbers, at most."""
    return rows * (columns + 3) * CSV_VALUE_BYTES


def _device(path: str | Path) -> int:
    return os.stat(existing_ancestor(path)).st_dev


def check_space(stage: str, needs: Sequence[Need], mirrors: Sequence[str | Path] = (), remedy: str = "") -> None:
    """NotEnoughSpaceError unless every disk has room for what goes on it, with a margin
    (``with_margin``). ``needs``: what the stage writes where; ``mirrors``: folders that hold a
    second copy of every output when they are on another disk than it (a cache that links the
    outputs). The message names the stage, the size, where, the free space and what to do
    (``remedy``, after the general advice to free space)."""
    by_device: dict[int, list[tuple[Need, Path]]] = {}
    for need in needs:
        if need.size <= 0:
            continue
        places = [Path(need.path)]
        home = _device(need.path)
        places += [Path(m) for m in mirrors if _device(m) != home]
        for place in places:
            by_device.setdefault(_device(place), []).append((need, place))
    for entries in by_device.values():
        total = sum(need.size for need, _ in entries)
        place = entries[0][1]
        free = free_bytes(place)
        if with_margin(total) <= free:
            continue
        what = "; ".join(
            f"about {human_bytes(need.size)} of {need.what} to {Path(where).as_posix()}" for need, where in entries
        )
        raise NotEnoughSpaceError(
            f"{stage} would write {what}; its disk has {human_bytes(free)} free "
            f"(needs {human_bytes(with_margin(total))} with a margin): free space"
            f"{', or ' + remedy if remedy else ''} (or set {SPACE_VARIABLE}=off if the estimate is wrong)",
            path=place,
        )


@dataclass(frozen=True)
class DatasetSize:
    """The published size of a dataset's archive, its clips and genres, and a clip's file, about."""

    archive_bytes: int
    clips: int
    genres: int
    clip_bytes: int


# GTZAN: 1000 30 s clips of 22050 Hz 16-bit AU in a 1.2 GB tar.gz; FMA: 30 s mp3s (about 0.9 MB),
# the archives as FMA lists them (fma_small 7.2 GB, fma_medium 22 GB, fma_large 93 GB).
DATASET_SIZES = {
    "gtzan": DatasetSize(1_230_000_000, 1000, 10, 1_323_000),
    "fma_small": DatasetSize(7_200_000_000, 8000, 8, 900_000),
    "fma_medium": DatasetSize(22_000_000_000, 25000, 16, 900_000),
    "fma_large": DatasetSize(93_000_000_000, 106574, 16, 900_000),
}


def fetch_bytes(dataset: str, clips_per_genre: int | None, downloads: bool) -> tuple[int, int]:
    """(the archive's bytes if ``downloads``, else 0; the chosen clips' bytes once extracted), about."""
    size = DATASET_SIZES.get(dataset)
    if size is None:
        return 0, 0
    clips = size.clips if clips_per_genre is None else min(size.clips, clips_per_genre * size.genres)
    return (size.archive_bytes if downloads else 0), clips * size.clip_bytes


def folder_bytes(path: str | Path) -> int:
    """The bytes of the files under ``path`` (0 if there is none)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0
