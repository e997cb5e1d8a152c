"""tests/support/fma_like_tables.py, the data of benchmarks/bench_sklearn_memory.py: fma_small's shape, from real rows,
seeded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genreclf.features import fma_features as features
from tests.support import fma_like_tables as bench
from tests.support.helpers import ROOT

GTZAN_GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]


def real_rows():
    """10 genres x 10 clips of made-up 'real' features, as real_features gives them."""
    paths = [Path(f"{genre}/{genre}.{i:05d}.wav") for genre in GTZAN_GENRES for i in range(10)]
    values = np.random.default_rng(0).normal(size=(len(paths), len(features.FEATURE_COLUMNS)))
    return values, paths


@pytest.mark.parametrize("clips, sizes", [(1000, (800, 100, 100)), (8000, (6400, 800, 800))])
def test_fma_like_tables_have_fma_small_s_split_and_8_balanced_genres(clips, sizes):
    real, paths = real_rows()
    tables = bench.fma_like_tables(real, [p.parent.name for p in paths], clips, seed=0, noise=0.5, mix=1.0)
    assert tuple(len(tables[s]) for s in ("train", "val", "test")) == sizes
    for table in tables.values():
        assert list(table.columns[3:]) == list(features.FEATURE_COLUMNS)
        counts = table["genre"].value_counts()
        assert sorted(counts.index) == GTZAN_GENRES[:8] and counts.max() - counts.min() <= 1  # stratified
        assert (table["label"] == table["genre"].map(GTZAN_GENRES.index)).all()
    ids = np.concatenate([t["track_id"] for t in tables.values()])
    assert len(set(ids)) == clips


def test_fma_like_rows_are_seeded_and_made_of_real_rows():
    real, paths = real_rows()
    genres = [p.parent.name for p in paths]
    first = bench.fma_like_tables(real, genres, 80, seed=0, noise=0.5, mix=1.0)["train"]
    assert first.equals(bench.fma_like_tables(real, genres, 80, seed=0, noise=0.5, mix=1.0)["train"])
    assert not first.equals(bench.fma_like_tables(real, genres, 80, seed=1, noise=0.5, mix=1.0)["train"])
    exact = bench.fma_like_tables(real, genres, 80, seed=0, noise=0.0, mix=0.0)["train"]
    values = exact[list(features.FEATURE_COLUMNS)].to_numpy()
    for row, genre in zip(values, exact["genre"]):  # each row is one of its genre's real clips
        own = real[[i for i, g in enumerate(genres) if g == genre]]
        assert (own == row).all(axis=1).any()


def test_gtzan_mini_tables_split_as_the_split_stage():
    real, paths = real_rows()
    tables = bench.gtzan_mini_tables(real, paths, ROOT)
    assert tuple(len(tables[s]) for s in ("train", "val", "test")) == (64, 16, 20)
    assert tables["test"]["track_id"].str.fullmatch(r"[a-z]+\.\d{5}").all()
