"""shard: write each split as shuffled TFRecord shards of whole int16 clips.

Reads   params shard.num_shards, shard.seed; data/split/split_manifest.csv, data/split/labels.json, data/wav/.
Writes  data/shards/{split}-{i:05d}-of-{n:05d}.n{records}.tfrecord (format: genreclf/tfrecords.py)
        and data/shards/dataset_info.json (sample rate, labels, clips and min/max samples per split).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from genreclf.artifacts import MANIFEST_FILE, SHARD_DIR, SPLIT_DIR, SPLITS, read_split, write_dataset_info
from genreclf.data.audio import read_wav
from genreclf.data.sharding import Clip, plan_split_shards, write_shard
from genreclf.engine import engine_from_environ, limit_threads, map_in_order
from genreclf.io import atomic_dir
from stages.common import run_stage, stage_logger
from stages.config import load_config

log = stage_logger("shard")


def write_here(total_clips: int) -> Callable[[Callable, Sequence[tuple]], Iterator[list[int]]]:
    """The local engine: the shards one after the other in this process, a progress bar counting clips."""

    def write(fn: Callable, shards: Sequence[tuple]) -> Iterator[list[int]]:
        with tqdm(total=total_clips, desc="shard", unit="clip") as progress:
            for shard in shards:
                yield fn(*shard, progress=progress)

    return write


def main() -> None:
    params = load_config().shard
    engine = engine_from_environ()
    num_shards, seed = params.num_shards.model_dump(), params.seed
    manifest, labels = read_split(SPLIT_DIR)
    _, sample_rate = read_wav(manifest["path"].iloc[0])  # every other clip is checked against it
    counts = {split: int((manifest["split"] == split).sum()) for split in SPLITS}
    log.info(
        "read %s/%s: %s clips, %d labels, %d Hz; num_shards %s, seed %d; engine %s",
        SPLIT_DIR,
        MANIFEST_FILE,
        counts,
        len(labels),
        sample_rate,
        num_shards,
        seed,
        engine.describe(),
    )
    for split in SPLITS:
        if num_shards[split] > counts[split]:
            log.info(
                "%s: %d shards asked for but only %d clips; writing one shard per clip",
                split,
                num_shards[split],
                counts[split],
            )

    # One independent random stream per split, all derived from shard.seed.
    rngs = dict(zip(SPLITS, (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(SPLITS)))))
    splits_info = {}
    started = time.perf_counter()
    with atomic_dir(SHARD_DIR) as tmp:
        shards, shard_splits = [], []  # each shard: (path, its clips in their shuffled order, sample rate)
        for split in SPLITS:
            rows = manifest[manifest["split"] == split]
            clips = [
                Clip(path, int(label), track_id)
                for path, label, track_id in zip(rows["path"], rows["label"], rows["track_id"])
            ]
            for path, indices in plan_split_shards(tmp, split, clips, num_shards[split], rngs[split]):
                shards.append((path, [clips[i] for i in indices], sample_rate))
                shard_splits.append(split)
        sizes = {split: [] for split in SPLITS}  # the samples of each clip
        written = map_in_order(write_shard, shards, engine, setup=limit_threads, local=write_here(len(manifest)))
        for split, counts in zip(shard_splits, written):
            sizes[split] += counts
        for split, samples in sizes.items():
            splits_info[split] = {"clips": len(samples), "min_samples": min(samples), "max_samples": max(samples)}
        write_dataset_info(tmp, sample_rate, labels, splits_info)
        files = sorted(p.name for p in tmp.iterdir())
    log.info(
        "wrote %d files to %s/ in %.1f s: %s",
        len(files),
        SHARD_DIR,
        time.perf_counter() - started,
        ", ".join(files) if len(files) <= 8 else f"{files[0]} ... {files[-1]}",
    )
    log.info("dataset info: %s", splits_info)


if __name__ == "__main__":
    run_stage("shard", main)
