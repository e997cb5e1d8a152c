"""Splitting clips into train / val / test.

``stratified_split`` splits at file level with exact split sizes and every genre
spread over the splits as close to the fractions as whole clips allow.
``official_split`` maps FMA's own artist-disjoint split column to the same names.
``fault_filtered_split`` uses GTZAN's fault-filtered lists (Kereliuk, Sturm & Larsen 2015),
shipped in ``gtzan_fault_filtered/``: artist-disjoint, repeated and mislabelled excerpts removed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genreclf.artifacts import SPLITS
from genreclf.errors import DataError

# FMA's tracks.csv ('set', 'split') values.
OFFICIAL_SPLIT_NAMES = {"training": "train", "validation": "val", "test": "test"}
# GTZAN's fault-filtered split: one list per split, a `genre/genre.NNNNN.wav` line each.
FAULT_FILTERED_DIR = Path(__file__).parent / "gtzan_fault_filtered"
FAULT_FILTERED_FILES = {"train": "train_filtered.txt", "val": "valid_filtered.txt", "test": "test_filtered.txt"}


def split_totals(num_clips: int, fractions: dict[str, float]) -> dict[str, int]:
    """Exact split sizes: val and test are fraction x N rounded half up, train takes the rest.

    100 clips at 0.64 / 0.16 / 0.20 give exactly 64 / 16 / 20.
    """
    n_val = math.floor(fractions["val"] * num_clips + 0.5)
    n_test = math.floor(fractions["test"] * num_clips + 0.5)
    return {"train": num_clips - n_val - n_test, "val": n_val, "test": n_test}


def allocate_counts(
    genre_sizes: np.ndarray, fractions: np.ndarray, totals: np.ndarray, tie_rank: np.ndarray
) -> np.ndarray:
    """How many clips of each genre go to each split: a (genres x splits) integer matrix.

    Each row sums to the genre's size and each column to the split's total. Rows are
    first rounded by largest remainder (each count the floor or ceiling of
    size x fraction); then, while a split holds too many clips, one clip moves to a
    split that holds too few, each time in the genre where the move adds the least
    squared error. ``tie_rank`` orders genres whose moves cost the same. A move never takes the
    last clip of a genre out of a split whose quota for it is one clip or more (unless no other move
    is left), so that a genre of ``min_clips_per_genre`` clips or more is in every split.
    """
    quotas = np.round(genre_sizes[:, None] * fractions[None, :], 9)
    counts = np.floor(quotas).astype(np.int64)
    remainders = quotas - counts
    for g, size in enumerate(genre_sizes):
        largest_first = np.argsort(-remainders[g], kind="stable")
        counts[g, largest_first[: size - counts[g].sum()]] += 1

    keeps_one = quotas >= 1  # the (genre, split) cells a move does not empty
    while (excess := counts.sum(axis=0) - totals).any():
        movable = counts > keeps_one
        if not movable[:, excess > 0].any():
            movable = counts > 0
        # Moving one clip of genre g from s to t changes the squared error by 2 + 2 x cost.
        moves = (
            (
                round(float((counts[g, t] - quotas[g, t]) - (counts[g, s] - quotas[g, s])), 9),
                int(tie_rank[g]),
                int(s),
                int(t),
                int(g),
            )
            for s in np.flatnonzero(excess > 0)
            for t in np.flatnonzero(excess < 0)
            for g in np.flatnonzero(movable[:, s])
        )
        *_, s, t, g = min(moves)
        counts[g, s] -= 1
        counts[g, t] += 1
    return counts


def min_clips_per_genre(fractions: dict[str, float]) -> int:
    """The fewest clips of a genre that ``stratified_split`` puts in every split, whatever the
    other genres: the n at which n x fraction is at least one clip for every split."""
    return max(math.ceil(round(1 / fractions[s], 9)) for s in SPLITS)


def stratified_split(
    track_ids: Sequence[str], genres: Sequence[str], fractions: dict[str, float], seed: int
) -> list[str]:
    """The split ("train" / "val" / "test") of each clip, stratified by genre.

    Split sizes are exact (``split_totals``); within a genre the clips are shuffled
    with a generator seeded by ``seed``, so the result depends only on the inputs.
    """
    track_ids, genres = list(track_ids), list(genres)
    if len(track_ids) != len(genres):
        raise ValueError(f"{len(track_ids)} track ids but {len(genres)} genres")
    if len(set(track_ids)) != len(track_ids):
        raise ValueError("track ids must be unique")
    rng = np.random.default_rng(seed)
    genre_names = sorted(set(genres))
    members = {
        name: sorted((i for i, g in enumerate(genres) if g == name), key=lambda i: track_ids[i]) for name in genre_names
    }
    totals = split_totals(len(track_ids), fractions)
    counts = allocate_counts(
        genre_sizes=np.array([len(members[name]) for name in genre_names]),
        fractions=np.array([fractions[s] for s in SPLITS]),
        totals=np.array([totals[s] for s in SPLITS]),
        tie_rank=rng.permutation(len(genre_names)),
    )
    assignment = [""] * len(track_ids)
    for name, genre_counts in zip(genre_names, counts):
        shuffled = rng.permutation(members[name])
        names = np.repeat(SPLITS, genre_counts)
        for index, split in zip(shuffled, names):
            assignment[index] = str(split)
    return assignment


def official_split(values: Sequence[str], track_ids: Sequence[str], source: str) -> list[str]:
    """FMA's split names ("training", "validation", "test") as "train" / "val" / "test".

    Raises DataError naming ``source`` and the first clips whose value is anything else.
    """
    bad = [(t, v) for t, v in zip(track_ids, values) if v not in OFFICIAL_SPLIT_NAMES]
    if bad:
        raise DataError(
            f"{source}: official_split must be one of {sorted(OFFICIAL_SPLIT_NAMES)} for every clip; "
            f"{len(bad)} clips have other values, e.g. {bad[:3]}; without an official split, "
            "split the clips stratified by genre instead",
            path=source,
        )
    return [OFFICIAL_SPLIT_NAMES[v] for v in values]


def read_fault_filtered_lists(folder: str | Path = FAULT_FILTERED_DIR) -> dict[str, str]:
    """GTZAN track id (``blues.00012``) -> split, from the three lists in ``folder``.

    Raises DataError naming the list file for a line that is not ``genre/genre.NNNNN.wav``
    or a track listed twice.
    """
    listed: dict[str, str] = {}
    for split, name in FAULT_FILTERED_FILES.items():
        path = Path(folder) / name
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            entry = line.strip()
            if not entry:
                continue
            genre, _, file = entry.partition("/")
            track_id = file.removesuffix(".wav")
            if not file.endswith(".wav") or not track_id.startswith(f"{genre}."):
                raise DataError(f"{path}, line {number}: {entry!r} is not genre/genre.NNNNN.wav", path=path)
            if track_id in listed:
                raise DataError(f"{path}, line {number}: {track_id} is listed twice", path=path)
            listed[track_id] = split
    return listed


@dataclass(frozen=True)
class ListedSplit:
    """A split from lists: the split of each clip (None: not listed, left out) and the listed
    track ids with no clip in the data, by split."""

    assignment: list[str | None]
    unmatched: dict[str, list[str]]


def listed_split(track_ids: Sequence[str], listed: dict[str, str]) -> ListedSplit:
    """The split of each clip as ``listed`` gives it (``read_fault_filtered_lists``)."""
    present = set(track_ids)
    unmatched = {split: sorted(t for t, s in listed.items() if s == split and t not in present) for split in SPLITS}
    return ListedSplit([listed.get(t) for t in track_ids], unmatched)
