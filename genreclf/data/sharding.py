"""Writing the splits as shuffled TFRecord shards (format: ``genreclf.data.tfrecords``).

The plan (``plan_shards``: which clips go in which shard, in which order) depends only on the
split manifest, the shard counts and the seed; each shard is then one unit of work
(``write_shard``), on either engine, resumable through a ``genreclf.resume.Scratch``
(``write_resumably``) or uploaded to GCS (``write_shard_object``)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from genreclf import resume
from genreclf.artifacts import SPLITS, ObjectEntry, SplitClip
from genreclf.data import gcs
from genreclf.data.audio import read_wav
from genreclf.data.tfrecords import FORMAT_VERSION, serialize_example, shard_name, write_record
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
    ``genreclf.engine``). TensorFlow is not imported: the records are framed here
    (``tfrecords.write_record``), the bytes ``tf.io.TFRecordWriter`` writes.
    """
    num_samples = []
    try:
        with open(path, "wb") as writer:
            for clip in clips:
                samples, rate = read_wav(clip.wav_path)
                if rate != sample_rate:
                    raise DataError(
                        f"{clip.wav_path}: sample rate {rate} Hz, but the other clips have {sample_rate} Hz",
                        path=clip.wav_path,
                    )
                write_record(writer, serialize_example(samples, clip.label, clip.track_id))
                num_samples.append(len(samples))
                if progress is not None:
                    progress.update(1)
    except BaseException:  # a bad clip, a full disk: no half-written shard is left
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return num_samples


def plan_shards(
    target: str | Path, manifest: Sequence[SplitClip], num_shards: dict[str, int], seed: int, sample_rate: int
) -> tuple[list[tuple], list[str]]:
    """Every shard: (its path or URL under ``target``, its clips in their shuffled order, the sample
    rate), and the split of each. One independent random stream per split, derived from ``seed``."""
    streams = np.random.SeedSequence(seed).spawn(len(SPLITS))
    shards, shard_splits = [], []
    for split, stream in zip(SPLITS, streams):
        clips = [Clip(clip.path, clip.label, clip.track_id) for clip in manifest if clip.split == split]
        for path, indices in plan_split_shards(target, split, clips, num_shards[split], np.random.default_rng(stream)):
            shards.append((path, [clips[i] for i in indices], sample_rate))
            shard_splits.append(split)
    return shards, shard_splits


def split_sizes(shard_splits: list[str], samples_per_shard: Iterable[list[int]]) -> dict:
    """Per split: its clips, and the fewest and most samples of a clip (for dataset_info.json)."""
    sizes = {split: [] for split in SPLITS}  # the samples of each clip
    for split, counts in zip(shard_splits, samples_per_shard):
        sizes[split] += counts
    return {
        split: {"clips": len(samples), "min_samples": min(samples), "max_samples": max(samples)}
        for split, samples in sizes.items()
    }


def write_here(fn: Callable, shards: Sequence[tuple]) -> Iterator:
    """The local engine's writer (``genreclf.engine.map_in_order``'s ``local``): ``shards`` (those
    still to write: a resumed run's bar counts only its own clips) one after the other in this
    process, a progress bar counting their clips."""
    with tqdm(total=sum(len(clips) for _, clips, _ in shards), desc="shard", unit="clip") as progress:
        for shard in shards:
            yield fn(*shard, progress=progress)


# A shard's result in a scratch: its clips' sample counts, and the record of its file.
SHARD_CODEC = resume.file_codec(list, list)


def write_resumably(shards: Sequence[tuple], engine, scratch: resume.Scratch) -> list[list[int]]:
    """``write_shard`` of each of ``plan_shards``'s shards (planned under ``scratch.files``) that
    ``scratch`` does not hold, on ``engine``; the samples of each shard's clips, in order."""
    from genreclf.engine import limit_threads, map_in_order

    write = resume.WritesFile(write_shard, at=0)
    results = map_in_order(write, shards, engine, setup=limit_threads, local=write_here, scratch=scratch)
    return [samples for samples, _ in results]


def link_into(sources: Iterable[str | Path], folder: Path) -> None:
    """Each file of ``sources`` into ``folder`` under its name: a hard link (no bytes copied; the
    scratch keeps its own link until it is removed), else moved."""
    for source in sources:
        destination = folder / Path(source).name
        try:
            os.link(source, destination)
        except OSError:  # a file system without hard links
            shutil.move(source, destination)


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


def upload_shards(shards: Sequence[tuple], engine) -> list[tuple[list[int], ObjectEntry, bool]]:
    """``write_shard_object`` of each of ``plan_shards``'s shards (planned under a gs:// prefix) on
    ``engine``, in order."""
    from genreclf.engine import limit_threads, map_in_order

    return list(map_in_order(write_shard_object, shards, engine, setup=limit_threads, local=write_here))


def wav_digests(paths: Sequence[str], objects: dict[str, ObjectEntry]) -> tuple[list[str], int]:
    """The MD5 of each WAV (what ``shard_key`` takes): as the WAV manifest gives it for an object
    (``objects``), read and hashed for a file of the workspace (the same value for the same bytes);
    and how many were hashed."""
    digests = [objects[path].md5 if path in objects else gcs.file_digest(path) for path in paths]
    return digests, sum(path not in objects for path in paths)


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
