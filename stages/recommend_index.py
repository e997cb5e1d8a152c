"""recommend_index: the similar-song index of the library, and each embedding evaluated on test.

Reads   params recommend.embedding, recommend.top, recommend.library; the tables
        {train,val,test}.csv and feature_info.json of data/embeddings (musicnn) and data/features
        (the FMA feature set); models/cnn2d with data/split and the WAVs it lists (files, or objects
        on GCS that data/wav/wav_manifest.json lists, checked on the bucket first; the cnn2d
        embedding: the mean over a clip's segments of the model's 128-unit layer "dense", each WAV
        decoded and cut into segments exactly as the recommend command does a user's file);
        data/raw/track_info.csv (artist and title; blank for GTZAN). With recommend.library a
        folder of the user's music: every audio file in it, its tags, and models/musicnn_msd
        (genreclf.recommend.build_library; per-song work cached in .genreclf-scratch/).
Writes  models/recommend/ (genreclf.artifacts.write_similarity_index: the standardised,
        unit-length library vectors of recommend.embedding, the library's rows with artist and
        title (for a folder: track_id is the file's path in it, split "library"), and how new
        audio gets the same embedding) and metrics/recommend.json: each test clip of the dataset
        queries the dataset's train + val clips; genre precision@top is the mean share of its
        `top` neighbours in its genre, for the chosen embedding and for each of the three;
        "..._artist_filtered" is the same with the clips by the query's own artist left out (null
        when the data names no artist, as GTZAN). Query times and the library's embedded and
        reused counts are logged, not written: the outputs stay byte-identical.
"""

from __future__ import annotations

from pathlib import Path

from genreclf.artifacts import RECOMMEND_DIR, RECOMMEND_METRICS_JSON, TRACK_INFO_CSV, write_similarity_index
from genreclf.io import write_json
from genreclf.models import neighbours
from genreclf.recommend_dataset import (
    CNN2D,
    CNN2D_DIR,
    QUERY_SPLIT,
    TABLES,
    cnn2d_table,
    evaluate,
    library_table,
    precision_metrics,
    read_names,
    read_table,
)
from stages.common import run_stage, stage_logger
from stages.config import LIBRARY_OF_THE_DATASET, load_config

log = stage_logger("recommend_index")


def folder_index(folder: str, embedding: str, info: dict) -> tuple[neighbours.SimilarityIndex, object, dict]:
    """(index, library rows, index info) of a folder of the user's music, embedded as ``info`` says."""
    from tqdm import tqdm

    from genreclf.recommend import build_library

    info = {"embedding": embedding, **info, "library": folder}
    with tqdm(desc="library", unit="song") as progress:
        build = build_library(folder, info, progress=progress)
    log.info(
        "library %s: %d songs in the index; embedded %d, reused %d (cached by content); %d files not audio",
        folder,
        len(build.table),
        build.embedded,
        build.reused,
        build.other_files,
    )
    for failure in build.failed:
        log.warning("left out: %s", failure)
    return neighbours.build_index(build.vectors), build.table, info


def main() -> None:
    params = load_config().recommend
    tables = {name: read_table(name) for name in TABLES}
    tables[CNN2D] = cnn2d_table()
    track_info = read_names(tables)
    info, splits = tables[params.embedding]
    queries = len(splits[QUERY_SPLIT].track_ids)
    log.info(
        "read %s, %s (cnn2d, on the WAVs of data/split) and %s: %d test queries, %d clips with an artist; top %d",
        ", ".join(f"{TABLES[name]}/ ({name})" for name in TABLES),
        CNN2D_DIR,
        TRACK_INFO_CSV,
        queries,
        int((track_info["artist"] != "").sum()),
        params.top,
    )
    artist_of = dict(zip(track_info["track_id"], track_info["artist"]))
    results = {name: evaluate(table_splits, params.top, artist_of) for name, (_, table_splits) in tables.items()}
    if Path(params.library) == Path(LIBRARY_OF_THE_DATASET):
        index, library = results[params.embedding][0], library_table(splits, track_info)
        index_info = {"embedding": params.embedding, **info}
        log.info("library: the dataset's %d train + val clips", len(library))
    else:
        index, library, index_info = folder_index(params.library, params.embedding, info)
    metrics = {
        "embedding": params.embedding,
        "library_clips": len(library),
        "queries": queries,
        "top": params.top,
        **precision_metrics(params.top, params.embedding, results),
    }
    write_similarity_index(RECOMMEND_DIR, index.mean, index.scale, index.vectors, library, index_info)
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
    log.info(
        "wrote %s/ (%s, %d rows) and %s: %s",
        RECOMMEND_DIR,
        params.embedding,
        len(library),
        RECOMMEND_METRICS_JSON,
        metrics,
    )


if __name__ == "__main__":
    run_stage("recommend_index", main)
