"""recommend_index: a similar-song index over the library (the train and val clips), evaluated on test.

Reads   params recommend.embedding, recommend.top; the tables {train,val,test}.csv and
        feature_info.json of data/embeddings (musicnn) and data/features (the FMA feature set).
Writes  models/recommend/ (genreclf.artifacts.write_similarity_index: the standardised,
        unit-length library vectors of recommend.embedding, their clips, and how new audio gets
        the same embedding) and metrics/recommend.json: each test clip queries the library;
        genre precision@top is the mean share of its `top` neighbours in its genre, given for
        the index and, for comparison, for an index of each embedding table the same way. The
        query time is logged, not written: the outputs stay byte-identical.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from genreclf.artifacts import (
    EMBEDDINGS_DIR,
    FEATURES_DIR,
    RECOMMEND_DIR,
    RECOMMEND_METRICS_JSON,
    read_feature_info,
    read_feature_split,
    write_similarity_index,
)
from genreclf.io import write_json
from genreclf.models import neighbours
from stages.common import run_stage, stage_logger
from stages.config import load_config

LIBRARY_SPLITS = ("train", "val")
QUERY_SPLIT = "test"
TABLES = {"musicnn": EMBEDDINGS_DIR, "features": FEATURES_DIR}  # recommend.embedding -> its table

log = stage_logger("recommend_index")


def read_table(name: str) -> tuple[dict, dict]:
    """(feature_info, {split: FeatureSplit}) of one embedding table."""
    info = read_feature_info(TABLES[name])
    return info, {s: read_feature_split(TABLES[name], s, info["columns"]) for s in (*LIBRARY_SPLITS, QUERY_SPLIT)}


def evaluate(splits: dict, top: int) -> tuple[neighbours.SimilarityIndex, float, float]:
    """(the index of the library, genre precision@top of the test queries, seconds the queries took)."""
    index = neighbours.build_index(np.concatenate([splits[s].features for s in LIBRARY_SPLITS]))
    queries = splits[QUERY_SPLIT]
    started = time.perf_counter()
    found, _ = neighbours.nearest(index, neighbours.query_vectors(index, queries.features), top)
    seconds = time.perf_counter() - started
    library_genres = [g for s in LIBRARY_SPLITS for g in splits[s].genres]
    return index, neighbours.genre_precision(queries.genres, library_genres, found), seconds


def main() -> None:
    params = load_config().recommend
    tables = {name: read_table(name) for name in TABLES}
    info, splits = tables[params.embedding]
    library = pd.DataFrame(
        {
            "track_id": [t for s in LIBRARY_SPLITS for t in splits[s].track_ids],
            "genre": [g for s in LIBRARY_SPLITS for g in splits[s].genres],
            "split": [s for s in LIBRARY_SPLITS for _ in splits[s].track_ids],
        }
    )
    queries = len(splits[QUERY_SPLIT].track_ids)
    log.info(
        "read %s: library %d clips (train + val), %d test queries, %d dimensions; top %d",
        ", ".join(f"{TABLES[name]}/ ({name})" for name in TABLES),
        len(library),
        queries,
        len(info["columns"]),
        params.top,
    )
    results = {name: evaluate(table_splits, params.top) for name, (_, table_splits) in tables.items()}
    index, precision, seconds = results[params.embedding]
    metrics = {
        "embedding": params.embedding,
        "library_clips": len(library),
        "queries": queries,
        "top": params.top,
        f"genre_precision_at_{params.top}": round(precision, 6),
        f"genre_precision_at_{params.top}_by_embedding": {name: round(r[1], 6) for name, r in results.items()},
    }
    info = {"embedding": params.embedding, **info}
    write_similarity_index(RECOMMEND_DIR, index.mean, index.scale, index.vectors, library, info)
    write_json(RECOMMEND_METRICS_JSON, metrics)
    for name, (_, name_precision, name_seconds) in results.items():
        log.info(
            "%s: %d queries in %.2f ms each (log only); genre precision@%d %.3f",
            name,
            queries,
            1000 * name_seconds / max(queries, 1),
            params.top,
            name_precision,
        )
    log.info("wrote %s/ (%s) and %s: %s", RECOMMEND_DIR, params.embedding, RECOMMEND_METRICS_JSON, metrics)


if __name__ == "__main__":
    run_stage("recommend_index", main)
