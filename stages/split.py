"""split: assign every converted clip to train, val or test.

Reads   params split.method, split.fractions, split.seed; data/converted.csv.
Writes  data/split/split_manifest.csv (track_id, path, genre, label, split; sorted by track id)
        and data/split/labels.json (the sorted genre names; label i is labels[i]).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from genreclf.data.splits import SPLITS, official_split, stratified_split
from genreclf.errors import DataError, ParamError
from genreclf.io import atomic_dir, read_clip_table, write_csv, write_json
from stages.common import run_stage, stage_logger
from stages.config import check_fractions, get, load_params, section

CONVERTED_CSV = Path("data/converted.csv")
SPLIT_DIR = Path("data/split")
MANIFEST_NAME = "split_manifest.csv"
LABELS_NAME = "labels.json"

CONVERTED_COLUMNS = ["track_id", "genre", "path", "official_split", "num_samples"]
MANIFEST_COLUMNS = ["track_id", "path", "genre", "label", "split"]
METHODS = ("stratified", "official")

log = stage_logger("split")


def read_params(params: dict) -> tuple[str, dict[str, float], int]:
    """split.method, split.fractions (checked to sum to 1) and split.seed."""
    sec = section(params, "split")
    where = "params.yaml: split"
    method = get(sec, "method", where, types=str, choices=METHODS)
    fractions = check_fractions(get(sec, "fractions", where, types=dict), f"{where}.fractions", SPLITS)
    seed = get(sec, "seed", where, types=int, minimum=0)
    return method, fractions, seed


def read_converted(path: Path) -> pd.DataFrame:
    """The converted clips, checked, sorted by track id."""
    fix = "run `dvc repro convert` to (re)create it"
    clips = read_clip_table(path, CONVERTED_COLUMNS, fix)
    no_genre = clips["track_id"][clips["genre"] == ""].tolist()
    if no_genre:
        raise DataError(f"{path}: clips without a genre: {no_genre[:5]}; {fix}")
    return clips.sort_values("track_id", kind="stable").reset_index(drop=True)


def assign_splits(clips: pd.DataFrame, method: str, fractions: dict[str, float], seed: int) -> list[str]:
    if method == "official":
        if (clips["official_split"] == "").all():
            raise ParamError(f"params.yaml: split.method = 'official', but the dataset has no official split "
                             f"(the official_split column of {CONVERTED_CSV} is empty, as for GTZAN); "
                             "set split.method: stratified")
        return official_split(clips["official_split"], clips["track_id"], str(CONVERTED_CSV))
    return stratified_split(clips["track_id"], clips["genre"], fractions, seed)


def main() -> None:
    method, fractions, seed = read_params(load_params())
    clips = read_converted(CONVERTED_CSV)
    log.info("read %s: %d clips, %d genres; method %s, fractions %s, seed %d",
             CONVERTED_CSV, len(clips), clips["genre"].nunique(), method, fractions, seed)

    labels = sorted(clips["genre"].unique())
    manifest = clips.assign(label=clips["genre"].map({g: i for i, g in enumerate(labels)}),
                            split=assign_splits(clips, method, fractions, seed))[MANIFEST_COLUMNS]
    table = pd.crosstab(manifest["genre"], manifest["split"]).reindex(columns=list(SPLITS), fill_value=0)
    empty = [s for s in SPLITS if table[s].sum() == 0]
    if empty:
        raise DataError(f"{CONVERTED_CSV}: with {len(clips)} clips and method {method!r} the split(s) {empty} "
                        "would be empty; add clips (data.clips_per_genre) or change split.fractions")

    with atomic_dir(SPLIT_DIR) as tmp:
        write_csv(tmp / MANIFEST_NAME, manifest)
        write_json(tmp / LABELS_NAME, labels)
    log.info("clips per genre and split:\n%s", table.to_string())
    for genre in table.index[(table == 0).any(axis=1)]:
        log.info("genre %s is missing from split(s) %s (too few clips)", genre,
                 [s for s in SPLITS if table.loc[genre, s] == 0])
    log.info("wrote %s/%s (train %d, val %d, test %d) and %s/%s (%d labels)", SPLIT_DIR, MANIFEST_NAME,
             *(table[s].sum() for s in SPLITS), SPLIT_DIR, LABELS_NAME, len(labels))


if __name__ == "__main__":
    run_stage("split", main)
