"""Getting archives and pulling clips out of them: the parts shared by FMA and GTZAN.

- ``download`` streams an URL into ``<dest>.part`` with a progress bar, resumes a partial
  ``.part`` with an HTTP Range request, checks the SHA-1 and only then renames the file to
  ``dest``; a file with the wrong SHA-1 is deleted (``ChecksumError``).
- ``open_archive`` gives one interface (``names()``, ``extract()``) over a local zip, a zip
  read by HTTP range requests (remotezip: only the central directory and the chosen members
  travel), a tar archive, or a directory of files already unpacked. Member names are
  checked when an archive is opened: one that would escape the output folder (absolute,
  or with '..') is refused with a ``DataError`` before anything is written. A zip member's
  CRC-32 is checked as it is read (zipfile does it), so a corrupt member fails clearly.
- ``choose_clips`` picks at most N clips per genre, reproducibly from a seed.
- ``clips_to_bucket`` moves the picked clips to GCS (a gs:// data root): each uploaded as an
  object named by its content, listed in raw_manifest.json, and clips.csv rewritten with the
  objects' URLs; the output folder keeps no audio.

How each archive was verified is recorded in ``fetch_report.json`` with one of:

    sha1               the archive's SHA-1 equals data.checksums.<name>
    sha1-not-checked   data.checksums.<name> is null: the SHA-1 was computed and logged only
    member-crc32       read by HTTP range requests, so the archive's SHA-1 cannot be known;
                       every member read was checked against its CRC-32
    none               files already unpacked: nothing to check them against
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import os
import re
import shutil
import tarfile
import urllib.parse
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import requests
from tqdm import tqdm

from genreclf.artifacts import (
    CLIP_COLUMNS,
    CLIPS_FILE,
    TRACK_INFO_FILE,
    ObjectEntry,
    raw_object_name,
    read_clips,
    write_clips,
    write_raw_manifest,
    write_track_info,
)
from genreclf.data import gcs
from genreclf.errors import ChecksumError, DataError
from genreclf.io import atomic_dir, write_json

CHUNK_SIZE = 1 << 20  # bytes per read while hashing and copying
DOWNLOAD_CHUNK_SIZE = 1 << 16  # bytes per network read: a broken connection loses at most this
HTTP_TIMEOUT = (30, 120)  # seconds: connect, and between two reads
USER_AGENT = "genreclf-fetch"
PART_SUFFIX = ".part"
REPORT_FILE = "fetch_report.json"
AUDIO_DIR = "audio"
SHOWN_EXAMPLES = 5  # names quoted in a log line or a report
UPLOAD_THREADS = 8  # clips uploaded at once by clips_to_bucket (network-bound: threads, not processes)
# Files that operating systems and dataset tools leave beside the audio.
STRAY_NAME_RE = re.compile(r"(^\.DS_Store$)|(^\._)|(\.mf$)|(^Thumbs\.db$)|(^desktop\.ini$)", re.IGNORECASE)

VERIFIED_SHA1 = "sha1"
VERIFIED_SHA1_NOT_CHECKED = "sha1-not-checked"
VERIFIED_MEMBER_CRC32 = "member-crc32"
VERIFIED_NONE = "none"

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- sources and URLs


def is_url(source: str) -> bool:
    return urllib.parse.urlsplit(source).scheme in ("http", "https")


def join_url(prefix: str, name: str) -> str:
    """``prefix`` + ``name``, whether or not the prefix ends with a slash."""
    return prefix if prefix.endswith("/" + name) else prefix.rstrip("/") + "/" + name


def public_source(source: str) -> str:
    """The source as it may be written to a report: an URL without user, password or query."""
    if not is_url(source):
        return source
    parts = urllib.parse.urlsplit(source)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def http_session() -> requests.Session:
    session = requests.Session()
    # identity: byte offsets (Range, resume) must refer to the file itself, not a gzip of it.
    session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    return session


# ---------------------------------------------------------------- SHA-1 and downloads


def _hash_file_into(hasher, path: Path, desc: str) -> None:
    size = path.stat().st_size
    with (
        open(path, "rb") as f,
        tqdm(
            total=size,
            desc=desc,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            leave=False,
            disable=size < 64 * CHUNK_SIZE,
        ) as bar,
    ):
        while chunk := f.read(CHUNK_SIZE):
            hasher.update(chunk)
            bar.update(len(chunk))


def sha1_file(path: str | Path) -> str:
    """SHA-1 of a file as 40 lowercase hex digits (a progress bar for large files)."""
    hasher = hashlib.sha1()
    _hash_file_into(hasher, Path(path), f"SHA-1 {Path(path).name}")
    return hasher.hexdigest()


def _checksum_message(path: Path, checksum_key: str, expected: str, actual: str, remedy: str) -> str:
    return (
        f"{path}: SHA-1 is {actual} but data.checksums.{checksum_key} expects {expected}. "
        f"{remedy} If you knowingly use a different archive, set data.checksums.{checksum_key} "
        f"to {actual} (or to null to skip the check)."
    )


def _record_sha1(path: Path, actual: str, expected: str | None, checksum_key: str) -> str:
    if expected is None:
        log.info("%s: SHA-1 %s (not checked: data.checksums.%s is null)", path, actual, checksum_key)
        return VERIFIED_SHA1_NOT_CHECKED
    log.info("%s: SHA-1 %s verified", path, actual)
    return VERIFIED_SHA1


def verify_local_archive(path: str | Path, expected_sha1: str | None, checksum_key: str) -> tuple[str, str]:
    """Hash a local archive (left where it is) and compare; return (sha1, how verified)."""
    path = Path(path)
    actual = sha1_file(path)
    if expected_sha1 is not None and actual != expected_sha1:
        raise ChecksumError(
            _checksum_message(
                path,
                checksum_key,
                expected_sha1,
                actual,
                "The file is damaged or is another version: replace it with a good copy and run again.",
            )
        )
    return actual, _record_sha1(path, actual, expected_sha1, checksum_key)


def _content_range(response: requests.Response) -> tuple[int | None, int | None]:
    """(first byte, total size) from a Content-Range header such as 'bytes 10-99/100' or 'bytes */100'."""
    match = re.match(r"^bytes (?:(\d+)-\d+|\*)/(\d+|\*)$", response.headers.get("Content-Range", "").strip())
    if not match:
        return None, None
    first = int(match[1]) if match[1] is not None else None
    total = int(match[2]) if match[2] != "*" else None
    return first, total


def download(url: str, dest: str | Path, expected_sha1: str | None, checksum_key: str) -> tuple[str, str]:
    """Download ``url`` to ``dest`` and return (sha1, how verified).

    The bytes go to ``dest.part`` first. A ``.part`` left by an interrupted run is resumed
    with ``Range: bytes=<its size>-`` (started over if the server ignores the range). Only a
    file whose SHA-1 matches ``expected_sha1`` (any, when it is None) is renamed to ``dest``;
    on a mismatch the file is deleted and a ``ChecksumError`` says what to do. An existing
    ``dest`` is hashed again and, if it no longer matches, deleted the same way.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + PART_SUFFIX)
    remedy = "The file was deleted: run again to download it anew."
    if dest.exists():
        actual = sha1_file(dest)
        if expected_sha1 is not None and actual != expected_sha1:
            dest.unlink()
            raise ChecksumError(_checksum_message(dest, checksum_key, expected_sha1, actual, remedy))
        part.unlink(missing_ok=True)
        log.info("%s: already downloaded", dest)
        return actual, _record_sha1(dest, actual, expected_sha1, checksum_key)

    dest.parent.mkdir(parents=True, exist_ok=True)
    with http_session() as session:
        hasher = _fetch_into_part(url, part, session)
    actual = hasher.hexdigest()
    if expected_sha1 is not None and actual != expected_sha1:
        part.unlink()
        raise ChecksumError(_checksum_message(dest, checksum_key, expected_sha1, actual, remedy))
    os.replace(part, dest)
    return actual, _record_sha1(dest, actual, expected_sha1, checksum_key)


DOWNLOAD_REMEDY = "check data.source and the network; run again to resume"


def _fetch_into_part(url: str, part: Path, session: requests.Session):
    """Bring ``part`` up to the whole file at ``url``; return a SHA-1 hasher fed with all of it."""
    for _attempt in range(2):  # a second attempt only after a stale .part was discarded
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            response = session.get(url, headers=headers, stream=True, timeout=HTTP_TIMEOUT)
        except requests.RequestException as e:
            raise DataError(f"{url}: cannot connect ({e}); {DOWNLOAD_REMEDY}") from None
        with response:
            if offset and response.status_code == 416:
                _, total = _content_range(response)
                if total == offset:
                    log.info("%s: %s already holds the whole file (%d bytes)", url, part, offset)
                    hasher = hashlib.sha1()
                    _hash_file_into(hasher, part, f"SHA-1 {part.name}")
                    return hasher
                log.warning(
                    "%s: the server refuses to resume at byte %d (file size %s); starting over", url, offset, total
                )
                part.unlink()
                continue
            if response.status_code not in (200, 206):
                raise DataError(f"{url}: HTTP {response.status_code} {response.reason}; {DOWNLOAD_REMEDY}")
            hasher = hashlib.sha1()
            if offset and response.status_code == 206:
                first, _ = _content_range(response)
                if first != offset:
                    raise DataError(
                        f"{url}: asked for bytes from {offset} but the server sent "
                        f"'{response.headers.get('Content-Range')}'; delete {part} and run again"
                    )
                log.info("%s: resuming %s at byte %d", url, part, offset)
                _hash_file_into(hasher, part, f"SHA-1 {part.name}")
                mode = "ab"
            else:
                if offset:
                    log.warning("%s: the server ignored the Range request; downloading the whole file again", url)
                offset, mode = 0, "wb"
            _write_body(response, url, part, mode, offset, hasher)
            return hasher
    raise DataError(f"{url}: cannot resume or restart the download into {part}; delete it and run again")


def _write_body(response: requests.Response, url: str, part: Path, mode: str, offset: int, hasher) -> None:
    """Write ``response``'s body into ``part`` (opened with ``mode``: "ab" after the ``offset`` bytes
    it holds, "wb" from the start), feeding ``hasher``, with a progress bar. A DataError if the body
    breaks off or falls short of its Content-Length; what arrived is kept for the next run."""
    length = response.headers.get("Content-Length")
    total = offset + int(length) if length is not None else None
    received = offset
    try:
        with (
            open(part, mode) as f,
            tqdm(
                total=total,
                initial=offset,
                desc=part.name[: -len(PART_SUFFIX)],
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
            ) as bar,
        ):
            for chunk in response.iter_content(DOWNLOAD_CHUNK_SIZE):
                f.write(chunk)
                hasher.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    except requests.RequestException as e:
        raise DataError(
            f"{url}: the download broke off after {received} bytes ({e}); they are kept in {part}: {DOWNLOAD_REMEDY}"
        ) from None
    if total is not None and received != total:
        raise DataError(f"{url}: got {received} of {total} bytes; they are kept in {part}: {DOWNLOAD_REMEDY}")


# ---------------------------------------------------------------- archives


def check_member_name(name: str, archive: str) -> None:
    """Refuse a member whose path would land outside the output folder (absolute, or with '..')."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix) or ".." in PurePosixPath(posix).parts:
        raise DataError(
            f"{archive}: member '{name}' has a path that would escape the output folder "
            "(absolute, or with '..'); nothing was extracted. This is not a genuine dataset "
            "archive: get it again from the official source (data.source)."
        )


def is_stray(name: str) -> bool:
    """A file the OS or a dataset tool leaves beside the audio (.DS_Store, ._*, *.mf ...)."""
    return bool(STRAY_NAME_RE.search(PurePosixPath(name).name))


class _Archive:
    """What every archive kind offers: names(), extract(pairs, desc), close(); a context manager."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ZipArchive(_Archive):
    """A zip file, local or read over HTTP with range requests (remotezip)."""

    def __init__(self, zip_file: zipfile.ZipFile, label: str, session: requests.Session | None = None):
        self.zip_file, self.label, self.session = zip_file, label, session
        for info in zip_file.infolist():
            check_member_name(info.filename, label)

    def names(self) -> list[str]:
        return sorted(info.filename for info in self.zip_file.infolist() if not info.is_dir())

    def extract(self, pairs: Iterable[tuple[str, Path]], desc: str) -> None:
        """Write each member ``name`` to its ``target`` path, in archive order, checking CRC-32."""
        infos = sorted(
            ((self.zip_file.getinfo(name), Path(target)) for name, target in pairs),
            key=lambda pair: pair[0].header_offset,
        )
        for info, target in tqdm(infos, desc=desc, unit="file"):
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as dst:
                for chunk in self._member_chunks(info):
                    dst.write(chunk)

    def _member_chunks(self, info: zipfile.ZipInfo) -> Iterator[bytes]:
        """The member's bytes; read errors become clear DataError / ChecksumError messages."""
        from remotezip import RemoteZipError
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            with self.zip_file.open(info) as src:
                while chunk := src.read(CHUNK_SIZE):
                    yield chunk
        except (RemoteZipError, requests.RequestException, Urllib3Error, TimeoutError, ConnectionError) as e:
            raise DataError(
                f"{self.label}: reading member '{info.filename}' failed ({e}); check the network and run again"
            ) from None
        except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
            # zipfile raises BadZipFile on a CRC-32 mismatch; bz2 and zlib raise on a broken stream.
            raise ChecksumError(
                f"{self.label}: member '{info.filename}' is corrupt: its data fails to "
                f"decompress or to match its CRC-32 ({e}). Delete the "
                "archive (under data/downloads/ if it was downloaded) and run again "
                "to get a good copy."
            ) from None

    def close(self) -> None:
        self.zip_file.close()
        if self.session is not None:
            self.session.close()


class TarArchive(_Archive):
    """A tar file (.tar, .tar.gz ...), checked member by member with tarfile's 'data' filter."""

    def __init__(self, path: Path, label: str):
        self.label = label
        try:
            self.tar_file = tarfile.open(path, "r:*")
            members = self.tar_file.getmembers()
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise DataError(f"{label}: not a readable tar archive ({e}); delete it and get a good copy") from None
        self.files: dict[str, tarfile.TarInfo] = {}
        skipped = []
        for member in members:
            check_member_name(member.name, label)
            try:
                tarfile.data_filter(member, "/nonexistent-extraction-root")
            except tarfile.FilterError as e:
                raise DataError(
                    f"{label}: member '{member.name}' is refused ({e}); nothing was extracted. "
                    "This is not a genuine dataset archive: get it again."
                ) from None
            name = str(PurePosixPath(member.name))
            if member.isfile():
                self.files[name] = member
            elif not member.isdir():
                skipped.append(name)
        if skipped:
            log.warning(
                "%s: ignored %d members that are links or special files: %s",
                label,
                len(skipped),
                skipped[:SHOWN_EXAMPLES],
            )

    def names(self) -> list[str]:
        return sorted(self.files)

    def extract(self, pairs: Iterable[tuple[str, Path]], desc: str) -> None:
        # In archive order: a compressed tar is read forward once, not rewound per member.
        members = sorted(
            ((self.files[name], Path(target)) for name, target in pairs), key=lambda pair: pair[0].offset_data
        )
        for member, target in tqdm(members, desc=desc, unit="file"):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with self.tar_file.extractfile(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK_SIZE)
            except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
                raise DataError(
                    f"{self.label}: member '{member.name}' cannot be read ({e}); the archive is "
                    "damaged: delete it and get a good copy"
                ) from None

    def close(self) -> None:
        self.tar_file.close()


class DirectoryArchive(_Archive):
    """Files already unpacked under ``root`` (optionally only those under ``root/subdir``)."""

    def __init__(self, root: Path, label: str, subdir: str | None = None):
        self.root, self.label, self.subdir = Path(root), label, subdir

    def names(self) -> list[str]:
        top = self.root / self.subdir if self.subdir else self.root
        names = []
        for folder, dirs, files in os.walk(top):
            dirs.sort()
            for file in files:
                names.append((Path(folder) / file).relative_to(self.root).as_posix())
        return sorted(names)

    def extract(self, pairs: Iterable[tuple[str, Path]], desc: str) -> None:
        for name, target in tqdm(list(pairs), desc=desc, unit="file"):
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.root / name, target)


def _open_zip(path_or_url: str | Path, label: str) -> ZipArchive:
    from remotezip import RangeNotSupported, RemoteZip, RemoteZipError

    session = http_session() if is_url(str(path_or_url)) else None
    try:
        if session is not None:
            zip_file = RemoteZip(str(path_or_url), session=session, timeout=HTTP_TIMEOUT)
        else:
            zip_file = zipfile.ZipFile(path_or_url)
    except RangeNotSupported:
        raise DataError(
            f"{label}: the server does not answer HTTP Range requests, so single clips cannot be "
            "read out of the archive; set data.clips_per_genre to null (whole download) or use "
            "a mirror that supports ranges"
        ) from None
    except RemoteZipError as e:
        raise DataError(
            f"{label}: cannot read the archive over HTTP ({e}); check data.source and the network, then run again"
        ) from None
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(
            f"{label}: not a readable zip archive ({e}); check data.source, or delete a damaged download and run again"
        ) from None
    try:
        return ZipArchive(zip_file, label, session)
    except DataError:
        zip_file.close()
        raise


def open_archive(
    source: str, file_name: str, checksum_key: str, expected_sha1: str | None, downloads_dir: Path, ranged: bool
):
    """Open the archive ``file_name`` from ``source`` and say how it was verified.

    ``source`` is an URL prefix (or the URL of the file itself) or a local directory or file.
    From an URL, ``ranged`` reads a zip by HTTP range requests (no SHA-1: each member's
    CRC-32 is checked instead); otherwise the whole file is downloaded into ``downloads_dir``
    and its SHA-1 checked. A local file is hashed where it lies. Returns
    (archive, report record with 'file', 'sha1' and 'verified').
    """
    is_zip = file_name.endswith(".zip")
    if is_url(source):
        url = join_url(source, file_name)
        if ranged and is_zip:
            log.info(
                "%s: reading the central directory and the chosen members by HTTP range requests "
                "(the archive's SHA-1 cannot be checked this way; each member's CRC-32 is)",
                public_source(url),
            )
            archive = _open_zip(url, public_source(url))
            return archive, {"file": file_name, "sha1": None, "verified": VERIFIED_MEMBER_CRC32}
        if ranged:
            log.info("%s: a %s cannot be read piecewise; downloading it whole", public_source(url), file_name)
        path = Path(downloads_dir) / file_name
        sha1, verified = download(url, path, expected_sha1, checksum_key)
    else:
        path = Path(source) if Path(source).is_file() else Path(source) / file_name
        if not path.is_file():
            raise DataError(f"{path}: no such archive; point data.source at the folder that holds {file_name}")
        sha1, verified = verify_local_archive(path, expected_sha1, checksum_key)
    archive = _open_zip(path, str(path)) if is_zip else TarArchive(path, str(path))
    return archive, {"file": file_name, "sha1": sha1, "verified": verified}


# ---------------------------------------------------------------- choosing and writing clips


def choose_clips(clips: pd.DataFrame, clips_per_genre: int | None, seed: int) -> pd.DataFrame:
    """All clips, or at most ``clips_per_genre`` per genre chosen reproducibly from ``seed``.

    Genres are taken in sorted order, each genre's ids sorted, and one
    ``numpy.random.default_rng(seed)`` samples ``min(N, count)`` ids without replacement.
    The result is sorted by track_id.
    """
    if clips_per_genre is not None:
        rng = np.random.default_rng(seed)
        chosen = []
        for genre in sorted(clips["genre"].unique()):
            ids = np.array(sorted(clips.loc[clips["genre"] == genre, "track_id"]))
            picked = rng.choice(ids, size=min(clips_per_genre, len(ids)), replace=False)
            chosen.extend(sorted(str(track_id) for track_id in picked))
        clips = clips[clips["track_id"].isin(chosen)]
    return clips.sort_values("track_id").reset_index(drop=True)


def extract_clips(
    archive, members: Iterable[str], targets: list[str], out_dir: Path, raw_dir: Path, desc: str
) -> list[str]:
    """Extract each of ``members`` to ``out_dir``/audio/<its target> (``out_dir``: the temporary
    folder that becomes ``raw_dir``); the clips' paths as they will be, under ``raw_dir``."""
    archive.extract([(member, out_dir / AUDIO_DIR / target) for member, target in zip(members, targets)], desc=desc)
    return [(Path(raw_dir) / AUDIO_DIR / target).as_posix() for target in targets]


def log_ignored(label: str, ignored: list[str]) -> None:
    if ignored:
        log.info("%s: ignored %d files that are not clips (e.g. %s)", label, len(ignored), ignored[:SHOWN_EXAMPLES])


def ignored_summary(ignored: list[str]) -> dict:
    return {"count": len(ignored), "examples": sorted(ignored)[:SHOWN_EXAMPLES]}


def write_clips_and_report(out_dir: Path, clips: pd.DataFrame, report: dict) -> dict:
    """Write clips.csv (rows sorted by track_id), track_info.csv (the artist and title of each
    clip where ``clips`` has them, else '') and fetch_report.json into ``out_dir``.

    The report gets the number of clips, in all and per genre; it is returned.
    """
    write_track_info(Path(out_dir) / TRACK_INFO_FILE, clips)
    clips = write_clips(Path(out_dir) / CLIPS_FILE, clips)
    counts = clips.groupby("genre").size()
    report = dict(report, clips=len(clips), clips_per_genre={str(g): int(n) for g, n in counts.items()})
    write_json(Path(out_dir) / REPORT_FILE, report)
    return report


# ---------------------------------------------------------------- clips on GCS


def upload_clip(local: str, relative: str, prefix: str) -> tuple[ObjectEntry, bool]:
    """Upload the clip file ``local`` as ``<prefix>/<raw_object_name(relative, its MD5)>`` unless that
    object is there already (``gcs.upload``); (its entry, whether it was uploaded)."""
    return gcs.upload(local, gcs.join(prefix, raw_object_name(relative, gcs.file_digest(local))))


def clips_to_bucket(raw_dir: str | Path, prefix: str) -> tuple[int, int]:
    """Move the clips of ``raw_dir`` (its clips.csv, files under its audio/ folder) to the gs://
    ``prefix``: each uploaded as the object ``<prefix>/<path below audio/ with its MD5 before the
    extension>`` (one object per content: a rerun uploads nothing). Then ``raw_dir`` is swapped for
    a folder with raw_manifest.json (every object's track id, URL, size and MD5, written after
    them), clips.csv with the objects' URLs in its path column, and its other files as they were:
    no audio. Returns (objects uploaded, objects there already)."""
    raw_dir = Path(raw_dir)
    clips = read_clips(raw_dir / CLIPS_FILE)
    audio_dir = (raw_dir / AUDIO_DIR).as_posix()
    relatives = [PurePosixPath(clip.path).relative_to(audio_dir).as_posix() for clip in clips]
    jobs = [(clip.path, relative) for clip, relative in zip(clips, relatives)]
    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
        uploads = pool.map(lambda job: upload_clip(*job, prefix), jobs)
        outcomes = list(tqdm(uploads, total=len(jobs), desc="upload clips", unit="clip"))
    objects = {clip.track_id: entry for clip, (entry, _) in zip(clips, outcomes)}
    with atomic_dir(raw_dir) as tmp:
        for kept in sorted(p for p in raw_dir.iterdir() if p.is_file() and p.name != CLIPS_FILE):
            shutil.copyfile(kept, tmp / kept.name)
        write_raw_manifest(tmp, prefix, objects)
        moved = [dataclasses.astuple(dataclasses.replace(c, path=objects[c.track_id].url)) for c in clips]
        write_clips(tmp / CLIPS_FILE, pd.DataFrame(moved, columns=CLIP_COLUMNS))
    uploaded = sum(was_uploaded for _, was_uploaded in outcomes)
    return uploaded, len(outcomes) - uploaded
