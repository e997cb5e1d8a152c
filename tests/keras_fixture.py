"""Tiny TFRecord shards of synthetic tones for the Keras tests (3 genres, short clips, low rate).

Genre i is a noisy sine at one of ``TONE_HZ[i]`` (plus a little jitter), so a model
that learns anything separates them; clip lengths vary so that dataset_info.json has
different min/max sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from genreclf.data.tfrecords import serialize_example, shard_name

SAMPLE_RATE = 4000
LABELS = ["bass", "middle", "treble"]
TONE_HZ = (150.0, 500.0, 1400.0)
CLIPS_PER_LABEL = {"train": 6, "val": 2, "test": 2}
SHARDS = {"train": 2, "val": 1, "test": 1}
MIN_SAMPLES, MAX_SAMPLES = 3000, 4400

# small settings of each model, like the params.yaml sections, that train in seconds
TINY_PARAMS = {
    "cnn1d": {"window_size": 256, "conv_filters": [8, 4], "kernel_size": 3, "pool_size": 2,
              "dense_units": [16, 8], "dropout": 0.5, "epochs": 2, "batch_size": 8, "learning_rate": 0.001,
              "patience": 2, "mixed_precision": False, "seed": 0},
    "mobilenet": {"weights": None, "image_size": 32, "n_mels": 16, "n_fft": 256, "hop_length": 64, "alpha": 0.35,
                  "dense_units": 8, "dropout": 0.5, "epochs": 1, "batch_size": 8, "learning_rate": 0.001,
                  "fine_tune_layers": 0, "fine_tune_epochs": 0, "fine_tune_learning_rate": 1.0e-5,
                  "patience": 2, "mixed_precision": False, "seed": 0},
    "cnn2d": {"segments_per_clip": 2, "image_size": 32, "hop_length": 64, "n_fft": 256, "filters": [4, 8, 8, 8],
              "pools": [2, 4, 4, 4], "dense_units": 8, "dropout": 0.5, "loss": "softmax", "epochs": 1,
              "batch_size": 8, "learning_rate": 0.001, "patience": 2, "mixed_precision": False, "seed": 0},
}


def tone(label: int, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A noisy sine of genre ``label`` as int16."""
    t = np.arange(num_samples) / SAMPLE_RATE
    freq = TONE_HZ[label] * rng.uniform(0.97, 1.03)
    signal = rng.uniform(0.3, 0.8) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    signal += 0.05 * rng.standard_normal(num_samples)
    return np.clip(np.round(signal * 32767), -32768, 32767).astype(np.int16)


def write_tiny_shards(shard_dir: Path, seed: int = 0, clips_per_label: dict | None = None) -> dict:
    """Write shards + dataset_info.json into ``shard_dir``; return the dataset info."""
    clips_per_label = clips_per_label or CLIPS_PER_LABEL
    rng = np.random.default_rng(seed)
    shard_dir.mkdir(parents=True, exist_ok=True)
    info = {"sample_rate": SAMPLE_RATE, "labels": LABELS, "splits": {}}
    for split, per_label in clips_per_label.items():
        examples = []
        for label in range(len(LABELS)):
            for i in range(per_label):
                length = int(rng.integers(MIN_SAMPLES, MAX_SAMPLES + 1))
                if split == "train" and label == 0 and i == 0:
                    length = MIN_SAMPLES          # the sizes in dataset_info are exact
                examples.append((tone(label, length, rng), label, f"{split}.{LABELS[label]}.{i:03d}"))
        order = rng.permutation(len(examples))
        examples = [examples[i] for i in order]
        count = SHARDS[split]
        for index in range(count):
            part = examples[index::count]
            with tf.io.TFRecordWriter(str(shard_dir / shard_name(split, index, count, len(part)))) as writer:
                for audio, label, track_id in part:
                    writer.write(serialize_example(audio, label, track_id))
        lengths = [len(e[0]) for e in examples]
        info["splits"][split] = {"clips": len(examples), "min_samples": min(lengths), "max_samples": max(lengths)}
    (shard_dir / "dataset_info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info


def write_tiny_repo(root: Path, params: dict | None = None, seed: int = 0) -> dict:
    """A repository-like folder: the repository's params.yaml with the tiny Keras sections (or
    ``params``' sections) and data/shards; return the info."""
    import yaml

    full = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text(encoding="utf-8"))
    full.update(params or TINY_PARAMS)
    (root / "params.yaml").write_text(yaml.safe_dump(full, sort_keys=True))
    return write_tiny_shards(root / "data" / "shards", seed)
