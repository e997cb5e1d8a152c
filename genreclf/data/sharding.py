"""Writing one split as shuffled TFRecord shards (format: ``genreclf.tfrecords``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genreclf.data.audio import read_wav
from genreclf.data.tfrecords import serialize_example, shard_name
from genreclf.errors import DataError


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


def write_split_shards(
    out_dir: str | Path,
    split: str,
    clips: Sequence[Clip],
    num_shards: int,
    rng: np.random.Generator,
    sample_rate: int,
    progress=None,
) -> list[int]:
    """Write ``clips`` as shards ``out_dir/{split}-...tfrecord`` in a shuffled order.

    Every WAV must be mono 16-bit at ``sample_rate``. ``progress`` (e.g. a tqdm bar)
    is advanced by one per clip. Returns the number of samples of each clip, in input order.
    """
    import tensorflow as tf

    chunks = shard_chunks(len(clips), num_shards, rng)
    num_samples = [0] * len(clips)
    for index, chunk in enumerate(chunks):
        path = Path(out_dir) / shard_name(split, index, len(chunks), len(chunk))
        with tf.io.TFRecordWriter(str(path)) as writer:
            for i in chunk:
                clip = clips[i]
                samples, rate = read_wav(clip.wav_path)
                if rate != sample_rate:
                    raise DataError(
                        f"{clip.wav_path}: sample rate {rate} Hz, but the other clips have {sample_rate} Hz",
                        path=clip.wav_path,
                    )
                writer.write(serialize_example(samples, clip.label, clip.track_id))
                num_samples[i] = len(samples)
                if progress is not None:
                    progress.update(1)
    return num_samples
