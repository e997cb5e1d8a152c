"""librosa's numba gufuncs, compiled once before parallel processes start.

librosa declares its gufuncs with ``numba.guvectorize(..., cache=True)`` and explicit
signatures, so numba compiles them when their module is imported and keeps the machine code
in ``__pycache__`` beside librosa (or in ``NUMBA_CACHE_DIR``). Each gufunc is two cache files
(the function and its ``guf-`` wrapper). Processes that compile the same gufunc at once can
leave a pair written by two different processes, and a process that loads such a pair dies
with a segmentation fault (numba issue 10128). That happens on a fresh install, when several
processes (feature workers, test processes) import librosa for the first time together.

``compile_librosa_gufuncs()`` imports every librosa module that declares one, in this process:
the processes started after it load a cache written by one process.
"""

from __future__ import annotations

import importlib

# Every librosa module with a cached guvectorize (tests/test_librosa_cache.py checks the list
# against librosa's source).
GUFUNC_MODULES = ("librosa.beat", "librosa.core.audio", "librosa.core.pitch", "librosa.util.utils")


def compile_librosa_gufuncs() -> None:
    """Compile (or load from the cache) all of librosa's cached gufuncs in this process."""
    for name in GUFUNC_MODULES:
        importlib.import_module(name)


if __name__ == "__main__":  # a setup step: python -m genreclf.features.librosa_cache
    compile_librosa_gufuncs()
