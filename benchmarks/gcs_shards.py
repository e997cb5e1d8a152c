"""Shards that stay on GCS, end to end with DVC on gtzan_mini, against gcp-storage-emulator.

    python benchmarks/gcs_shards.py [--gtzan ../shared/data/gtzan_mini] [--workdir DIR]

In a fresh copy of this checkout (tests/support/pipeline_project.make_dvc_project: gtzan_mini, the
end-to-end project's small settings, cnn1d for 2 epochs) with ``data.root`` =
gs://genreclf-bench/gtzan on an emulator on 127.0.0.1 (gcsfs through STORAGE_EMULATOR_HOST,
TensorFlow through tests/support/gcs_tls_proxy.py), it runs and times:

1. ``dvc repro train_keras@cnn1d``: fetch, convert, split, shard (the shards to the bucket),
   train_keras@cnn1d (trained from gs://); the shard stage's own log lines are printed;
2. the same again: DVC must run nothing;
3. ``dvc repro -f -s shard``: a forced rerun, which must upload nothing;
4. data.root null, ``dvc repro -s shard``: the same shards as files of data/shards (the
   local path, reading the same WAV objects: convert is not rerun), to compare its time and
   bytes with the objects'; then data.root back, ``dvc repro -s shard``: restored from the run cache;
5. one object deleted, ``dvc repro -f -s train_keras@cnn1d``: it must fail naming the object.

--gtzan may name a folder of fewer clips (``<genre>/<genre>.NNNNN.wav``) for a quicker run.
The JSON (--json, default benchmarks/results/gcs_shards.json; benchmarks/record.py's document)
holds in ``figures``: ``clips`` (WAVs under --gtzan), ``steps``: one object per dvc command, in
order: ``project``, ``command``, ``exit_status``, ``seconds``; ``shard_objects``,
``shard_bytes``; ``checks``: each a boolean that should be true: ``second_repro_ran_nothing``,
``local_shards_are_the_objects``, ``missing_object_fails_naming_it``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402
from genreclf.artifacts import read_shard_manifest  # noqa: E402
from genreclf.data import gcs  # noqa: E402
from tests.support.gcs_emulator import GcsEmulator  # noqa: E402
from tests.support.gcs_tls_proxy import TlsProxy  # noqa: E402
from tests.support.helpers import set_params  # noqa: E402
from tests.support.pipeline_project import dvc, make_dvc_project  # noqa: E402

BUCKET = "genreclf-bench"
DATA_ROOT = f"gs://{BUCKET}/gtzan"
SHOWN_LINES = (
    "stages.convert: uploaded",
    "stages.shard: the MD5s",
    "stages.shard: uploaded",
    "stages.shard: wrote",
    "Running stage",
    "error:",
)
SHOWN_LINE_STARTS = ("Stage '", "ERROR")


def timed_dvc(
    project: Path,
    *args: str,
    check: bool = True,
    shown: tuple[str, ...] = SHOWN_LINES,
    steps: list[dict] | None = None,
) -> tuple[str, float]:
    """Run dvc ARGS in ``project``; print its exit status, its time and its lines that hold one of ``shown``;
    append them to ``steps``."""
    started = time.perf_counter()
    result = dvc(list(args), project, check=check)
    seconds = time.perf_counter() - started
    if steps is not None:
        steps.append(
            {
                "project": project.name,
                "command": " ".join(["dvc", *args]),
                "exit_status": result.returncode,
                "seconds": round(seconds, 2),
            }
        )
    print(f"$ dvc {' '.join(args)}  ->  exit {result.returncode} in {seconds:.1f} s")
    for line in result.stdout.splitlines():
        if any(word in line for word in shown) or line.startswith(SHOWN_LINE_STARTS):
            print("   ", line.strip()[:600])
    return result.stdout, seconds


def count_clips(gtzan: Path) -> int:
    return sum(1 for _ in gtzan.glob("*/*.wav"))


def run(gtzan: Path, workdir: Path) -> dict:
    emulator = GcsEmulator(workdir / "emulator", BUCKET)
    emulator.start()
    proxy = TlsProxy(workdir / "certificates", emulator.port)
    proxy.start()
    os.environ.update(proxy.environment())
    os.environ.update({gcs.EMULATOR_VARIABLE: emulator.endpoint, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
    steps, checks = [], {}
    try:
        params = {"data": {"root": DATA_ROOT}, "cnn1d": {"epochs": 2, "patience": 2}}
        project = make_dvc_project(workdir / "project", gtzan, params)
        timed_dvc(project, "repro", "train_keras@cnn1d", steps=steps)
        out, _ = timed_dvc(project, "repro", "train_keras@cnn1d", steps=steps)
        checks["second_repro_ran_nothing"] = "Running stage" not in out
        print("    second repro ran nothing:", checks["second_repro_ran_nothing"])
        timed_dvc(project, "repro", "-f", "-s", "shard", steps=steps)
        _, objects = read_shard_manifest(project / "data" / "shards")
        print(f"    {len(objects)} objects, {sum(o.size for o in objects)} bytes")
        set_params(project, {"data": {"root": None}})
        timed_dvc(project, "repro", "-s", "shard", steps=steps)
        local = {p.name: p.read_bytes() for p in (project / "data" / "shards").glob("*.tfrecord")}
        same = all(hashlib.md5(local[o.url.rsplit("/", 1)[1]]).hexdigest() == o.md5 for o in objects)
        checks["local_shards_are_the_objects"] = same and len(local) == len(objects)
        print(f"    local shards: {len(local)} files, the objects' bytes: {checks['local_shards_are_the_objects']}")
        set_params(project, {"data": {"root": DATA_ROOT}})
        timed_dvc(project, "repro", "-s", "shard", steps=steps)
        gcs.filesystem().rm(objects[0].url)
        out, _ = timed_dvc(project, "repro", "-f", "-s", "train_keras@cnn1d", check=False, steps=steps)
        checks["missing_object_fails_naming_it"] = steps[-1]["exit_status"] != 0 and objects[0].url in out
    finally:
        proxy.stop()
        emulator.stop()
    return {
        "clips": count_clips(gtzan),
        "steps": steps,
        "shard_objects": len(objects),
        "shard_bytes": sum(o.size for o in objects),
        "checks": checks,
    }


def main(run_in=run, doc: str = __doc__, name: str = "gcs_shards") -> None:
    """The command line of this benchmark (and of gcs_wavs.py): ``run_in(gtzan, workdir)`` gives the figures."""
    run_record = record.start(name)
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--gtzan", type=Path, default=ROOT.parent / "shared" / "data" / "gtzan_mini")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "benchmarks" / "results" / f"{name}.json",
        help="the figures' JSON (default %(default)s)",
    )
    args = parser.parse_args()
    os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    if args.workdir is None:
        with tempfile.TemporaryDirectory(prefix=name.replace("_", "-") + "-") as workdir:
            figures = run_in(args.gtzan.resolve(), Path(workdir))
    else:
        figures = run_in(args.gtzan.resolve(), args.workdir.resolve())
    record.write(args.json, run_record, figures)


if __name__ == "__main__":
    main()
