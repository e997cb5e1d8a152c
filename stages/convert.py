"""convert: decode every clip listed in data/raw/clips.csv to mono 16-bit WAV at one sample rate.

Reads   params convert.sample_rate, convert.min_seconds, data.root; data/raw/clips.csv and the files it lists
        (with a gs:// data root, the objects it lists by URL, checked against data/raw/raw_manifest.json
        before any work: genreclf.data.audio.check_raw_clips; the workers read them by URL).
Writes  data/wav/<track_id>.wav, data/converted.csv (its path column: each clip's WAV),
        data/convert_skipped.csv, metrics/convert.json.
        With data.root a gs:// prefix, the WAVs are objects <root>/data/wav/<track_id>.<md5>.wav
        instead (the same bytes, named by their content: genreclf.data.audio.convert_clip_object),
        uploaded by the workers; data/wav then holds wav_manifest.json alone (every object's track
        id, URL, size and MD5), written after them, and the path column of converted.csv holds the URLs.
Clips that do not decode, hold no audio or are shorter than convert.min_seconds are skipped
and reported, never fatal. Every core decodes; the outputs do not depend on scheduling.
Each WAV and its result are kept in .genreclf-scratch/convert/<key>/ as they are done
(genreclf.resume), so a run killed part-way decodes only the clips it had not finished; the
WAVs are linked into data/wav at the end and the scratch is removed once the tables are written.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from genreclf import resume, space
from genreclf.artifacts import (
    CLIPS_CSV,
    CONVERTED_CSV,
    RAW_DIR,
    SKIPPED_COLUMNS,
    SKIPPED_CSV,
    WAV_DIR,
    read_clips,
    write_converted,
    write_skipped,
    write_wav_manifest,
)
from genreclf.data import audio, gcs
from genreclf.engine import Engine, engine_from_environ, limit_threads, map_in_order
from genreclf.errors import DataError, FileSystemError
from genreclf.io import atomic_dir, renamed_error, write_json
from stages.common import GCS_REMEDY, cache_mirrors, run_stage, stage_logger
from stages.config import load_config

METRICS_JSON = Path("metrics/convert.json")

SKIPPED_SHOWN_IN_LOG = 20

log = stage_logger("convert")


def convert_here(convert: Callable, clips: Sequence[tuple]) -> list[audio.ConvertResult]:
    """The local engine: ``convert(source, destination)`` of every clip with one process per core;
    results in input order."""
    workers = os.cpu_count() or 1
    log.info("decoding %d clips with %d worker processes", len(clips), workers)
    with ProcessPoolExecutor(max_workers=workers, initializer=limit_threads) as pool:
        try:
            results = pool.map(convert, *zip(*clips), chunksize=4)
            return list(tqdm(results, total=len(clips), desc="convert", unit="clip"))
        except BaseException:  # a full disk: the clips not started yet would only fail the same way
            pool.shutdown(cancel_futures=True)
            raise


def check_some_converted(clips: pd.DataFrame, results: list[audio.ConvertResult]) -> None:
    """A DataError when not one clip could be converted: the files, not the clips, are at fault."""
    if not any(r.ok for r in results):
        kinds = Counter(r.kind for r in results)
        raise DataError(
            f"none of the {len(clips)} clips in {CLIPS_CSV} could be converted "
            f"({dict(sorted(kinds.items()))}; first: {clips['path'][0]}: {results[0].reason}); "
            "check the files",
            path=CLIPS_CSV,
        )


def link_or_copy(source: str | Path, destination: Path) -> None:
    try:
        os.link(source, destination)
    except OSError:  # another file system, or one without hard links
        shutil.copyfile(source, destination)


RESULT_CODEC = resume.file_codec(dataclasses.asdict, lambda fields: audio.ConvertResult(**fields))


def convert_to_workspace(
    clips: pd.DataFrame, settings: dict, engine: Engine, scratch: resume.Scratch
) -> tuple[list, list[str]]:
    """The WAVs as files data/wav/<track_id>.wav: (each clip's result, each converted clip's WAV path).
    ``settings``: convert_clip's sample_rate and min_seconds. Each WAV is written into the scratch
    (with its result: a killed run keeps them), then linked into data/wav once every clip is done."""
    convert = resume.WritesFile(partial(audio.convert_clip, **settings))
    destinations = [(scratch.files / f"{track_id}.wav").as_posix() for track_id in clips["track_id"]]
    jobs = list(zip(clips["path"], destinations))
    try:
        outcomes = list(map_in_order(convert, jobs, engine, setup=limit_threads, local=convert_here, scratch=scratch))
    except FileSystemError as e:  # named as the WAV of data/wav that it is
        raise renamed_error(e, scratch.files, WAV_DIR) from None
    results = [result for result, _ in outcomes]
    check_some_converted(clips, results)
    with atomic_dir(WAV_DIR) as wav_tmp:
        for track_id, destination, result in zip(clips["track_id"], destinations, results):
            if result.ok:  # a link: the scratch stays whole until the tables are written
                link_or_copy(destination, wav_tmp / f"{track_id}.wav")
    return results, [f"{WAV_DIR.as_posix()}/{t}.wav" for t, r in zip(clips["track_id"], results) if r.ok]


def convert_to_bucket(clips: pd.DataFrame, settings: dict, engine: Engine, root: str) -> tuple[list, list[str]]:
    """The WAVs as objects <root>/data/wav/<track_id>.<md5>.wav, uploaded by the workers, then
    data/wav/wav_manifest.json: (each clip's result, each converted clip's URL)."""
    prefix = gcs.join(root, WAV_DIR.as_posix())
    convert = partial(audio.convert_clip_object, prefix=prefix, **settings)
    jobs = list(zip(clips["path"], clips["track_id"]))
    outcomes = list(map_in_order(convert, jobs, engine, setup=limit_threads, local=convert_here))
    results = [result for result, _, _ in outcomes]
    check_some_converted(clips, results)
    objects = {t: entry for t, (_, entry, _) in zip(clips["track_id"], outcomes) if entry is not None}
    uploaded = sum(was_uploaded for _, _, was_uploaded in outcomes)
    already = len(objects) - uploaded
    log.info("uploaded %d objects to %s/; %d were there already with the same bytes", uploaded, prefix, already)
    with atomic_dir(WAV_DIR) as tmp:  # the manifest last: after every object it lists
        write_wav_manifest(tmp, prefix, objects)
    return results, [objects[t].url for t in clips["track_id"] if t in objects]


def main() -> None:
    config = load_config()
    params, root = config.convert, config.data.root
    engine = engine_from_environ()
    sample_rate, min_seconds = params.sample_rate, params.min_seconds
    clips = read_clips(CLIPS_CSV)
    audio.check_raw_clips(clips["path"], RAW_DIR)  # the objects on the bucket, if the raw clips are there
    extensions = Counter(Path(p).suffix.lower() for p in clips["path"])
    where = gcs.join(root, WAV_DIR.as_posix()) if gcs.is_remote(root) else WAV_DIR.as_posix()
    if space.check_enabled() and not gcs.is_remote(root):  # on GCS, the bucket holds the WAVs
        wavs = space.Need("WAVs", space.converted_wav_bytes(list(clips["path"]), sample_rate), WAV_DIR)
        space.check_space("convert", [wavs], cache_mirrors(), GCS_REMEDY)
    log.info(
        "read %s: %d clips, %d genres, files %s; sample_rate %d Hz, min_seconds %g; WAVs to %s; engine %s",
        CLIPS_CSV,
        len(clips),
        clips["genre"].nunique(),
        dict(sorted(extensions.items())),
        sample_rate,
        min_seconds,
        where,
        engine.describe(),
    )

    started = time.perf_counter()
    settings = {"sample_rate": sample_rate, "min_seconds": min_seconds}
    scratch = None
    if gcs.is_remote(root):
        results, paths = convert_to_bucket(clips, settings, engine, root)
    else:
        key = resume.scratch_key(
            "convert", {"convert": settings, "root": root}, [CLIPS_CSV.read_bytes()], clips["path"], code_files()
        )
        scratch = resume.Scratch.open(resume.SCRATCH_ROOT, "convert", key, RESULT_CODEC)
        if len(scratch):
            log.info("resuming: %d clips already decoded in %s", len(scratch), scratch.folder)
        results, paths = convert_to_workspace(clips, settings, engine, scratch)
    elapsed = time.perf_counter() - started
    log.info("decoded %d clips in %.1f s (%.2f clips/s)", len(clips), elapsed, len(clips) / elapsed)
    write_tables(clips, results, paths, sample_rate, where)
    if scratch is not None:
        scratch.remove()
        log.info("resume: reused %d clips (finished by a run that stopped), decoded %d", *scratch.counts())


def code_files() -> list[Path]:
    return resume.code_files(__file__)


def write_tables(clips: pd.DataFrame, results: list, paths: list[str], sample_rate: int, where: str) -> None:
    """converted.csv (the converted clips, ``paths`` their WAVs), convert_skipped.csv and the metrics."""
    converted = clips[[r.ok for r in results]].copy()
    converted["path"] = paths
    converted["num_samples"] = [r.num_samples for r in results if r.ok]
    skipped = pd.DataFrame(
        [(t, p, r.reason) for t, p, r in zip(clips["track_id"], clips["path"], results) if not r.ok],
        columns=SKIPPED_COLUMNS,
    )
    kinds = Counter(r.kind for r in results if not r.ok)
    metrics = {
        "clips_in": len(clips),
        "converted": len(converted),
        "skipped": len(skipped),
        **{kind: kinds.get(kind, 0) for kind in audio.SKIP_KINDS},
    }
    write_converted(CONVERTED_CSV, converted)
    write_skipped(SKIPPED_CSV, skipped)
    write_json(METRICS_JSON, metrics)

    for row in skipped.head(SKIPPED_SHOWN_IN_LOG).itertuples():
        log.info("skipped %s (%s): %s", row.track_id, row.source_path, row.reason)
    if len(skipped) > SKIPPED_SHOWN_IN_LOG:
        log.info("... and %d more skipped clips (see %s)", len(skipped) - SKIPPED_SHOWN_IN_LOG, SKIPPED_CSV)
    hours = converted["num_samples"].sum() / sample_rate / 3600
    log.info(
        "wrote %d clips (%.2f h of audio) to %s/, %s, %s (%d skipped), %s: %s",
        len(converted),
        hours,
        where,
        CONVERTED_CSV,
        SKIPPED_CSV,
        len(skipped),
        METRICS_JSON,
        metrics,
    )


if __name__ == "__main__":
    run_stage("convert", main)
