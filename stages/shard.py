"""shard: write each split as shuffled TFRecord shards of whole int16 clips.

Reads   params shard.num_shards, shard.seed; data/split/split_manifest.csv, data/split/labels.json, data/wav/.
Writes  data/shards/{split}-{i:05d}-of-{n:05d}.n{records}.tfrecord (format: genreclf/tfrecords.py)
        and data/shards/dataset_info.json (sample rate, labels, clips and min/max samples per split).
"""

from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from genreclf.artifacts import MANIFEST_FILE, SHARD_DIR, SPLIT_DIR, SPLITS, read_split, write_dataset_info
from genreclf.data.audio import read_wav
from genreclf.data.sharding import Clip, write_split_shards
from genreclf.io import atomic_dir
from stages.common import run_stage, stage_logger
from stages.config import load_config

log = stage_logger("shard")


def main() -> None:
    params = load_config().shard
    num_shards, seed = params.num_shards.model_dump(), params.seed
    manifest, labels = read_split(SPLIT_DIR)
    _, sample_rate = read_wav(manifest["path"].iloc[0])  # every other clip is checked against it
    counts = {split: int((manifest["split"] == split).sum()) for split in SPLITS}
    log.info(
        "read %s/%s: %s clips, %d labels, %d Hz; num_shards %s, seed %d",
        SPLIT_DIR,
        MANIFEST_FILE,
        counts,
        len(labels),
        sample_rate,
        num_shards,
        seed,
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
    with atomic_dir(SHARD_DIR) as tmp, tqdm(total=len(manifest), desc="shard", unit="clip") as progress:
        for split in SPLITS:
            rows = manifest[manifest["split"] == split]
            clips = [
                Clip(path, int(label), track_id)
                for path, label, track_id in zip(rows["path"], rows["label"], rows["track_id"])
            ]
            num_samples = write_split_shards(tmp, split, clips, num_shards[split], rngs[split], sample_rate, progress)
            splits_info[split] = {"clips": len(clips), "min_samples": min(num_samples), "max_samples": max(num_samples)}
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
