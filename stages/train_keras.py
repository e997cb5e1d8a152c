"""Stage train_keras: train one Keras model on the TFRecord shards, early-stopped on the val split.

    python -m stages.train_keras <cnn1d|mobilenet|cnn2d>

Reads params.yaml section <name> (checked first, before TensorFlow loads), data/shards (train
and val splits; never test) and data/shards/dataset_info.json. When data/shards holds a
shard_manifest.json (data.root on GCS), the shards are read by URL from the bucket, each object
checked against the manifest first (genreclf.models.tfdata.shard_files). Writes:

- models/<name>/model.keras (byte-stable), preprocessing.json (how a raw clip becomes the
  model's input: "family", "model", "sample_rate", "labels" and every setting), labels.json;
- dvclive/<name>/metrics.json and plots/metrics/{train,eval}/{loss,accuracy}.tsv: per-epoch
  values (step = epoch); metrics.json adds "best": the kept epoch, its values and the
  clip-level val accuracy of the kept model.

With TF_CONFIG naming several workers (docs/scaling.md), every worker trains under
MultiWorkerMirroredStrategy; only the chief (task "chief", or worker 0) writes the outputs.

A killed run (SIGKILL, a preempted machine) resumes: each epoch is backed up in
.genreclf-scratch/train_keras/<name>/<key>/ (outside the outputs; git and DVC ignore it), <key>
a hash of section <name>, the files in data/shards and the code (stages/, genreclf/), so that a
change of params, data or code starts over. A rerun goes on after the backup's last complete
epoch, dvclive's files put back as they were then; on the same machine it writes the same bytes
as an uninterrupted run (genreclf.models.resume). The backup is removed once the outputs are written.

models/<name> is written under a temporary name and swapped in when complete; dvclive/<name>
epoch by epoch (a run can be followed live), and removed if the stage fails. dvclive writes
nothing else (no dvc.yaml, report, params or timestamps). The training time goes to the log only.

Benchmarks only: with <name>.max_steps = N (null in a real run) the stage stops training after N
batches (each validation after as many) and logs the step times (benchmarks/rehearsal.py). The
model it writes is not a trained model.

The step limit, the checks that need the data and the summary: genreclf.models.keras_run.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from genreclf import catalog
from genreclf.artifacts import DATA_DIR, DATASET_INFO_FILE, MODELS_DIR, SHARD_DIR, read_dataset_info, write_model_folder
from genreclf.models import keras_run
from genreclf.models.cluster import VARIABLE as CLUSTER_VARIABLE
from genreclf.models.cluster import read_cluster
from genreclf.models.keras_run import step_limit_callback
from genreclf.models.keras_run import step_times_summary as step_times_summary  # benchmarks parse the log by it
from stages.common import run_stage, stage_logger
from stages.config import PARAMS_FILE, load_config
from stages.live import dvclive_callback, open_live

DVCLIVE_DIR = Path("dvclive")
SCRATCH_DIR = Path(".genreclf-scratch") / "train_keras"  # epoch backups of the runs under way

log = stage_logger("train_keras")


def parse_model_name(argv: list[str] | None) -> str:
    parser = argparse.ArgumentParser(
        prog="python -m stages.train_keras", description="Train one Keras model on the TFRecord shards."
    )
    parser.add_argument("model", choices=catalog.KERAS_MODELS, help="the model to train")
    return parser.parse_args(argv).model


def code_files() -> list[Path]:
    """The Python files of the stage layer and the library (a change of any starts a killed run over)."""
    here = Path(__file__).resolve().parent
    return sorted([*here.glob("*.py"), *(here.parent / "genreclf").rglob("*.py")])


def log_what_was_read(model_name: str, settings: dict, dataset_info: dict) -> None:
    log.info("read %s section %s: %s", PARAMS_FILE, model_name, settings)
    if settings["max_steps"] is not None:
        log.warning(
            "%s.max_steps = %d: a benchmark run that stops after as many training batches; "
            "the model written is NOT a trained model",
            *(model_name, settings["max_steps"]),
        )
    if model_name == "mobilenet" and settings["weights"] is None:
        log.warning(
            "mobilenet.weights is null: nothing to transfer, so the whole MobileNetV2 is trained from "
            "scratch (use imagenet or a weights file for transfer learning)"
        )
    clips = {split: sizes["clips"] for split, sizes in sorted(dataset_info["splits"].items())}
    info = (dataset_info["sample_rate"], len(dataset_info["labels"]), clips)
    log.info("read %s: sample rate %d Hz, %d labels, clips %s", SHARD_DIR / DATASET_INFO_FILE, *info)


def train_and_write(model_name: str, settings: dict, dataset_info: dict, live_dir: Path, scratch: Path) -> None:
    """Train (resuming from the backup in ``scratch``), log to ``live_dir``, write models/<name>."""
    from genreclf.models import training
    from genreclf.models.resume import TrainingBackup, backup_key

    max_steps = settings["max_steps"]  # benchmarks only: stop after this many training batches
    key = backup_key("train_keras", settings, [SHARD_DIR], code_files())
    backup = TrainingBackup(scratch / key, folders={"dvclive": live_dir})
    resumed = backup.load()
    if resumed is not None:  # dvclive's files as they were after the backup's epoch
        backup.restore_folders(resumed)
    live = open_live(live_dir, resumed is not None)
    callbacks = [dvclive_callback(live, resumed.epochs_done if resumed is not None else 0)]
    if max_steps is not None:
        callbacks.append(step_limit_callback(max_steps, log.info))
    result = training.train_model(
        model_name, settings, SHARD_DIR, dataset_info, callbacks=callbacks, log=log.info, backup=backup
    )
    log.info("training time: %.1f s for %d epoch(s) (log only)", result.seconds, result.epochs_run)
    clip_accuracy = None
    if max_steps is None:
        clip_accuracy = keras_run.val_clip_accuracy(result, dataset_info, DATA_DIR, log.info)
    else:  # every unit of every val clip would cost more than the bounded training itself
        log.info("%s.max_steps is set: the val clip accuracy is not computed", model_name)
    live.summary["best"] = keras_run.best_summary(result, clip_accuracy)
    live.make_summary()
    model_dir = MODELS_DIR / model_name
    save = lambda path: training.save_model(result.model, path)  # noqa: E731
    write_model_folder(model_dir, result.preprocessing, dataset_info["labels"], save)
    shutil.rmtree(scratch, ignore_errors=True)
    log.info("wrote %s/ (the model, preprocessing.json, labels.json) and %s/ (metrics, plots)", model_dir, live_dir)


def main(argv: list[str] | None = None) -> None:
    model_name = parse_model_name(argv)
    cluster = read_cluster()  # a malformed TF_CONFIG stops the stage here, before TensorFlow loads
    settings = load_config().model_section(model_name).model_dump()
    dataset_info = read_dataset_info(SHARD_DIR)
    where = f"{PARAMS_FILE}: {model_name}"
    keras_run.check_settings_fit_data(model_name, settings, dataset_info, where, SHARD_DIR / DATASET_INFO_FILE)
    log_what_was_read(model_name, settings, dataset_info)
    live_dir = DVCLIVE_DIR / model_name
    if cluster is not None and not cluster.is_chief:  # it trains in step with the others, writes nothing
        log.info("%s: %s; this worker writes no output", CLUSTER_VARIABLE, cluster.describe())
        keras_run.train_without_outputs(model_name, settings, SHARD_DIR, dataset_info, log.info)
        log.info("wrote nothing: the chief writes %s and %s", MODELS_DIR / model_name, live_dir)
        return
    try:
        # dvclive writes live_dir epoch by epoch (so a running experiment can be followed);
        # it is removed if the stage fails, so no partial training curves remain.
        train_and_write(model_name, settings, dataset_info, live_dir, SCRATCH_DIR / model_name)
    except BaseException:
        shutil.rmtree(live_dir, ignore_errors=True)
        log.error("removed %s: the run did not finish", live_dir)
        raise


if __name__ == "__main__":
    run_stage("train_keras", main)
