"""Objects on Google Cloud Storage: where the large outputs go when the data root is a gs:// prefix.

The workers write each object (a clip's WAV, a shard) to a local temporary file first, with
the same code as a local run, then upload it here with gcsfs: the object holds exactly the
bytes a local run writes. Every object is described by an ``ObjectEntry`` (URL, size, MD5): GCS
computes the MD5 of every object it stores (``md5Hash``), so an object can be checked
against its entry from its metadata alone, without reading it.

gcsfs finds the credentials in the environment (Application Default Credentials:
``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth application-default login``, or the
metadata server on GCP). With ``STORAGE_EMULATOR_HOST`` set (a local emulator) it talks
to that endpoint, anonymously.

gcsfs is imported only when a gs:// root is used.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from genreclf.artifacts import SCHEME, ObjectEntry
from genreclf.errors import DataError, GenreError, RemoteObjectError

EMULATOR_VARIABLE = "STORAGE_EMULATOR_HOST"
READ_BLOCK_BYTES = 1 << 20
CREDENTIALS_HINT = (
    "check that the bucket exists, that this machine can reach it and that the credentials in the environment "
    "may use it (gcloud auth application-default login, or GOOGLE_APPLICATION_CREDENTIALS=key.json)"
)


def is_remote(root: str | Path | None) -> bool:
    """Whether ``root`` is a gs:// prefix (rather than a folder of the workspace)."""
    return isinstance(root, str) and root.startswith(SCHEME)


def join(root: str, *parts: str) -> str:
    """``root/part/...`` as a URL (a Path would turn gs:// into gs:/)."""
    return "/".join([root.rstrip("/"), *(part.strip("/") for part in parts)])


def filesystem():
    """A gcsfs filesystem: the emulator's, anonymously, when STORAGE_EMULATOR_HOST is set."""
    import gcsfs

    token = "anon" if os.environ.get(EMULATOR_VARIABLE) else None
    return gcsfs.GCSFileSystem(token=token)


@contextlib.contextmanager
def reaching(url: str) -> Iterator[None]:
    """A failure of GCS itself (no such bucket, no credentials, no access, no network) raised as a
    DataError that names ``url``, what failed and what to check."""
    try:
        yield
    except GenreError:
        raise
    except Exception as e:
        raise DataError(f"{url}: {type(e).__name__}: {e}; {CREDENTIALS_HINT}", path=url) from None


def stream_digest(stream, algorithm: str = "md5") -> str:
    """The hexadecimal digest (hashlib ``algorithm``) of what a binary stream holds, read in blocks."""
    digest = hashlib.new(algorithm)
    while block := stream.read(READ_BLOCK_BYTES):
        digest.update(block)
    return digest.hexdigest()


def file_digest(path: str | Path, algorithm: str = "md5") -> str:
    """The hexadecimal digest (hashlib ``algorithm``) of a local file's content."""
    with open(path, "rb") as file:
        return stream_digest(file, algorithm)


def stored_md5(info: dict, fs, url: str) -> str:
    """The MD5 of a stored object: GCS's md5Hash (base64) as hexadecimal, or, for an object GCS
    keeps none of (a composite object), the MD5 of its content, read."""
    encoded = info.get("md5Hash")
    if encoded:
        return base64.b64decode(encoded).hex()
    with fs.open(url, "rb") as stream:
        return stream_digest(stream)


def stat(fs, url: str) -> ObjectEntry | None:
    """The entry of the object stored at ``url`` now, or None if there is none."""
    fs.invalidate_cache(url)
    try:
        info = fs.info(url)
    except FileNotFoundError:
        return None
    if info.get("type") != "file":
        return None
    return ObjectEntry(url, int(info["size"]), stored_md5(info, fs, url))


@contextlib.contextmanager
def scratch_file(suffix: str) -> Iterator[str]:
    """The path of a new, empty local temporary file, deleted after the block: where a worker writes
    an object's bytes, with the code of a local run, before it uploads them."""
    handle, local = tempfile.mkstemp(prefix="genreclf-", suffix=suffix)
    os.close(handle)
    try:
        yield local
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(local)


def read_bytes(url: str) -> bytes:
    """The content of the object at ``url``, read whole (one request); a DataError naming it if
    there is no such object or it cannot be read."""
    with reaching(url):
        try:
            return filesystem().cat_file(url)
        except FileNotFoundError:
            raise DataError(f"{url}: no such object on the bucket", path=url) from None


def upload(local_path: str | Path, url: str) -> tuple[ObjectEntry, bool]:
    """Put the local file at ``url`` unless an object with the same content is there already.

    Returns (its entry, whether it was uploaded). Objects under a content-addressed prefix
    never change, so a rerun uploads nothing; an object there with other content (damaged,
    or left by an older version of the code) is replaced. The upload is checked: the stored
    object must have the file's size and MD5.
    """
    entry = ObjectEntry(url, os.path.getsize(local_path), file_digest(local_path))
    with reaching(url):
        fs = filesystem()
        if stat(fs, url) == entry:
            return entry, False
        fs.put_file(str(local_path), url)
        stored = stat(fs, url)
    if stored != entry:
        raise DataError(
            f"{url}: the upload of {local_path} ({entry.size} bytes, MD5 {entry.md5}) stored "
            f"{describe(stored)}; check the bucket and the network, then run again",
            path=url,
        )
    return entry, True


def describe(entry: ObjectEntry | None) -> str:
    return "no object" if entry is None else f"{entry.size} bytes with MD5 {entry.md5}"


def listed(fs, urls: Sequence[str]) -> dict[str, ObjectEntry]:
    """The stored entries of ``urls``: one listing per folder they lie in, not one request each."""
    found = {}
    for folder in sorted({url.rsplit("/", 1)[0] for url in urls}):
        try:
            infos = fs.ls(folder, detail=True, refresh=True)
        except FileNotFoundError:
            continue
        for info in infos:
            url = SCHEME + info["name"].removeprefix(SCHEME)
            if info.get("type") == "file":
                found[url] = ObjectEntry(url, int(info["size"]), stored_md5(info, fs, url))
    return found


def check_objects(expected: Sequence[ObjectEntry], listed_in: str | Path) -> None:
    """Every object of ``expected`` is on the bucket with its size and MD5, or a DataError that
    names the first one that is not, what was expected and what was found; ``listed_in`` is
    the file (the manifest) that lists them, which the error's ``path`` names."""
    if not expected:
        return
    with reaching(expected[0].url):
        stored = listed(filesystem(), [entry.url for entry in expected])
    bad = [entry for entry in expected if stored.get(entry.url) != entry]
    if bad:
        first = bad[0]
        raise RemoteObjectError(
            f"{first.url}: expected {describe(first)} (as {listed_in} lists it), found "
            f"{describe(stored.get(first.url))} on the bucket ({len(bad)} of the {len(expected)} objects "
            "differ); the objects were deleted or changed since they were written: write them again",
            path=listed_in,
        )
