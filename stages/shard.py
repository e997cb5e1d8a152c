"""shard: write each split as shuffled TFRecord shards of whole int16 clips.

Reads   params shard.num_shards, shard.seed; data/split/split_manifest.csv, data/split/labels.json, data/wav/.
Writes  data/shards/{split}-{i:05d}-of-{n:05d}.n{records}.tfrecord (format: genreclf/tfrecords.py)
        and data/shards/dataset_info.json (sample rate, labels, clips and min/max samples per split).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from genreclf.data.audio import read_wav
from genreclf.data.sharding import Clip, write_split_shards
from genreclf.data.splits import SPLITS
from genreclf.errors import DataError, ParamError
from genreclf.io import atomic_dir, read_clip_table, read_json, write_json
from stages.common import run_stage, stage_logger
from stages.config import get, load_params, section

SPLIT_DIR = Path("data/split")
MANIFEST_CSV = SPLIT_DIR / "split_manifest.csv"
LABELS_JSON = SPLIT_DIR / "labels.json"
SHARD_DIR = Path("data/shards")
DATASET_INFO_NAME = "dataset_info.json"
MANIFEST_COLUMNS = ["track_id", "path", "genre", "label", "split"]

log = stage_logger("shard")


def read_params(params: dict) -> tuple[dict[str, int], int]:
    """shard.num_shards (a mapping of train/val/test to integers >= 1) and shard.seed."""
    sec = section(params, "shard")
    where = "params.yaml: shard"
    num_shards = get(sec, "num_shards", where, types=dict)
    if set(num_shards) != set(SPLITS):
        raise ParamError(f"{where}.num_shards = {num_shards!r}; "
                         f"expected a mapping with exactly the keys {list(SPLITS)}")
    checked = {split: get(num_shards, split, f"{where}.num_shards", types=int, minimum=1) for split in SPLITS}
    seed = get(sec, "seed", where, types=int, minimum=0)
    return checked, seed


def read_split(manifest_path: Path, labels_path: Path) -> tuple[pd.DataFrame, list[str]]:
    """The split manifest and labels, checked against each other and against the WAV files."""
    fix = "run `dvc repro split` to (re)create it"
    for path in (manifest_path, labels_path):
        if not path.is_file():
            raise DataError(f"{path} does not exist; {fix}")
    labels = read_json(labels_path)
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise DataError(f"{labels_path}: expected a non-empty list of genre names; {fix}")
    manifest = read_clip_table(manifest_path, MANIFEST_COLUMNS, fix,
                             dtype={"track_id": str, "path": str, "genre": str, "split": str})
    bad_split = sorted(set(manifest["split"]) - set(SPLITS))
    if bad_split:
        raise DataError(f"{manifest_path}: split values {bad_split} are none of {list(SPLITS)}; {fix}")
    if not pd.api.types.is_integer_dtype(manifest["label"]) or \
            not manifest["label"].between(0, len(labels) - 1).all() or \
            (manifest["genre"] != [labels[i] for i in manifest["label"]]).any():
        raise DataError(f"{manifest_path}: labels do not match the genres of {labels_path}; {fix}")
    for split in SPLITS:
        if not (manifest["split"] == split).any():
            raise DataError(f"{manifest_path}: the {split} split has no clips; {fix}")
    absent = [p for p in manifest["path"] if not Path(p).is_file()]
    if absent:
        raise DataError(f"{manifest_path} lists {len(absent)} WAV files that do not exist "
                        f"(e.g. {absent[:3]}); run `dvc repro convert split`")
    return manifest.sort_values("track_id", kind="stable").reset_index(drop=True), labels


def main() -> None:
    num_shards, seed = read_params(load_params())
    manifest, labels = read_split(MANIFEST_CSV, LABELS_JSON)
    _, sample_rate = read_wav(manifest["path"].iloc[0])  # every other clip is checked against it
    counts = {split: int((manifest["split"] == split).sum()) for split in SPLITS}
    log.info("read %s: %s clips, %d labels, %d Hz; num_shards %s, seed %d",
             MANIFEST_CSV, counts, len(labels), sample_rate, num_shards, seed)
    for split in SPLITS:
        if num_shards[split] > counts[split]:
            log.info("%s: %d shards asked for but only %d clips; writing one shard per clip",
                     split, num_shards[split], counts[split])

    # One independent random stream per split, all derived from shard.seed.
    rngs = dict(zip(SPLITS, (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(SPLITS)))))
    splits_info = {}
    started = time.perf_counter()
    with atomic_dir(SHARD_DIR) as tmp, tqdm(total=len(manifest), desc="shard", unit="clip") as progress:
        for split in SPLITS:
            rows = manifest[manifest["split"] == split]
            clips = [Clip(path, int(label), track_id)
                     for path, label, track_id in zip(rows["path"], rows["label"], rows["track_id"])]
            num_samples = write_split_shards(tmp, split, clips, num_shards[split], rngs[split], sample_rate,
                                             progress)
            splits_info[split] = {"clips": len(clips), "min_samples": min(num_samples),
                                  "max_samples": max(num_samples)}
        info = {"sample_rate": sample_rate, "labels": labels, "splits": splits_info}
        write_json(tmp / DATASET_INFO_NAME, info)
        files = sorted(p.name for p in tmp.iterdir())
    log.info("wrote %d files to %s/ in %.1f s: %s", len(files), SHARD_DIR, time.perf_counter() - started,
             ", ".join(files) if len(files) <= 8 else f"{files[0]} ... {files[-1]}")
    log.info("dataset info: %s", splits_info)


if __name__ == "__main__":
    run_stage("shard", main)
