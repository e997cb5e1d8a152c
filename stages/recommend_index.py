"""recommend_index: a similar-song index over the library (the train and val clips), evaluated on test.

Reads   params recommend.embedding, recommend.top; data/features/{train,val,test}.csv and
        feature_info.json.
Writes  models/recommend/ (genreclf.artifacts.write_similarity_index: the standardised,
        unit-length library vectors, their clips, and how new audio gets the same embedding)
        and metrics/recommend.json: each test clip queries the library; genre precision@top
        is the mean share of its `top` neighbours in its genre. The query time is logged, not
        written: the outputs stay byte-identical.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from genreclf.artifacts import (
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

log = stage_logger("recommend_index")


def main() -> None:
    params = load_config().recommend
    info = read_feature_info(FEATURES_DIR)
    splits = {s: read_feature_split(FEATURES_DIR, s, info["columns"]) for s in (*LIBRARY_SPLITS, QUERY_SPLIT)}
    library = pd.DataFrame(
        {
            "track_id": [t for s in LIBRARY_SPLITS for t in splits[s].track_ids],
            "genre": [g for s in LIBRARY_SPLITS for g in splits[s].genres],
            "split": [s for s in LIBRARY_SPLITS for _ in splits[s].track_ids],
        }
    )
    log.info(
        "read %s/{train,val,test}.csv: library %d clips (train + val), %d test queries, %d dimensions "
        "(embedding %s); top %d",
        FEATURES_DIR,
        len(library),
        len(splits[QUERY_SPLIT].track_ids),
        len(info["columns"]),
        params.embedding,
        params.top,
    )
    index = neighbours.build_index(np.concatenate([splits[s].features for s in LIBRARY_SPLITS]))
    queries = splits[QUERY_SPLIT]
    started = time.perf_counter()
    found, _ = neighbours.nearest(index, neighbours.query_vectors(index, queries.features), params.top)
    seconds = time.perf_counter() - started
    precision = neighbours.genre_precision(queries.genres, list(library["genre"]), found)
    metrics = {
        "embedding": params.embedding,
        "library_clips": len(library),
        "queries": len(queries.track_ids),
        "top": params.top,
        f"genre_precision_at_{params.top}": round(precision, 6),
    }
    info = {"embedding": params.embedding, **info}
    write_similarity_index(RECOMMEND_DIR, index.mean, index.scale, index.vectors, library, info)
    write_json(RECOMMEND_METRICS_JSON, metrics)
    log.info(
        "%d queries in %.2f ms each (log only); genre precision@%d %.3f",
        len(queries.track_ids),
        1000 * seconds / max(len(queries.track_ids), 1),
        params.top,
        precision,
    )
    log.info("wrote %s/ and %s: %s", RECOMMEND_DIR, RECOMMEND_METRICS_JSON, metrics)


if __name__ == "__main__":
    run_stage("recommend_index", main)
