"""The beam engine: per-item work as an Apache Beam pipeline (see ``genreclf.engine``).

Imported only when GENRECLF_ENGINE=beam: apache_beam is an optional extra
(``requirements-beam.txt``). The pipeline is

    Create((index, arguments)) -> Reshuffle -> ParDo(fn) -> WriteToText(results)

``Reshuffle`` spreads the items over the workers (without it a runner may fuse them all
into one bundle). Each result travels as one line of text (the pickled
``(index, status, value)``, base64), written to a fresh folder: a local temporary folder
for a runner in this process's machine, else under ``--temp_location``. The driver reads the
lines back, checks that every index came back once and yields the values in input order.

Without ``--runner`` the options get LOCAL_DEFAULTS: the FnApiRunner with one worker
process per core (``direct_running_mode=multi_processing``). Beam's own default, the
DirectRunner, first tries the Prism runner, which it downloads from GitHub; the FnApiRunner
runs in process and fetches nothing.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import pickle
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options import pipeline_options
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
)

from genreclf.errors import DataError, GenreError, ParamError

log = logging.getLogger(__name__)

# Runners that run on this machine, reading and writing its files.
LOCAL_RUNNERS = ("fnapirunner", "directrunner", "bundlebaseddirectrunner", "switchingdirectrunner")
OK, FAILED = "ok", "failed"
RESULTS_NAME = "results"


def default_workers() -> int:
    return os.cpu_count() or 1


def local_defaults() -> list[str]:
    """The options of a pipeline in this machine's processes: nothing downloaded, one worker per core."""
    return [
        "--runner=FnApiRunner",
        "--direct_running_mode=multi_processing",
        f"--direct_num_workers={default_workers()}",
    ]


class _OptionError(ValueError):
    pass


def _raise_option_error(message: str) -> None:
    raise _OptionError(message)


def pipeline_flags(flags: Sequence[str]) -> list[str]:
    """``flags`` checked (each one an option Beam knows, with a valid value), with the local
    defaults when no runner is named. Raises ValueError saying what is wrong."""
    flags = list(flags)
    if not any(flag == "--runner" or flag.startswith("--runner=") for flag in flags):
        named = {flag.split("=", 1)[0] for flag in flags}
        flags = [d for d in local_defaults() if d.split("=", 1)[0] not in named] + flags
    parsers = []

    def strict(parser) -> None:  # argparse would print and exit; raise instead
        parser.error = _raise_option_error
        parsers.append(parser)

    options_log = logging.getLogger(pipeline_options.__name__)
    level = options_log.level
    options_log.setLevel(logging.ERROR)  # its warning about unknown options: they are an error below
    try:
        options = PipelineOptions(flags)
        options.get_all_options(add_extra_args_fn=strict)
        _, unknown = parsers[0].parse_known_args(flags)
    except _OptionError as e:
        raise ValueError(f"{e}; expected Beam pipeline options") from None
    finally:
        options_log.setLevel(level)
    if unknown:
        raise ValueError(
            f"options that Beam does not know: {unknown}; expected Beam pipeline options "
            "such as --runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp"
        )
    runner = options.view_as(StandardOptions).runner
    names = StandardOptions.KNOWN_RUNNER_NAMES
    if "." not in runner and runner_key(runner) not in [name.lower() for name in names]:
        raise ValueError(
            f"--runner={runner} is not a runner Beam knows; expected one of {', '.join(names)} "
            "or the full name of a runner class"
        )
    if not is_local(options) and not options.view_as(GoogleCloudOptions).temp_location:
        raise ValueError(
            f"--runner={runner} runs elsewhere, so the results need a --temp_location that both this "
            "machine and the workers can reach (e.g. --temp_location=gs://BUCKET/tmp)"
        )
    return flags


def runner_key(runner: str) -> str:
    """A runner's class name in lower case, as Beam finds it ("fnapi", "FnApiRunner", a.b.FnApiRunner)."""
    key = runner.rsplit(".", 1)[-1].lower()
    return key if key.endswith("runner") else f"{key}runner"


def is_local(options: PipelineOptions) -> bool:
    return runner_key(options.view_as(StandardOptions).runner or "") in LOCAL_RUNNERS


class _Apply(beam.DoFn):
    """fn(*arguments) of each (index, arguments); a GenreError is passed on to the driver."""

    def __init__(self, fn: Callable, setup: Callable[[], None] | None):
        self._fn = fn
        self._setup_fn = setup

    def setup(self):
        if self._setup_fn is not None:
            self._setup_fn()

    def process(self, element):
        index, arguments = element
        try:
            result = (index, OK, self._fn(*arguments))
        except GenreError as e:  # a bad input or a file error: the driver raises it, first in input order
            result = (index, FAILED, e if _pickles(e) else _plain(e))
        yield base64.b64encode(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)).decode("ascii")


def _pickles(error: GenreError) -> bool:
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return False
    return True


def _plain(error: GenreError) -> GenreError:
    """A GenreError that does not pickle, as the ParamError or DataError with its message and path."""
    if isinstance(error, ParamError):
        return ParamError(str(error))
    return DataError(str(error), path=getattr(error, "path", None))


def _results_folder(options: PipelineOptions) -> str:
    if is_local(options):
        return tempfile.mkdtemp(prefix="genreclf-beam-")
    temp = options.view_as(GoogleCloudOptions).temp_location.rstrip("/")
    return f"{temp}/genreclf-beam-{uuid.uuid4().hex}"


def _delete(folder: str) -> None:
    if "://" in folder:
        try:
            FileSystems.delete([folder + "/"])
        except Exception as e:  # a leftover folder is not worth failing a finished stage
            log.warning("could not delete %s: %s", folder, e)
    else:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def driver_path_for_workers() -> Iterator[None]:
    """PYTHONPATH set to this process's sys.path while the pipeline runs: the local worker
    processes then import the same modules as the driver (as multiprocessing's spawn does),
    whatever the working directory."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p or os.curdir) for p in sys.path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


@contextlib.contextmanager
def quiet_beam() -> Iterator[None]:
    """Beam's own INFO and WARNING lines (each worker's start and stop) are left out while the pipeline runs,
    unless the program set a level for the "apache_beam" logger itself."""
    beam_log = logging.getLogger("apache_beam")
    if beam_log.level != logging.NOTSET:
        yield
        return
    beam_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        beam_log.setLevel(logging.NOTSET)


def _read_results(prefix: str) -> list[tuple]:
    matches = FileSystems.match([f"{prefix}-*"])[0].metadata_list
    results = []
    for metadata in sorted(matches, key=lambda m: m.path):
        with FileSystems.open(metadata.path) as stream:
            results.extend(pickle.loads(base64.b64decode(line)) for line in stream.read().split() if line)
    return results


def map_in_order(
    fn: Callable, items: Sequence[tuple], flags: Sequence[str], setup: Callable[[], None] | None = None
) -> list:
    """fn(*item) of every item, computed by a Beam pipeline with ``flags``; in the order of ``items``."""
    if not items:
        return []
    options = PipelineOptions(list(flags))
    folder = _results_folder(options)
    prefix = f"{folder}/{RESULTS_NAME}"
    started = time.perf_counter()
    log.info("beam: %d items, options %s", len(items), " ".join(flags))
    local = is_local(options)
    try:
        with (
            quiet_beam(),
            driver_path_for_workers() if local else contextlib.nullcontext(),
            beam.Pipeline(options=options) as pipeline,
        ):
            _ = (
                pipeline
                | "Items" >> beam.Create(list(enumerate(items)), reshuffle=False)
                | "Spread" >> beam.Reshuffle()
                | "Apply" >> beam.ParDo(_Apply(fn, setup))
                | "Results" >> beam.io.WriteToText(prefix)
            )
        results = _read_results(prefix)
    finally:
        _delete(folder)
    log.info("beam: %d results in %.1f s", len(results), time.perf_counter() - started)
    by_index = {index: (status, value) for index, status, value in results}
    if len(results) != len(items) or sorted(by_index) != list(range(len(items))):
        raise RuntimeError(f"the Beam pipeline gave {len(results)} results for {len(items)} items, not one each")
    failed = [index for index, (status, _) in sorted(by_index.items()) if status == FAILED]
    if failed:
        raise by_index[failed[0]][1]
    return [by_index[index][1] for index in range(len(items))]
