"""Logging set-up shared by the stages: one line per event, on stderr."""

import logging
import sys


def get_logger(name: str) -> logging.Logger:
    """Return a logger that writes ``name: message`` lines to stderr (configured once)."""
    root = logging.getLogger("genreclf")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
    return root.getChild(name)
