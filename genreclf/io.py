"""Writing outputs atomically and reproducibly (what is written, and how it is read back and
checked, is the contract of ``genreclf.artifacts``).

Every output is first written under a temporary name beside its final path and
renamed into place only once complete, so a failed or interrupted stage never
leaves a file (or a directory) that looks finished, nor the temporary one.

An OSError that the operating system raises for a file (a full disk, no permission, ...)
becomes a FileSystemError (``file_error``): one line naming the file by its final name,
what happened in words and what to do.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from genreclf.errors import FileSystemError

# Fixed timestamp for zip members (the earliest a zip can hold), so that the same
# content always gives the same bytes.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# Floats in CSV files: 9 significant digits, enough for float32 features and stable across platforms.
CSV_FLOAT_FORMAT = "%.9g"


# What each error of the operating system means, in words, and what to do about it.
ERRNO_WORDS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files",
    errno.ENOENT: "the file vanished",
}


def human_bytes(n: float) -> str:
    """A size for a person, in decimal units: 10.6 GB, 3.2 MB, 512 B."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def existing_ancestor(path: str | Path) -> Path:
    """``path`` or the nearest folder above it that exists (where a file to be written will go)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | Path) -> int:
    """The bytes that this user may still write on the disk (file system) of ``path``."""
    stat = os.statvfs(existing_ancestor(path))
    return stat.f_bavail * stat.f_frsize


def shown_path(path: str | Path) -> str:
    """``path`` relative to the working directory when it is below it, else as given."""
    text = os.fspath(path)
    if os.path.isabs(text):
        relative = os.path.relpath(text)
        if not relative.startswith(".."):
            return relative
    return text


def errno_remedy(code: int | None, path: str | None) -> str:
    """What to do about an error of the operating system on ``path``."""
    if code in (errno.ENOSPC, errno.EDQUOT):
        free = f" ({human_bytes(free_bytes(path))} free now)" if path else ""
        return f"free space on its disk{free} and rerun the stage"
    if code in (errno.EACCES, errno.EPERM):
        return f"give user {os.getuid()} write access to it (or run in a copy of the project this user owns) and rerun"
    if code == errno.EROFS:
        return "remount its disk read-write, or run in a copy of the project on a writable disk, and rerun"
    if code in (errno.EMFILE, errno.ENFILE):
        try:
            import resource

            limit = f"; now {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}"
        except (ImportError, OSError):
            limit = ""
        return f"raise the limit on open files (ulimit -n{limit}) and rerun"
    if code == errno.ENOENT:
        return "something removed it while the stage ran; restore it (dvc checkout) and rerun"
    return "check the disk and rerun"


def file_error(error: OSError, path: str | Path | None = None) -> FileSystemError:
    """The FileSystemError of an OSError: ``path`` (else the error's own file name) named, what
    happened in words (``ERRNO_WORDS``), the system's message and what to do, on one line."""
    if isinstance(error, FileSystemError):
        return error
    code = error.errno
    named = path if path is not None else error.filename
    shown = shown_path(named) if named is not None else None
    words = ERRNO_WORDS.get(code, "the operating system refused it")
    detail = error.strerror or str(error) or type(error).__name__
    name = errno.errorcode.get(code, "") if code is not None else ""
    where = f"{shown}: " if shown else "opening a file or pipe: " if code in (errno.EMFILE, errno.ENFILE) else ""
    message = f"{where}{words} ({detail}{', ' + name if name else ''}); {errno_remedy(code, named)}"
    return FileSystemError(message, path=shown, errno=code)


def renamed_error(error: FileSystemError, tmp: Path, final: Path) -> FileSystemError:
    """``error`` with the temporary name ``tmp`` (a file or a folder) replaced by the final one."""
    if error.path is None:
        return error
    old, new = shown_path(os.path.abspath(tmp)), shown_path(os.path.abspath(final))
    if error.path != old and not error.path.startswith(old + os.sep):
        return error
    path = new + error.path[len(old) :]
    return FileSystemError(str(error).replace(error.path, path, 1), path=path, errno=error.errno)


@contextlib.contextmanager
def translated(tmp: Path | None, final: Path) -> Iterator[None]:
    """An OSError inside the block raised as a FileSystemError; the file name ``tmp`` (or a file in
    it) is given as ``final`` (or the same file in it). With ``tmp`` None, the error names ``final``
    (the block makes a temporary name for it)."""
    try:
        yield
    except FileSystemError as e:
        raise (e if tmp is None else renamed_error(e, tmp, final)) from None
    except OSError as e:
        if e.errno is None:
            raise
        if tmp is None or not e.filename:  # a write's error names no file: it is the one being written
            raise file_error(e, final) from None
        raise renamed_error(file_error(e), tmp, final) from None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    with translated(None, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    tmp = Path(tmp)
    try:
        with translated(tmp, path):
            yield tmp
            os.chmod(tmp, 0o644)  # mkstemp makes it private (0600)
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; swap it in for ``path`` on success.

    An existing ``path`` is replaced only after the new one is complete.
    """
    path = Path(path)
    with translated(None, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        with translated(tmp, path):
            yield tmp
            os.chmod(tmp, 0o755)  # mkdtemp makes it private (0700)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj) -> None:
    """Write ``obj`` as indented JSON with sorted keys (stable bytes for the same content)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_csv(path: str | Path, frame, float_format: str = CSV_FLOAT_FORMAT) -> None:
    """Write a pandas DataFrame as CSV, without its index, atomically and reproducibly."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format=float_format, lineterminator="\n")


def write_csv_rows(path: str | Path, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    """``write_csv`` without pandas, for rows of strings and integers: the same bytes as a DataFrame
    of them written by ``write_csv`` (pandas writes with the csv module's dialect used here)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)


def reproducible_zip(data: bytes, drop_json_keys: dict[str, list[str]] | None = None) -> bytes:
    """Rewrite a zip archive with fixed member timestamps and members in name order.

    Model files saved by Keras (``.keras``) and skops (``.skops``) are zip archives
    stamped with the time of saving; this makes the same model give the same bytes.
    ``drop_json_keys`` maps a JSON member name to keys to remove from it
    (e.g. ``{"metadata.json": ["date_saved"]}``).
    """
    drop_json_keys = drop_json_keys or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for name in sorted(src.namelist()):
            content = src.read(name)
            if name in drop_json_keys:
                obj = json.loads(content)
                for key in drop_json_keys[name]:
                    obj.pop(key, None)
                content = json.dumps(obj, sort_keys=True).encode()
            dst.writestr(reproducible_member(name), content)
    return out.getvalue()


def reproducible_member(name: str) -> zipfile.ZipInfo:
    """The entry of a member of a reproducible zip: fixed timestamp and mode, deflated."""
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info
