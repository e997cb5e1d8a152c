"""Writing outputs atomically and reproducibly (what is written, and how it is read back and
checked, is the contract of ``genreclf.artifacts``).

Every output is first written under a temporary name beside its final path and
renamed into place only once complete, so a failed or interrupted stage never
leaves a file (or a directory) that looks finished.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

# Fixed timestamp for zip members (the earliest a zip can hold), so that the same
# content always gives the same bytes.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# Floats in CSV files: 9 significant digits, enough for float32 features and stable across platforms.
CSV_FLOAT_FORMAT = "%.9g"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes it private (0600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; swap it in for ``path`` on success.

    An existing ``path`` is replaced only after the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
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
