"""The similar-song index of the dataset's own clips, and the genre precision of each embedding.

The library is the train and val clips, the queries the test clips. Each embedding is read
from its table (musicnn: data/embeddings, features: data/features) or, for cnn2d, computed from
the trained models/cnn2d on the WAVs of data/split exactly as a user's file is embedded
(``KerasPredictor.embed_audio``). ``evaluate`` gives the index of an embedding and its genre
precision@top, plain and with the query's own artist left out.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from genreclf.artifacts import (
    EMBEDDINGS_DIR,
    FEATURES_DIR,
    MODELS_DIR,
    SPLIT_DIR,
    TRACK_INFO_COLUMNS,
    TRACK_INFO_CSV,
    WAV_DIR,
    FeatureSplit,
    read_feature_info,
    read_feature_split,
    read_split,
    read_track_info,
)
from genreclf.errors import DataError
from genreclf.models import neighbours

LIBRARY_SPLITS = ("train", "val")
QUERY_SPLIT = "test"
TABLES = {"musicnn": EMBEDDINGS_DIR, "features": FEATURES_DIR}  # recommend.embedding -> its table
CNN2D = "cnn2d"  # recommend.embedding computed from a trained model, not read from a table
CNN2D_DIR = MODELS_DIR / CNN2D


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
