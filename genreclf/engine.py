"""Where the per-clip work of convert, shard and features runs: this machine (local) or Apache Beam.

The engine is a runtime setting, not a param: the same per-clip functions run on either
engine and the calling process (the driver) writes every table from their results, in
input order, so the outputs are the same bytes whichever engine made them.

- ``GENRECLF_ENGINE``: ``local`` (the default: one process per core of this machine) or
  ``beam`` (an Apache Beam pipeline, ``genreclf.beam``; needs the optional extra
  ``requirements-beam.txt``).
- ``GENRECLF_BEAM_OPTIONS``: Beam pipeline options, as on a command line
  (``--runner=DataflowRunner --project=... --region=... --temp_location=gs://...``). Without a
  ``--runner`` the pipeline runs in process groups on this machine (FnApiRunner, one worker
  process per core) and nothing is downloaded.

An OSError in a worker (a full disk, too many open files, ...) comes back as the project's
FileSystemError (``Guarded``): one line naming the file, which survives the process boundary.

This module imports nothing heavy: the local engine never imports apache_beam.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from genreclf.errors import GenreError, ParamError
from genreclf.io import file_error

ENGINE_VARIABLE = "GENRECLF_ENGINE"
OPTIONS_VARIABLE = "GENRECLF_BEAM_OPTIONS"
LOCAL, BEAM = "local", "beam"
ENGINES = (LOCAL, BEAM)
BEAM_EXTRA = "requirements-beam.txt"
# One BLAS/OpenMP thread per worker process: the workers already use every core.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Engine:
    """The chosen engine; ``beam_options``: the checked pipeline options (beam only)."""

    name: str = LOCAL
    beam_options: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.name == BEAM:
            return f"beam ({' '.join(self.beam_options)})"
        return "local (this machine's processes)"


def engine_from_environ(environ=None) -> Engine:
    """The engine that GENRECLF_ENGINE and GENRECLF_BEAM_OPTIONS ask for, checked.

    Raises ParamError, naming the variable, what it holds, what is expected and what to do.
    For beam this imports apache_beam and parses the options: call it before any heavy work.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(ENGINE_VARIABLE, "")
    name = raw.strip().lower() or LOCAL
    if name not in ENGINES:
        raise ParamError(
            f"{ENGINE_VARIABLE}={raw!r}: expected one of {', '.join(ENGINES)}; unset it (or set it to "
            f"'{LOCAL}') to run on this machine's processes, or set '{BEAM}' to run an Apache Beam pipeline"
        )
    if name == LOCAL:
        return Engine()
    text = environ.get(OPTIONS_VARIABLE, "")
    try:
        flags = shlex.split(text)
    except ValueError as e:
        raise ParamError(
            f"{OPTIONS_VARIABLE}={text!r}: cannot split it into options ({e}); quote it as a shell would"
        ) from None
    try:
        from genreclf import beam
    except ImportError as e:
        raise ParamError(
            f"{ENGINE_VARIABLE}={raw!r} needs Apache Beam, which is not installed ({e}); "
            f"run `pip install -r {BEAM_EXTRA}`, or unset {ENGINE_VARIABLE} to run locally"
        ) from None
    try:
        return Engine(BEAM, tuple(beam.pipeline_flags(flags)))
    except ValueError as e:
        raise ParamError(f"{OPTIONS_VARIABLE}={text!r}: {e}") from None


def limit_threads() -> None:
    """One BLAS/OpenMP thread in this (worker) process: the workers already use every core."""
    for name in THREAD_ENV_VARS:
        os.environ[name] = "1"
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the environment variables still cover libraries loaded later
        return
    threadpool_limits(1)


def system_errno(error: BaseException) -> int | None:
    """The errno of an error that a library raises in its own type with the system's message
    (TensorFlow's file writers: "...; No space left on device"), if one of ``io.ERRNO_WORDS``."""
    from genreclf.io import ERRNO_WORDS

    text = str(error)
    for code in ERRNO_WORDS:
        if os.strerror(code) in text:
            return code
    return None


@dataclass(frozen=True)
class Guarded:
    """``fn`` for a worker: an OSError it raises (or a library's error that carries the system's
    message) raised as a FileSystemError, which names the file (the error's own, else the item's
    first argument: the output or input of that item) and pickles."""

    fn: Callable

    def __call__(self, *args, **kwargs):
        try:
            return self.fn(*args, **kwargs)
        except GenreError:
            raise
        except OSError as e:
            if e.errno is None:
                raise
            raise file_error(e, None if e.filename else item_path(args)) from None
        except Exception as e:
            code = system_errno(e)
            if code is None:
                raise
            raise file_error(OSError(code, os.strerror(code)), item_path(args)) from None


def item_path(args: tuple) -> str | None:
    """The first argument of an item, if it is a path or URL (what the item reads or writes)."""
    return os.fspath(args[0]) if args and isinstance(args[0], (str, os.PathLike)) else None


def run_here(fn: Callable, items: Sequence[tuple]) -> Iterator:
    """``fn(*item)`` for each item, one after the other in this process."""
    for item in items:
        yield fn(*item)


def map_in_order(
    fn: Callable,
    items: Iterable[tuple],
    engine: Engine,
    *,
    setup: Callable[[], None] | None = None,
    local: Callable[[Callable, Sequence[tuple]], Iterator] = run_here,
    scratch=None,
) -> Iterator:
    """``fn(*item)`` of every item (a tuple of arguments), yielded in the order of ``items``.

    The local engine calls ``local(fn, items)`` (by default: in this process, in order);
    the beam engine runs ``fn`` on Beam's workers, each calling ``setup()`` once before its
    first item. ``fn`` and ``setup`` must then be picklable (library functions, or
    functools.partial of them), and the paths in the items must be readable and writable where
    the workers run. A GenreError raised by ``fn`` for an item is raised here, by the item in
    input order that raised first, as on the local engine; so is an OSError, as a FileSystemError.

    With a ``scratch`` (a ``genreclf.resume.Scratch``), the items whose result it holds are not
    computed again: only the others go to the engine, and each of their results is stored in it
    as it arrives here, so that a run killed part-way resumes where it stopped.
    """
    items = list(items)
    fn = Guarded(fn)
    if scratch is None:
        yield from compute(fn, items, engine, setup, local)
        return
    from genreclf.resume import resumed

    def pending_results(pending: list[int]) -> Iterator:
        return compute(fn, [items[i] for i in pending], engine, setup, local)

    yield from resumed(scratch, len(items), pending_results)


def compute(fn: Callable, items: list[tuple], engine: Engine, setup, local) -> Iterator:
    """``fn(*item)`` of every item on ``engine``, in order (``map_in_order`` without a scratch)."""
    if not items:
        return
    if engine.name == BEAM:
        from genreclf import beam

        yield from beam.map_in_order(fn, items, engine.beam_options, setup=setup)
    else:
        yield from local(fn, items)
