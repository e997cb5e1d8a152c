"""Writing one split as shuffled TFRecord shards (format: ``genreclf.data.tfrecords``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genreclf.artifacts import ObjectEntry
from genreclf.data import gcs
from genreclf.data.audio import read_wav
from genreclf.data.tfrecords import FORMAT_VERSION, serialize_example, shard_name
from genreclf.errors import DataError

KEY_HEX_CHARS = 32  # of the SHA-256 that names a set of shards on GCS


@dataclass(frozen=True)
class Clip:
    wav_path: str
    label: int
    track_id: str


def shard_chunks(num_clips: int, num_shards: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle clip indices 0..num_clips-1 and cut them into contiguous, balanced chunks.

    There are ``min(num_shards, num_clips)`` chunks whose sizes differ by at most one.
    """
    if num_clips < 1 or num_shards < 1:
        raise ValueError(f"need at least one clip and one shard, got {num_clips} clips, {num_shards} shards")
    return np.array_split(rng.permutation(num_clips), min(num_shards, num_clips))


def write_shard(path: str | Path, clips: Sequence[Clip], sample_rate: int, progress=None) -> list[int]:
    """Write ``clips``, in this order, as one TFRecord file ``path``; the number of samples of each.

    Every WAV must be mono 16-bit at ``sample_rate``. ``progress`` (e.g. a tqdm bar) is
    advanced by one per clip. Both engines write each shard with this function (see
    ``genreclf.engine``).
    """
    import tensorflow as tf

    num_samples = []
    with tf.io.TFRecordWriter(str(path)) as writer:
        for clip in clips:
            samples, rate = read_wav(clip.wav_path)
            if rate != sample_rate:
                raise DataError(
                    f"{clip.wav_path}: sample rate {rate} Hz, but the other clips have {sample_rate} Hz",
                    path=clip.wav_path,
                )
            writer.write(serialize_example(samples, clip.label, clip.track_id))
            num_samples.append(len(samples))
            if progress is not None:
                progress.update(1)
    return num_samples


def plan_split_shards(
    out_dir: str | Path, split: str, clips: Sequence[Clip], num_shards: int, rng: np.random.Generator
) -> list[tuple[Path, list[int]]]:
    """The shards of one split: (path ``out_dir/{split}-...tfrecord``, the indices of its clips in
    ``clips``, in their shuffled order) for each shard (``shard_chunks`` with ``rng``)."""
    chunks = shard_chunks(len(clips), num_shards, rng)
    return [
        (shard_target(out_dir, shard_name(split, index, len(chunks), len(chunk))), chunk.tolist())
        for index, chunk in enumerate(chunks)
    ]


def shard_target(out_dir: str | Path, name: str) -> Path | str:
    """Where shard ``name`` goes: a file of the folder ``out_dir``, or an object under a gs:// prefix."""
    return gcs.join(out_dir, name) if gcs.is_remote(out_dir) else Path(out_dir) / name


def write_split_shards(
    out_dir: str | Path,
    split: str,
    clips: Sequence[Clip],
    num_shards: int,
    rng: np.random.Generator,
    sample_rate: int,
    progress=None,
) -> list[int]:
    """Write ``clips`` as shards ``out_dir/{split}-...tfrecord`` in a shuffled order, one after the other.

    Every WAV must be mono 16-bit at ``sample_rate``. ``progress`` (e.g. a tqdm bar)
    is advanced by one per clip. Returns the number of samples of each clip, in input order.
    """
    num_samples = [0] * len(clips)
    for path, indices in plan_split_shards(out_dir, split, clips, num_shards, rng):
        for i, count in zip(indices, write_shard(path, [clips[i] for i in indices], sample_rate, progress)):
            num_samples[i] = count
    return num_samples


# ---- shards on Google Cloud Storage


def write_shard_object(
    url: str, clips: Sequence[Clip], sample_rate: int, progress=None
) -> tuple[list[int], ObjectEntry, bool]:
    """``write_shard`` to a local temporary file, then that file uploaded as the object ``url``
    (``gcs.upload``: nothing is uploaded when the object already holds these bytes).

    Returns (the number of samples of each clip, the object's entry, whether it was uploaded).
    The object holds exactly the bytes ``write_shard`` writes to a local path.
    """
    with gcs.scratch_file(".tfrecord") as local:
        num_samples = write_shard(local, clips, sample_rate, progress)
        entry, uploaded = gcs.upload(local, url)
    return num_samples, entry, uploaded


def shard_key(
    clips: Sequence[tuple[str, int, str, str]],
    labels: Sequence[str],
    sample_rate: int,
    num_shards: dict[str, int],
    seed: int,
) -> str:
    """The name of a set of shards on GCS, derived from everything their bytes depend on.

    ``clips``: (track id, label, split, MD5 of the WAV's content: what the WAV manifest lists for
    an object on GCS) of every clip, in the order of the split manifest. The shard format's
    FORMAT_VERSION is part of it, so that a change of the bytes for the same inputs gives a new
    prefix (objects never change).
    """
    inputs = {
        "format": FORMAT_VERSION,
        "clips": [list(clip) for clip in clips],
        "labels": list(labels),
        "sample_rate": sample_rate,
        "num_shards": num_shards,
        "seed": seed,
    }
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:KEY_HEX_CHARS]
