"""Feature tables shaped like fma_small's, made from real rows: the data of benchmarks/bench_sklearn_memory.py.

``fma_like_tables``: N clips of 8 genres (the first 8 of the real rows' genres: clip i has
genre i mod 8), split 80/10/10 as fma_small, stratified by genre by the split stage's own
function, each a mix of real rows plus noise, seeded. ``gtzan_mini_tables``: the real rows
themselves, split as the split stage splits them. tests/test_bench_sklearn_memory.py checks both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from genreclf.data.splits import stratified_split
from genreclf.features import fma_features as features

N_GENRES = 8  # as fma_small
SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}  # fma_small's official split: 80/10/10


def fma_like_tables(real: np.ndarray, real_genres: list[str], clips: int, seed: int, noise: float, mix: float) -> dict:
    """{split: DataFrame of track_id, label, genre and the feature columns} for ``clips`` clips.

    Clip i, of genre g = i mod 8: (1 - w) x a real clip of g + w x a real clip of any of the 8
    genres, w uniform in [0, ``mix``], plus Gaussian noise of ``noise`` x each column's standard
    deviation over those real clips; all drawn from (seed, clips).
    """
    names = sorted(set(real_genres))[:N_GENRES]
    by_genre = [np.flatnonzero(np.array(real_genres) == name) for name in names]
    pool = np.concatenate(by_genre)
    scale = real[pool].std(axis=0)
    rng = np.random.default_rng([seed, clips])
    labels = np.arange(clips) % N_GENRES
    own = real[[rng.choice(by_genre[label]) for label in labels]]
    other = real[rng.choice(pool, size=clips)]
    weight = rng.uniform(0.0, mix, size=(clips, 1))
    values = (1 - weight) * own + weight * other + rng.normal(size=own.shape) * (noise * scale)
    track_ids = [f"{i:06d}" for i in range(clips)]
    splits = np.array(stratified_split(track_ids, labels.tolist(), SPLIT_FRACTIONS, seed))
    table = pd.DataFrame(values, columns=list(features.FEATURE_COLUMNS))
    table.insert(0, "genre", [names[label] for label in labels])
    table.insert(0, "label", labels)
    table.insert(0, "track_id", track_ids)
    return {split: table[splits == split].reset_index(drop=True) for split in ("train", "val", "test")}


def gtzan_mini_tables(real: np.ndarray, paths: list[Path], code: Path) -> dict:
    """The real clips in the split of the pipeline's split stage (params.yaml of ``code``)."""
    split = yaml.safe_load((code / "params.yaml").read_text(encoding="utf-8"))["split"]
    real_genres, track_ids = [p.parent.name for p in paths], [p.stem for p in paths]
    names = sorted(set(real_genres))
    splits = np.array(stratified_split(track_ids, real_genres, split["fractions"], split["seed"]))
    table = pd.DataFrame(real, columns=list(features.FEATURE_COLUMNS))
    table.insert(0, "genre", real_genres)
    table.insert(0, "label", [names.index(genre) for genre in real_genres])
    table.insert(0, "track_id", track_ids)
    return {name: table[splits == name].reset_index(drop=True) for name in ("train", "val", "test")}
