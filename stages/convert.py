"""convert: decode every clip listed in data/raw/clips.csv to mono 16-bit WAV at one sample rate.

Reads   params convert.{sample_rate, min_seconds, excerpt_seconds, excerpt_from}, data.root;
        data/raw/clips.csv and the files it lists (with a gs:// data root, the objects it lists by
        URL, checked against data/raw/raw_manifest.json before any work:
        genreclf.data.audio.check_raw_clips; the workers read them by URL).
Writes  data/wav/<track_id>.wav, data/converted.csv (its path column: each clip's WAV),
        data/convert_skipped.csv, metrics/convert.json.
        With data.root a gs:// prefix, the WAVs are objects <root>/data/wav/<track_id>.<md5>.wav
        instead (the same bytes, named by their content: genreclf.data.audio.convert_clip_object),
        uploaded by the workers; data/wav then holds wav_manifest.json alone (every object's track
        id, URL, size and MD5), written after them, and the path column of converted.csv holds the URLs.
A clip longer than convert.excerpt_seconds is cut to an excerpt of that length, from its start or
its middle (convert.excerpt_from); null keeps every clip whole.
Clips that do not decode, hold no audio or are shorter than convert.min_seconds are skipped
and reported, never fatal. Every core decodes; the outputs do not depend on scheduling.
Each WAV and its result are kept in .genreclf-scratch/convert/<key>/ as they are done
(genreclf.resume), so a run killed part-way decodes only the clips it had not finished; the
WAVs are linked into data/wav at the end and the scratch is removed once the tables are written.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from genreclf import resume, space
from genreclf.artifacts import (
    CLIPS_CSV,
    CONVERTED_CSV,
    RAW_DIR,
    SKIPPED_CSV,
    WAV_DIR,
    Clip,
    read_clips,
    write_converted,
    write_skipped,
)
from genreclf.data import audio, gcs
from genreclf.data.conversion import RESULT_CODEC, convert_to_bucket, convert_to_workspace, converted_tables
from genreclf.engine import engine_from_environ, limit_threads
from genreclf.io import write_json
from stages.common import GCS_REMEDY, cache_mirrors, run_stage, stage_logger
from stages.config import load_config

METRICS_JSON = Path("metrics/convert.json")

SKIPPED_SHOWN_IN_LOG = 20

log = stage_logger("convert")


def main() -> None:
    config = load_config()
    params, root = config.convert, config.data.root
    engine = engine_from_environ()
    sample_rate = params.sample_rate
    clips = read_clips(CLIPS_CSV)
    sources = [clip.path for clip in clips]
    audio.check_raw_clips(sources, RAW_DIR)  # the objects on the bucket, if the raw clips are there
    extensions = Counter(Path(p).suffix.lower() for p in sources)
    where = gcs.join(root, WAV_DIR.as_posix()) if gcs.is_remote(root) else WAV_DIR.as_posix()
    if space.check_enabled() and not gcs.is_remote(root):  # on GCS, the bucket holds the WAVs
        seconds = space.clip_seconds(sources, default_seconds=30.0)
        seconds = seconds if params.excerpt_seconds is None else min(seconds, params.excerpt_seconds)
        wavs = space.Need("WAVs", space.wav_bytes([round(seconds * sample_rate)] * len(clips)), WAV_DIR)
        space.check_space("convert", [wavs], cache_mirrors(), GCS_REMEDY)
    log.info(
        "read %s: %d clips, %d genres, files %s; sample_rate %d Hz, min_seconds %g, excerpt %s; WAVs to %s; engine %s",
        CLIPS_CSV,
        len(clips),
        len({clip.genre for clip in clips}),
        dict(sorted(extensions.items())),
        sample_rate,
        params.min_seconds,
        "none" if params.excerpt_seconds is None else f"{params.excerpt_seconds:g} s from the {params.excerpt_from}",
        where,
        engine.describe(),
    )

    started = time.perf_counter()
    settings = {"sample_rate": sample_rate, "min_seconds": params.min_seconds}
    if params.excerpt_seconds is not None:  # the defaults: the settings, and so the scratch, of a whole clip
        settings.update(excerpt_seconds=params.excerpt_seconds, excerpt_from=params.excerpt_from)
    scratch = None
    if gcs.is_remote(root):
        prefix = gcs.join(root, WAV_DIR.as_posix())
        results, paths, uploaded = convert_to_bucket(clips, settings, engine, prefix, WAV_DIR, CLIPS_CSV, limit_threads)
        already = len(paths) - uploaded
        log.info("uploaded %d objects to %s/; %d were there already with the same bytes", uploaded, prefix, already)
    else:
        key = resume.scratch_key(
            "convert", {"convert": settings, "root": root}, [CLIPS_CSV.read_bytes()], sources, code_files()
        )
        scratch = resume.Scratch.open(resume.SCRATCH_ROOT, "convert", key, RESULT_CODEC)
        if len(scratch):
            log.info("resuming: %d clips already decoded in %s", len(scratch), scratch.folder)
        results, paths = convert_to_workspace(clips, settings, engine, scratch, WAV_DIR, CLIPS_CSV, limit_threads)
    elapsed = time.perf_counter() - started
    log.info("decoded %d clips in %.1f s (%.2f clips/s)", len(clips), elapsed, len(clips) / elapsed)
    write_tables(clips, results, paths, sample_rate, where)
    if scratch is not None:
        scratch.remove()
        log.info("resume: reused %d clips (finished by a run that stopped), decoded %d", *scratch.counts())


def code_files() -> list[Path]:
    return resume.code_files(__file__)


def write_tables(clips: list[Clip], results: list, paths: list[str], sample_rate: int, where: str) -> None:
    """converted.csv (the converted clips, ``paths`` their WAVs), convert_skipped.csv and the metrics."""
    converted, skipped, metrics = converted_tables(clips, results, paths)
    write_converted(CONVERTED_CSV, converted)
    write_skipped(SKIPPED_CSV, skipped)
    write_json(METRICS_JSON, metrics)

    for track_id, source_path, reason in skipped[:SKIPPED_SHOWN_IN_LOG]:
        log.info("skipped %s (%s): %s", track_id, source_path, reason)
    if len(skipped) > SKIPPED_SHOWN_IN_LOG:
        log.info("... and %d more skipped clips (see %s)", len(skipped) - SKIPPED_SHOWN_IN_LOG, SKIPPED_CSV)
    hours = sum(num_samples for _, num_samples in converted) / sample_rate / 3600
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
