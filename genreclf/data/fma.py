"""The Free Music Archive (FMA): its tracks.csv, its archives' layout, and fetching one subset.

The archives (https://github.com/mdeff/fma) are zip files with bzip2 members:
``fma_metadata.zip`` holds ``fma_metadata/tracks.csv``; ``fma_small.zip`` (``fma_medium``,
``fma_large``) holds ``fma_small/NNN/NNNNNN.mp3``, NNN being the first three digits of the
zero-padded track id. tracks.csv has two header rows (plus the index name row); the columns
used are ('set', 'subset') = small | medium | large (medium includes small, large includes
both), ('set', 'split') = training | validation | test, and ('track', 'genre_top'); and,
where the file has them, ('artist', 'name') and ('track', 'title') ('' where it has not).

fetch also keeps, in data/raw/fma_metadata/, the rows of the chosen clips of the archive's
``features.csv`` and ``echonest.csv`` (FMA's own features; features.source fma | fma_echonest):
their header rows and those rows, as written in the archive (no value is parsed or rewritten).
Whatever the features.source, so that switching it never refetches nor reconverts the clips.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import re
import tempfile
from pathlib import Path

import pandas as pd

from genreclf import catalog
from genreclf.data.fetch import (
    AUDIO_DIR,
    VERIFIED_NONE,
    DirectoryArchive,
    choose_clips,
    ignored_summary,
    is_url,
    log_ignored,
    open_archive,
    public_source,
    write_clips_and_report,
)
from genreclf.errors import DataError
from genreclf.io import atomic_dir

DATASETS = catalog.FMA_DATASETS
METADATA = catalog.FMA_METADATA
TRACKS_MEMBER = "fma_metadata/tracks.csv"
SUBSETS = {"fma_small": ("small",), "fma_medium": ("small", "medium"), "fma_large": ("small", "medium", "large")}
SUBSET_COLUMN = ("set", "subset")
SPLIT_COLUMN = ("set", "split")
GENRE_COLUMN = ("track", "genre_top")
NAME_COLUMNS = {"artist": ("artist", "name"), "title": ("track", "title")}  # optional: '' when absent
KEPT_TABLES_DIR = "fma_metadata"  # under data/raw: the chosen clips' rows of FMA's feature tables
KEPT_TABLES = ("features.csv", "echonest.csv")  # members fma_metadata/<name> of fma_metadata.zip
TABLE_INDEX_ROW = "track_id"  # the row after a table's header rows
MEMBER_RE = re.compile(r"^(?P<top>[^/]+)/(?P<folder>\d{3})/(?P<track_id>\d{6})\.mp3$")
SHOWN_EXAMPLES = 5

log = logging.getLogger(__name__)


def read_tracks(path: str | Path, label: str | None = None) -> pd.DataFrame:
    """Read FMA's tracks.csv: one row per track with track_id (6 digits), subset, split, genre_top,
    artist and title ('' where the file has no such column or value)."""
    label = label or str(path)
    expected = (
        "expected FMA's tracks.csv: two header rows such as ('set', 'subset') and "
        "('track', 'genre_top'), then 'track_id'"
    )
    try:
        raw = pd.read_csv(path, index_col=0, header=[0, 1], low_memory=False)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{label}: cannot be parsed ({e}); {expected}") from None
    missing = [column for column in (SUBSET_COLUMN, SPLIT_COLUMN, GENRE_COLUMN) if column not in raw.columns]
    if missing:
        raise DataError(f"{label}: columns {missing} are missing; {expected}")
    ids = pd.to_numeric(pd.Series(raw.index), errors="coerce")
    if ids.isna().any():
        bad = list(pd.Series(raw.index)[ids.isna()][:SHOWN_EXAMPLES])
        raise DataError(f"{label}: track ids {bad} are not numbers; {expected}")
    return pd.DataFrame(
        {
            "track_id": [f"{int(track_id):06d}" for track_id in ids],
            "subset": raw[SUBSET_COLUMN].to_numpy(),
            "split": raw[SPLIT_COLUMN].fillna("").astype(str).to_numpy(),
            "genre_top": raw[GENRE_COLUMN].to_numpy(),
            **{name: text_column(raw, column) for name, column in NAME_COLUMNS.items()},
        }
    )


def text_column(raw: pd.DataFrame, column: tuple[str, str]):
    """A column of tracks.csv as strings, '' where it is empty or the file has no such column."""
    if column not in raw.columns:
        return [""] * len(raw)
    return raw[column].fillna("").astype(str).to_numpy()


def subset_clips(tracks: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, int]:
    """The tracks of ``dataset``'s subset that have a top genre, and how many had none.

    Returns (frame with track_id, genre, official_split, artist, title; number of tracks skipped
    for lack of genre_top).
    """
    in_subset = tracks[tracks["subset"].isin(SUBSETS[dataset])]
    genre = in_subset["genre_top"]
    has_genre = genre.notna() & (genre.astype(str).str.strip() != "")
    clips = pd.DataFrame(
        {
            "track_id": in_subset["track_id"],
            "genre": genre.astype(str),
            "official_split": in_subset["split"],
            **{name: in_subset[name] for name in NAME_COLUMNS},
        }
    )[has_genre]
    return clips.sort_values("track_id").reset_index(drop=True), int((~has_genre).sum())


def audio_members(names: list[str], dataset: str) -> tuple[dict[str, str], list[str]]:
    """Map track_id -> archive member for the clips ``<dataset>/NNN/NNNNNN.mp3``; list the other files."""
    members, ignored = {}, []
    for name in names:
        match = MEMBER_RE.match(name)
        if match and match["top"] == dataset and match["folder"] == match["track_id"][:3]:
            members[match["track_id"]] = name
        else:
            ignored.append(name)
    return members, ignored


def audio_path(track_id: str) -> str:
    """Where a clip goes under data/raw/audio: the archive's own NNN/NNNNNN.mp3 layout."""
    return f"{track_id[:3]}/{track_id}.mp3"


def _open_local_or_remote(source: str, name: str, unpacked: str, checksums: dict, downloads_dir: Path, ranged: bool):
    """Open archive ``<name>.zip`` from ``source``, or the unpacked folder ``source/<unpacked>``."""
    if is_url(source) or (Path(source) / f"{name}.zip").is_file():
        return open_archive(source, f"{name}.zip", name, checksums.get(name), downloads_dir, ranged)
    if (Path(source) / unpacked).exists():
        log.info(
            "%s: using the files already unpacked in %s (no archive, so no checksum to verify)",
            name,
            Path(source) / unpacked,
        )
        folder = unpacked.split("/")[0]
        archive = DirectoryArchive(Path(source), str(Path(source) / folder), subdir=folder)
        return archive, {"file": f"{folder}/", "sha1": None, "verified": VERIFIED_NONE}
    raise DataError(
        f"{source}: holds neither {name}.zip nor the unpacked {unpacked}; point data.source "
        "at a folder with the FMA archives (or their unpacked content), or at an URL prefix"
    )


def fetch_fma(
    dataset: str,
    source: str,
    checksums: dict,
    clips_per_genre: int | None,
    seed: int,
    raw_dir: str | Path,
    downloads_dir: str | Path,
) -> dict:
    """Fetch the clips of ``dataset`` into ``raw_dir`` (audio/, clips.csv, fetch_report.json).

    ``source``: URL prefix, or local folder with the archives or their unpacked content.
    With an URL and ``clips_per_genre`` set, only tracks.csv and the chosen clips are read
    out of the remote zips (HTTP range requests); otherwise whole archives are downloaded
    into ``downloads_dir`` and their SHA-1 checked against ``checksums``. Returns the report.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown FMA dataset '{dataset}'; expected one of {list(DATASETS)}")
    raw_dir, downloads_dir = Path(raw_dir), Path(downloads_dir)
    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    ranged = clips_per_genre is not None and is_url(source)
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".fetch-", dir=raw_dir.parent)))
        metadata, metadata_record = _open_local_or_remote(
            source, METADATA, TRACKS_MEMBER, checksums, downloads_dir, ranged
        )
        stack.enter_context(metadata)
        clips, without_genre = subset_tracks(metadata, dataset, scratch)
        audio, audio_record = _open_local_or_remote(source, dataset, dataset, checksums, downloads_dir, ranged)
        stack.enter_context(audio)
        members, ignored = audio_members(audio.names(), dataset)
        log_ignored(audio.label, ignored)
        present, not_in_archive = clips_in_archive(clips, members, audio.label, dataset)
        chosen = choose_clips(clips[present], clips_per_genre, seed)
        log.info(
            "chose %d clips in %d genres (clips_per_genre=%s, seed=%d)",
            len(chosen),
            chosen["genre"].nunique(),
            clips_per_genre,
            seed,
        )

        with atomic_dir(raw_dir) as out:
            kept_tables = keep_table_rows(metadata, set(chosen["track_id"]), scratch, out / KEPT_TABLES_DIR)
            audio.extract(
                [(members[track_id], out / AUDIO_DIR / audio_path(track_id)) for track_id in chosen["track_id"]],
                desc=f"{dataset} clips",
            )
            chosen["path"] = [
                (raw_dir / AUDIO_DIR / audio_path(track_id)).as_posix() for track_id in chosen["track_id"]
            ]
            report = {
                "dataset": dataset,
                "source": public_source(source),
                "archives": {METADATA: metadata_record, dataset: audio_record},
                "feature_tables": kept_tables,
                "selection": {"clips_per_genre": clips_per_genre, "seed": seed},
                "skipped": {
                    "tracks_without_genre": without_genre,
                    "tracks_not_in_archive": {
                        "count": len(not_in_archive),
                        "examples": not_in_archive[:SHOWN_EXAMPLES],
                    },
                    "ignored_files": ignored_summary(ignored),
                },
            }
            report = write_clips_and_report(out, chosen, report)
    return report


def subset_tracks(metadata, dataset: str, scratch: Path) -> tuple[pd.DataFrame, int]:
    """The tracks of ``dataset`` with a top genre in the metadata archive's tracks.csv (extracted
    into ``scratch``), and how many it has without one (``subset_clips``)."""
    if TRACKS_MEMBER not in metadata.names():
        raise DataError(f"{metadata.label}: has no {TRACKS_MEMBER}; is it FMA's fma_metadata archive?")
    metadata.extract([(TRACKS_MEMBER, scratch / "tracks.csv")], desc="tracks.csv")
    tracks = read_tracks(scratch / "tracks.csv", f"{metadata.label}: {TRACKS_MEMBER}")
    clips, without_genre = subset_clips(tracks, dataset)
    log.info(
        "%s: %d tracks in the %s subset have a top genre; skipped %d without one",
        TRACKS_MEMBER,
        len(clips),
        dataset,
        without_genre,
    )
    return clips, without_genre


def clips_in_archive(clips: pd.DataFrame, members: dict, label: str, dataset: str) -> tuple[pd.Series, list[str]]:
    """Which of ``clips`` the audio archive ``label`` holds (a mask), and the track ids it lacks
    (warned about); a DataError if it holds none of them."""
    present = clips["track_id"].isin(members)
    not_in_archive = sorted(clips.loc[~present, "track_id"])
    if not_in_archive:
        log.warning(
            "%s: %d tracks of tracks.csv have no clip in the archive, skipped (e.g. %s)",
            label,
            len(not_in_archive),
            not_in_archive[:SHOWN_EXAMPLES],
        )
    if not present.any():
        raise DataError(
            f"{label}: holds none of the {len(clips)} clips tracks.csv lists for {dataset} "
            f"(expected members like {dataset}/000/000002.mp3); is it the {dataset} archive?"
        )
    return present, not_in_archive


def keep_table_rows(metadata, track_ids: set[str], scratch: Path, out_dir: Path) -> dict[str, int]:
    """The rows of ``track_ids`` of each of FMA's feature tables in the metadata archive, with the
    header rows, written to ``out_dir``/<name>; {name: rows kept}. A table the archive lacks is
    skipped (logged): features.source fma or fma_echonest then says it is missing."""
    kept = {}
    names = metadata.names()
    for name in KEPT_TABLES:
        member = f"{METADATA}/{name}"
        if member not in names:
            log.warning("%s: has no %s; features.source fma / fma_echonest cannot use it", metadata.label, member)
            continue
        metadata.extract([(member, scratch / name)], desc=name)
        kept[name] = filter_table(scratch / name, out_dir / name, track_ids, f"{metadata.label}: {member}")
        (scratch / name).unlink()
        log.info("kept %d rows of %s (the chosen clips it has) in %s", kept[name], member, out_dir / name)
    return kept


def filter_table(src: Path, dst: Path, track_ids: set[str], label: str) -> int:
    """Copy the header rows of FMA's table ``src`` (up to its track_id row) and the rows of
    ``track_ids`` to ``dst``, field by field as written; the number of rows kept."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with open(src, newline="", encoding="utf-8") as fin, open(dst, "w", newline="", encoding="utf-8") as fout:
        reader, writer = csv.reader(fin), csv.writer(fout, lineterminator="\n")
        for row in reader:
            writer.writerow(row)
            if row and row[0] == TABLE_INDEX_ROW:
                break
        else:
            raise DataError(f"{label}: no '{TABLE_INDEX_ROW}' row after the header rows; is it FMA's table?")
        for row in reader:
            if row and row[0].isdigit() and f"{int(row[0]):06d}" in track_ids:
                writer.writerow(row)
                rows += 1
    return rows
