"""split: assign every converted clip to train, val or test.

Reads   params split.method, split.fractions, split.seed; data/converted.csv.
Writes  data/split/split_manifest.csv (track_id, path, genre, label, split; sorted by track id)
        and data/split/labels.json (the sorted genre names; label i is labels[i]).
"""

from __future__ import annotations

import pandas as pd

from genreclf.artifacts import (
    CONVERTED_CSV,
    LABELS_FILE,
    MANIFEST_COLUMNS,
    MANIFEST_FILE,
    SPLIT_DIR,
    SPLITS,
    read_converted,
    write_split,
)
from genreclf.data.splits import official_split, stratified_split
from genreclf.errors import DataError, ParamError
from stages.common import run_stage, stage_logger
from stages.config import PARAMS_FILE, load_config

log = stage_logger("split")


def assign_splits(clips: pd.DataFrame, method: str, fractions: dict[str, float], seed: int) -> list[str]:
    if method == "official":
        if (clips["official_split"] == "").all():
            raise ParamError(
                f"{PARAMS_FILE}: split.method = 'official', but the dataset has no official split "
                f"(the official_split column of {CONVERTED_CSV} is empty, as for GTZAN); "
                "set split.method: stratified"
            )
        return official_split(clips["official_split"], clips["track_id"], str(CONVERTED_CSV))
    return stratified_split(clips["track_id"], clips["genre"], fractions, seed)


def main() -> None:
    params = load_config().split
    method, fractions, seed = params.method, params.fractions.model_dump(), params.seed
    clips = read_converted(CONVERTED_CSV)
    log.info(
        "read %s: %d clips, %d genres; method %s, fractions %s, seed %d",
        CONVERTED_CSV,
        len(clips),
        clips["genre"].nunique(),
        method,
        fractions,
        seed,
    )

    labels = sorted(clips["genre"].unique())
    manifest = clips.assign(
        label=clips["genre"].map({g: i for i, g in enumerate(labels)}),
        split=assign_splits(clips, method, fractions, seed),
    )[MANIFEST_COLUMNS]
    table = pd.crosstab(manifest["genre"], manifest["split"]).reindex(columns=list(SPLITS), fill_value=0)
    empty = [s for s in SPLITS if table[s].sum() == 0]
    if empty:
        raise DataError(
            f"{CONVERTED_CSV}: with {len(clips)} clips and method {method!r} the split(s) {empty} "
            "would be empty; add clips (data.clips_per_genre) or change split.fractions"
        )

    write_split(SPLIT_DIR, manifest, labels)
    log.info("clips per genre and split:\n%s", table.to_string())
    for genre in table.index[(table == 0).any(axis=1)]:
        log.info(
            "genre %s is missing from split(s) %s (too few clips)",
            genre,
            [s for s in SPLITS if table.loc[genre, s] == 0],
        )
    log.info(
        "wrote %s/%s (train %d, val %d, test %d) and %s/%s (%d labels)",
        SPLIT_DIR,
        MANIFEST_FILE,
        *(table[s].sum() for s in SPLITS),
        SPLIT_DIR,
        LABELS_FILE,
        len(labels),
    )


if __name__ == "__main__":
    run_stage("split", main)
