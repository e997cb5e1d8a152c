"""Stage fetch: get the dataset's archives, verify them, and pick the clips into data/raw.

Reads params data.{dataset, source, checksums, clips_per_genre, seed, root}, split.fractions (with
data.dataset folder: a label with too few clips to be in every split stops the run before any
decoding, genreclf.data.splits.min_clips_per_genre).
Writes data/raw/{clips.csv, track_info.csv (artist and title where FMA's tracks.csv has them;
blank for GTZAN; a folder's file name as title), fetch_report.json, audio/} (a folder dataset
also files.csv, where each clip came from, and duplicates.csv); whole downloads (and .part files
being resumed) go to data/downloads/, which DVC keeps between runs.
With data.root a gs:// prefix, the clips are then uploaded as objects
<root>/data/raw/audio/<path below audio/ with its MD5 before the extension>
(genreclf.data.fetch.clips_to_bucket) and data/raw/audio is gone: data/raw holds
raw_manifest.json (every object's track id, URL, size and MD5) instead, and the path
column of clips.csv holds the URLs.
"""

from __future__ import annotations

from pathlib import Path

from genreclf import catalog, space
from genreclf.artifacts import RAW_AUDIO_DIR, RAW_DIR, RAW_MANIFEST_FILE
from genreclf.data import gcs
from genreclf.data.fetch import clips_to_bucket, is_url, public_source
from genreclf.data.fma import fetch_fma
from genreclf.data.folder import fetch_folder
from genreclf.data.gtzan import fetch_gtzan
from genreclf.data.splits import min_clips_per_genre
from genreclf.errors import ParamError
from stages.common import cache_mirrors, run_stage, stage_logger
from stages.config import PARAMS_FILE, DataSection, load_config

DOWNLOADS_DIR = Path("data/downloads")
OFFICIAL_SOURCE = "https://os.unil.cloud.switch.ch/fma/"

log = stage_logger("fetch")


def check_source(data: DataSection) -> None:
    """data.source: an http(s) URL prefix, or something on this disk (checked here, as only fetch reads it)."""
    path = Path(data.source)
    if data.dataset == catalog.FOLDER:  # your own music: on this disk
        if not is_url(data.source) and (path.is_dir() or path.is_file()):
            return
        raise ParamError(
            f"{PARAMS_FILE}: data.source = {data.source!r} is not an existing folder or archive file; point it "
            "at the folder of your music, laid out <label>/.../<file>, or a .zip / .tar.gz of it (docs/own-music.md)"
        )
    if is_url(data.source) or path.is_dir() or (data.dataset == catalog.GTZAN and path.is_file()):
        return
    what = "an http(s) URL prefix or an existing folder" + (" or archive file" if data.dataset == catalog.GTZAN else "")
    raise ParamError(
        f"{PARAMS_FILE}: data.source = {data.source!r} is not {what}; fix the path, or use the "
        f"official URL {OFFICIAL_SOURCE} (or a mirror)"
    )


def checksums(data: DataSection) -> dict[str, str | None]:
    """The SHA-1 of each archive listed in data.checksums, lower case (null: not checked)."""
    return {
        key: (value.lower() if value else None) for key, value in data.checksums.model_dump(exclude_unset=True).items()
    }


def main() -> None:
    config = load_config()
    data = config.data
    check_source(data)
    sha1s = checksums(data)
    log.info(
        "read params: dataset=%s source=%s clips_per_genre=%s seed=%d root=%s",
        data.dataset,
        public_source(data.source),
        data.clips_per_genre,
        data.seed,
        data.root,
    )
    if space.check_enabled():
        check_fetch_space(data)
    DOWNLOADS_DIR.mkdir(parents=True, exist_ok=True)  # a DVC output, even when nothing is downloaded
    if data.dataset == catalog.GTZAN:
        report = fetch_gtzan(
            data.source, sha1s.get(catalog.GTZAN), data.clips_per_genre, data.seed, RAW_DIR, DOWNLOADS_DIR
        )
    elif data.dataset == catalog.FOLDER:  # split.method is stratified (stages.config)
        fewest = min_clips_per_genre(config.split.fractions.model_dump())
        report = fetch_folder(
            data.source, sha1s.get(catalog.FOLDER), data.clips_per_genre, data.seed, fewest, RAW_DIR, DOWNLOADS_DIR
        )
    else:
        report = fetch_fma(data.dataset, data.source, sha1s, data.clips_per_genre, data.seed, RAW_DIR, DOWNLOADS_DIR)
    for name, archive in report["archives"].items():
        log.info("archive %s (%s): sha1 %s, verified: %s", name, archive["file"], archive["sha1"], archive["verified"])
    for what, value in report["skipped"].items():
        log.info("skipped %s: %s", what, value)
    where = f"{RAW_AUDIO_DIR}/"
    if gcs.is_remote(data.root):
        where = move_to_bucket(data.root)
    log.info(
        "wrote %s/clips.csv (%d clips: %s), %s/track_info.csv, %s/fetch_report.json and %d clips to %s",
        RAW_DIR,
        report["clips"],
        report["clips_per_genre"],
        RAW_DIR,
        RAW_DIR,
        report["clips"],
        where,
    )


def check_fetch_space(data: DataSection) -> None:
    """The whole archive downloaded (unless read by ranges, or partly there already) and the chosen
    clips extracted to data/raw/audio (with a gs:// data.root too: they are uploaded from there)."""
    whole = is_url(data.source) and (data.clips_per_genre is None or data.dataset == catalog.GTZAN)
    archive, clips = space.fetch_bytes(data.dataset, data.clips_per_genre, whole)
    if data.dataset == catalog.FOLDER:  # its files copied, at most
        clips = space.folder_bytes(data.source)
    needs = [
        space.Need("archive", max(archive - space.folder_bytes(DOWNLOADS_DIR), 0), DOWNLOADS_DIR),
        space.Need("clips", clips, RAW_AUDIO_DIR),
    ]
    space.check_space("fetch", needs, cache_mirrors(), "choose fewer clips (data.clips_per_genre)")


def move_to_bucket(root: str) -> str:
    """The clips of data/raw/audio uploaded under ``root`` and listed in data/raw/raw_manifest.json
    (data/raw then holds no audio); where they are."""
    prefix = gcs.join(root, RAW_AUDIO_DIR.as_posix())
    uploaded, already = clips_to_bucket(RAW_DIR, prefix)
    log.info(
        "uploaded %d clips to %s/; %d were there already with the same bytes; listed them in %s/%s",
        uploaded,
        prefix,
        already,
        RAW_DIR,
        RAW_MANIFEST_FILE,
    )
    return f"{prefix}/"


if __name__ == "__main__":
    run_stage("fetch", main)
