"""The common entry point of the stage scripts: clear errors, no tracebacks for bad input."""

from __future__ import annotations

import sys
from typing import Callable

from .errors import GenreError
from .logs import get_logger


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage's ``main``; print a GenreError as one clear line and exit with status 1."""
    log = get_logger(name)
    try:
        main()
    except GenreError as e:
        log.error("error: %s", e)
        sys.exit(1)
    except KeyboardInterrupt:
        log.error("interrupted; nothing was written in place of the outputs")
        sys.exit(130)
