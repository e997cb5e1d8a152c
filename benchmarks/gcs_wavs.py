"""Raw clips and WAVs that stay on GCS, end to end with DVC on gtzan_mini, against gcp-storage-emulator.

    python benchmarks/gcs_wavs.py [--gtzan ../shared/data/gtzan_mini] [--workdir DIR]

Two fresh copies of this checkout (tests/support/pipeline_project.make_dvc_project: gtzan_mini, the
end-to-end project's small settings), one with ``data.root`` null, one with
gs://genreclf-bench/gtzan on an emulator on 127.0.0.1 (gcsfs through STORAGE_EMULATOR_HOST).
It runs and times:

1. in each, ``dvc repro shard features``: fetch (with the gs:// root: the raw clips to the bucket),
   convert (reading them by URL; the WAVs to the bucket), split, shard and features (reading the
   WAVs by URL);
2. a comparison of the two: every raw clip object, every WAV object and every shard object against
   the local file, data/raw's tables (clips.csv but its path column), and
   the bytes of data/features/, dataset_info.json, convert_skipped.csv, metrics/convert.json and
   converted.csv but its path column;
3. in the gs:// project, ``dvc repro shard features`` again: DVC must run nothing;
4. ``dvc repro -f -s convert``: a forced rerun, which must upload nothing (dvc.lock unchanged);
5. every WAV object deleted, ``GENRECLF_ENGINE=beam dvc repro -f -s convert`` (2 workers): the
   Beam workers read the raw clips by URL and upload the WAVs all again, and dvc.lock is unchanged;
6. one WAV object deleted, ``dvc repro -f -s features``: it must fail naming the object;
7. one raw clip object deleted, ``dvc repro -f -s convert``: it must fail naming the object.

--gtzan may name a folder of fewer clips (``<genre>/<genre>.NNNNN.wav``) for a quicker run.
The JSON (--json, default benchmarks/results/gcs_wavs.json; benchmarks/record.py's document)
holds in ``figures``: ``clips`` (WAVs under --gtzan), ``steps``: one object per dvc command, in
order: ``project`` (local, remote), ``command``, ``exit_status``, ``seconds``; ``checks``: each a
boolean that should be true (the comparisons of step 2, the no-op repro, dvc.lock unchanged
after each forced convert, the failures naming the deleted objects).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import gcs_shards  # noqa: E402
from benchmarks.gcs_shards import timed_dvc  # noqa: E402
from genreclf.artifacts import read_raw_manifest, read_shard_manifest, read_wav_manifest  # noqa: E402
from genreclf.data import gcs  # noqa: E402
from tests.support.gcs_emulator import GcsEmulator  # noqa: E402
from tests.support.helpers import directory_bytes  # noqa: E402
from tests.support.pipeline_project import make_dvc_project  # noqa: E402

BUCKET, DATA_ROOT = gcs_shards.BUCKET, gcs_shards.DATA_ROOT  # the same emulated bucket and root
SHOWN = (
    "stages.fetch: uploaded",
    "stages.convert: decoded",
    "stages.convert: uploaded",
    "stages.shard: the MD5s",
    "stages.shard: wrote",
    "stages.features: computed",
    "Running stage",
    "error:",
)
SAME_BYTES = ("data/features", "data/shards/dataset_info.json", "data/convert_skipped.csv", "metrics/convert.json")


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def outputs(project: Path, name: str) -> dict[str, bytes]:
    path = project / name
    return directory_bytes(path) if path.is_dir() else {name: path.read_bytes()}


def compare(local: Path, remote: Path, checks: dict) -> None:
    """Print (and put in ``checks``) whether the gs:// project's objects and tables hold the local project's bytes."""
    compare_raw(local, remote, checks)
    _, wavs = read_wav_manifest(remote / "data" / "wav")
    same = checks["wav_objects_are_the_local_wavs"] = all(
        md5(local / "data" / "wav" / f"{t}.wav") == entry.md5 for t, entry in wavs.items()
    )
    print(f"    {len(wavs)} WAV objects ({sum(e.size for e in wavs.values())} bytes), each the local WAV: {same}")
    _, shards = read_shard_manifest(remote / "data" / "shards")
    same = checks["shard_objects_are_the_local_shards"] = all(
        md5(local / "data" / "shards" / e.url.rsplit("/", 1)[1]) == e.md5 for e in shards
    )
    print(f"    {len(shards)} shard objects, each the local shard: {same}")
    for name in SAME_BYTES:
        same = checks[f"same_bytes:{name}"] = outputs(local, name) == outputs(remote, name)
        print(f"    {name}: the same bytes: {same}")
    tables = [(p / "data" / "converted.csv").read_text().splitlines() for p in (local, remote)]
    columns = [[line.split(",") for line in table] for table in tables]
    same = [[row[:2] + row[3:] for row in table] for table in columns]
    checks["same_rows_but_path:data/converted.csv"] = same[0] == same[1]
    print(f"    data/converted.csv but its path column: the same: {same[0] == same[1]}; a path: {columns[1][1][2]}")


def compare_raw(local: Path, remote: Path, checks: dict) -> None:
    """Print (and put in ``checks``) whether the gs:// project's raw clip objects and data/raw tables are the local
    project's."""
    _, clips = read_raw_manifest(remote / "data" / "raw")
    paths = dict(line.split(",")[::2] for line in (local / "data/raw/clips.csv").read_text().splitlines()[1:])
    same = checks["raw_objects_are_the_local_clips"] = all(
        md5(local / paths[t]) == entry.md5 for t, entry in clips.items()
    )
    print(
        f"    {len(clips)} raw clip objects ({sum(e.size for e in clips.values())} bytes), each the local file: {same}"
    )
    print("    data/raw of the gs:// project:", sorted(p.name for p in (remote / "data" / "raw").iterdir()))
    for name in ("data/raw/track_info.csv", "data/raw/fetch_report.json"):
        same = checks[f"same_bytes:{name}"] = outputs(local, name) == outputs(remote, name)
        print(f"    {name}: the same bytes: {same}")
    tables = [
        [line.split(",") for line in (p / "data/raw/clips.csv").read_text().splitlines()] for p in (local, remote)
    ]
    same = [[row[:2] + row[3:] for row in table] for table in tables]
    checks["same_rows_but_path:data/raw/clips.csv"] = same[0] == same[1]
    print(f"    data/raw/clips.csv but its path column: the same: {same[0] == same[1]}; a path: {tables[1][1][2]}")


def run(gtzan: Path, workdir: Path) -> dict:
    emulator = GcsEmulator(workdir / "emulator", BUCKET)
    emulator.start()
    os.environ.update({gcs.EMULATOR_VARIABLE: emulator.endpoint, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
    steps, checks = [], {}
    try:
        local = make_dvc_project(workdir / "local", gtzan)
        remote = make_dvc_project(workdir / "remote", gtzan, {"data": {"root": DATA_ROOT}})
        for project in (local, remote):
            timed_dvc(project, "repro", "shard", "features", shown=SHOWN, steps=steps)
        compare(local, remote, checks)
        out, _ = timed_dvc(remote, "repro", "shard", "features", shown=SHOWN, steps=steps)
        checks["second_repro_ran_nothing"] = "Running stage" not in out
        print("    second repro ran nothing:", checks["second_repro_ran_nothing"])
        lock = (remote / "dvc.lock").read_bytes()
        timed_dvc(remote, "repro", "-f", "-s", "convert", shown=SHOWN, steps=steps)
        checks["forced_convert_leaves_dvc_lock"] = (remote / "dvc.lock").read_bytes() == lock
        print("    dvc.lock unchanged:", checks["forced_convert_leaves_dvc_lock"])
        _, wavs = read_wav_manifest(remote / "data" / "wav")
        gcs.filesystem().rm([entry.url for entry in wavs.values()])
        os.environ.update({"GENRECLF_ENGINE": "beam", "GENRECLF_BEAM_OPTIONS": "--direct_num_workers=2"})
        timed_dvc(remote, "repro", "-f", "-s", "convert", shown=SHOWN, steps=steps)
        del os.environ["GENRECLF_ENGINE"], os.environ["GENRECLF_BEAM_OPTIONS"]
        checks["beam_convert_leaves_dvc_lock"] = (remote / "dvc.lock").read_bytes() == lock
        print("    dvc.lock unchanged:", checks["beam_convert_leaves_dvc_lock"])
        deleted = wavs[sorted(wavs)[0]].url
        gcs.filesystem().rm(deleted)
        out, _ = timed_dvc(remote, "repro", "-f", "-s", "features", check=False, shown=SHOWN, steps=steps)
        checks["missing_wav_fails_naming_it"] = steps[-1]["exit_status"] != 0 and deleted in out
        _, clips = read_raw_manifest(remote / "data" / "raw")
        deleted = clips[sorted(clips)[-1]].url
        gcs.filesystem().rm(deleted)
        out, _ = timed_dvc(remote, "repro", "-f", "-s", "convert", check=False, shown=SHOWN, steps=steps)
        checks["missing_raw_clip_fails_naming_it"] = steps[-1]["exit_status"] != 0 and deleted in out
    finally:
        emulator.stop()
    return {"clips": gcs_shards.count_clips(gtzan), "steps": steps, "checks": checks}


if __name__ == "__main__":
    gcs_shards.main(run, __doc__, "gcs_wavs")
