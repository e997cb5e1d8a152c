"""shard: write each split as shuffled TFRecord shards of whole int16 clips.

Reads   params shard.num_shards, shard.seed, data.root; data/split/split_manifest.csv, data/split/labels.json,
        the WAVs it lists (files of data/wav/, or objects on GCS that data/wav/wav_manifest.json lists:
        checked on the bucket first).
Writes  data/shards/{split}-{i:05d}-of-{n:05d}.n{records}.tfrecord (format: genreclf/tfrecords.py)
        and data/shards/dataset_info.json (sample rate, labels, clips and min/max samples per split).
        With data.root a gs:// prefix, the shards are objects <root>/data/shards/<key>/{split}-...tfrecord
        instead (the same bytes; <key> is derived from the inputs: genreclf.data.sharding.shard_key), written
        by the workers, and data/shards holds dataset_info.json and shard_manifest.json (every object's
        URL, size and MD5), written last.
Each shard file is first written into .genreclf-scratch/shard/<key>/ (genreclf.resume), so a run
killed part-way writes only the shards it had not finished; they are linked into data/shards at
the end and the scratch is removed (docs/design-resume.md). TensorFlow is not imported.
"""

from __future__ import annotations

import time

from genreclf import resume, space
from genreclf.artifacts import (
    LABELS_FILE,
    MANIFEST_FILE,
    SHARD_DIR,
    SPLIT_DIR,
    SPLITS,
    WAV_DIR,
    WAV_MANIFEST_FILE,
    read_split_clips,
    write_dataset_info,
    write_shard_manifest,
)
from genreclf.data import gcs, sharding
from genreclf.data.audio import check_wavs, read_wav
from genreclf.engine import engine_from_environ
from genreclf.errors import FileSystemError
from genreclf.io import atomic_dir, renamed_error
from stages.common import GCS_REMEDY, cache_mirrors, run_stage, stage_logger
from stages.config import load_config

log = stage_logger("shard")


def write_to_workspace(
    manifest, labels, sample_rate, num_shards, seed, engine, scratch: resume.Scratch
) -> tuple[dict, list[str]]:
    """The shards as files of data/shards, with dataset_info.json; (split sizes, file names). Each
    shard is written into the scratch (with its clips' sample counts: a killed run keeps the shards
    it finished), then linked into data/shards once every shard is done."""
    shards, shard_splits = sharding.plan_shards(scratch.files, manifest, num_shards, seed, sample_rate)
    try:
        samples = sharding.write_resumably(shards, engine, scratch)
    except FileSystemError as e:  # named as the shard of data/shards that it is
        raise renamed_error(e, scratch.files, SHARD_DIR) from None
    with atomic_dir(SHARD_DIR) as tmp:
        sharding.link_into((path for path, _, _ in shards), tmp)
        splits_info = sharding.split_sizes(shard_splits, samples)
        write_dataset_info(tmp, sample_rate, labels, splits_info)
        files = sorted(p.name for p in tmp.iterdir())
    return splits_info, files


def write_to_bucket(manifest, labels, sample_rate, num_shards, seed, engine, root: str, wavs) -> tuple[dict, list[str]]:
    """The shards as objects under ``root``/data/shards/<key> (the key derived from the inputs, the
    WAVs by their MD5: ``wavs`` gives those of the objects), then data/shards/{dataset_info.json,
    shard_manifest.json}; (split sizes, file names)."""
    started = time.perf_counter()
    digests, hashed = sharding.wav_digests([clip.path for clip in manifest], wavs)
    took = time.perf_counter() - started
    log.info(
        "the MD5s of %d WAVs: %d from %s, %d hashed in %.1f s",
        len(digests),
        len(digests) - hashed,
        WAV_MANIFEST_FILE,
        hashed,
        took,
    )
    clips = [(clip.track_id, clip.label, clip.split, digest) for clip, digest in zip(manifest, digests)]
    prefix = gcs.join(root, SHARD_DIR.as_posix(), sharding.shard_key(clips, labels, sample_rate, num_shards, seed))
    log.info("the shards go under %s", prefix)
    shards, shard_splits = sharding.plan_shards(prefix, manifest, num_shards, seed, sample_rate)
    results = sharding.upload_shards(shards, engine)
    splits_info = sharding.split_sizes(shard_splits, (samples for samples, _, _ in results))
    uploaded = sum(was_uploaded for _, _, was_uploaded in results)
    log.info("uploaded %d objects; %d were there already with the same bytes", uploaded, len(results) - uploaded)
    with atomic_dir(SHARD_DIR) as tmp:  # the manifest last: after every object it lists
        write_dataset_info(tmp, sample_rate, labels, splits_info)
        write_shard_manifest(tmp, prefix, [entry for _, entry, _ in results])
        files = sorted(p.name for p in tmp.iterdir())
    return splits_info, files


def main() -> None:
    config = load_config()
    params, root = config.shard, config.data.root
    engine = engine_from_environ()
    num_shards, seed = params.num_shards.model_dump(), params.seed
    manifest, labels = read_split_clips(SPLIT_DIR)
    wav_paths = [clip.path for clip in manifest]
    wavs = check_wavs(wav_paths, WAV_DIR)  # the objects on the bucket, if the WAVs are there
    if space.check_enabled() and not gcs.is_remote(root):  # on GCS, the bucket holds the shards
        shards = space.Need("shards", space.shard_bytes(wav_paths), SHARD_DIR)
        space.check_space("shard", [shards], cache_mirrors(), GCS_REMEDY)
    _, sample_rate = read_wav(wav_paths[0])  # every other clip is checked against it
    counts = {split: sum(clip.split == split for clip in manifest) for split in SPLITS}
    log.info(
        "read %s/%s: %s clips, %d labels, %d Hz; num_shards %s, seed %d; engine %s",
        SPLIT_DIR,
        MANIFEST_FILE,
        counts,
        len(labels),
        sample_rate,
        num_shards,
        seed,
        engine.describe(),
    )
    for split in (split for split in SPLITS if num_shards[split] > counts[split]):
        asked, clips = num_shards[split], counts[split]
        log.info("%s: %d shards asked for but only %d clips; writing one shard per clip", split, asked, clips)
    started = time.perf_counter()
    if gcs.is_remote(root):
        splits_info, files = write_to_bucket(manifest, labels, sample_rate, num_shards, seed, engine, root, wavs)
    else:
        key = resume.scratch_key(
            "shard",
            {"shard": params.model_dump(), "sample_rate": sample_rate},
            [(SPLIT_DIR / MANIFEST_FILE).read_bytes(), (SPLIT_DIR / LABELS_FILE).read_bytes()],
            wav_paths,
            resume.code_files(__file__),
        )
        scratch = resume.Scratch.open(resume.SCRATCH_ROOT, "shard", key, sharding.SHARD_CODEC)
        if len(scratch):
            log.info("resuming: %d shards already written in %s", len(scratch), scratch.folder)
        splits_info, files = write_to_workspace(manifest, labels, sample_rate, num_shards, seed, engine, scratch)
        scratch.remove()
        log.info("resume: reused %d shards (finished by a run that stopped), computed %d", *scratch.counts())
    log.info(
        "wrote %d files to %s/ in %.1f s: %s",
        len(files),
        SHARD_DIR,
        time.perf_counter() - started,
        ", ".join(files) if len(files) <= 8 else f"{files[0]} ... {files[-1]}",
    )
    log.info("dataset info: %s", splits_info)


if __name__ == "__main__":
    run_stage("shard", main)
