"""What every stage script shares: its logger, the entry point, and the hints that name a stage.

The library (genreclf) raises errors and logs through ``logging.getLogger(__name__)``; it never
installs a handler and never names DVC. Here ``run_stage`` installs one stderr handler, prints a
GenreError or an OSError of a file (``genreclf.io.file_error``) as one clear line (no traceback),
and adds what to run when the file at fault is the output of another stage (``dvc repro <stage>``).
"""

from __future__ import annotations

import configparser
import contextlib
import errno
import gc
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from genreclf import artifacts
from genreclf.errors import FileSystemError, GenreError, RemoteObjectError
from genreclf.io import file_error

DVC_DIR = Path(".dvc")
DVC_CONFIG_FILES = (DVC_DIR / "config", DVC_DIR / "config.local")
LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%H:%M:%S"
# Which stage writes what: the first prefix that a path at fault starts with names the stage to rerun.
PRODUCERS = tuple(
    (Path(prefix).as_posix(), stage)
    for prefix, stage in (
        ("data/downloads", "fetch"),
        (artifacts.RAW_DIR, "fetch"),
        (artifacts.WAV_DIR, "convert"),
        (artifacts.CONVERTED_CSV, "convert"),
        (artifacts.SKIPPED_CSV, "convert"),
        (artifacts.SPLIT_DIR, "split"),
        (artifacts.SHARD_DIR, "shard"),
        (artifacts.FEATURES_DIR, "features"),
        (artifacts.EMBEDDINGS_DIR, "embed"),
        (artifacts.PRETRAINED_DIR, "pretrained"),
        (artifacts.SUMMARY_JSON.with_suffix(""), "summarize"),
    )
)


def stage_logger(name: str) -> logging.Logger:
    """The logger of one stage script (``stages.<name>``); run_stage gives it a handler."""
    return logging.getLogger(f"stages.{name}")


def setup_logging() -> None:
    """One handler on the root logger: ``HH:MM:SS name: message`` lines on stderr, INFO and up."""
    root = logging.getLogger()
    if not any(getattr(h, "_genreclf", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
        handler._genreclf = True
        root.addHandler(handler)
    root.setLevel(logging.INFO)


def producer_of(path: str) -> str | None:
    """The stage (as ``dvc repro`` names it) whose output ``path`` is, if any."""
    path = str(path).replace("\\", "/").lstrip("./")
    for prefix, stage in PRODUCERS:
        if path == prefix or path.startswith((prefix + "/", prefix + ".")):
            return stage
    parts = path.split("/")
    models, metrics = artifacts.MODELS_DIR.parts, artifacts.MODEL_METRICS_DIR.parts
    for folder, stage in ((models, "train"), (metrics, "evaluate")):
        if len(parts) > len(folder) and tuple(parts[: len(folder)]) == folder:
            name = parts[len(folder)].removesuffix(".json")
            return f"{stage}_sklearn@{name} or {stage}_keras@{name}"
    return None


def with_hint(error: GenreError, running: str | None = None) -> str:
    """The error's message, plus what to run when the file at fault is the output of a stage
    other than the one ``running``."""
    message = str(error)
    path = getattr(error, "path", None)
    if isinstance(error, FileSystemError) and error.errno != errno.ENOENT:
        path = None  # the file is there and well made: rerunning its stage would not help
    stage = producer_of(path) if path is not None else None
    if stage is None or stage == running:
        return message
    if isinstance(error, RemoteObjectError):  # DVC tracks the manifest only: it sees no change on the bucket
        return f"{message} with `dvc repro -f {stage}`"
    return f"{message}; run `dvc repro {stage}` to (re)create it"


def dvc_cache_dir() -> Path | None:
    """The DVC cache of the project in the working directory (cache.dir of .dvc/config or
    config.local, else .dvc/cache), or None outside a DVC project. DVC links each output into
    it: on another disk, the outputs take space there too."""
    if not DVC_DIR.is_dir():
        return None
    cache = DVC_DIR / "cache"
    for config_file in DVC_CONFIG_FILES:
        config = configparser.ConfigParser(strict=False, interpolation=None)
        with contextlib.suppress(configparser.Error):
            config.read(config_file, encoding="utf-8")
            value = config.get("cache", "dir", fallback=None)
            cache = DVC_DIR / value.strip().strip("'\"") if value else cache  # relative to .dvc/
    return cache


def cache_mirrors() -> list[Path]:
    """The folders that hold a second copy of a stage's outputs when on another disk: the DVC cache."""
    cache = dvc_cache_dir()
    return [] if cache is None else [cache]


GCS_REMEDY = "keep the audio on GCS (data.root: gs://…)"


def model_folders(models_dir: Path, marker: str) -> list[str]:
    """The folders under ``models_dir`` holding a ``marker`` file (a trained model), sorted: the
    choices of a command-line argument that names a model."""
    return sorted(p.name for p in models_dir.iterdir() if (p / marker).is_file()) if models_dir.is_dir() else []


def log_tables_written(log: logging.Logger, folder: Path, by_split: dict, n_columns: int, what: str) -> None:
    """Log the per-split tables of a features-like stage (features, embed) and their info file."""
    rows = ", ".join(str(len(by_split[s])) for s in artifacts.SPLITS)
    splits, info = ",".join(artifacts.SPLITS), artifacts.FEATURE_INFO_FILE
    log.info(
        "wrote %s/{%s}.csv (%s rows, %d %s columns) and %s/%s", folder, splits, rows, n_columns, what, folder, info
    )


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage's ``main``; print a GenreError, or an OSError of a file, as one clear line and
    exit with status 1.

    Then every object still alive is frozen (``gc.freeze``), so that the garbage collection Python
    runs as it exits skips them: the process is ending, and a process that imported TensorFlow
    spent most of a second in that collection."""
    setup_logging()
    log = stage_logger(name)
    try:
        main()
    except GenreError as e:
        log.error("error: %s", with_hint(e, running=name))
        sys.exit(1)
    except OSError as e:
        if e.errno is None:  # not a file's error: a bug, with its traceback
            raise
        log.error("error: %s", with_hint(file_error(e), running=name))
        sys.exit(1)
    except KeyboardInterrupt:
        log.error("interrupted; nothing was written in place of the outputs")
        sys.exit(130)
    finally:
        gc.freeze()
