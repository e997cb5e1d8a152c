"""tf.data input pipelines of the Keras models, from the TFRecord shards of whole clips.

The shards hold only int16 audio (``genreclf.data.tfrecords``); every model input is
computed here with the TensorFlow ops of ``genreclf.features.spectrograms``, the same ones at
training, evaluation and prediction time. What a model's input is comes from its
*preprocessing* dict (written to ``models/<name>/preprocessing.json``), whose
``"input"`` is one of:

- ``"waveform_windows"`` (cnn1d): ``window_size`` samples of raw audio; training takes
  one random window of each clip per epoch, evaluation all consecutive windows
  (validation during training: ``units_per_clip`` evenly spaced ones, when given);
- ``"audio_clip"`` (mobilenet): the clip's int16 audio cropped or zero-padded to
  ``clip_samples``; one unit per clip. The model's first layer
  (``spectrograms.SpectrogramLayer``) makes the log-mel image of it;
- ``"audio_segments"`` (cnn2d): the int16 audio of ``segments_per_clip`` evenly spaced
  segments (``spectrograms.segment_audio``), ``segment_samples`` each; the model's first
  layer makes their log-mel images.

A *unit* is what the model classifies (window, clip image, segment); a clip's
prediction is the mean of its units' predictions.

Pipeline: parallel reads of the shard files -> parse (AUTOTUNE) -> the clip's
deterministic features (AUTOTUNE) -> ``cache()`` when asked (the caller decides from
the split's size and the free memory, see ``should_cache``) -> seeded shuffle ->
units -> batch -> prefetch. Element order is deterministic; in training, each epoch's
order comes from the seed and the epoch's number alone (``training_epochs``), so that a
run resumed at epoch k gets the batches of an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from genreclf.artifacts import SHARD_MANIFEST_FILE, ObjectEntry, read_shard_manifest
from genreclf.data import gcs
from genreclf.data.tfrecords import SHARD_RE, list_shards, parse_example
from genreclf.errors import DataError
from genreclf.features import spectrograms

AUTOTUNE = tf.data.AUTOTUNE
INPUT_KINDS = ("waveform_windows", "audio_clip", "audio_segments")
UNIT_NAMES = {"waveform_windows": "window", "audio_clip": "clip", "audio_segments": "segment"}
SEGMENT_KINDS = ("audio_segments",)  # several units per clip, shuffled again
INT16_BYTES = 2
SHUFFLE_BUFFER_CLIPS = 256  # clips in the shuffle buffer when a split is not cached
SHUFFLE_BUFFER_UNITS = 1024  # units (segments) in the second shuffle of audio_segments
CACHE_MEMORY_FRACTION = 0.5  # cache only what fits in this share of the available memory
# ... and in this many bytes, so that a stage's memory does not grow with the data set. The
# shards feed every model at >= 300 examples/s on 2 cores without the cache (README,
# 'Benchmarks'); the cache only saves re-parsing. GENRECLF_TFDATA_CACHE_MIB overrides it (the
# batches do not depend on caching, so neither do the outputs; DVC does not see it).
CACHE_LIMIT_MIB = 1024
CACHE_LIMIT_VARIABLE = "GENRECLF_TFDATA_CACHE_MIB"


# ---- the shards ---------------------------------------------------------------------


def shard_files(shard_dir: str | Path, split: str) -> list[str]:
    """The shard files of a split as strings, or a DataError if there are none.

    When ``shard_dir`` holds a shard manifest (the shards are on GCS), the gs:// URLs of the
    split's objects it lists, in index order, each checked on the bucket first (it exists, with
    the size and MD5 the manifest gives: a RemoteObjectError naming it if not); tf.data reads
    them with TensorFlow's own GCS filesystem.
    """
    shard_dir = Path(shard_dir)
    if not shard_dir.is_dir():
        raise DataError(f"{shard_dir}: no such directory", path=shard_dir)
    manifest = read_shard_manifest(shard_dir)
    if manifest is not None:
        return remote_shard_files(shard_dir, manifest[1], split)
    files = [str(p) for p in list_shards(shard_dir, split)]
    if not files:
        raise DataError(f"{shard_dir}: no '{split}-*.tfrecord' shards", path=shard_dir)
    return files


def remote_shard_files(shard_dir: Path, objects: list[ObjectEntry], split: str) -> list[str]:
    """The URLs of a split's objects of a shard manifest, in index order, checked on the bucket."""
    path = shard_dir / SHARD_MANIFEST_FILE
    by_name = {entry.url.rsplit("/", 1)[1]: entry for entry in objects}
    bad = [name for name in by_name if not SHARD_RE.match(name)]
    if bad:
        raise DataError(f"{path}: objects not named as shards are: {bad[:5]}", path=path)
    ours = sorted(
        (name for name in by_name if SHARD_RE.match(name)["split"] == split),
        key=lambda name: int(SHARD_RE.match(name)["index"]),
    )
    if not ours:
        raise DataError(f"{path}: no '{split}-*.tfrecord' objects", path=path)
    gcs.check_objects([by_name[name] for name in ours], path)
    return [by_name[name].url for name in ours]


def read_clips(shard_dir: str | Path, split: str, shuffle_files_seed: int | None = None) -> tf.data.Dataset:
    """Parsed clips ``{"audio", "label", "track_id"}`` of a split, read in parallel.

    Files are read in index order (or in a seeded random order), interleaved
    deterministically.
    """
    files = shard_files(shard_dir, split)
    if shuffle_files_seed is not None:
        files = list(np.random.default_rng(shuffle_files_seed).permutation(files))
    records = tf.data.TFRecordDataset(files, num_parallel_reads=min(len(files), 8))
    return records.map(parse_example, num_parallel_calls=AUTOTUNE)


# ---- per-clip features and units ----------------------------------------------------


# The function that makes each input kind's clip features, with the preprocessing.json keys it
# takes after the audio, in order.
CLIP_FEATURE_MAKERS = {
    "audio_clip": (spectrograms.fixed_length, ("clip_samples",)),
    "audio_segments": (spectrograms.segment_audio, ("n_fft", "hop_length", "image_size", "segments_per_clip")),
}


def clip_features(audio_int16: tf.Tensor, preprocessing: dict) -> tf.Tensor:
    """The deterministic part of a clip's input (what ``cache()`` keeps).

    waveform_windows: the int16 audio itself; audio_clip: the int16 audio cropped or
    padded to ``clip_samples``; audio_segments: the int16 audio of the segments
    [k, segment_samples].
    """
    kind = input_kind(preprocessing)
    if kind == "waveform_windows":
        return audio_int16
    make, keys = CLIP_FEATURE_MAKERS[kind]
    return make(audio_int16, *(preprocessing[key] for key in keys))


def evaluation_units(features: tf.Tensor, preprocessing: dict) -> tf.Tensor:
    """All units of a clip, [k, ...]: consecutive windows, the one clip, or the segments."""
    kind = input_kind(preprocessing)
    if kind == "waveform_windows":
        return spectrograms.waveform_windows(features, preprocessing["window_size"])
    if kind == "audio_clip":
        return features[tf.newaxis]
    return features


def training_unit_count(preprocessing: dict) -> int:
    """Units a clip gives per training epoch."""
    return preprocessing["segments_per_clip"] if input_kind(preprocessing) in SEGMENT_KINDS else 1


def feature_bytes_per_clip(preprocessing: dict, max_samples: int) -> int:
    """Upper bound of the memory one clip's cached features take (exact but for waveform_windows)."""
    kind = input_kind(preprocessing)
    if kind == "waveform_windows":
        return INT16_BYTES * max_samples
    if kind == "audio_clip":
        return INT16_BYTES * preprocessing["clip_samples"]
    length = spectrograms.segment_samples(
        preprocessing["image_size"], preprocessing["n_fft"], preprocessing["hop_length"]
    )
    return INT16_BYTES * preprocessing["segments_per_clip"] * length  # audio_segments


def min_clip_samples(preprocessing: dict) -> int:
    """Shortest clip (samples) that gives at least one unit."""
    kind = input_kind(preprocessing)
    if kind == "waveform_windows":
        return preprocessing["window_size"]
    if kind in SEGMENT_KINDS:  # 1 + n // hop frames >= image_size
        return (preprocessing["image_size"] - 1) * preprocessing["hop_length"]
    return 1


def input_kind(preprocessing: dict) -> str:
    kind = preprocessing.get("input")
    if kind not in INPUT_KINDS:
        raise ValueError(f"preprocessing 'input' must be one of {INPUT_KINDS}, got {kind!r}")
    return kind


def units_of_clip(audio_int16: np.ndarray, preprocessing: dict) -> tf.Tensor:
    """Model inputs of one clip given as an int16 array: [k, ...] (same ops as the pipelines)."""
    audio = tf.convert_to_tensor(np.asarray(audio_int16, dtype=np.int16))
    return evaluation_units(clip_features(audio, preprocessing), preprocessing)


# ---- caching --------------------------------------------------------------------------


def available_memory_bytes() -> int | None:
    """Memory available to new allocations (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def cache_limit_bytes(environ=None) -> int:
    """CACHE_LIMIT_MIB, or the MiB in GENRECLF_TFDATA_CACHE_MIB (a whole number >= 0)."""
    import os

    value = (os.environ if environ is None else environ).get(CACHE_LIMIT_VARIABLE)
    if value is None:
        return CACHE_LIMIT_MIB * 2**20
    if not value.strip().isdigit():
        raise ValueError(f"{CACHE_LIMIT_VARIABLE}={value!r}: expected a whole number of MiB (0: never cache)")
    return int(value) * 2**20


def should_cache(
    needed_bytes: int,
    available_bytes: int | None,
    fraction: float = CACHE_MEMORY_FRACTION,
    limit_bytes: int | None = None,
) -> bool:
    """Cache in memory only what takes at most ``fraction`` of the available memory and ``limit_bytes``."""
    limit = cache_limit_bytes() if limit_bytes is None else limit_bytes
    return available_bytes is not None and needed_bytes <= min(fraction * available_bytes, limit)


# ---- the pipelines -------------------------------------------------------------------


def training_clips(
    shard_dir: str | Path, split: str, preprocessing: dict, num_classes: int, cache: bool = False
) -> tf.data.Dataset:
    """(clip features, one-hot label) of every clip of the split, in shard order; cached in memory if asked.

    The same stream with or without the cache (whether it fits depends on the machine): the
    shards in index order (the shard stage shuffled the clips into them).
    """
    clips = read_clips(shard_dir, split)
    clips = clips.map(
        lambda ex: (clip_features(ex["audio"], preprocessing), tf.one_hot(ex["label"], num_classes)),
        num_parallel_calls=AUTOTUNE,
    )
    return clips.cache() if cache else clips


def epoch_batches(
    clips: tf.data.Dataset,
    preprocessing: dict,
    batch_size: int,
    num_clips: int,
    seeds: tuple[int, int, int],
    reshuffle: bool,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """One epoch of shuffled batches of ``(units, one-hot labels)`` from ``training_clips``.

    ``seeds``: of the clip shuffle (a bounded buffer), of the random windows (waveform_windows)
    and of the segment shuffle (audio_segments). With ``reshuffle``, every
    iteration of the dataset draws a new order from them; without, every iteration gives the same.
    """
    kind = input_kind(preprocessing)
    buffer = max(1, min(num_clips, SHUFFLE_BUFFER_CLIPS))
    clips = clips.shuffle(buffer, seed=seeds[0], reshuffle_each_iteration=reshuffle)
    if kind == "waveform_windows":
        window = preprocessing["window_size"]
        pair_seeds = tf.data.Dataset.random(seed=seeds[1], rerandomize_each_iteration=reshuffle).batch(2)
        units = tf.data.Dataset.zip(clips, pair_seeds).map(
            lambda pair, pair_seed: (spectrograms.random_waveform_window(pair[0], window, pair_seed), pair[1]),
            num_parallel_calls=AUTOTUNE,
        )
    elif kind == "audio_clip":
        units = clips
    else:
        count = preprocessing["segments_per_clip"]
        units = clips.map(
            lambda segments, label: (segments, tf.tile(label[tf.newaxis], [count, 1])), num_parallel_calls=AUTOTUNE
        ).unbatch()
        units = units.shuffle(SHUFFLE_BUFFER_UNITS, seed=seeds[2], reshuffle_each_iteration=reshuffle)
    units_per_epoch = num_clips * training_unit_count(preprocessing)
    batches = units_per_epoch // batch_size if drop_remainder else -(-units_per_epoch // batch_size)
    batched = units.batch(batch_size, drop_remainder=drop_remainder)
    # the size is known from the shard names: tell Keras (and check it while reading)
    return batched.apply(tf.data.experimental.assert_cardinality(batches))


def training_dataset(
    shard_dir: str | Path,
    split: str,
    preprocessing: dict,
    num_classes: int,
    batch_size: int,
    seed: int,
    num_clips: int,
    cache: bool = False,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Shuffled batches of ``(units, one-hot labels)``; a new random order every time it is iterated.

    waveform_windows: one random window per clip and epoch (stateless random ops
    seeded from ``seed``); audio_clip: the clip's fixed-length audio; audio_segments:
    every segment, shuffled again at the segment level. Same seed -> same batches,
    iteration after iteration. The order of an iteration depends on how many came before
    it: training uses ``training_epochs``.
    """
    clips = training_clips(shard_dir, split, preprocessing, num_classes, cache)
    seeds = (seed, seed + 1, seed + 2)
    return epoch_batches(clips, preprocessing, batch_size, num_clips, seeds, True, drop_remainder).prefetch(AUTOTUNE)


def epoch_seeds(seed: int, epoch: int) -> tuple[int, int, int]:
    """The three seeds of ``epoch_batches`` for one epoch: a function of the seed and the epoch alone."""
    return tuple(int(s) for s in np.random.SeedSequence([seed, epoch]).generate_state(3))


def training_epochs(
    shard_dir: str | Path,
    split: str,
    preprocessing: dict,
    num_classes: int,
    batch_size: int,
    seed: int,
    num_clips: int,
    first_epoch: int,
    epochs: int,
    cache: bool = False,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """The batches of epochs ``first_epoch`` .. ``first_epoch + epochs - 1``, one epoch after the other
    (``epochs`` x the batches of an epoch; give ``model.fit`` the steps per epoch).

    Epoch e's batches are as ``training_dataset``'s, their order drawn from ``epoch_seeds(seed, e)``:
    a run that starts at epoch k (resumed from a backup) gets the batches an uninterrupted run
    gets at epoch k. The clips are read (or cached) once for all the epochs.
    """
    clips = training_clips(shard_dir, split, preprocessing, num_classes, cache)
    parts = [
        epoch_batches(clips, preprocessing, batch_size, num_clips, epoch_seeds(seed, epoch), False, drop_remainder)
        for epoch in range(first_epoch, first_epoch + epochs)
    ]
    stream = parts[0]
    for part in parts[1:]:
        stream = stream.concatenate(part)
    return stream.prefetch(AUTOTUNE)


def validation_dataset(
    shard_dir: str | Path,
    split: str,
    preprocessing: dict,
    num_classes: int,
    batch_size: int,
    cache: bool = False,
    units_per_clip: int | None = None,
) -> tf.data.Dataset:
    """Batches of ``(units, one-hot labels)`` over the units of every clip, in a fixed order:
    all of them, or ``units_per_clip`` evenly spaced ones (``spaced_units``) of each clip."""
    units = _evaluation_units(shard_dir, split, preprocessing, cache, units_per_clip)
    units = units.map(lambda x, clip, label, track_id: (x, tf.one_hot(label, num_classes)), num_parallel_calls=AUTOTUNE)
    return units.batch(batch_size).prefetch(AUTOTUNE)


def evaluation_dataset(shard_dir: str | Path, split: str, preprocessing: dict, batch_size: int) -> tf.data.Dataset:
    """Batches of ``(units, clip_index, label, track_id)`` over every unit, in a fixed order.

    ``clip_index`` numbers the clips in reading order; units of a clip are consecutive.
    """
    return _evaluation_units(shard_dir, split, preprocessing, cache=False).batch(batch_size).prefetch(AUTOTUNE)


def spaced_units(units: tf.Tensor, limit: int) -> tf.Tensor:
    """``limit`` of a clip's ``units`` (all if it has fewer), evenly spaced: unit
    floor((i + 1/2) * count / limit) for i < limit, the middle of each of ``limit`` equal stretches."""
    count = tf.shape(units, out_type=tf.int64)[0]
    kept = tf.minimum(count, limit)
    index = (2 * tf.range(kept) + 1) * count // (2 * kept)
    return tf.gather(units, index)


def _evaluation_units(shard_dir, split, preprocessing, cache, units_per_clip=None):
    clips = read_clips(shard_dir, split).enumerate()
    clips = clips.map(
        lambda index, ex: (clip_features(ex["audio"], preprocessing), index, ex["label"], ex["track_id"]),
        num_parallel_calls=AUTOTUNE,
    )
    if cache:
        clips = clips.cache()

    def to_units(features, index, label, track_id):
        units = evaluation_units(features, preprocessing)
        if units_per_clip is not None:
            units = spaced_units(units, units_per_clip)
        count = tf.shape(units)[0]
        return units, tf.fill([count], index), tf.fill([count], label), tf.fill([count], track_id)

    return clips.map(to_units, num_parallel_calls=AUTOTUNE).unbatch()
