"""recommend_index: a similar-song index over the library (the train and val clips), evaluated on test.

Reads   params recommend.embedding, recommend.top; the tables {train,val,test}.csv and
        feature_info.json of data/embeddings (musicnn) and data/features (the FMA feature set);
        models/cnn2d with data/split and the WAVs it lists (files, or objects on GCS that
        data/wav/wav_manifest.json lists, checked on the bucket first; the cnn2d embedding: the mean over a
        clip's segments of the model's 128-unit layer "dense", each WAV decoded and cut into
        segments exactly as the recommend command does a user's file); data/raw/track_info.csv
        (artist and title; blank for GTZAN).
Writes  models/recommend/ (genreclf.artifacts.write_similarity_index: the standardised,
        unit-length library vectors of recommend.embedding, their clips with artist and title,
        and how new audio gets the same embedding) and metrics/recommend.json: each test clip
        queries the library; genre precision@top is the mean share of its `top` neighbours in its
        genre, given for the index and, for comparison, for an index of each embedding the same
        way; "..._artist_filtered" is the same with the library clips by the query's own artist
        left out (null when the data names no artist, as GTZAN). The query time is logged, not
        written: the outputs stay byte-identical.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from genreclf.artifacts import (
    EMBEDDINGS_DIR,
    FEATURES_DIR,
    MODELS_DIR,
    RECOMMEND_DIR,
    RECOMMEND_METRICS_JSON,
    SPLIT_DIR,
    TRACK_INFO_COLUMNS,
    TRACK_INFO_CSV,
    WAV_DIR,
    FeatureSplit,
    read_feature_info,
    read_feature_split,
    read_split,
    read_track_info,
    write_similarity_index,
)
from genreclf.errors import DataError
from genreclf.io import write_json
from genreclf.models import neighbours
from stages.common import run_stage, stage_logger
from stages.config import load_config

LIBRARY_SPLITS = ("train", "val")
QUERY_SPLIT = "test"
TABLES = {"musicnn": EMBEDDINGS_DIR, "features": FEATURES_DIR}  # recommend.embedding -> its table
CNN2D = "cnn2d"  # recommend.embedding computed here from a trained model, not read from a table
CNN2D_DIR = MODELS_DIR / CNN2D

log = stage_logger("recommend_index")


def read_table(name: str) -> tuple[dict, dict]:
    """(feature_info, {split: FeatureSplit}) of one embedding table."""
    info = read_feature_info(TABLES[name])
    return info, {s: read_feature_split(TABLES[name], s, info["columns"]) for s in (*LIBRARY_SPLITS, QUERY_SPLIT)}


def cnn2d_table() -> tuple[dict, dict]:
    """(info, {split: FeatureSplit}) of the cnn2d embedding of every clip of data/split: its WAV
    decoded at the model's sample rate and embedded by KerasPredictor.embed_audio, as the
    recommend command embeds a file."""
    from tqdm import tqdm

    from genreclf.data.audio import check_wavs, decode_clip
    from genreclf.models.predictors import EMBEDDING_LAYER, load_predictor

    manifest, _ = read_split(SPLIT_DIR)
    check_wavs(manifest["path"], WAV_DIR)  # the objects on the bucket, if the WAVs are there
    predictor = load_predictor(CNN2D_DIR)
    if predictor.family != "keras":
        raise DataError(
            f"{CNN2D_DIR}: expected the Keras model cnn2d, found a {predictor.family} model", path=CNN2D_DIR
        )
    splits = {}
    with tqdm(total=len(manifest), desc="cnn2d embeddings", unit="clip") as progress:
        for split in (*LIBRARY_SPLITS, QUERY_SPLIT):
            clips = manifest[manifest["split"] == split]
            vectors = []
            for path in clips["path"]:
                vectors.append(predictor.embed_audio(decode_clip(path, predictor.sample_rate)))
                progress.update()
            splits[split] = FeatureSplit(
                clips["track_id"].tolist(), np.array(vectors), clips["label"].to_numpy(), clips["genre"].tolist()
            )
    columns = [f"{EMBEDDING_LAYER}_{i:03d}" for i in range(len(vectors[0]))]
    params = {"model": CNN2D_DIR.as_posix(), "layer": EMBEDDING_LAYER}
    return {"sample_rate": predictor.sample_rate, "params": params, "columns": columns}, splits


def library_ids(splits: dict) -> list[str]:
    return [t for s in LIBRARY_SPLITS for t in splits[s].track_ids]


def evaluate(splits: dict, top: int, artist_of: dict) -> tuple[neighbours.SimilarityIndex, float, float | None, float]:
    """(the index of the library, genre precision@top of the test queries, the same with the
    neighbours by the query's own artist left out (None: no artists), seconds the queries took)."""
    index = neighbours.build_index(np.concatenate([splits[s].features for s in LIBRARY_SPLITS]))
    queries = splits[QUERY_SPLIT]
    vectors = neighbours.query_vectors(index, queries.features)
    started = time.perf_counter()
    found, _ = neighbours.nearest(index, vectors, top)
    seconds = time.perf_counter() - started
    library_genres = [g for s in LIBRARY_SPLITS for g in splits[s].genres]
    precision = neighbours.genre_precision(queries.genres, library_genres, found)
    groups = neighbours.artist_groups(
        [artist_of[t] for t in queries.track_ids], [artist_of[t] for t in library_ids(splits)]
    )
    if groups is None:
        return index, precision, None, seconds
    found, _ = neighbours.nearest(index, vectors, top, groups)
    return index, precision, neighbours.genre_precision(queries.genres, library_genres, found), seconds


def library_table(splits: dict, track_info: pd.DataFrame) -> pd.DataFrame:
    """track_id, genre, split, artist, title of each library clip, in index order."""
    library = pd.DataFrame(
        {
            "track_id": library_ids(splits),
            "genre": [g for s in LIBRARY_SPLITS for g in splits[s].genres],
            "split": [s for s in LIBRARY_SPLITS for _ in splits[s].track_ids],
        }
    )
    return library.merge(track_info[TRACK_INFO_COLUMNS], on="track_id", how="left", validate="one_to_one")


def read_names(tables: dict) -> pd.DataFrame:
    """data/raw/track_info.csv, checked to name every clip of the tables."""
    track_info = read_track_info(TRACK_INFO_CSV)
    clips = {t for _, splits in tables.values() for split in splits.values() for t in split.track_ids}
    missing = sorted(clips - set(track_info["track_id"]))
    if missing:
        raise DataError(f"{TRACK_INFO_CSV}: lacks the clips {missing[:5]} of the embedding tables", path=TRACK_INFO_CSV)
    return track_info


def precision_metrics(top: int, chosen: str, results: dict) -> dict:
    """genre precision@top of the chosen index, then by embedding; plain and artist-filtered."""
    metrics = {}
    for suffix, at in (("", 1), ("_artist_filtered", 2)):
        by_embedding = {name: None if r[at] is None else round(r[at], 6) for name, r in results.items()}
        metrics[f"genre_precision_at_{top}{suffix}"] = by_embedding[chosen]
        metrics[f"genre_precision_at_{top}{suffix}_by_embedding"] = by_embedding
    return metrics


def main() -> None:
    params = load_config().recommend
    tables = {name: read_table(name) for name in TABLES}
    tables[CNN2D] = cnn2d_table()
    track_info = read_names(tables)
    info, splits = tables[params.embedding]
    library = library_table(splits, track_info)
    queries = len(splits[QUERY_SPLIT].track_ids)
    log.info(
        "read %s, %s (cnn2d, on the WAVs of %s) and %s: library %d clips (train + val), %d test queries, "
        "%d dimensions (%s), %d clips with an artist; top %d",
        ", ".join(f"{TABLES[name]}/ ({name})" for name in TABLES),
        CNN2D_DIR,
        SPLIT_DIR,
        TRACK_INFO_CSV,
        len(library),
        queries,
        len(info["columns"]),
        params.embedding,
        int((track_info["artist"] != "").sum()),
        params.top,
    )
    artist_of = dict(zip(track_info["track_id"], track_info["artist"]))
    results = {name: evaluate(table_splits, params.top, artist_of) for name, (_, table_splits) in tables.items()}
    metrics = {
        "embedding": params.embedding,
        "library_clips": len(library),
        "queries": queries,
        "top": params.top,
        **precision_metrics(params.top, params.embedding, results),
    }
    index = results[params.embedding][0]
    write_similarity_index(
        RECOMMEND_DIR, index.mean, index.scale, index.vectors, library, {"embedding": params.embedding, **info}
    )
    write_json(RECOMMEND_METRICS_JSON, metrics)
    for name, (_, precision, filtered, seconds) in results.items():
        log.info(
            "%s: %d queries in %.2f ms each (log only); genre precision@%d %.3f, artist-filtered %s",
            name,
            queries,
            1000 * seconds / max(queries, 1),
            params.top,
            precision,
            "n/a (no artists)" if filtered is None else f"{filtered:.3f}",
        )
    log.info("wrote %s/ (%s) and %s: %s", RECOMMEND_DIR, params.embedding, RECOMMEND_METRICS_JSON, metrics)


if __name__ == "__main__":
    run_stage("recommend_index", main)
