"""features: the FMA feature set (518 statistics of 11 librosa features) of every clip.

Reads   params features.*; data/split/split_manifest.csv, data/split/labels.json and the
        WAVs they list (data/wav/<track_id>.wav, mono 16-bit, one sample rate).
Writes  data/features/{train,val,test}.csv: track_id, label, genre, then the feature
        columns (genreclf.features.FEATURE_COLUMNS), one row per clip in manifest order;
        data/features/feature_info.json: {"sample_rate", "params", "columns"}, which the
        scikit-learn models keep so that new audio gets the very same features.
Every core computes features; rows are written as they arrive, in a fixed order, so
memory stays flat and the same inputs give the same bytes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from genreclf.errors import DataError
from genreclf.features import fma_features as features
from genreclf.io import atomic_dir, read_clip_table, read_json, write_json
from stages.common import run_stage, stage_logger
from stages.config import load_params, section

SPLIT_DIR = Path("data/split")
MANIFEST_CSV = SPLIT_DIR / "split_manifest.csv"
LABELS_JSON = SPLIT_DIR / "labels.json"
FEATURES_DIR = Path("data/features")
FEATURE_INFO_NAME = "feature_info.json"

SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ["track_id", "path", "genre", "label", "split"]
ID_COLUMNS = ["track_id", "label", "genre"]
FLOAT_FORMAT = "%.9g"        # as genreclf.io.write_csv: the same table gives the same bytes
ROWS_PER_WRITE = 256         # rows buffered before they are appended to the CSV
SHOWN_IN_ERRORS = 5

log = stage_logger("features")


def read_manifest(manifest_path: Path, labels_path: Path) -> tuple[pd.DataFrame, list[str]]:
    """The split manifest and the genre labels, checked against each other and the WAVs."""
    fix = "run the split stage (dvc repro split) to (re)create it"
    for path in (manifest_path, labels_path):
        if not path.is_file():
            raise DataError(f"{path} does not exist; {fix}")
    labels = read_json(labels_path)
    if not (isinstance(labels, list) and labels and all(isinstance(g, str) for g in labels)):
        raise DataError(f"{labels_path}: expected a non-empty list of genre names; {fix}")
    clips = read_clip_table(manifest_path, MANIFEST_COLUMNS, fix)
    bad_split = sorted(set(clips["split"]) - set(SPLITS))
    if bad_split:
        raise DataError(f"{manifest_path}: unknown split values {bad_split}; expected {list(SPLITS)}; {fix}")
    label_of = {genre: str(i) for i, genre in enumerate(labels)}
    wrong = clips[clips["genre"].map(label_of) != clips["label"]]
    if not wrong.empty:
        examples = list(zip(wrong["track_id"], wrong["genre"], wrong["label"]))[:SHOWN_IN_ERRORS]
        raise DataError(f"{manifest_path}: (track_id, genre, label) {examples} do not match {labels_path}; {fix}")
    absent = [p for p in clips["path"] if not Path(p).is_file()]
    if absent:
        raise DataError(f"{len(absent)} WAV files listed in {manifest_path} are missing, e.g. "
                        f"{absent[:SHOWN_IN_ERRORS]}; run the convert stage (dvc repro convert)")
    return clips.assign(label=clips["label"].astype(int)), labels


def wav_sample_rate(path: str) -> int:
    """The sample rate of the first WAV; every clip is then checked to have it."""
    try:
        return sf.info(path).samplerate
    except sf.LibsndfileError as e:
        raise DataError(f"{path}: cannot read it as WAV ({e.error_string.rstrip('.')}); "
                        "run the convert stage again (dvc repro convert)") from None


def write_split_table(path: Path, ids: pd.DataFrame, rows: Iterator[np.ndarray], columns: list[str]) -> None:
    """Write ``ids`` (track_id, label, genre) with the next len(ids) feature rows as CSV,
    ROWS_PER_WRITE rows at a time: the bytes of write_csv on the whole table."""
    with open(path, "w", encoding="utf-8", newline="") as out:
        for start in range(0, max(len(ids), 1), ROWS_PER_WRITE):
            chunk_ids = ids.iloc[start:start + ROWS_PER_WRITE].reset_index(drop=True)
            values = np.array(list(islice(rows, len(chunk_ids))), dtype=np.float64).reshape(-1, len(columns))
            chunk = pd.concat([chunk_ids, pd.DataFrame(values, columns=columns)], axis=1)
            chunk.to_csv(out, header=start == 0, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")


def main() -> None:
    params = features.params_from_dict(section(load_params(), "features"))
    clips, labels = read_manifest(MANIFEST_CSV, LABELS_JSON)
    sample_rate = wav_sample_rate(clips["path"].iloc[0])
    features.check_params(params, sample_rate)
    columns = features.feature_columns(params)
    by_split = {split: clips[clips["split"] == split] for split in SPLITS}
    log.info("read %s: %s clips (%s), %d genres; %d Hz WAVs; params %s; %d feature columns", MANIFEST_CSV,
             len(clips), ", ".join(f"{s} {len(by_split[s])}" for s in SPLITS), len(labels), sample_rate,
             features.params_to_dict(params), len(columns))

    ordered = pd.concat([by_split[split] for split in SPLITS])
    started = time.perf_counter()
    rows = features.iter_wav_features(ordered["path"].tolist(), sample_rate, params)
    try:
        with atomic_dir(FEATURES_DIR) as tmp:
            for split in SPLITS:
                write_split_table(tmp / f"{split}.csv", by_split[split][ID_COLUMNS], rows, columns)
            write_json(tmp / FEATURE_INFO_NAME, {"sample_rate": sample_rate,
                                                 "params": features.params_to_dict(params), "columns": columns})
    finally:
        rows.close()   # stops the worker processes (at once if a clip failed)
    seconds = time.perf_counter() - started
    log.info("computed %d clips in %.1f s (%.1f clips/s)", len(ordered), seconds, len(ordered) / seconds)
    log.info("wrote %s/{%s}.csv (%s rows, %d feature columns) and %s/%s", FEATURES_DIR, ",".join(SPLITS),
             ", ".join(str(len(by_split[s])) for s in SPLITS), len(columns), FEATURES_DIR, FEATURE_INFO_NAME)


if __name__ == "__main__":
    run_stage("features", main)
