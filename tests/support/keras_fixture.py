"""Tiny TFRecord shards of synthetic tones for the Keras tests (3 genres, short clips, low rate).

Genre i is a noisy sine at one of ``TONE_HZ[i]`` (plus a little jitter), so a model
that learns anything separates them; clip lengths vary so that dataset_info.json has
different min/max sizes. The shards and dataset_info.json are written by the real shard
stage (``stages.shard``, ``genreclf.data.sharding``) from WAVs and a split manifest, in a
scratch project.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tests.support.helpers import call_stage, make_project, to_int16, tone, write_audio

SAMPLE_RATE = 4000
LABELS = ["bass", "middle", "treble"]
TONE_HZ = (150.0, 500.0, 1400.0)
CLIPS_PER_LABEL = {"train": 6, "val": 2, "test": 2}
SHARDS = {"train": 2, "val": 1, "test": 1}
MIN_SAMPLES, MAX_SAMPLES = 3000, 4400

# the training settings every tiny model shares
TRAINING = {
    "batch_size": 8,
    "learning_rate": 0.001,
    "patience": 2,
    "mixed_precision": False,
    "seed": 0,
    "max_steps": None,
}
# small settings of each model, like the params.yaml sections, that train in seconds
TINY_PARAMS = {
    "cnn1d": {
        "window_size": 256,
        "conv_filters": [8, 4],
        "kernel_size": 3,
        "pool_size": 2,
        "dense_units": [16, 8],
        "val_windows_per_clip": 4,
        "dropout": 0.5,
        "epochs": 2,
        **TRAINING,
    },
    "mobilenet": {
        "weights": None,
        "image_size": 32,
        "n_mels": 16,
        "n_fft": 256,
        "hop_length": 64,
        "alpha": 0.35,
        "dense_units": 8,
        "dropout": 0.5,
        "epochs": 1,
        "fine_tune_layers": 0,
        "fine_tune_epochs": 0,
        "fine_tune_learning_rate": 1.0e-5,
        **TRAINING,
    },
    "cnn2d": {
        "segments_per_clip": 2,
        "image_size": 32,
        "hop_length": 64,
        "n_fft": 256,
        "filters": [4, 8, 8, 8],
        "pools": [2, 4, 4, 4],
        "dense_units": 8,
        "dropout": 0.5,
        "loss": "softmax",
        "epochs": 1,
        **TRAINING,
    },
}


def genre_clip(label: int, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A noisy sine of genre ``label`` as int16: jittered frequency, random amplitude and phase."""
    frequency = TONE_HZ[label] * rng.uniform(0.97, 1.03)
    amplitude = rng.uniform(0.3, 0.8)
    signal = tone(num_samples / SAMPLE_RATE, SAMPLE_RATE, frequency, amplitude, phase=rng.uniform(0, 2 * np.pi))
    return to_int16(signal + 0.05 * rng.standard_normal(num_samples))


def write_split_inputs(project: Path, seed: int, clips_per_label: dict) -> dict:
    """data/wav/*.wav, data/split/split_manifest.csv and labels.json of the tones; return the
    dataset info they must give (clips and min/max samples per split)."""
    rng = np.random.default_rng(seed)
    rows, splits = [], {}
    for split, per_label in clips_per_label.items():
        lengths = []
        for label, genre in enumerate(LABELS):
            for i in range(per_label):
                length = int(rng.integers(MIN_SAMPLES, MAX_SAMPLES + 1))
                if split == "train" and label == 0 and i == 0:
                    length = MIN_SAMPLES  # the sizes in dataset_info are exact
                track_id = f"{split}.{genre}.{i:03d}"
                path = f"data/wav/{track_id}.wav"
                write_audio(project / path, genre_clip(label, length, rng), SAMPLE_RATE)
                rows.append({"track_id": track_id, "path": path, "genre": genre, "label": label, "split": split})
                lengths.append(length)
        splits[split] = {"clips": len(lengths), "min_samples": min(lengths), "max_samples": max(lengths)}
    (project / "data" / "split").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(project / "data" / "split" / "split_manifest.csv", index=False)
    (project / "data" / "split" / "labels.json").write_text(json.dumps(LABELS))
    return {"sample_rate": SAMPLE_RATE, "labels": LABELS, "splits": splits}


def shard_tiny_project(project: Path, seed: int, clips_per_label: dict) -> dict:
    """In ``project`` (a new folder): params.yaml, the tones as WAVs and their split, then the shard
    stage (in this process): data/shards/ holds its output. Returns the expected dataset info."""
    make_project(project, {"shard": {"num_shards": SHARDS, "seed": seed}}, contents="params")
    info = write_split_inputs(project, seed, clips_per_label)
    call_stage(project, "shard")
    return info


def write_tiny_shards(shard_dir: Path, seed: int = 0, clips_per_label: dict | None = None) -> dict:
    """Shards + dataset_info.json of the tones in ``shard_dir``, made by the shard stage; return the
    expected dataset info."""
    shard_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=shard_dir.parent) as scratch:
        project = Path(scratch) / "project"
        info = shard_tiny_project(project, seed, clips_per_label or CLIPS_PER_LABEL)
        for path in (project / "data" / "shards").iterdir():
            shutil.move(path, shard_dir / path.name)
    return info


def write_tiny_repo(root: Path, params: dict | None = None, seed: int = 0) -> dict:
    """A project in ``root`` (a new folder): data/shards from the shard stage and params.yaml whose
    model sections are ``params`` (default TINY_PARAMS); return the expected dataset info."""
    info = shard_tiny_project(root, seed, CLIPS_PER_LABEL)
    sections = yaml.safe_load((root / "params.yaml").read_text())
    sections.update(params or TINY_PARAMS)  # whole sections, as given
    (root / "params.yaml").write_text(yaml.safe_dump(sections, sort_keys=False))
    return info
