"""Similar songs: exact cosine nearest neighbours over standardised clip embeddings.

An index standardises each embedding dimension with the library's mean and standard
deviation, then scales every clip to unit length, so that a dot product is the cosine
similarity. A query is one matrix product with the library, in blocks of queries, then a partial
sort: exact and deterministic (among equal scores the earlier library clip comes first;
at the cut, the partition decides which of equal scores is kept, the same way every time).
benchmarks/bench_recommend.py measures the query time (README, 'Recommend similar songs').
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUERY_BLOCK = 256  # queries per matrix product: memory QUERY_BLOCK x library clips x 4 bytes


@dataclass(frozen=True)
class SimilarityIndex:
    mean: np.ndarray  # float64 [dims]: the library's mean of each dimension
    scale: np.ndarray  # float64 [dims]: its standard deviation (1 where it is 0)
    vectors: np.ndarray  # float32 [clips, dims]: standardised library clips of unit length


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its length (a zero row stays zero), as float32."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms == 0, 1.0, norms)).astype(np.float32)


def build_index(embeddings: np.ndarray) -> SimilarityIndex:
    """The index of a library: one embedding row per clip."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2 or len(embeddings) == 0:
        raise ValueError(f"expected a non-empty [clips, dims] matrix, got shape {embeddings.shape}")
    mean, scale = embeddings.mean(axis=0), embeddings.std(axis=0)
    scale = np.where(scale == 0, 1.0, scale)
    return SimilarityIndex(mean, scale, unit_rows((embeddings - mean) / scale))


def query_vectors(index: SimilarityIndex, embeddings: np.ndarray) -> np.ndarray:
    """Query embeddings standardised as the library was, of unit length."""
    return unit_rows((np.asarray(embeddings, dtype=np.float64) - index.mean) / index.scale)


def nearest(
    index: SimilarityIndex, queries: np.ndarray, top: int, groups: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(library indices [queries, top], cosine similarities [queries, top]) of each query's
    ``top`` most similar library clips, most similar first. ``queries`` come from
    ``query_vectors``; ``groups`` (int [queries], int [library clips], e.g. ``artist_groups``)
    leaves out the library clips in a query's own group (a negative group is no group), one block
    of queries at a time. With fewer candidates than ``top``, the rest are -1 with similarity -inf."""
    found, similarity = [], []
    for start in range(0, len(queries), QUERY_BLOCK):
        scores = queries[start : start + QUERY_BLOCK] @ index.vectors.T
        if groups is not None:
            query_groups = groups[0][start : start + QUERY_BLOCK]
            same = (query_groups[:, None] == groups[1][None, :]) & (query_groups >= 0)[:, None]
            scores = np.where(same, -np.inf, scores)
        order = top_order(scores, top)
        best = np.take_along_axis(scores, order, axis=1)
        found.append(np.where(np.isinf(best), -1, order))
        similarity.append(best)
    return np.concatenate(found), np.concatenate(similarity)


def top_order(scores: np.ndarray, top: int) -> np.ndarray:
    """Column indices of each row's ``top`` highest scores, highest first, the earlier column
    first on a tie: a partial partition, then a sort of those few (not of the whole row)."""
    if top < scores.shape[1]:
        candidates = np.argpartition(-scores, top - 1, axis=1)[:, :top]
    else:
        candidates = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    picked = np.take_along_axis(scores, candidates, axis=1)
    order = np.lexsort((candidates, -picked), axis=1)  # by score, then by column
    return np.take_along_axis(candidates, order, axis=1)


def artist_groups(query_artists: list[str], library_artists: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """``nearest``'s ``groups`` for leaving out the query's own artist: one number per artist
    (an empty artist is -1: it matches nothing); None when no clip names an artist."""
    numbers = {"": -1}
    groups = tuple(
        np.array([numbers.setdefault(a, len(numbers) - 1) for a in artists], dtype=np.int64)
        for artists in (query_artists, library_artists)
    )
    return None if len(numbers) == 1 else groups


def genre_precision(query_genres: list[str], library_genres: list[str], neighbours: np.ndarray) -> float:
    """The mean share of each query's neighbours whose genre is the query's (missing ones count as wrong)."""
    library = np.asarray(library_genres + [None], dtype=object)  # index -1: no neighbour
    hits = library[neighbours] == np.asarray(query_genres, dtype=object)[:, None]
    return float(hits.mean())
