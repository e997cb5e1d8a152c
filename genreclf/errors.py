"""Errors that carry a message meant for a person: what was wrong, where, and what to do.

A DataError may carry ``path``, the file or folder at fault. The library never says
which pipeline stage makes that file: the stage layer (``stages.common``) adds that hint.
"""

from __future__ import annotations


class GenreError(Exception):
    """Base class: the stage prints the message and exits non-zero, with no traceback."""


class ParamError(GenreError):
    """A setting is missing or invalid. Raised before any heavy work starts."""


class DataError(GenreError):
    """An input file is missing, malformed or inconsistent; ``path`` names it when known."""

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = None if path is None else str(path)


class ChecksumError(DataError):
    """A downloaded archive does not have the expected SHA-1 (or a member its CRC-32)."""


class RemoteObjectError(DataError):
    """An object on the bucket is missing or differs from the manifest that lists it (``path``)."""
