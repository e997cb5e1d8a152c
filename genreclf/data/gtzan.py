"""GTZAN: 10 genres x 100 clips of 30 s, laid out <genre>/<genre>.NNNNN.(wav|au|mp3).

The original ``genres.tar.gz`` holds ``genres/blues/blues.00000.au`` ...; copies found
elsewhere hold the same layout one or more folders down (Kaggle's zip:
``Data/genres_original/blues/blues.00000.wav``) or at the top (``blues/blues.00000.wav``).
Every clip must sit in the folder of its genre, all under one common folder. Files the OS or
the dataset's tools left beside the audio (.DS_Store, ._*, *.mf, images, tables) are ignored.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath

import pandas as pd

from genreclf import catalog
from genreclf.data.fetch import (
    VERIFIED_NONE,
    DirectoryArchive,
    choose_clips,
    extract_clips,
    ignored_summary,
    is_stray,
    is_url,
    log_ignored,
    open_archive,
    public_source,
    write_clips_and_report,
)
from genreclf.errors import DataError
from genreclf.io import atomic_dir

DATASET = "gtzan"
CHECKSUM_KEY = catalog.GTZAN
ARCHIVE = "genres.tar.gz"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
AUDIO_SUFFIXES = (".wav", ".au", ".mp3")
CLIP_NAME_RE = re.compile(r"^(?P<genre>[a-z0-9_-]+)\.(?P<number>\d{5})\.(?:wav|au|mp3)$", re.IGNORECASE)
LAYOUT = "<genre>/<genre>.NNNNN.(wav|au|mp3), possibly under a folder such as genres/"
SHOWN_EXAMPLES = 5

log = logging.getLogger(__name__)


def gtzan_clips(names: list[str], label: str) -> tuple[pd.DataFrame, list[str]]:
    """Find the clips among archive member (or file) names.

    Returns (frame with track_id such as 'blues.00000', genre, member; the ignored names).
    An audio file out of the layout is an error, not something to skip silently.
    """
    rows, ignored = [], []
    for name in names:
        parts = PurePosixPath(name).parts
        if is_stray(name) or not name.lower().endswith(AUDIO_SUFFIXES):
            ignored.append(name)
            continue
        match = CLIP_NAME_RE.match(parts[-1])
        if not match or len(parts) < 2 or parts[-2] != match["genre"]:
            raise DataError(
                f"{label}: '{name}' is an audio file out of GTZAN's layout {LAYOUT}; "
                "move or remove it, or point data.source at the GTZAN folder itself"
            )
        rows.append(
            {
                "track_id": parts[-1].rsplit(".", 1)[0],
                "genre": match["genre"],
                "member": name,
                "top": "/".join(parts[:-2]),
            }
        )
    if not rows:
        raise DataError(f"{label}: holds no GTZAN clips; expected {LAYOUT}")
    clips = pd.DataFrame(rows)
    tops = sorted(clips["top"].unique())
    if len(tops) > 1:
        raise DataError(
            f"{label}: clips lie under several folders {tops[:SHOWN_EXAMPLES]}; expected one "
            f"layout {LAYOUT}: point data.source at one of them"
        )
    duplicated = sorted(clips.loc[clips["track_id"].duplicated(), "track_id"])
    if duplicated:
        raise DataError(
            f"{label}: clips {duplicated[:SHOWN_EXAMPLES]} are there more than once "
            "(in different formats?); keep one file per clip"
        )
    return clips.drop(columns="top").sort_values("track_id").reset_index(drop=True), ignored


def _archive_name(source: str) -> str:
    name = PurePosixPath(source.split("?", 1)[0]).name
    return name if name.lower().endswith(ARCHIVE_SUFFIXES) else ARCHIVE


def _open_source(source: str, checksum: str | None, downloads_dir: Path, ranged: bool):
    """The GTZAN clips' container: an archive (URL, file, or genres.tar.gz in a folder) or a folder."""
    path = Path(source)
    if is_url(source) or path.is_file():
        return open_archive(source, _archive_name(source), CHECKSUM_KEY, checksum, downloads_dir, ranged)
    if (path / ARCHIVE).is_file():
        return open_archive(source, ARCHIVE, CHECKSUM_KEY, checksum, downloads_dir, ranged)
    if path.is_dir():
        log.info("%s: using the files already unpacked there (no archive, so no checksum to verify)", path)
        return DirectoryArchive(path, str(path)), {"file": f"{path.name}/", "sha1": None, "verified": VERIFIED_NONE}
    raise DataError(
        f"{source}: neither an URL, an archive, nor a folder; point data.source at the GTZAN "
        f"folder ({LAYOUT}) or at {ARCHIVE}"
    )


def fetch_gtzan(
    source: str,
    checksum: str | None,
    clips_per_genre: int | None,
    seed: int,
    raw_dir: str | Path,
    downloads_dir: str | Path,
) -> dict:
    """Fetch GTZAN clips into ``raw_dir`` (audio/<genre>/<file>, clips.csv, fetch_report.json).

    A tar archive from an URL is downloaded whole into ``downloads_dir`` (a gzip stream
    cannot be read piecewise) and its SHA-1 checked when ``checksum`` is set. Returns the report.
    """
    raw_dir, downloads_dir = Path(raw_dir), Path(downloads_dir)
    ranged = clips_per_genre is not None and is_url(source)
    archive, record = _open_source(source, checksum, downloads_dir, ranged)
    with archive:
        clips, ignored = gtzan_clips(archive.names(), archive.label)
        log_ignored(archive.label, ignored)
        chosen = choose_clips(clips, clips_per_genre, seed)
        log.info(
            "chose %d of %d clips in %d genres (clips_per_genre=%s, seed=%d)",
            len(chosen),
            len(clips),
            chosen["genre"].nunique(),
            clips_per_genre,
            seed,
        )
        targets = [f"{genre}/{PurePosixPath(member).name}" for genre, member in zip(chosen["genre"], chosen["member"])]
        with atomic_dir(raw_dir) as out:
            paths = extract_clips(archive, chosen["member"], targets, out, raw_dir, "gtzan clips")
            chosen = chosen.assign(path=paths, official_split="")
            report = {
                "dataset": DATASET,
                "source": public_source(source),
                "archives": {CHECKSUM_KEY: record},
                "selection": {"clips_per_genre": clips_per_genre, "seed": seed},
                "skipped": {"ignored_files": ignored_summary(ignored)},
            }
            return write_clips_and_report(out, chosen, report)
