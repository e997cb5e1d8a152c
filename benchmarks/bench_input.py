"""Input speed: the TFRecord tf.data pipeline vs reading WAV files one by one.

    python -m benchmarks.bench_input [--shards data/shards] [--split-dir data/split]

Prints examples (clips) per second of, in one run:

1. the tf.data pipelines on the shards of a split (parallel reads, AUTOTUNE maps, prefetch):
   a. parse + decode the int16 clips + batch (padded to the longest clip of the batch);
   b. the same with the log-mel image map (``genreclf.spectrograms.mel_image``) before batching;
   c. the cnn1d training input (``genreclf.tfdata.training_dataset``: one random window
      per clip, shuffle, batch), first epoch (from the shards, filling the in-memory
      cache) and second epoch (from the cache);
2. the FMA study's first, slow input: for each file of the same split, ``librosa.load``
   at the dataset's sample rate, then a pandas look-up of its label by track id in the
   split manifest (a boolean mask over the whole table, per file).

The page cache is warmed for both inputs first, so that neither pays for the disk; each
tf.data figure is the best of two passes. Paths in the manifest are relative to --root
(the repository root by default). The figures depend on the machine and its load (the
CPU count and the 1-minute load average are printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

SPLIT = "train"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", default="data/shards", help="folder of the TFRecord shards")
    parser.add_argument("--split-dir", default="data/split", help="the split manifest's folder")
    parser.add_argument("--root", default=".", help="folder the manifest's paths are relative to")
    parser.add_argument("--split", default=SPLIT)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-files", type=int, default=300, help="clips read one by one (the slow input), at most")
    parser.add_argument("--n-fft", type=int, default=2048)
    parser.add_argument("--hop-length", type=int, default=512)
    parser.add_argument("--n-mels", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--window-size", type=int, default=10000)
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


def main(argv=None) -> None:
    args = parse_args(argv)
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
    cnn1d = {"input": "waveform_windows", "window_size": args.window_size, "sample_rate": sample_rate}
    train = tfdata.training_dataset(
        args.shards, args.split, cnn1d, len(info["labels"]), args.batch_size, seed=0, num_clips=clips, cache=True
    )
    report(
        f"tf.data: cnn1d training input ({args.window_size}-sample windows), 1st epoch",
        clips / count_examples(train)[1],
    )
    report("tf.data: cnn1d training input, next epoch (in-memory cache)", time_tfdata(train, clips))
    slow = time_one_by_one(rows, manifest, root, sample_rate)
    report("WAV one by one (librosa.load + pandas label look-up)", slow)
    print(
        "speed-up over WAV one by one: "
        + "; ".join(
            f"{name.split(': ', 1)[-1]}: {value / slow:.1f}x" for name, value in results.items() if value != slow
        )
        + " (target >= 10x)"
    )


if __name__ == "__main__":
    main()
