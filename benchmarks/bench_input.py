"""Input speed of the Keras models' training pipelines, their training-step rate, and tf.data vs WAV files.

    python -m benchmarks.bench_input [--shards data/shards] [--split-dir data/split]
    python -m benchmarks.bench_input --synthetic 96     # no data needed: synthetic 30 s clips

Prints, in one run:

1. per Keras model at its size in params.yaml (cnn1d: 10000-sample windows; mobilenet:
   224 x 224 x 3 images; cnn2d: 256 x 256 segments, 11 per clip), on the train split:
   a. examples (units: windows, clips, segments) per second of its training tf.data
      pipeline (``genreclf.models.tfdata.training_dataset``), the dataset iterated alone
      after a warm-up pass, read from the shards every epoch (no cache) and from the
      in-memory cache; mobilenet and cnn2d ship int16 audio, their log-mel images are
      made by the model's first layer (``SpectrogramLayer``), so this is not counted here;
   b. the CPU cores at which that pipeline would feed 2000 examples/s: examples/s per core
      (the figure of a. divided by the cores this process may use), scaled linearly (an
      assumption: tf.data's parallel maps scale about linearly while the cores are few);
   c. the model's training rate: examples/s of ``train_on_batch`` on batches of the
      params' batch size, spectrogram layer included, after one warm-up step, on the
      device TensorFlow uses here (mobilenet with ``weights: null``: same computation,
      no download);
2. with the real shards and split (not --synthetic): the earlier comparison of
   a. tf.data parse + decode + batch, b. the same with the CPU-side log-mel image map
   (``genreclf.features.spectrograms.mel_image``, the earlier design), against
   the FMA study's first, slow input: for each file of the same split, ``librosa.load``
   at the dataset's sample rate, then a pandas look-up of its label by track id in the
   split manifest (a boolean mask over the whole table, per file).

``--synthetic N``: N synthetic clips per split of ``--seconds`` of noisy tones at 22050 Hz,
written as WAVs and sharded by the real writer (``genreclf.data.sharding``) into a
temporary folder. The page cache is warmed first. Paths in the manifest are relative to
--root (the repository root by default). The figures depend on the machine and its load
(the CPU count and the 1-minute load average are printed).

The JSON (--json, default benchmarks/results/bench_input.json; benchmarks/record.py's
document) holds in ``figures``: ``split``, ``clips``, ``synthetic`` (true with --synthetic),
``usable_cores``, ``target_examples_per_s``, ``models``: one object per model: ``model``,
``batch_size``, ``unit`` (window, clip, segment), ``units_per_epoch``,
``input_examples_per_s`` and ``input_cached_examples_per_s`` (1a), ``cores_for_target`` and
``cores_for_target_cached`` (1b), ``train_examples_per_s`` (1c; null with --train-steps 0);
and without --synthetic ``wav_comparison``: ``tfdata_examples_per_s``,
``tfdata_mel_image_examples_per_s``, ``wav_one_by_one_examples_per_s``, ``files``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "bench_input.json"
SPLIT = "train"
KERAS_MODELS = ("cnn1d", "mobilenet", "cnn2d")
TARGET_EXAMPLES_PER_SECOND = 2000  # an accelerator's appetite: cores needed to feed this many
SYNTHETIC_SAMPLE_RATE = 22050
SYNTHETIC_LABELS = ["low", "middle", "high"]
MIN_TIMED_SECONDS = 3.0  # each timed figure covers at least this long (whole passes)
TRAIN_STEPS = 3  # timed train_on_batch steps per model, after one warm-up step


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", default="data/shards", help="folder of the TFRecord shards")
    parser.add_argument("--split-dir", default="data/split", help="the split manifest's folder")
    parser.add_argument("--root", default=".", help="folder the manifest's paths are relative to")
    parser.add_argument("--params", default="params.yaml", help="the models' sizes")
    parser.add_argument("--split", default=SPLIT)
    parser.add_argument("--synthetic", type=int, default=0, help="N > 0: N synthetic clips instead of --shards")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of a synthetic clip")
    parser.add_argument("--models", nargs="+", default=list(KERAS_MODELS), choices=KERAS_MODELS)
    parser.add_argument("--train-steps", type=int, default=TRAIN_STEPS, help="0: skip the training rate")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-files", type=int, default=300, help="clips read one by one (the slow input), at most")
    parser.add_argument("--n-fft", type=int, default=2048)
    parser.add_argument("--hop-length", type=int, default=512)
    parser.add_argument("--n-mels", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=MIN_TIMED_SECONDS,
        help="each input rate is timed over whole passes of at least this long (default %(default)s)",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="the figures' JSON (default %(default)s)")
    return parser.parse_args(argv)


def warm_page_cache(paths) -> None:
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


def count_examples(dataset) -> tuple[int, float]:
    """(examples, seconds) of one pass over a dataset of (x, labels) batches."""
    start = time.perf_counter()
    count = 0
    for batch in dataset:
        count += int(batch[1].shape[0])
    return count, time.perf_counter() - start


def time_tfdata(dataset, clips: int, passes: int = 2) -> float:
    """Examples per second: the best of ``passes`` full passes over ``dataset``."""
    best = 0.0
    for _ in range(passes):
        count, seconds = count_examples(dataset)
        if count != clips:
            raise RuntimeError(f"the pipeline gave {count} clips, the shard names say {clips}")
        best = max(best, count / seconds)
    return best


def time_one_by_one(rows, manifest, root: Path, sample_rate: int) -> float:
    """Examples per second of librosa.load + a pandas label look-up per file (the slow input)."""
    import librosa

    librosa.load(root / rows[0][1], sr=sample_rate, mono=True)  # warm-up (imports, caches)
    start = time.perf_counter()
    for track_id, path in rows:
        audio, _ = librosa.load(root / path, sr=sample_rate, mono=True)
        label = manifest.loc[manifest["track_id"] == track_id, "label"].iloc[0]
        assert audio.size and label >= 0
    return len(rows) / (time.perf_counter() - start)


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cores_for(examples_per_second: float, cores: int, target: float = TARGET_EXAMPLES_PER_SECOND) -> int:
    """Cores that would give ``target`` examples/s, scaling ``examples_per_second`` on ``cores`` linearly."""
    return math.ceil(target / (examples_per_second / cores))


def write_synthetic_shards(folder: Path, clips_per_split: int, seconds: float, splits=("train",)) -> None:
    """Noisy tones as WAVs, sharded by the real writer, with dataset_info.json, in ``folder``."""
    from genreclf.artifacts import write_dataset_info
    from genreclf.data.audio import to_int16, write_wav
    from genreclf.data.sharding import Clip, write_split_shards

    rng = np.random.default_rng(0)
    length = int(seconds * SYNTHETIC_SAMPLE_RATE)
    time_axis = np.arange(length) / SYNTHETIC_SAMPLE_RATE
    sizes = {}
    for split in splits:
        clips = []
        for i in range(clips_per_split):
            label = i % len(SYNTHETIC_LABELS)
            tone = 0.5 * np.sin(2 * np.pi * (200.0 * 3**label) * time_axis) + 0.05 * rng.standard_normal(length)
            path = folder / "wav" / f"{split}.{i:04d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_wav(path, to_int16(tone), SYNTHETIC_SAMPLE_RATE)
            clips.append(Clip(str(path), label, f"{split}.{i:04d}"))
        write_split_shards(folder, split, clips, 4, rng, SYNTHETIC_SAMPLE_RATE)
        sizes[split] = {"clips": clips_per_split, "min_samples": length, "max_samples": length}
    write_dataset_info(folder, SYNTHETIC_SAMPLE_RATE, SYNTHETIC_LABELS, sizes)


def model_settings(params_path: str | Path, model_name: str) -> dict:
    """A model's section of params.yaml (mobilenet: ``weights: null``, the same computation without a download)."""
    import yaml

    with open(params_path, encoding="utf-8") as f:
        settings = dict(yaml.safe_load(f)[model_name])
    if model_name == "mobilenet":
        settings["weights"] = None
    return settings


def time_passes(dataset, units_per_pass: int, min_seconds: float = MIN_TIMED_SECONDS) -> float:
    """Examples per second over whole passes of ``dataset`` lasting at least ``min_seconds``, after one warm-up pass."""
    count_examples(dataset)  # warm-up: tracing, thread pools, the cache filled
    start, count = time.perf_counter(), 0
    while True:
        examples, _ = count_examples(dataset)
        if examples != units_per_pass:
            raise RuntimeError(f"the pipeline gave {examples} examples, expected {units_per_pass}")
        count += examples
        seconds = time.perf_counter() - start
        if seconds >= min_seconds:
            return count / seconds


def time_training_steps(model, dataset, steps: int) -> float:
    """Examples per second of ``train_on_batch`` over ``steps`` batches, after one warm-up step."""
    batches = iter(dataset.repeat())
    x, y = next(batches)
    model.train_on_batch(x, y)
    examples, seconds = 0, 0.0
    for _ in range(steps):
        x, y = next(batches)
        start = time.perf_counter()
        model.train_on_batch(x, y)
        seconds += time.perf_counter() - start
        examples += int(y.shape[0])
    return examples / seconds


def bench_model(model_name: str, args, shard_dir, info, cores: int) -> dict:
    """Print the training input rate (no cache, cache), cores for 2000/s, and the training-step rate of one model."""
    from genreclf.models import keras_models, tfdata, training

    settings = model_settings(args.params, model_name)
    train = info["splits"][args.split]
    prep = training.preprocessing_for(
        model_name, info["sample_rate"], info["labels"], settings, clip_samples=train["max_samples"]
    )
    units = train["clips"] * tfdata.training_unit_count(prep)
    batch, num_classes = settings["batch_size"], len(info["labels"])
    if model_name == "cnn1d":
        size = f"{settings['window_size']}-sample windows"
    elif model_name == "mobilenet":
        size = f"{settings['image_size']}x{settings['image_size']}x3, clips of {prep['clip_samples']} samples"
    else:
        size = (
            f"{settings['image_size']}x{settings['image_size']}x1, {settings['segments_per_clip']} segments "
            f"of {prep['segment_samples']} samples per clip"
        )
    print(
        f"{model_name} ({size}; input {prep['input']}, batch {batch}, {units} {tfdata.UNIT_NAMES[prep['input']]}s "
        "per epoch)",
        flush=True,
    )
    rates = {}
    for cache in (False, True):
        dataset = tfdata.training_dataset(
            shard_dir, args.split, prep, num_classes, batch, 0, train["clips"], cache=cache
        )
        rates[cache] = time_passes(dataset, units, args.min_seconds)
        where = "from the in-memory cache" if cache else "from the shards (no cache)"
        print(
            f"  input pipeline, {where:<27} {rates[cache]:9.1f} examples/s = {rates[cache] / cores:8.1f} per core; "
            f"{cores_for(rates[cache], cores):3d} cores for {TARGET_EXAMPLES_PER_SECOND}/s (linear scaling)",
            flush=True,
        )
    rate = None
    if args.train_steps > 0:
        model = training.build_model(model_name, settings, num_classes, prep)
        keras_models.compile_model(model, settings["learning_rate"], prep["output_activation"])
        dataset = tfdata.training_dataset(shard_dir, args.split, prep, num_classes, batch, 0, train["clips"])
        rate = time_training_steps(model, dataset, args.train_steps)
        print(f"  training step (train_on_batch, {args.train_steps} batches)     {rate:9.1f} examples/s", flush=True)
    return {
        "model": model_name,
        "batch_size": batch,
        "unit": tfdata.UNIT_NAMES[prep["input"]],
        "units_per_epoch": units,
        "input_examples_per_s": round(rates[False], 2),
        "input_cached_examples_per_s": round(rates[True], 2),
        "cores_for_target": cores_for(rates[False], cores),
        "cores_for_target_cached": cores_for(rates[True], cores),
        "train_examples_per_s": None if rate is None else round(rate, 2),
    }


def wav_comparison(args) -> dict:
    """The earlier comparison: tf.data (with and without the CPU-side log-mel image) vs WAV files one by one."""
    import tensorflow as tf

    from genreclf.artifacts import read_dataset_info, read_split
    from genreclf.data.tfrecords import count_records
    from genreclf.features import spectrograms
    from genreclf.models import tfdata

    info = read_dataset_info(args.shards)
    sample_rate = info["sample_rate"]
    files = tfdata.shard_files(args.shards, args.split)
    clips = count_records(args.shards, args.split)
    manifest, _ = read_split(args.split_dir, check_wavs=False)  # paths relative to --root
    rows = list(manifest.loc[manifest["split"] == args.split, ["track_id", "path"]].itertuples(index=False, name=None))[
        : args.max_files
    ]
    if not rows:
        sys.exit(f"{args.split_dir}: no '{args.split}' rows")
    root = Path(args.root)
    warm_page_cache(files)
    warm_page_cache(root / path for _, path in rows)

    def pipeline(spectrogram: bool):
        dataset = tfdata.read_clips(args.shards, args.split)
        if spectrogram:
            dataset = dataset.map(
                lambda ex: (
                    spectrograms.mel_image(
                        ex["audio"], sample_rate, args.n_fft, args.hop_length, args.n_mels, args.image_size
                    ),
                    ex["label"],
                ),
                num_parallel_calls=tf.data.AUTOTUNE,
            ).batch(args.batch_size)
        else:
            dataset = dataset.map(
                lambda ex: (ex["audio"], ex["label"]), num_parallel_calls=tf.data.AUTOTUNE
            ).padded_batch(args.batch_size)
        return dataset.prefetch(tf.data.AUTOTUNE)

    print(
        f"split '{args.split}': {clips} clips in {len(files)} shards; {len(rows)} WAV files read one by one; "
        f"{sample_rate} Hz; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    results = {}

    def report(name: str, examples_per_second: float) -> None:
        results[name] = examples_per_second
        print(f"{name:<58} {examples_per_second:10.1f} examples/s", flush=True)

    report("tf.data: parse + decode + batch", time_tfdata(pipeline(False), clips))
    report(
        f"tf.data: parse + decode + log-mel image {args.image_size}x{args.image_size} + batch",
        time_tfdata(pipeline(True), clips),
    )
    slow = time_one_by_one(rows, manifest, root, sample_rate)
    report("WAV one by one (librosa.load + pandas label look-up)", slow)
    print(
        "speed-up over WAV one by one: "
        + "; ".join(
            f"{name.split(': ', 1)[-1]}: {value / slow:.1f}x" for name, value in results.items() if value != slow
        )
        + " (target >= 10x)"
    )
    tfdata_rate, image_rate, _ = results.values()
    return {
        "tfdata_examples_per_s": round(tfdata_rate, 2),
        "tfdata_mel_image_examples_per_s": round(image_rate, 2),
        "wav_one_by_one_examples_per_s": round(slow, 2),
        "files": len(rows),
    }


def main(argv=None) -> None:
    run = record.start("bench_input", argv if argv is None else [__file__, *argv])
    args = parse_args(argv)
    import tensorflow as tf

    from genreclf.artifacts import read_dataset_info
    from genreclf.models import tfdata

    cores = usable_cores()
    with tempfile.TemporaryDirectory() as scratch:
        shard_dir = Path(args.shards)
        if args.synthetic > 0:
            shard_dir = Path(scratch) / "shards"
            write_synthetic_shards(shard_dir, args.synthetic, args.seconds, splits=(args.split,))
        info = read_dataset_info(shard_dir)
        warm_page_cache(tfdata.shard_files(shard_dir, args.split))
        print(
            f"split '{args.split}' of {shard_dir}{' (synthetic)' if args.synthetic else ''}: "
            f"{info['splits'][args.split]['clips']} clips; {info['sample_rate']} Hz; {cores} usable CPU cores "
            f"({os.cpu_count()} CPUs), load average {os.getloadavg()[0]:.1f}; TensorFlow devices: "
            f"{[d.device_type for d in tf.config.list_physical_devices()]}",
            flush=True,
        )
        figures = {
            "split": args.split,
            "clips": info["splits"][args.split]["clips"],
            "synthetic": args.synthetic > 0,
            "usable_cores": cores,
            "target_examples_per_s": TARGET_EXAMPLES_PER_SECOND,
            "models": [bench_model(model_name, args, shard_dir, info, cores) for model_name in args.models],
        }
    if not args.synthetic:
        figures["wav_comparison"] = wav_comparison(args)
    record.write(args.json, run, figures)


if __name__ == "__main__":
    main()
