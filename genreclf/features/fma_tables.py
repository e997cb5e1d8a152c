"""FMA's own feature tables, features.csv and echonest.csv (in fma_metadata.zip), as data/features rows.

Both files have three header rows and then a row naming the index, as mdeff/fma's ``utils.load``
reads them (``pd.read_csv(index_col=0, header=[0, 1, 2])``):

- features.csv: (feature, statistics, number), e.g. ("mfcc", "mean", "01"), then ``track_id``; 518
  columns of the 11 librosa features, 7 statistics each. A column is named as the computed ones
  are, ``{feature}_{statistic}_{NN}`` (``mfcc_mean_01``), and the table's columns are those of the
  computed feature set at its default settings, in the same order.
- echonest.csv: ("echonest", group, name), the groups metadata (text), audio_features (8:
  acousticness ... valence), social_features (5), ranks (5) and temporal_features (224, named by
  number), for the 13,129 tracks the Echo Nest knew. The numeric audio groups are kept, named
  ``{group}_{name}_01`` (``audio_features_tempo_01``, ``temporal_features_000_01``).

A clip that the table lacks, or whose row holds an empty (NaN) value, is left out of data/features
with the reason; more than ``max_missing`` of the clips left out is an error that gives the counts.
Feature rows of a computed table can be selected by family in the same way (``select_families``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from genreclf import catalog
from genreclf.errors import DataError

TABLE_FILES = {catalog.FEATURES_FMA: "features.csv", catalog.FEATURES_ECHONEST: "echonest.csv"}
INDEX_NAME = "track_id"
ECHONEST_TOP = "echonest"
# No audio is decoded for these tables: the rate the FMA tracks are published at (most of them)
# stands in feature_info.json's sample_rate, which a model keeps; predicting new audio is refused.
TABLE_SAMPLE_RATE = 44100
SHOWN = 5


def family_of(column: str, families: tuple[str, ...]) -> str | None:
    """The family a column ``{family}_...`` belongs to (the longest that fits), or None."""
    fitting = [family for family in families if column.startswith(family + "_")]
    return max(fitting, key=len) if fitting else None


def select_families(columns: list[str], families, source: str) -> list[int]:
    """The positions of the columns of ``families`` ("all", or a list of the source's families)."""
    if families == "all":
        return list(range(len(columns)))
    known = catalog.SOURCE_FAMILIES[source]
    return [i for i, column in enumerate(columns) if family_of(column, known) in families]


def expected_layout(source: str) -> str:
    if source == catalog.FEATURES_FMA:
        return "FMA's features.csv: three header rows (feature, statistics, number), then a track_id row"
    return "FMA's echonest.csv: three header rows (echonest, group, name), then a track_id row"


def read_table(path: str | Path, source: str) -> pd.DataFrame:
    """The numeric feature columns of FMA's table for ``source``, indexed by 6-digit track id."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; fetch keeps it from fma_metadata.zip (dvc repro fetch)", path=path)
    try:
        raw = pd.read_csv(path, index_col=0, header=[0, 1, 2], low_memory=False)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot be parsed ({e}); expected {expected_layout(source)}", path=path) from None
    if raw.columns.nlevels != 3 or raw.index.name != INDEX_NAME:
        raise DataError(f"{path}: expected {expected_layout(source)}", path=path)
    if source == catalog.FEATURES_FMA:
        table = fma_columns(raw, path)
    else:
        table = echonest_columns(raw, path)
    ids = pd.to_numeric(pd.Series(raw.index), errors="coerce")
    if ids.isna().any() or (ids % 1 != 0).any():
        bad = list(pd.Series(raw.index)[ids.isna() | (ids % 1 != 0)][:SHOWN])
        raise DataError(f"{path}: track ids {bad} are not integers; expected {expected_layout(source)}", path=path)
    table.index = [f"{int(track_id):06d}" for track_id in ids]
    repeated = sorted(set(table.index[table.index.duplicated()]))
    if repeated:
        raise DataError(f"{path}: the track ids {repeated[:SHOWN]} have more than one row", path=path)
    return table


def fma_columns(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    from genreclf.features import fma_features

    names = ["_".join(str(level) for level in column) for column in raw.columns]
    expected = list(fma_features.FEATURE_COLUMNS)
    if names != expected:
        missing, unexpected = sorted(set(expected) - set(names)), sorted(set(names) - set(expected))
        raise DataError(
            f"{path}: expected FMA's {len(expected)} feature columns in order (missing {missing[:SHOWN]}, "
            f"unexpected {unexpected[:SHOWN]}); is it fma_metadata/features.csv?",
            path=path,
        )
    return numeric(raw.set_axis(names, axis=1), path)


def echonest_columns(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    top, group = raw.columns.get_level_values(0), raw.columns.get_level_values(1)
    kept = (top == ECHONEST_TOP) & np.isin(group, catalog.ECHONEST_FAMILIES)
    found = set(group[top == ECHONEST_TOP])
    if not set(catalog.ECHONEST_FAMILIES) <= found:
        raise DataError(
            f"{path}: expected the column groups {list(catalog.ECHONEST_FAMILIES)} under 'echonest' "
            f"(found {sorted(found)}); is it fma_metadata/echonest.csv?",
            path=path,
        )
    names = [f"{column[1]}_{column[2]}_01" for column in raw.columns[kept]]
    return numeric(raw.loc[:, kept].set_axis(names, axis=1), path)


def numeric(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The table as float64; a DataError naming the columns that hold text."""
    converted = table.apply(pd.to_numeric, errors="coerce")
    text = converted.isna() & table.notna()
    if text.any().any():
        columns = list(table.columns[text.any()])
        raise DataError(f"{path}: the columns {columns[:SHOWN]} hold text where numbers are expected", path=path)
    return converted.astype(np.float64)


def table_rows(table: pd.DataFrame, clips: pd.DataFrame, label: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rows of ``clips``, in their order, that the table has in full; the others as
    track_id, genre, reason, in the clips' order)."""
    present = clips["track_id"].isin(table.index)
    rows = table.reindex(clips["track_id"])
    empty = rows.isna().sum(axis=1).to_numpy()
    reasons = np.where(
        ~present.to_numpy(),
        f"not in {label}",
        [f"{count} empty values in {label}" for count in empty],
    )
    left = ~present.to_numpy() | (empty > 0)
    left_out = pd.DataFrame(
        {
            "track_id": clips["track_id"].to_numpy()[left],
            "genre": clips["genre"].to_numpy()[left],
            "reason": reasons[left],
        }
    )
    return rows[~left], left_out


def rows_by_split(
    table: pd.DataFrame, clips: pd.DataFrame, splits: tuple[str, ...], label: str
) -> tuple[dict[str, pd.DataFrame], Iterator[np.ndarray], pd.DataFrame]:
    """({split: its clips that the table holds, in the clips' order}, their feature rows split after
    split, the clips left out with the reason)."""
    by_split, found, left_out = {}, [], []
    for split in splits:
        in_split = clips[clips["split"] == split]
        rows, lacking = table_rows(table, in_split, label)
        by_split[split] = in_split.set_index("track_id").loc[rows.index].reset_index()
        found.append(rows.to_numpy())
        left_out.append(lacking)
    return by_split, (row for rows in found for row in rows), pd.concat(left_out, ignore_index=True)


def check_missing(left_out: int, clips: int, max_missing: float, label: str, key: str) -> None:
    """DataError when more than ``max_missing`` of the ``clips`` are left out."""
    if clips and left_out / clips > max_missing:
        raise DataError(
            f"{label}: lacks {left_out} of the {clips} clips ({100 * left_out / clips:.1f} %), more than "
            f"{key} = {max_missing:g} ({100 * max_missing:g} %); raise {key} to leave them out, or use "
            f"features.source: {catalog.FEATURES_COMPUTED}"
        )


def table_settings(source: str, families) -> dict:
    """feature_info.json's params for a table of ``source``: what it is, not how to compute it."""
    return {"source": source, "table": f"fma_metadata/{TABLE_FILES[source]}", "families": families}


class AudioRecipe:
    """How the feature columns of a table (a model's, an index's) are had for new audio: computed
    with its feature settings and the columns selected, or refused for FMA's own tables."""

    def __init__(self, settings, columns: list[str], where: str):
        from genreclf.features import fma_features

        self.where, self.columns = where, columns
        self.table = settings.get("table") if isinstance(settings, dict) and "source" in settings else None
        if self.table is not None:
            return
        self.params = fma_features.params_from_dict(settings, where=where)
        computed = fma_features.feature_columns(self.params)
        position = {column: i for i, column in enumerate(computed)}
        if not columns or any(column not in position for column in columns):
            raise DataError(f"{where}: the columns are not those of these feature settings")
        self.index = None if columns == computed else np.array([position[column] for column in columns])

    def __call__(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        from genreclf.features import fma_features

        if self.table is not None:
            raise DataError(
                f"{self.where}: the features are FMA's own ({self.table}), computed by FMA from the full "
                f"tracks; new audio cannot get the same values. To predict new audio, train on "
                f"features.source: {catalog.FEATURES_COMPUTED}"
            )
        row = fma_features.clip_features(samples, sample_rate, self.params)
        return row if self.index is None else row[self.index]
