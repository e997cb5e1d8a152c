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


class FileSystemError(DataError):
    """The operating system refused a file operation (a full disk, no permission, a read-only file
    system, too many open files, a file that vanished); ``path`` names the file, ``errno`` the error.

    It crosses a process boundary intact (a worker of a process pool or of Beam raises it): it
    pickles as its message, path and errno."""

    def __init__(self, message: str, path=None, errno: int | None = None):
        super().__init__(message, path=path)
        self.errno = errno

    def __reduce__(self):
        return (type(self), (str(self), self.path, self.errno))


class NotEnoughSpaceError(GenreError):
    """A stage's outputs would not fit on their disk: raised before any work (genreclf.space)."""

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = None if path is None else str(path)

    def __reduce__(self):
        return (type(self), (str(self), self.path))
