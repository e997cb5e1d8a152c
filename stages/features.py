"""features: the FMA feature set (518 statistics of 11 librosa features) of every clip.

Reads   params features.*; data/split/split_manifest.csv, data/split/labels.json and the
        WAVs they list (data/wav/<track_id>.wav, mono 16-bit, one sample rate; or, with a gs://
        data root, the objects that data/wav/wav_manifest.json lists, checked on the bucket first).
Writes  data/features/{train,val,test}.csv: track_id, label, genre, then the feature
        columns (genreclf.features.fma_features.FEATURE_COLUMNS), one row per clip in manifest order;
        data/features/feature_info.json: {"sample_rate", "params", "columns"}, which the
        scikit-learn models keep so that new audio gets the very same features.
Every core computes features; rows are written as they arrive, in a fixed order, so
memory stays flat and the same inputs give the same bytes. Each clip's row is also kept in
.genreclf-scratch/features/<key>/ as it arrives (genreclf.resume), so a run killed part-way
computes only the clips it had not finished; the scratch is removed once the tables are written.

With features.source fma or fma_echonest (FMA datasets only) nothing is computed: each clip's row
is taken from FMA's own features.csv or echonest.csv, which fetch keeps (the chosen clips' rows)
in data/raw/fma_metadata/; the same tables and column naming, feature_info.json's params naming
the table. Clips the table lacks go to data/features/left_out.csv (track_id, genre, reason).
features.families keeps some families of the columns (computed: of the 518 computed ones).
"""

from __future__ import annotations

import time
from functools import partial

import pandas as pd

from genreclf import catalog, resume, space
from genreclf.artifacts import (
    FEATURE_ID_COLUMNS,
    FEATURES_DIR,
    LEFT_OUT_COLUMNS,
    LEFT_OUT_FILE,
    MANIFEST_FILE,
    RAW_DIR,
    SPLIT_DIR,
    SPLITS,
    WAV_DIR,
    read_split,
    write_features,
)
from genreclf.data.audio import check_wavs, wav_sample_rate
from genreclf.data.fma import KEPT_TABLES_DIR
from genreclf.engine import engine_from_environ, map_in_order
from genreclf.features import fma_features as features
from genreclf.features import fma_tables
from genreclf.io import write_csv
from stages.common import cache_mirrors, log_tables_written, run_stage, stage_logger
from stages.config import PARAMS_FILE, FeaturesSection, load_config

log = stage_logger("features")


def main() -> None:
    section = load_config().features
    if section.source == catalog.FEATURES_COMPUTED:
        compute(section)
    else:
        take_table(section)


def take_table(section: FeaturesSection) -> None:
    """data/features from FMA's table: the split's clips that it holds, the others left out."""
    clips, labels = read_split(SPLIT_DIR, check_wavs=False)  # no audio is read
    path = RAW_DIR / KEPT_TABLES_DIR / fma_tables.TABLE_FILES[section.source]
    table = fma_tables.read_table(path, section.source)
    kept = fma_tables.select_families(list(table.columns), section.families, section.source)
    table = table.iloc[:, kept]
    by_split, rows, left_out = fma_tables.rows_by_split(table, clips, SPLITS, str(path))
    fma_tables.check_missing(len(left_out), len(clips), section.max_missing, str(path), "features.max_missing")
    log.info(
        "read %s/%s: %s clips, %d genres; %s: %d rows, %d columns kept (families %s)",
        *(SPLIT_DIR, MANIFEST_FILE, len(clips), len(labels), path, len(table), len(kept), section.families),
    )
    write_features(
        FEATURES_DIR,
        {split: by_split[split][FEATURE_ID_COLUMNS] for split in SPLITS},
        rows,
        list(table.columns),
        fma_tables.TABLE_SAMPLE_RATE,
        fma_tables.table_settings(section.source, section.families),
    )
    write_csv(FEATURES_DIR / LEFT_OUT_FILE, left_out[LEFT_OUT_COLUMNS])
    log.info("left out %d clips the table lacks: %s/%s", len(left_out), FEATURES_DIR, LEFT_OUT_FILE)
    log_tables_written(log, FEATURES_DIR, by_split, len(kept), "feature")


def compute(section: FeaturesSection) -> None:
    params = features.recipe_params(section.model_dump(), where=f"{PARAMS_FILE}: features")
    engine = engine_from_environ()
    clips, labels = read_split(SPLIT_DIR)
    check_wavs(clips["path"], WAV_DIR)  # the objects on the bucket, if the WAVs are there
    sample_rate = wav_sample_rate(clips["path"].iloc[0])  # every other clip is checked against it
    by_split = {split: clips[clips["split"] == split] for split in SPLITS}
    ordered = pd.concat([by_split[split] for split in SPLITS])
    key = resume.scratch_key(
        "features",
        {"features": features.params_to_dict(params), "sample_rate": sample_rate},
        [(SPLIT_DIR / MANIFEST_FILE).read_bytes()],
        ordered["path"],
        resume.code_files(__file__),
    )
    if not resume.has_results(resume.SCRATCH_ROOT, "features", key):  # else a run with these params passed it
        features.check_params(params, sample_rate, where=f"{PARAMS_FILE}: features")
    computed = features.feature_columns(params)
    kept = fma_tables.select_families(computed, section.families, section.source)
    columns = [computed[i] for i in kept]
    if space.check_enabled():
        table = space.Need("feature tables", space.table_bytes(len(clips), len(columns)), FEATURES_DIR)
        space.check_space("features", [table], cache_mirrors())
    sizes = ", ".join(f"{s} {len(by_split[s])}" for s in SPLITS)
    log.info(
        "read %s/%s: %s clips (%s), %d genres; %d Hz WAVs; params %s; %d feature columns; engine %s",
        *(SPLIT_DIR, MANIFEST_FILE, len(clips), sizes, len(labels), sample_rate, features.params_to_dict(params)),
        *(len(columns), engine.describe()),
    )

    scratch = resume.Scratch.open(resume.SCRATCH_ROOT, "features", key)
    if len(scratch):
        log.info("resuming: %d clips already computed in %s", len(scratch), scratch.folder)
    started = time.perf_counter()
    rows = map_in_order(
        partial(features.wav_features, sample_rate=sample_rate, params=params),
        [(path,) for path in ordered["path"]],
        engine,
        setup=partial(features.init_worker, sample_rate, params),
        local=lambda _, paths: features.iter_wav_features([p for (p,) in paths], sample_rate, params),
        scratch=scratch,
    )
    try:
        write_features(
            FEATURES_DIR,
            {split: by_split[split][FEATURE_ID_COLUMNS] for split in SPLITS},
            rows if len(kept) == len(computed) else (row[kept] for row in rows),
            columns,
            sample_rate,
            features.params_to_dict(params),
        )
    finally:
        rows.close()  # stops the worker processes (at once if a clip failed)
    scratch.remove()
    seconds = time.perf_counter() - started
    log.info("computed %d clips in %.1f s (%.1f clips/s)", len(ordered), seconds, len(ordered) / seconds)
    log.info("resume: reused %d clips (finished by a run that stopped), computed %d", *scratch.counts())
    log_tables_written(log, FEATURES_DIR, by_split, len(columns), "feature")


if __name__ == "__main__":
    run_stage("features", main)
