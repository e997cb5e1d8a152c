"""Your own music as a dataset: a folder laid out ``<label>/.../<file>``, or a .zip / .tar.gz of one.

The label of a file is the name of the top folder it lies in (any language, spaces and
punctuation kept, Unicode NFC); below that, files may sit at any depth. An archive may hold the
label folders at its top or inside one folder (the folder that was zipped). Every file the decoder
reads (``genreclf.data.audio.AUDIO_EXTENSIONS``) is a clip; nothing is left out silently:

- files that are not audio (and the files and folders the OS hides or leaves beside the audio)
  are ignored and counted, and so are audio files beside the label folders (no label);
- files with the same bytes are one song: the one of the smallest relative path is kept, the
  others are listed in duplicates.csv (and in the log);
- fewer than two labels, or a label with fewer clips than the split needs to put it in every
  split, is an error (``check_labels``), before anything is extracted or decoded.

Each clip's track id (``track_id``) is a readable slug of its path relative to the label folders
and a hash of that path: the same file at the same relative path always gets the same id,
whatever order the folder lists in, and the id is a safe file name on any OS.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tarfile
import unicodedata
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from genreclf import catalog
from genreclf.data.audio import AUDIO_EXTENSIONS
from genreclf.data.fetch import (
    SHOWN_EXAMPLES,
    VERIFIED_NONE,
    DirectoryArchive,
    TarArchive,
    ZipArchive,
    choose_clips,
    extract_clips,
    ignored_summary,
    is_stray,
    open_archive,
    write_clips_and_report,
)
from genreclf.errors import DataError
from genreclf.io import atomic_dir, write_csv

DATASET = catalog.FOLDER
CHECKSUM_KEY = catalog.FOLDER
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
LAYOUT = "<label>/.../<file> (the label: the name of the top folder)"
SLUG_CHARS = 48  # the readable part of a track id, at most
HASH_CHARS = 12  # hexadecimal digits of the relative path's SHA-1 in a track id
READ_CHUNK = 1 << 20
FILES_FILE = "files.csv"  # in data/raw/: where each clip came from
FILES_COLUMNS = ["track_id", "genre", "source_path"]
DUPLICATES_FILE = "duplicates.csv"  # in data/raw/: the files left out as copies of another
DUPLICATES_COLUMNS = ["source_path", "genre", "kept_path", "kept_track_id"]

# The cells that pandas reads as missing by default (its documented na_values): a label of one of
# these names would be lost by a table reader that keeps those defaults.
MISSING_VALUE_NAMES = frozenset(
    ("#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>")
    + ("N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
)

log = logging.getLogger(__name__)


def slug(text: str) -> str:
    """``text`` as lowercase ASCII letters and digits joined by '-' (accents dropped, other
    characters a separator), at most SLUG_CHARS long; '' when nothing of it is ASCII."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:SLUG_CHARS].rstrip("-")


def track_id(relative: str) -> str:
    """The track id of the file at ``relative`` (its path below the label folders' parent, '/'
    separated, label first): the slug of the path without its extension, '-', and the first
    HASH_CHARS hex digits of the SHA-1 of the path in Unicode NFC (the id of a path written
    decomposed, as macOS does, is the same). Unique per path, whatever the case of the file system."""
    relative = unicodedata.normalize("NFC", relative)
    digest = hashlib.sha1(relative.encode("utf-8")).hexdigest()[:HASH_CHARS]
    readable = slug(str(PurePosixPath(relative).with_suffix("")))
    return f"{readable}-{digest}" if readable else digest


@dataclass
class Listing:
    """What a folder holds: ``clips`` (track_id, genre, member: its name in the source, relative:
    its path below the label folders' parent), and the names of the files left out."""

    clips: pd.DataFrame
    ignored: list[str] = field(default_factory=list)  # not audio, or hidden
    unlabelled: list[str] = field(default_factory=list)  # audio beside the label folders


def is_hidden(name: str) -> bool:
    """A file the OS hides or leaves beside the audio (.DS_Store, ._*, Thumbs.db), or one in a
    hidden folder (.Trash, .git, __MACOSX)."""
    return is_stray(name) or any(p.startswith(".") or p == "__MACOSX" for p in PurePosixPath(name).parts)


def wrapper_folder(names: list[str]) -> str:
    """The one folder that holds every one of ``names``, folders in it (an archive of the folder
    itself), or ''."""
    tops = {PurePosixPath(name).parts[0] for name in names}
    if len(tops) == 1 and any(len(PurePosixPath(name).parts) > 2 for name in names):
        return tops.pop()
    return ""


def list_folder(names: Iterable[str], label: str, archive: bool) -> Listing:
    """The clips among ``names`` (a folder's files, '/' separated; an archive's members when
    ``archive``, whose label folders may lie inside one folder). DataError with fewer than two labels."""
    audio, ignored, unlabelled = [], [], []
    for name in sorted(names):
        if is_hidden(name) or PurePosixPath(name).suffix.lower() not in AUDIO_EXTENSIONS:
            ignored.append(name)
        else:
            audio.append(name)
    top = wrapper_folder(audio) if archive else ""
    rows = []
    for name in audio:
        relative = unicodedata.normalize("NFC", name[len(top) + 1 :] if top else name)
        parts = PurePosixPath(relative).parts
        if len(parts) < 2:
            unlabelled.append(name)
            continue
        rows.append({"track_id": track_id(relative), "genre": parts[0], "member": name, "relative": relative})
    clips = pd.DataFrame(rows, columns=["track_id", "genre", "member", "relative"])
    labels = sorted(clips["genre"].unique())
    if len(labels) < 2:
        where = f"{label}/{top}" if top else label
        raise DataError(
            f"{where}: {len(labels)} label folder(s) {labels} with audio files; a folder dataset needs "
            f"at least two, laid out {LAYOUT}: point data.source at the folder that holds them"
        )
    unreadable = [name for name in labels if name in MISSING_VALUE_NAMES]
    if unreadable:
        raise DataError(
            f"{label}: label folder(s) {unreadable} would read as a missing value in the CSV tables "
            "of the pipeline; rename them (e.g. 'Unknown')"
        )
    if clips["track_id"].duplicated().any():  # two paths with one hash: not seen in practice
        twice = sorted(clips.loc[clips["track_id"].duplicated(keep=False), "relative"])
        raise DataError(f"{label}: the files {twice[:SHOWN_EXAMPLES]} get the same track id; rename one of them")
    return Listing(clips.sort_values("relative").reset_index(drop=True), ignored, unlabelled)


def member_size(archive, name: str) -> int:
    """The size in bytes of one file of a folder or member of an archive (``open_archive``)."""
    if isinstance(archive, DirectoryArchive):
        return (archive.root / name).stat().st_size
    if isinstance(archive, ZipArchive):
        return archive.zip_file.getinfo(name).file_size
    if isinstance(archive, TarArchive):
        return archive.files[name].size
    raise TypeError(f"not an archive of genreclf.data.fetch: {type(archive).__name__}")


def member_digest(archive, name: str) -> str:
    """The SHA-1 of the bytes of one file of a folder or member of an archive; a DataError naming a
    member that cannot be read (a damaged archive)."""
    hasher = hashlib.sha1()
    if isinstance(archive, DirectoryArchive):
        with open(archive.root / name, "rb") as f:
            while chunk := f.read(READ_CHUNK):
                hasher.update(chunk)
        return hasher.hexdigest()
    try:
        opened = (
            archive.zip_file.open(name)
            if isinstance(archive, ZipArchive)
            else archive.tar_file.extractfile(archive.files[name])
        )
        with opened as f:
            while chunk := f.read(READ_CHUNK):
                hasher.update(chunk)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(
            f"{archive.label}: member '{name}' cannot be read ({e}); the archive is damaged: get a good copy"
        ) from None
    return hasher.hexdigest()


def drop_duplicates(clips: pd.DataFrame, archive) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the clips less the copies of another, the copies: DUPLICATES_COLUMNS). Files of one size
    are compared by their SHA-1; of the files with the same bytes, the one of the smallest
    relative path is kept. Empty files are left in: convert reports them as holding no audio."""
    sizes = pd.Series([member_size(archive, m) for m in clips["member"]], index=clips.index)
    shared = clips[(sizes > 0) & sizes.duplicated(keep=False)]
    digests = pd.Series([member_digest(archive, m) for m in shared["member"]], index=shared.index, dtype=str)
    copies = shared[digests.duplicated(keep="first")]  # clips are sorted by relative path
    kept = shared[~digests.duplicated(keep="first")].set_index(digests[~digests.duplicated(keep="first")])
    duplicates = pd.DataFrame(
        {
            "source_path": copies["relative"],
            "genre": copies["genre"],
            "kept_path": [kept.loc[d, "relative"] for d in digests[copies.index]],
            "kept_track_id": [kept.loc[d, "track_id"] for d in digests[copies.index]],
        },
        columns=DUPLICATES_COLUMNS,
    )
    return clips.drop(index=copies.index).reset_index(drop=True), duplicates.reset_index(drop=True)


def check_labels(counts: dict[str, int], min_clips: int | None, where: str) -> None:
    """DataError naming the labels with fewer than ``min_clips`` clips (None: no minimum)."""
    few = {label: n for label, n in sorted(counts.items()) if min_clips is not None and n < min_clips}
    if few:
        shown = ", ".join(f"{label!r} ({n})" for label, n in list(few.items())[:SHOWN_EXAMPLES])
        raise DataError(
            f"{where}: label(s) {shown} have fewer than the {min_clips} clips that the split needs to put "
            "a label in every split (split.fractions); add clips to them, remove them, or change split.fractions"
        )


def open_folder(source: str, checksum: str | None, downloads_dir: Path) -> tuple:
    """(the folder or archive ``source`` opened, its record for the report, whether it is an archive)."""
    path = Path(source)
    if path.is_dir():
        log.info("%s: reading the folder (no archive, so no checksum to verify)", path)
        return (
            DirectoryArchive(path, str(path)),
            {"file": f"{path.name}/", "sha1": None, "verified": VERIFIED_NONE},
            False,
        )
    if path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES):
        archive, record = open_archive(str(path), path.name, CHECKSUM_KEY, checksum, downloads_dir, ranged=False)
        return archive, record, True
    raise DataError(
        f"{source}: neither a folder nor a {'/'.join(ARCHIVE_SUFFIXES)} archive; point data.source at "
        f"the folder of your music, laid out {LAYOUT}"
    )


def log_left_out(label: str, listing: Listing, duplicates: pd.DataFrame) -> None:
    if listing.ignored:
        kinds = Counter(PurePosixPath(name).suffix.lower() or "(none)" for name in listing.ignored)
        log.info(
            "%s: ignored %d files that are hidden or not audio that the decoder reads (%s), by extension %s; e.g. %s",
            label,
            len(listing.ignored),
            " ".join(AUDIO_EXTENSIONS),
            dict(sorted(kinds.items())),
            listing.ignored[:SHOWN_EXAMPLES],
        )
    if listing.unlabelled:
        log.info(
            "%s: ignored %d audio files beside the label folders, in none of them (e.g. %s)",
            label,
            len(listing.unlabelled),
            listing.unlabelled[:SHOWN_EXAMPLES],
        )
    for row in duplicates.itertuples():
        log.info("duplicate left out: %s has the same bytes as %s (kept)", row.source_path, row.kept_path)


def fetch_folder(
    source: str,
    checksum: str | None,
    clips_per_genre: int | None,
    seed: int,
    min_clips: int | None,
    raw_dir: str | Path,
    downloads_dir: str | Path,
) -> dict:
    """Pick the clips of the folder (or archive) ``source`` into ``raw_dir``: audio/<track_id><ext>,
    clips.csv, track_info.csv (title: the file's name), files.csv, duplicates.csv and
    fetch_report.json. Every label must keep ``min_clips`` clips (``check_labels``). Returns the report."""
    raw_dir = Path(raw_dir)
    archive, record, is_archive = open_folder(source, checksum, Path(downloads_dir))
    with archive:
        listing = list_folder(archive.names(), archive.label, is_archive)
        clips, duplicates = drop_duplicates(listing.clips, archive)
        log_left_out(archive.label, listing, duplicates)
        chosen = choose_clips(clips, clips_per_genre, seed)
        counts = {str(g): int(n) for g, n in chosen.groupby("genre").size().items()}
        check_labels(counts, min_clips, archive.label)
        log.info(
            "chose %d of %d clips in %d labels (clips_per_genre=%s, seed=%d): %s",
            len(chosen),
            len(clips),
            len(counts),
            clips_per_genre,
            seed,
            counts,
        )
        targets = [f"{t}{PurePosixPath(m).suffix.lower()}" for t, m in zip(chosen["track_id"], chosen["member"])]
        with atomic_dir(raw_dir) as out:
            chosen = chosen.assign(
                path=extract_clips(archive, chosen["member"], targets, out, raw_dir, "music files"),
                official_split="",
                artist="",
                title=[PurePosixPath(r).stem for r in chosen["relative"]],
            )
            write_csv(out / FILES_FILE, chosen.rename(columns={"relative": "source_path"})[FILES_COLUMNS])
            write_csv(out / DUPLICATES_FILE, duplicates)
            report = {
                "dataset": DATASET,
                "source": source,
                "archives": {CHECKSUM_KEY: record},
                "selection": {"clips_per_genre": clips_per_genre, "seed": seed, "min_clips_per_label": min_clips},
                "skipped": {
                    "ignored_files": ignored_summary(listing.ignored),
                    "unlabelled_files": ignored_summary(listing.unlabelled),
                    "duplicates": ignored_summary(list(duplicates["source_path"])),
                },
            }
            return write_clips_and_report(out, chosen, report)
