"""split: assign every converted clip to train, val or test.

Reads   params split.method, split.fractions, split.seed; data/converted.csv.
Writes  data/split/split_manifest.csv (track_id, path, genre, label, split; sorted by track id),
        data/split/labels.json (the sorted genre names; label i is labels[i]) and
        data/split/left_out.csv (track_id, genre, reason: clips no split holds, e.g. the GTZAN
        clips that its fault-filtered lists leave out).
"""

from __future__ import annotations

import pandas as pd

from genreclf.artifacts import (
    CONVERTED_CSV,
    LABELS_FILE,
    LEFT_OUT_COLUMNS,
    LEFT_OUT_FILE,
    MANIFEST_COLUMNS,
    MANIFEST_FILE,
    SPLIT_DIR,
    SPLITS,
    read_converted,
    write_split,
)
from genreclf.data.splits import (
    FAULT_FILTERED_DIR,
    listed_split,
    min_clips_per_genre,
    official_split,
    read_fault_filtered_lists,
    stratified_split,
)
from genreclf.errors import DataError, ParamError
from stages.common import run_stage, stage_logger
from stages.config import PARAMS_FILE, load_config

log = stage_logger("split")
NOT_LISTED = "not in GTZAN's fault-filtered lists"
SHOWN_IN_LOG = 5


def fault_filtered_assignment(clips: pd.DataFrame) -> list[str | None]:
    """GTZAN's fault-filtered split of the clips (None: left out); logs what the lists and the data do not share."""
    split = listed_split(list(clips["track_id"]), read_fault_filtered_lists())
    if all(s is None for s in split.assignment):
        raise ParamError(
            f"{PARAMS_FILE}: split.method = 'fault_filtered' is GTZAN's split, but none of the "
            f"{len(clips)} clips of {CONVERTED_CSV} (e.g. {clips['track_id'].iloc[0]}) is in its lists "
            f"({FAULT_FILTERED_DIR}); set split.method: stratified (or official for FMA)"
        )
    for name, missing in split.unmatched.items():
        if missing:
            log.info(
                "%d %s entries of the fault-filtered lists have no clip in the data (e.g. %s)",
                len(missing),
                name,
                ", ".join(missing[:SHOWN_IN_LOG]),
            )
    return split.assignment


def assign_splits(clips: pd.DataFrame, method: str, fractions: dict[str, float], seed: int) -> list[str | None]:
    """The split of each clip; None leaves it out."""
    if method == "fault_filtered":
        return fault_filtered_assignment(clips)
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

    assigned = clips.assign(split=assign_splits(clips, method, fractions, seed))
    kept = assigned[assigned["split"].notna()]
    left_out = assigned[assigned["split"].isna()].assign(reason=NOT_LISTED)[LEFT_OUT_COLUMNS]
    if len(left_out):
        log.info(
            "left out %d of %d clips (%s): %s",
            len(left_out),
            len(clips),
            NOT_LISTED,
            ", ".join(left_out["track_id"]),
        )
    labels = sorted(kept["genre"].unique())
    manifest = kept.assign(label=kept["genre"].map({g: i for i, g in enumerate(labels)}))[MANIFEST_COLUMNS]
    table = pd.crosstab(manifest["genre"], manifest["split"]).reindex(columns=list(SPLITS), fill_value=0)
    empty = [s for s in SPLITS if table[s].sum() == 0]
    if empty:
        raise DataError(
            f"{CONVERTED_CSV}: with {len(manifest)} clips and method {method!r} the split(s) {empty} "
            "would be empty; add clips (data.clips_per_genre) or change split.fractions"
        )

    write_split(SPLIT_DIR, manifest, labels, left_out)
    log.info("clips per genre and split:\n%s", table.to_string())
    fewest = min_clips_per_genre(fractions) if method == "stratified" else None
    for genre in table.index[(table == 0).any(axis=1)]:
        log.warning(
            "genre %s is missing from split(s) %s (too few clips: %d%s)",
            genre,
            [s for s in SPLITS if table.loc[genre, s] == 0],
            table.loc[genre].sum(),
            f"; {fewest} put a genre in every split" if fewest else "",
        )
    log.info(
        "wrote %s/%s (train %d, val %d, test %d), %s/%s (%d labels) and %s/%s (%d clips)",
        SPLIT_DIR,
        MANIFEST_FILE,
        *(table[s].sum() for s in SPLITS),
        SPLIT_DIR,
        LABELS_FILE,
        len(labels),
        SPLIT_DIR,
        LEFT_OUT_FILE,
        len(left_out),
    )


if __name__ == "__main__":
    run_stage("split", main)
