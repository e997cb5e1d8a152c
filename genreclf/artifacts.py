"""The contract of what crosses a stage boundary: each artifact, once, with its writer and its reader.

For each artifact this module holds where it lives (a path relative to the repository
root, which the stages pass in), what it holds (its columns or keys), the writer that
makes it and the reader that checks it. A reader checks that the artifact exists and
holds what it should (columns, types, agreement with its companion files) and raises a
DataError whose ``path`` is the file at fault; it never says which stage makes that file
(``stages.common`` adds that hint).

=================================  =====================  ==================================
artifact                           writer (stage)         reader (stages)
=================================  =====================  ==================================
data/raw/clips.csv                 write_clips (fetch)    read_clips (convert)
data/raw/track_info.csv            write_track_info       read_track_info (recommend_index)
                                   (fetch)
data/raw/raw_manifest.json         write_raw_manifest     read_raw_manifest (convert)
  (a gs:// data root only)         (fetch)
data/wav/wav_manifest.json         write_wav_manifest     read_wav_manifest (shard, features,
  (a gs:// data root only)         (convert)              embed, recommend_index)
data/converted.csv                 write_converted        read_converted (split)
data/convert_skipped.csv           write_skipped          read_skipped (tests, people)
data/split/{split_manifest.csv,    write_split (split)    read_split (features, embed),
  labels.json}                                            read_split_clips (shard)
data/shards/dataset_info.json      write_dataset_info     read_dataset_info (train_keras,
                                   (shard)                evaluate of a Keras model)
data/shards/shard_manifest.json    write_shard_manifest   read_shard_manifest (train_keras,
  (a gs:// data root only)         (shard)                evaluate of a Keras model)
data/features/{train,val,test}.csv write_features         read_feature_info, read_feature_split
  + feature_info.json              (features)             (train_sklearn, evaluate of a
                                                          scikit-learn model)
models/musicnn_msd/{model.keras,   write_pretrained       read_pretrained (embed)
  pretrained.json}                 (pretrained)
data/embeddings/{train,val,test}   write_embeddings       read_feature_info, read_feature_split
  .csv + feature_info.json         (embed)                (train_sklearn, evaluate of musicnn)
models/<name>/{preprocessing.json, write_model_folder     read_model_folder (evaluate,
  labels.json, model.skops|.keras} (train_sklearn/keras)  predict)
metrics/models/<name>.json         write_model_metrics    read_model_metrics (summarize)
                                   (evaluate)
metrics/summary.json               write_summary          read_summary (predict)
                                   (summarize)
models/recommend/{library.csv,     write_similarity_index read_similarity_index (recommend)
  vectors.npy, standardise.npy,    (recommend_index)
  index_info.json}
=================================  =====================  ==================================

The TFRecord shards themselves are written and read by ``genreclf.data.tfrecords``, the WAVs by
``genreclf.data.audio`` (a file of data/wav, or with a gs:// data root an object that
wav_manifest.json lists); the raw clips are files of data/raw/audio, or with a gs:// data root
objects that raw_manifest.json lists (uploaded by ``genreclf.data.fetch.clips_to_bucket``).
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import astuple, dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genreclf import catalog
from genreclf.errors import DataError
from genreclf.io import CSV_FLOAT_FORMAT, atomic_dir, write_csv, write_csv_rows, write_json, write_text

if TYPE_CHECKING:  # pandas is imported where a table is read or written: shard reads none
    import pandas as pd

SPLITS = catalog.SPLITS
SCHEME = "gs://"  # with a gs:// data root, the raw clips, the WAVs and the shards are objects on GCS

# ---- where each artifact lives (relative to the repository root)
DATA_DIR = Path("data")
RAW_DIR = DATA_DIR / "raw"
CLIPS_FILE = "clips.csv"
CLIPS_CSV = RAW_DIR / CLIPS_FILE
TRACK_INFO_FILE = "track_info.csv"  # beside clips.csv: what a person knows a track by
TRACK_INFO_CSV = RAW_DIR / TRACK_INFO_FILE
RAW_AUDIO_DIR = RAW_DIR / "audio"  # the raw clips (fetch's output), or their objects' prefix under a gs:// root
RAW_MANIFEST_FILE = "raw_manifest.json"  # in data/raw/ when the raw clips are on GCS
WAV_DIR = DATA_DIR / "wav"
WAV_MANIFEST_FILE = "wav_manifest.json"  # in data/wav/ when the WAVs are on GCS
CONVERTED_CSV = DATA_DIR / "converted.csv"
SKIPPED_CSV = DATA_DIR / "convert_skipped.csv"
SPLIT_DIR = DATA_DIR / "split"
MANIFEST_FILE = "split_manifest.csv"
LEFT_OUT_FILE = "left_out.csv"  # in data/split/: converted clips that no split holds
LABELS_FILE = "labels.json"  # in data/split/ and in every model folder
SHARD_DIR = DATA_DIR / "shards"
DATASET_INFO_FILE = "dataset_info.json"
SHARD_MANIFEST_FILE = "shard_manifest.json"  # in data/shards/ when the shards are on GCS
FEATURES_DIR = DATA_DIR / "features"
FEATURE_INFO_FILE = "feature_info.json"
MODELS_DIR = Path("models")
PRETRAINED_DIR = MODELS_DIR / "musicnn_msd"  # the pretrained network (not a genre model: no preprocessing.json)
PRETRAINED_INFO_FILE = "pretrained.json"
PRETRAINED_MODEL_FILE = "model.keras"
PRETRAINED_INFO_KEYS = ("source", "sha256", "sample_rate", "outputs", "tags")
EMBEDDINGS_DIR = DATA_DIR / "embeddings"  # the embedding tables: the layout of data/features
PREPROCESSING_FILE = "preprocessing.json"
MODEL_FILES = {"keras": "model.keras", "sklearn": "model.skops"}
FAMILIES = tuple(MODEL_FILES)
MODEL_METRICS_DIR = Path("metrics/models")
SUMMARY_JSON = Path("metrics/summary.json")

# ---- what they hold
CLIP_COLUMNS = ["track_id", "genre", "path", "official_split"]
CONVERTED_COLUMNS = [*CLIP_COLUMNS, "num_samples"]
TRACK_INFO_COLUMNS = ["track_id", "artist", "title"]  # '' where the dataset does not say (GTZAN: always)
SKIPPED_COLUMNS = ["track_id", "source_path", "reason"]
MANIFEST_COLUMNS = ["track_id", "path", "genre", "label", "split"]
LEFT_OUT_COLUMNS = ["track_id", "genre", "reason"]
FEATURE_ID_COLUMNS = ["track_id", "label", "genre"]
DATASET_INFO_SIZES = ("clips", "min_samples", "max_samples")
FEATURE_INFO_KEYS = ("sample_rate", "params", "columns")
MODEL_METRICS_KEYS = ("accuracy", "family", "macro_f1", "n_test", "per_class")
# A track id becomes a file name (data/wav/<track_id>.wav): safe characters only.
TRACK_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
INTEGER_RE = r"\d+"

ROWS_PER_WRITE = 256  # feature rows buffered before they are appended to the CSV
SHOWN = 5  # examples quoted in a message


# ---- generic readers -----------------------------------------------------------------


def read_json(path: str | Path):
    """The content of a JSON file; a DataError naming the file if it is missing or not JSON."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        raise DataError(f"{path} does not exist", path=path) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})", path=path) from None


def read_table(path: str | Path, columns: list[str]) -> pd.DataFrame:
    """A CSV file with at least ``columns``, every cell a string (empty cells stay empty strings)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist", path=path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV ({e})", path=path) from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing}; expected {columns}", path=path)
    return table


def read_clip_table(path: str | Path, columns: list[str]) -> pd.DataFrame:
    """A table of clips: ``columns``, at least one clip, each track id once and made of safe characters."""
    table = read_table(path, columns)
    check_track_ids(table["track_id"].tolist(), path)
    return table


def check_track_ids(track_ids: list[str], path: str | Path) -> None:
    """A table of clips lists at least one, each track id once and made of safe characters."""
    if not track_ids:
        raise DataError(f"{path} lists no clips", path=path)
    duplicated = sorted(t for t, n in Counter(track_ids).items() if n > 1)
    if duplicated:
        raise DataError(f"{path}: track ids listed more than once: {duplicated[:SHOWN]}", path=path)
    bad_ids = [t for t in track_ids if not TRACK_ID_RE.match(t)]
    if bad_ids:
        raise DataError(f"{path}: track ids must be letters, digits, '.', '_' or '-', got {bad_ids[:SHOWN]}", path=path)


def read_csv_rows(path: str | Path, columns: list[str]) -> list[dict[str, str]]:
    """``read_table`` without pandas: the rows of a CSV file with at least ``columns``, as dicts of
    strings (blank lines skipped, as pandas does)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist", path=path)
    header, rows = None, []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, strict=True)
            for row in filter(None, reader):
                if header is None:
                    header = row
                elif len(row) != len(header):
                    raise csv.Error(f"line {reader.line_num} has {len(row)} fields, the header {len(header)}")
                else:
                    rows.append(row)
    except (csv.Error, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV ({e})", path=path) from None
    if header is None:
        raise DataError(f"{path}: not a readable CSV (no header)", path=path)
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path}: missing columns {missing}; expected {columns}", path=path)
    return [dict(zip(header, row)) for row in rows]


def integer_column(table: pd.DataFrame, column: str, path: str | Path) -> pd.Series:
    """A column of non-negative integers written as digits, as int64."""
    bad = table["track_id"][~table[column].str.fullmatch(INTEGER_RE)].tolist()
    if bad:
        raise DataError(
            f"{path}: {column} must be a non-negative integer; it is not for the clips {bad[:SHOWN]}", path=path
        )
    return table[column].astype(np.int64)


def check_genre_list(labels, path: str | Path) -> list[str]:
    """labels.json: the genre names, label i = labels[i]; non-empty, strings, each once."""
    if not (isinstance(labels, list) and labels and all(isinstance(g, str) and g for g in labels)):
        raise DataError(f"{path}: expected a non-empty list of genre names, got {labels!r:.200}", path=path)
    if len(set(labels)) != len(labels):
        raise DataError(f"{path}: genres listed more than once in {labels}", path=path)
    return labels


def by_track_id(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values("track_id", kind="stable").reset_index(drop=True)


# ---- the clip tables: data/raw/clips.csv, data/converted.csv, data/convert_skipped.csv


def write_clips(path: str | Path, clips: pd.DataFrame) -> pd.DataFrame:
    """data/raw/clips.csv: track_id, genre, path (of the audio file, or with a gs:// data root the
    URL of its object, which data/raw/raw_manifest.json lists), official_split ('' when none);
    rows sorted by track id. Returns the table written."""
    clips = by_track_id(clips[CLIP_COLUMNS])
    write_csv(path, clips)
    return clips


@dataclass(frozen=True)
class Clip:
    """A row of data/raw/clips.csv (CLIP_COLUMNS)."""

    track_id: str
    genre: str
    path: str
    official_split: str


def read_clips(path: str | Path) -> list[Clip]:
    """data/raw/clips.csv, checked (every audio file it lists exists; the gs:// URLs are left to
    genreclf.data.audio.check_raw_clips, which asks the bucket), sorted by track id.
    Plain Python: convert, whose whole run is a few seconds at 1000 WAV clips, does not import pandas."""
    rows = read_csv_rows(path, CLIP_COLUMNS)
    check_track_ids([row["track_id"] for row in rows], path)
    absent = [row["path"] for row in rows if not (row["path"].startswith(SCHEME) or Path(row["path"]).is_file())]
    if absent:
        raise DataError(f"{path} lists {len(absent)} files that do not exist (e.g. {absent[:3]})", path=path)
    return sorted((Clip(*(row[c] for c in CLIP_COLUMNS)) for row in rows), key=lambda c: c.track_id)


def write_track_info(path: str | Path, clips: pd.DataFrame) -> None:
    """data/raw/track_info.csv: track_id, artist, title of each clip of clips.csv (sorted by track
    id); '' where ``clips`` has no such column or no value (GTZAN names neither)."""
    import pandas as pd

    info = pd.DataFrame(
        {c: clips[c].fillna("").astype(str) if c in clips else "" for c in TRACK_INFO_COLUMNS}, index=clips.index
    )
    write_csv(path, by_track_id(info))


def read_track_info(path: str | Path) -> pd.DataFrame:
    """data/raw/track_info.csv, checked (each track id once), sorted by track id; empty cells are ''."""
    return by_track_id(read_clip_table(path, TRACK_INFO_COLUMNS)[TRACK_INFO_COLUMNS])


def write_converted(path: str | Path, converted: list[tuple[Clip, int]]) -> None:
    """data/converted.csv: the clips of clips.csv that were converted, each with path = where its WAV
    is (the file data/wav/<track_id>.wav, or with a gs:// data root the URL of its object, which
    data/wav/wav_manifest.json lists) and its num_samples; sorted by track id."""
    rows = sorted((astuple(clip) + (num_samples,) for clip, num_samples in converted), key=lambda row: row[0])
    write_csv_rows(path, CONVERTED_COLUMNS, rows)


def read_converted(path: str | Path) -> pd.DataFrame:
    """data/converted.csv, checked (every clip has a genre; num_samples are integers), sorted by track id."""
    clips = read_clip_table(path, CONVERTED_COLUMNS)
    no_genre = clips["track_id"][clips["genre"] == ""].tolist()
    if no_genre:
        raise DataError(f"{path}: clips without a genre: {no_genre[:SHOWN]}", path=path)
    clips["num_samples"] = integer_column(clips, "num_samples", path)
    return by_track_id(clips[CONVERTED_COLUMNS])


def write_skipped(path: str | Path, skipped: list[tuple[str, str, str]]) -> None:
    """data/convert_skipped.csv: track_id, source_path, reason of each clip that was not converted."""
    write_csv_rows(path, SKIPPED_COLUMNS, skipped)


def read_skipped(path: str | Path) -> pd.DataFrame:
    """data/convert_skipped.csv (it may list no clip)."""
    return read_table(path, SKIPPED_COLUMNS)[SKIPPED_COLUMNS]


# ---- the split: data/split/split_manifest.csv and data/split/labels.json


def write_split(
    split_dir: str | Path, manifest: pd.DataFrame, labels: list[str], left_out: pd.DataFrame | None = None
) -> None:
    """The folder data/split, written whole: split_manifest.csv (MANIFEST_COLUMNS, label i is
    labels[i], rows sorted by track id), labels.json (the genre names) and left_out.csv
    (LEFT_OUT_COLUMNS: the converted clips the split left out, and why; often none)."""
    if left_out is None:
        import pandas as pd

        left_out = pd.DataFrame(columns=LEFT_OUT_COLUMNS)
    with atomic_dir(split_dir) as tmp:
        write_csv(tmp / MANIFEST_FILE, by_track_id(manifest[MANIFEST_COLUMNS]))
        write_json(tmp / LABELS_FILE, labels)
        write_csv(tmp / LEFT_OUT_FILE, by_track_id(left_out[LEFT_OUT_COLUMNS]))


@dataclass(frozen=True)
class SplitClip:
    """One row of data/split/split_manifest.csv (MANIFEST_COLUMNS)."""

    track_id: str
    path: str
    genre: str
    label: int
    split: str


def read_split_clips(split_dir: str | Path, check_wavs: bool = True) -> tuple[list[SplitClip], list[str]]:
    """(clips, labels) of data/split, checked against each other (and, unless ``check_wavs`` is
    False, every WAV file it lists exists; a gs:// URL is not looked up here: the stages check the
    objects on the bucket, genreclf.data.audio.check_wavs); the clips sorted by track id.
    Plain Python: shard, whose whole run is a few seconds at 1000 clips, does not import pandas."""
    manifest_path, labels_path = Path(split_dir) / MANIFEST_FILE, Path(split_dir) / LABELS_FILE
    rows = read_csv_rows(manifest_path, MANIFEST_COLUMNS)
    check_track_ids([row["track_id"] for row in rows], manifest_path)
    labels = check_genre_list(read_json(labels_path), labels_path)
    bad_split = sorted({row["split"] for row in rows} - set(SPLITS))
    if bad_split:
        raise DataError(f"{manifest_path}: split values {bad_split} are none of {list(SPLITS)}", path=manifest_path)
    bad_label = [row["track_id"] for row in rows if not re.fullmatch(INTEGER_RE, row["label"])]
    if bad_label:
        raise DataError(
            f"{manifest_path}: label must be a non-negative integer; it is not for the clips {bad_label[:SHOWN]}",
            path=manifest_path,
        )
    clips = [SplitClip(*(row[c] for c in MANIFEST_COLUMNS[:3]), int(row["label"]), row["split"]) for row in rows]
    wrong = [(c.track_id, c.genre, c.label) for c in clips if c.label >= len(labels) or labels[c.label] != c.genre]
    if wrong:
        raise DataError(
            f"{manifest_path}: labels do not match the genres of {labels_path} ((track_id, genre, label): "
            f"{wrong[:SHOWN]})",
            path=manifest_path,
        )
    empty = [split for split in SPLITS if not any(c.split == split for c in clips)]
    if empty:
        raise DataError(f"{manifest_path}: the split(s) {empty} have no clips", path=manifest_path)
    if check_wavs:
        absent = [c.path for c in clips if not (c.path.startswith(SCHEME) or Path(c.path).is_file())]
        if absent:
            raise DataError(
                f"{manifest_path} lists {len(absent)} WAV files that do not exist (e.g. {absent[:3]})", path=absent[0]
            )
    return sorted(clips, key=lambda c: c.track_id), labels


def read_split(split_dir: str | Path, check_wavs: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """``read_split_clips`` as a table: (manifest, labels), the manifest's columns MANIFEST_COLUMNS,
    its label column int64."""
    import pandas as pd

    clips, labels = read_split_clips(split_dir, check_wavs)
    manifest = pd.DataFrame([astuple(c) for c in clips], columns=MANIFEST_COLUMNS)
    return manifest.astype({"label": np.int64}), labels


# ---- the shards' description: data/shards/dataset_info.json


def write_dataset_info(shard_dir: str | Path, sample_rate: int, labels: list[str], splits: dict) -> dict:
    """<shard_dir>/dataset_info.json: sample_rate, labels and, per split, clips, min_samples and
    max_samples. Returns what it wrote."""
    info = {"sample_rate": sample_rate, "labels": labels, "splits": splits}
    write_json(Path(shard_dir) / DATASET_INFO_FILE, info)
    return info


def read_dataset_info(shard_dir: str | Path) -> dict:
    """<shard_dir>/dataset_info.json, checked: sample_rate, labels, per-split sizes."""
    path = Path(shard_dir) / DATASET_INFO_FILE
    info = read_json(path)
    splits = info.get("splits") if isinstance(info, dict) else None
    if not (
        isinstance(info, dict)
        and isinstance(info.get("sample_rate"), int)
        and info["sample_rate"] > 0
        and isinstance(info.get("labels"), list)
        and info["labels"]
        and isinstance(splits, dict)
    ):
        raise DataError(f"{path}: expected {{'sample_rate': int, 'labels': [...], 'splits': {{...}}}}", path=path)
    check_genre_list(info["labels"], path)
    for split, sizes in splits.items():
        if not (isinstance(sizes, dict) and all(isinstance(sizes.get(k), int) for k in DATASET_INFO_SIZES)):
            raise DataError(f"{path}: split '{split}' needs integer {', '.join(DATASET_INFO_SIZES)}", path=path)
    return info


# ---- objects on GCS: data/raw/raw_manifest.json, data/wav/wav_manifest.json, data/shards/shard_manifest.json
# With a gs:// data root the raw clips, the WAVs and the shards are objects on the bucket; what the
# workspace (and DVC) keeps of them is a manifest: the prefix they lie under and each object's URL,
# size and MD5, {"prefix": "gs://...", "objects": [{"url", "size", "md5"}, ...]} (the raw and WAV
# manifests add each object's "track_id"). All are written by write_object_manifest and read by
# read_object_manifest.

MD5_HEX_CHARS = 32
MD5_RE = re.compile(f"[0-9a-f]{{{MD5_HEX_CHARS}}}")


@dataclass(frozen=True)
class ObjectEntry:
    """One object on GCS: its gs:// URL, its size in bytes and the MD5 of its content (hexadecimal)."""

    url: str
    size: int
    md5: str


def write_object_manifest(
    path: str | Path, prefix: str, objects: list[ObjectEntry], track_ids: list[str] | None = None
) -> dict:
    """A manifest of objects on GCS: the gs:// ``prefix`` they lie under and every object
    ({"track_id" when ``track_ids`` gives them, "url", "size", "md5"}) in the given order. Write it
    after the objects. Returns what it wrote."""
    items = [{"url": o.url, "size": o.size, "md5": o.md5} for o in objects]
    if track_ids is not None:
        items = [{"track_id": track_id, **item} for track_id, item in zip(track_ids, items, strict=True)]
    manifest = {"prefix": prefix, "objects": items}
    write_json(path, manifest)
    return manifest


def read_object_manifest(path: str | Path) -> tuple[str, list[tuple[ObjectEntry, dict]]] | None:
    """(prefix, [(object, its item as written)]) of a manifest of objects on GCS, checked (every
    object has a url under the prefix, a size and an MD5); None when there is no such file."""
    path = Path(path)
    if not path.exists():
        return None
    manifest = read_json(path)
    prefix = manifest.get("prefix") if isinstance(manifest, dict) else None
    objects = manifest.get("objects") if isinstance(manifest, dict) else None
    if not (isinstance(prefix, str) and prefix.startswith(SCHEME) and isinstance(objects, list) and objects):
        raise DataError(
            f'{path}: expected {{"prefix": "gs://...", "objects": [{{"url", "size", "md5"}}, ...]}} '
            "with at least one object",
            path=path,
        )
    return prefix, [(manifest_entry(item, prefix, path), item) for item in objects]


def manifest_entry(item, prefix: str, path: Path) -> ObjectEntry:
    """One object of a manifest, checked: a URL under ``prefix``, a size, a 32-digit MD5."""
    url, size, md5 = (item.get(k) for k in ("url", "size", "md5")) if isinstance(item, dict) else (None,) * 3
    if not (
        isinstance(url, str)
        and url.startswith(prefix.rstrip("/") + "/")
        and isinstance(size, int)
        and not isinstance(size, bool)
        and size >= 0
        and isinstance(md5, str)
        and MD5_RE.fullmatch(md5)
    ):
        raise DataError(
            f"{path}: object {item!r:.200}: expected a url under {prefix}/, a size (bytes, an integer >= 0) "
            f"and an md5 ({MD5_HEX_CHARS} lowercase hexadecimal digits)",
            path=path,
        )
    return ObjectEntry(url, size, md5)


def write_shard_manifest(shard_dir: str | Path, prefix: str, objects: list[ObjectEntry]) -> dict:
    """<shard_dir>/shard_manifest.json: the gs:// ``prefix`` the shards were written under (derived
    from the stage's inputs) and every object under it, in the given order. Write it after the
    objects. Returns what it wrote."""
    return write_object_manifest(Path(shard_dir) / SHARD_MANIFEST_FILE, prefix, objects)


def read_shard_manifest(shard_dir: str | Path) -> tuple[str, list[ObjectEntry]] | None:
    """(prefix, objects) of <shard_dir>/shard_manifest.json, checked; None when there is none
    (the shards are files of <shard_dir>)."""
    found = read_object_manifest(Path(shard_dir) / SHARD_MANIFEST_FILE)
    return None if found is None else (found[0], [entry for entry, _ in found[1]])


def write_track_manifest(path: str | Path, prefix: str, objects: dict[str, ObjectEntry]) -> dict:
    """A manifest of one object per clip: the gs:// ``prefix`` and, for every track id of ``objects``
    (sorted), its object with URL, size and MD5. Write it after the objects. Returns what it wrote."""
    track_ids = sorted(objects)
    return write_object_manifest(path, prefix, [objects[t] for t in track_ids], track_ids)


def read_track_manifest(
    path: str | Path, named: Callable[[str, str, ObjectEntry], bool], expected_url: str
) -> tuple[str, dict[str, ObjectEntry]] | None:
    """(prefix, {track id: object}) of a manifest written by write_track_manifest, checked (each
    track id once, ``named(prefix, track id, object)`` true of its object, the URL that
    ``expected_url`` describes); None when there is no such file."""
    path = Path(path)
    found = read_object_manifest(path)
    if found is None:
        return None
    prefix, items = found
    objects = {}
    for entry, item in items:
        track_id = item.get("track_id")
        if not (isinstance(track_id, str) and TRACK_ID_RE.match(track_id) and named(prefix, track_id, entry)):
            raise DataError(
                f"{path}: object {item!r:.200}: expected a track_id and the url {prefix}/{expected_url}", path=path
            )
        if track_id in objects:
            raise DataError(f"{path}: track id {track_id} listed more than once", path=path)
        objects[track_id] = entry
    return prefix, objects


def wav_object_name(track_id: str, md5: str) -> str:
    """The name of a clip's WAV object: ``<track_id>.<md5 of its bytes>.wav``. Named by its content,
    an object never changes: other bytes for the same clip (another sample rate) are another object."""
    return f"{track_id}.{md5}.wav"


def write_wav_manifest(wav_dir: str | Path, prefix: str, objects: dict[str, ObjectEntry]) -> dict:
    """<wav_dir>/wav_manifest.json: the gs:// ``prefix`` the WAVs lie under and, for every track id of
    ``objects`` (sorted), its object ``<prefix>/<wav_object_name>`` with size and MD5. Write it after
    the objects. Returns what it wrote."""
    return write_track_manifest(Path(wav_dir) / WAV_MANIFEST_FILE, prefix, objects)


def read_wav_manifest(wav_dir: str | Path) -> tuple[str, dict[str, ObjectEntry]] | None:
    """(prefix, {track id: object}) of <wav_dir>/wav_manifest.json, checked (each track id once, its
    object named wav_object_name(track id, MD5)); None when there is none (the WAVs are files)."""

    def named(prefix: str, track_id: str, entry: ObjectEntry) -> bool:
        return entry.url == f"{prefix.rstrip('/')}/{wav_object_name(track_id, entry.md5)}"

    return read_track_manifest(Path(wav_dir) / WAV_MANIFEST_FILE, named, "<track_id>.<md5>.wav")


def raw_object_name(relative: str, md5: str) -> str:
    """The name of a raw clip's object, below the raw clips' prefix: its file's path below
    data/raw/audio with the MD5 of its bytes before the extension (``blues/blues.00000.<md5>.wav``,
    ``000/000002.<md5>.mp3``). Named by its content, an object never changes."""
    folder, _, name = relative.rpartition("/")
    stem, dot, extension = name.rpartition(".") if "." in name else (name, "", "")
    return f"{folder}/{stem}.{md5}{dot}{extension}".lstrip("/")


def write_raw_manifest(raw_dir: str | Path, prefix: str, objects: dict[str, ObjectEntry]) -> dict:
    """<raw_dir>/raw_manifest.json: the gs:// ``prefix`` the raw clips lie under and, for every track
    id of ``objects`` (sorted), its object (raw_object_name) with size and MD5. Write it after the
    objects. Returns what it wrote."""
    return write_track_manifest(Path(raw_dir) / RAW_MANIFEST_FILE, prefix, objects)


def read_raw_manifest(raw_dir: str | Path) -> tuple[str, dict[str, ObjectEntry]] | None:
    """(prefix, {track id: object}) of <raw_dir>/raw_manifest.json, checked (each track id once, its
    object's name <track_id>.<md5>[.<extension>]); None when there is none (the raw clips are files)."""

    def named(prefix: str, track_id: str, entry: ObjectEntry) -> bool:
        name = entry.url.rsplit("/", 1)[1]  # read_object_manifest checked that the URL lies under the prefix
        return re.fullmatch(rf"{re.escape(track_id)}\.{entry.md5}(\.[A-Za-z0-9]+)?", name) is not None

    return read_track_manifest(Path(raw_dir) / RAW_MANIFEST_FILE, named, "<folder>/<track_id>.<md5>.<extension>")


# ---- the feature tables: data/features/{train,val,test}.csv and feature_info.json


@dataclass(frozen=True)
class FeatureSplit:
    """One split of the feature table: a row of features per clip, its label index and genre."""

    track_ids: list[str]
    features: np.ndarray  # float64 [clips, columns]
    labels: np.ndarray  # int64 [clips]
    genres: list[str]


def write_feature_table(path: str | Path, ids: pd.DataFrame, rows: Iterator[np.ndarray], columns: list[str]) -> None:
    """Write ``ids`` (track_id, label, genre) with the next len(ids) rows of ``rows`` as CSV,
    ROWS_PER_WRITE rows at a time (memory stays flat): the bytes of genreclf.io.write_csv on
    the whole table. Writes ``path`` directly: call it inside an atomic_dir."""
    import pandas as pd

    with open(path, "w", encoding="utf-8", newline="") as out:
        for start in range(0, max(len(ids), 1), ROWS_PER_WRITE):
            chunk_ids = ids[FEATURE_ID_COLUMNS].iloc[start : start + ROWS_PER_WRITE].reset_index(drop=True)
            values = np.array(list(islice(rows, len(chunk_ids))), dtype=np.float64).reshape(-1, len(columns))
            chunk = pd.concat([chunk_ids, pd.DataFrame(values, columns=columns)], axis=1)
            chunk.to_csv(out, header=start == 0, index=False, float_format=CSV_FLOAT_FORMAT, lineterminator="\n")


def write_features(
    features_dir: str | Path,
    ids: dict[str, pd.DataFrame],
    rows: Iterator[np.ndarray],
    columns: list[str],
    sample_rate: int,
    params: dict,
) -> None:
    """The folder data/features, written whole: <split>.csv for each split of ``ids`` (in its order)
    with the feature rows that ``rows`` gives split after split, and feature_info.json
    ({"sample_rate", "params", "columns"}: how to compute the same features of new audio)."""
    with atomic_dir(features_dir) as tmp:
        for split, split_ids in ids.items():
            write_feature_table(tmp / f"{split}.csv", split_ids, rows, columns)
        write_json(tmp / FEATURE_INFO_FILE, {"sample_rate": sample_rate, "params": params, "columns": columns})


def read_feature_info(features_dir: str | Path) -> dict:
    """data/features/feature_info.json: {"sample_rate", "params", "columns"}, checked."""
    path = Path(features_dir) / FEATURE_INFO_FILE
    info = read_json(path)
    missing = [key for key in FEATURE_INFO_KEYS if key not in info] if isinstance(info, dict) else FEATURE_INFO_KEYS
    if missing or not isinstance(info.get("columns"), list) or not info["columns"]:
        raise DataError(
            f"{path}: expected the keys sample_rate, params and a non-empty list columns (missing: {list(missing)})",
            path=path,
        )
    return info


FEATURE_READ_CHUNK_ROWS = 512  # rows parsed at a time: the memory is the matrix plus one chunk, not a table
LINE_COUNT_BYTES = 1 << 20  # block size of the pass that counts a table's lines


def count_lines(path: str | Path) -> int:
    """The lines of a text file (a last line without its newline counts), read in blocks."""
    lines, last = 0, b"\n"
    with open(path, "rb") as file:
        while block := file.read(LINE_COUNT_BYTES):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def read_feature_split(features_dir: str | Path, split: str, columns: list[str]) -> FeatureSplit:
    """data/features/<split>.csv, checked: exactly the id columns then ``columns``, clips, no NaN.

    The float64 matrix is allocated once, for as many clips as the file has lines after its
    header (a CSV record cannot have fewer lines), and filled FEATURE_READ_CHUNK_ROWS parsed
    rows at a time, so that reading it takes the matrix plus one chunk: no second copy of the
    matrix (a whole pandas table of it took about 5 times that, a list of chunks twice).
    """
    import pandas as pd

    path = Path(features_dir) / f"{split}.csv"
    if not path.is_file():
        raise DataError(f"{path} does not exist", path=path)
    expected = [*FEATURE_ID_COLUMNS, *columns]
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
        if header != expected:
            unexpected = sorted(set(header) - set(expected))
            missing = sorted(set(expected) - set(header))
            raise DataError(
                f"{path}: expected the columns {FEATURE_ID_COLUMNS} then the {len(columns)} feature "
                f"columns of {FEATURE_INFO_FILE} in order (missing: {missing[:SHOWN]}, unexpected: "
                f"{unexpected[:SHOWN]})",
                path=path,
            )
        capacity = max(count_lines(path) - 1, 0)
        features = np.empty((capacity, len(columns)), dtype=np.float64)
        labels = np.empty(capacity, dtype=np.int64)
        track_ids: list[str] = []
        genres: list[str] = []
        bad: list[str] = []
        reader = pd.read_csv(path, dtype={"track_id": str, "genre": str}, chunksize=FEATURE_READ_CHUNK_ROWS)
        for chunk in reader:
            if chunk.empty:  # a header alone
                continue
            start, stop = len(track_ids), len(track_ids) + len(chunk)
            if not pd.api.types.is_integer_dtype(chunk["label"]) or (chunk["label"] < 0).any():
                raise DataError(f"{path}: the label column must hold non-negative integers", path=path)
            features[start:stop] = chunk[columns].to_numpy(dtype=np.float64)
            labels[start:stop] = chunk["label"].to_numpy(dtype=np.int64)
            track_ids += chunk["track_id"].tolist()
            genres += chunk["genre"].tolist()
            finite = np.isfinite(features[start:stop]).all(axis=1)
            bad += [track_id for track_id, ok in zip(chunk["track_id"], finite) if not ok]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV ({e})", path=path) from None
    if not track_ids:
        raise DataError(f"{path}: no clips", path=path)
    if bad:
        raise DataError(f"{path}: NaN or infinite features for the clips {bad[:SHOWN]}", path=path)
    if len(track_ids) < capacity:  # blank lines, or line breaks inside quoted cells: a smaller copy
        features, labels = features[: len(track_ids)].copy(), labels[: len(track_ids)].copy()
    return FeatureSplit(track_ids=track_ids, features=features, labels=labels, genres=genres)


def genre_labels(splits: dict[str, FeatureSplit], source: str | Path) -> list[str]:
    """The ordered genre list (label i = labels[i]) read off the splits' (label, genre) pairs."""
    names: dict[int, str] = {}
    for split in splits.values():
        for label, genre in zip(split.labels.tolist(), split.genres):
            if names.setdefault(label, genre) != genre:
                raise DataError(f"{source}: label {label} is both '{names[label]}' and '{genre}'", path=source)
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{source}: labels {sorted(names)} are not 0..{len(names) - 1}", path=source)
    return [names[i] for i in range(len(names))]


# ---- the embedding tables: data/embeddings/{train,val,test}.csv and feature_info.json
# The same layout as the feature tables, so that the same readers (read_feature_info,
# read_feature_split) and the scikit-learn models take either.


# The folder data/embeddings, written whole as write_features writes data/features: <split>.csv per
# split (track_id, label, genre, then the embedding's columns) and feature_info.json ({"sample_rate"
# the audio is decoded at, "params" of the embedding, "columns"}).
write_embeddings = write_features


# ---- the pretrained network: models/musicnn_msd/{model.keras, pretrained.json}


def write_pretrained(pretrained_dir: str | Path, info: dict, save_model: Callable[[Path], None]) -> None:
    """models/musicnn_msd, written whole: model.keras (written by ``save_model(path)``) and
    pretrained.json (PRETRAINED_INFO_KEYS: the wheel it came from and its SHA-256, the sample rate
    of its input audio, its outputs and its tags)."""
    with atomic_dir(pretrained_dir) as tmp:
        save_model(tmp / PRETRAINED_MODEL_FILE)
        write_json(tmp / PRETRAINED_INFO_FILE, info)


def read_pretrained(pretrained_dir: str | Path) -> tuple[Path, dict]:
    """(the model file, pretrained.json) of models/musicnn_msd, checked."""
    path = Path(pretrained_dir) / PRETRAINED_INFO_FILE
    info = read_json(path)
    missing = [k for k in PRETRAINED_INFO_KEYS if k not in info] if isinstance(info, dict) else PRETRAINED_INFO_KEYS
    if missing:
        raise DataError(f"{path}: the keys {list(missing)} are missing", path=path)
    model_file = Path(pretrained_dir) / PRETRAINED_MODEL_FILE
    if not model_file.is_file():
        raise DataError(f"{model_file} does not exist", path=model_file)
    return model_file, info


# ---- a model folder: models/<name>/{preprocessing.json, labels.json, model file}


@dataclass(frozen=True)
class ModelFolder:
    """A trained model's folder, checked: its preprocessing (how audio becomes its input), its genres."""

    path: Path
    preprocessing: dict
    labels: list[str]

    @property
    def family(self) -> str:
        return self.preprocessing["family"]

    @property
    def sample_rate(self) -> int:
        return self.preprocessing["sample_rate"]

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILES[self.family]


def write_model_folder(
    model_dir: str | Path, preprocessing: dict, labels: list[str], save_model: Callable[[Path], None]
) -> None:
    """models/<name>, written whole: preprocessing.json ("family" is one of FAMILIES, "sample_rate"
    and the settings of the model's input), labels.json and the model file that ``save_model(path)``
    writes (MODEL_FILES[family])."""
    family = preprocessing["family"]
    with atomic_dir(model_dir) as tmp:
        save_model(tmp / MODEL_FILES[family])
        write_json(tmp / PREPROCESSING_FILE, preprocessing)
        write_json(tmp / LABELS_FILE, labels)


def read_model_folder(model_dir: str | Path) -> ModelFolder:
    """models/<name>: preprocessing.json, labels.json and the model file of its family, checked."""
    model_dir = Path(model_dir)
    path = model_dir / PREPROCESSING_FILE
    preprocessing = read_json(path)
    if not isinstance(preprocessing, dict) or preprocessing.get("family") not in FAMILIES:
        raise DataError(f"{path}: expected a 'family' of {list(FAMILIES)}", path=path)
    sample_rate = preprocessing.get("sample_rate")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise DataError(f"{path}: sample_rate = {sample_rate!r}; expected a positive integer", path=path)
    labels = check_genre_list(read_json(model_dir / LABELS_FILE), model_dir / LABELS_FILE)
    if "labels" in preprocessing and preprocessing["labels"] != labels:
        raise DataError(f"{model_dir}: {LABELS_FILE} and {PREPROCESSING_FILE} disagree on the labels", path=path)
    folder = ModelFolder(model_dir, preprocessing, labels)
    if not folder.model_file.is_file():
        raise DataError(f"{folder.model_file} does not exist", path=folder.model_file)
    return folder


# ---- the scores of one model: metrics/models/<name>.json; of them all: metrics/summary.json


def write_model_metrics(path: str | Path, metrics: dict) -> None:
    """metrics/models/<name>.json: accuracy, family, macro_f1, n_test, per_class (and unit accuracies)."""
    write_json(path, metrics)


def read_model_metrics(path: str | Path) -> dict:
    """metrics/models/<name>.json, checked to hold MODEL_METRICS_KEYS."""
    metrics = read_json(path)
    missing = (
        [key for key in MODEL_METRICS_KEYS if key not in metrics]
        if isinstance(metrics, dict)
        else list(MODEL_METRICS_KEYS)
    )
    if missing:
        raise DataError(f"{path}: the keys {missing} are missing", path=path)
    return metrics


def write_summary(path: str | Path, summary: dict) -> None:
    """metrics/summary.json: {"chance": {...}, "models": {name: {accuracy, family, macro_f1, n_test}}};
    the models keep their order (the keys are not sorted)."""
    write_text(path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")


def read_summary(path: str | Path) -> dict:
    """metrics/summary.json, checked to give each model a numeric accuracy."""
    summary = read_json(path)
    models = summary.get("models") if isinstance(summary, dict) else None
    if not (
        isinstance(models, dict)
        and models
        and all(
            isinstance(scores, dict) and isinstance(scores.get("accuracy"), (int, float)) for scores in models.values()
        )
    ):
        raise DataError(f'{path}: expected {{"models": {{name: {{"accuracy": number, ...}}}}}}', path=path)
    return summary


# ---- the similar-song index: models/recommend/ (genreclf.models.neighbours)

RECOMMEND_DIR = MODELS_DIR / "recommend"
RECOMMEND_METRICS_JSON = Path("metrics/recommend.json")
LIBRARY_FILE = "library.csv"  # track_id, genre, split, artist, title of each library clip, in index order
LIBRARY_COLUMNS = ["track_id", "genre", "split", "artist", "title"]
VECTORS_FILE = "vectors.npy"  # float32 [clips, dims]: standardised, unit length
STANDARDISE_FILE = "standardise.npy"  # float64 [2, dims]: the library's mean and standard deviation
INDEX_INFO_FILE = "index_info.json"  # {"embedding", "sample_rate", "params", "columns"}
RECOMMEND_EMBEDDINGS = ("musicnn", "features", "cnn2d")  # what an index may be built on


def write_similarity_index(
    folder: str | Path, mean: np.ndarray, scale: np.ndarray, vectors: np.ndarray, library: pd.DataFrame, info: dict
) -> None:
    """models/recommend, written whole: the index (genreclf.models.neighbours.SimilarityIndex's
    arrays), its clips in index order, and how new audio gets the same embedding (``info``:
    embedding name, sample rate, params, columns)."""
    with atomic_dir(folder) as tmp:
        write_csv(tmp / LIBRARY_FILE, library[LIBRARY_COLUMNS])
        np.save(tmp / VECTORS_FILE, vectors, allow_pickle=False)
        np.save(tmp / STANDARDISE_FILE, np.stack([mean, scale]), allow_pickle=False)
        write_json(tmp / INDEX_INFO_FILE, info)


def read_similarity_index(folder: str | Path) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], pd.DataFrame, dict]:
    """((mean, scale, vectors), library table, info) of models/recommend, checked against each other."""
    folder = Path(folder)
    if not (folder / VECTORS_FILE).is_file():
        raise DataError(f"{folder / VECTORS_FILE} does not exist; run `dvc repro recommend_index`", path=folder)
    library = read_table(folder / LIBRARY_FILE, LIBRARY_COLUMNS)
    vectors = np.load(folder / VECTORS_FILE, allow_pickle=False)
    mean, scale = np.load(folder / STANDARDISE_FILE, allow_pickle=False)
    info = read_json(folder / INDEX_INFO_FILE)
    if vectors.ndim != 2 or len(vectors) != len(library) or vectors.shape[1] != len(mean):
        raise DataError(
            f"{folder}: {VECTORS_FILE} has shape {vectors.shape}, but {LIBRARY_FILE} lists {len(library)} clips "
            f"and {STANDARDISE_FILE} {len(mean)} dimensions; run `dvc repro -f recommend_index`",
            path=folder,
        )
    return (mean, scale, vectors), library, info
