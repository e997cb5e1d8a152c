"""embed: the pretrained musicnn embedding of every clip.

Reads   params embed.embedding (penultimate: 200 values, or max_pool: 753) and
        embed.patches_per_clip (null: every patch; N: N evenly spaced ones, cheaper);
        models/musicnn_msd (the pretrained stage); data/split/split_manifest.csv,
        data/split/labels.json and the WAVs they list (files, or with a gs:// data root the objects
        that data/wav/wav_manifest.json lists, checked on the bucket first).
Writes  data/embeddings/{train,val,test}.csv: track_id, label, genre, then the columns
        <embedding>_000 ...: each clip decoded at 16 kHz (resampled with soxr, as convert
        resamples), cut into non-overlapping 3 s log-mel patches, the embedding averaged over
        them; one row per clip, in manifest order; data/embeddings/feature_info.json
        ({"sample_rate": 16000, "params", "columns"}). Same inputs, same bytes.
Each clip's embedding is also kept in .genreclf-scratch/embed/<key>/ as it is computed
(genreclf.resume), so a run killed part-way embeds only the clips it had not finished; the
scratch is removed once the tables are written. The next clips are decoded in a thread while the
network embeds the current one (genreclf.models.musicnn.prefetched): the same bytes, sooner.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from genreclf import resume, space
from genreclf.artifacts import (
    EMBEDDINGS_DIR,
    FEATURE_ID_COLUMNS,
    MANIFEST_FILE,
    PRETRAINED_DIR,
    SPLIT_DIR,
    SPLITS,
    WAV_DIR,
    read_pretrained,
    read_split,
    write_embeddings,
)
from genreclf.data.audio import check_wavs
from stages.common import cache_mirrors, log_tables_written, run_stage, stage_logger
from stages.config import load_config

log = stage_logger("embed")


def read_inputs() -> tuple[dict[str, pd.DataFrame], Path, dict]:
    """The clips of each split (their WAVs checked), the pretrained model's file and info; the
    space the tables need checked; logged."""
    clips, labels = read_split(SPLIT_DIR)
    check_wavs(clips["path"], WAV_DIR)  # the objects on the bucket, if the WAVs are there
    model_file, info = read_pretrained(PRETRAINED_DIR)
    if space.check_enabled():
        widest = 753  # max_pool's columns (genreclf.models.musicnn.EMBEDDING_SIZES, which imports TensorFlow)
        table = space.Need("embedding tables", space.table_bytes(len(clips), widest), EMBEDDINGS_DIR)
        space.check_space("embed", [table], cache_mirrors())
    by_split = {split: clips[clips["split"] == split] for split in SPLITS}
    log.info(
        "read %s/%s: %d clips (%s), %d genres; %s (%s)",
        SPLIT_DIR,
        MANIFEST_FILE,
        len(clips),
        ", ".join(f"{s} {len(by_split[s])}" for s in SPLITS),
        len(labels),
        model_file,
        info["source"],
    )
    return by_split, model_file, info


def counted(rows: Iterator, progress: tqdm) -> Iterator:
    """``rows``, advancing ``progress`` by one after each."""
    for row in rows:
        yield row
        progress.update()


def main() -> None:
    settings = load_config().embed
    embedding, patches_per_clip = settings.embedding, settings.patches_per_clip
    by_split, model_file, info = read_inputs()
    # TensorFlow and librosa (seconds to import) only once the inputs are there
    import keras
    import tensorflow as tf

    from genreclf.models import musicnn

    tf.config.experimental.enable_op_determinism()
    model = keras.models.load_model(model_file, compile=False)
    sample_rate = info["sample_rate"]
    ordered = pd.concat([by_split[split] for split in SPLITS])
    paths = ordered["path"].tolist()
    key = resume.scratch_key(
        "embed",
        {"embed": settings.model_dump(), "model": info},
        [(SPLIT_DIR / MANIFEST_FILE).read_bytes()],
        [*paths, str(model_file)],
        resume.code_files(__file__),
    )
    scratch = resume.Scratch.open(resume.SCRATCH_ROOT, "embed", key)
    if len(scratch):
        log.info("resuming: %d clips already embedded in %s", len(scratch), scratch.folder)

    def audio(i: int):
        return musicnn.clip_audio(paths[i], sample_rate)

    def embed_clips(pending: list[int]):
        return musicnn.clip_embeddings(model, pending, audio, embedding, patches_per_clip)

    started = time.perf_counter()
    rows = resume.resumed(scratch, len(ordered), embed_clips)
    columns = musicnn.embedding_columns(embedding)
    params = {
        "model": PRETRAINED_DIR.as_posix(),
        "source": info["source"],
        "embedding": embedding,
        "patches_per_clip": patches_per_clip,
    }
    ids = {split: by_split[split][FEATURE_ID_COLUMNS] for split in SPLITS}
    with tqdm(total=len(ordered), desc="embed", unit="clip") as progress:  # write_embeddings takes an iterator
        write_embeddings(EMBEDDINGS_DIR, ids, counted(rows, progress), columns, sample_rate, params)
    scratch.remove()
    seconds = time.perf_counter() - started
    log.info("patches per clip: %s", "all" if patches_per_clip is None else patches_per_clip)
    log.info("embedded %d clips in %.1f s (%.2f clips/s)", len(ordered), seconds, len(ordered) / seconds)
    log.info("resume: reused %d clips (finished by a run that stopped), computed %d", *scratch.counts())
    log_tables_written(log, EMBEDDINGS_DIR, by_split, len(columns), embedding)


if __name__ == "__main__":
    run_stage("embed", main)
