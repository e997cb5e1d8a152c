"""Converting the clips of data/raw/clips.csv to WAVs: the work of the convert stage.

``convert_to_workspace`` writes each clip's WAV as a file of the WAV folder (through a resumable
scratch), ``convert_to_bucket`` as an object under a gs:// prefix; both run
``genreclf.data.audio.convert_clip`` on every clip with the chosen engine and give each clip's
result in input order. ``converted_tables`` turns the results into the tables the stage writes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from tqdm import tqdm

from genreclf import resume
from genreclf.artifacts import Clip, write_wav_manifest
from genreclf.data import audio
from genreclf.engine import Engine, limit_threads, map_in_order
from genreclf.errors import DataError, FileSystemError
from genreclf.io import atomic_dir, renamed_error

CHUNK_SIZE = 4  # clips handed to a worker process at a time

log = logging.getLogger(__name__)

RESULT_CODEC = resume.file_codec(dataclasses.asdict, lambda fields: audio.ConvertResult(**fields))


def convert_here(
    convert: Callable, clips: Sequence[tuple], setup: Callable[[], None] = limit_threads
) -> Iterator[audio.ConvertResult]:
    """The local engine: ``convert(source, destination)`` of every clip with one process per core
    (each started with ``setup``); the results in input order, each as soon as it and those before
    it are done (so that the caller stores it at once: a run killed part-way keeps them)."""
    workers = os.cpu_count() or 1
    log.info("decoding %d clips with %d worker processes", len(clips), workers)
    with ProcessPoolExecutor(max_workers=workers, initializer=setup) as pool:
        try:
            results = pool.map(convert, *zip(*clips), chunksize=CHUNK_SIZE)
            yield from tqdm(results, total=len(clips), desc="convert", unit="clip")
        except BaseException:  # a full disk, or the caller stopped: the clips not started are dropped
            pool.shutdown(cancel_futures=True)
            raise


def check_some_converted(clips: list[Clip], results: list[audio.ConvertResult], clips_csv: str | Path) -> None:
    """A DataError when not one clip could be converted: the files, not the clips, are at fault."""
    if not any(r.ok for r in results):
        kinds = Counter(r.kind for r in results)
        raise DataError(
            f"none of the {len(clips)} clips in {clips_csv} could be converted "
            f"({dict(sorted(kinds.items()))}; first: {clips[0].path}: {results[0].reason}); "
            "check the files",
            path=clips_csv,
        )


def link_or_copy(source: str | Path, destination: Path) -> None:
    try:
        os.link(source, destination)
    except OSError:  # another file system, or one without hard links
        shutil.copyfile(source, destination)


def convert_to_workspace(
    clips: list[Clip],
    settings: dict,
    engine: Engine,
    scratch: resume.Scratch,
    wav_dir: Path,
    clips_csv: str | Path,
    setup: Callable[[], None] = limit_threads,
) -> tuple[list, list[str]]:
    """The WAVs as files <wav_dir>/<track_id>.wav: (each clip's result, each converted clip's WAV
    path). ``settings``: convert_clip's keyword arguments (sample_rate, min_seconds, excerpt...).
    Each WAV is written into the scratch (with its result: a killed run keeps them), then linked
    into ``wav_dir`` once every clip is done; ``setup`` starts each worker."""
    convert = resume.WritesFile(partial(audio.convert_clip, **settings))
    destinations = [(scratch.files / f"{clip.track_id}.wav").as_posix() for clip in clips]
    jobs = [(clip.path, destination) for clip, destination in zip(clips, destinations)]
    local = partial(convert_here, setup=setup)
    try:
        outcomes = list(map_in_order(convert, jobs, engine, setup=setup, local=local, scratch=scratch))
    except FileSystemError as e:  # named as the WAV of the WAV folder that it is
        raise renamed_error(e, scratch.files, wav_dir) from None
    results = [result for result, _ in outcomes]
    check_some_converted(clips, results, clips_csv)
    with atomic_dir(wav_dir) as wav_tmp:
        for clip, destination, result in zip(clips, destinations, results):
            if result.ok:  # a link: the scratch stays whole until the tables are written
                link_or_copy(destination, wav_tmp / f"{clip.track_id}.wav")
    return results, [f"{Path(wav_dir).as_posix()}/{c.track_id}.wav" for c, r in zip(clips, results) if r.ok]


def convert_to_bucket(
    clips: list[Clip],
    settings: dict,
    engine: Engine,
    prefix: str,
    wav_dir: Path,
    clips_csv: str | Path,
    setup: Callable[[], None] = limit_threads,
) -> tuple[list, list[str], int]:
    """The WAVs as objects <prefix>/<track_id>.<md5>.wav, uploaded by the workers, then
    <wav_dir>/wav_manifest.json: (each clip's result, each converted clip's URL, the number of
    objects uploaded; the others were there already with the same bytes)."""
    convert = partial(audio.convert_clip_object, prefix=prefix, **settings)
    jobs = [(clip.path, clip.track_id) for clip in clips]
    local = partial(convert_here, setup=setup)
    outcomes = list(map_in_order(convert, jobs, engine, setup=setup, local=local))
    results = [result for result, _, _ in outcomes]
    check_some_converted(clips, results, clips_csv)
    objects = {c.track_id: entry for c, (_, entry, _) in zip(clips, outcomes) if entry is not None}
    uploaded = sum(was_uploaded for _, _, was_uploaded in outcomes)
    with atomic_dir(wav_dir) as tmp:  # the manifest last: after every object it lists
        write_wav_manifest(tmp, prefix, objects)
    return results, [objects[c.track_id].url for c in clips if c.track_id in objects], uploaded


def converted_tables(
    clips: list[Clip], results: list[audio.ConvertResult], paths: list[str]
) -> tuple[list[tuple[Clip, int]], list[tuple[str, str, str]], dict]:
    """(the converted clips, ``paths`` their WAVs, each with its num_samples; the skipped clips
    (track_id, source_path, reason); the metrics: clips in, converted, skipped, and how many of
    each kind of skip)."""
    ok = [(clip, result) for clip, result in zip(clips, results) if result.ok]
    converted = [(dataclasses.replace(c, path=path), r.num_samples) for (c, r), path in zip(ok, paths, strict=True)]
    skipped = [(c.track_id, c.path, r.reason) for c, r in zip(clips, results) if not r.ok]
    kinds = Counter(r.kind for r in results if not r.ok)
    metrics = {
        "clips_in": len(clips),
        "converted": len(converted),
        "skipped": len(skipped),
        **{kind: kinds.get(kind, 0) for kind in audio.SKIP_KINDS},
    }
    return converted, skipped, metrics
