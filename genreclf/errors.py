"""Errors that carry a message meant for a person: what was wrong, where, and what to do."""


class GenreError(Exception):
    """Base class: the stage prints the message and exits non-zero, with no traceback."""


class ParamError(GenreError):
    """A value in params.yaml is missing or invalid. Raised before any heavy work starts."""


class DataError(GenreError):
    """An input file is missing, malformed or inconsistent."""


class ChecksumError(DataError):
    """A downloaded archive does not have the expected SHA-1 (or a member its CRC-32)."""
