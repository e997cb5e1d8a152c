"""Stage train_keras: train one Keras model on the TFRecord shards, early-stopped on the val split.

    python -m stages.train_keras <cnn1d|mobilenet|cnn2d>

Reads params.yaml section <name> (checked first, before TensorFlow loads), data/shards (train
and val splits; never test) and data/shards/dataset_info.json. When data/shards holds a
shard_manifest.json (data.root on GCS), the shards are read by URL from the bucket, each object
checked against the manifest first (genreclf.models.tfdata.shard_files). Writes:

- models/<name>/model.keras (byte-stable), preprocessing.json (how a raw clip becomes
  the model's input: "family": "keras", "model", "sample_rate", "labels" and every
  setting), labels.json;
- dvclive/<name>/metrics.json and dvclive/<name>/plots/metrics/{train,eval}/{loss,accuracy}.tsv:
  per-epoch train and val loss and accuracy (step = epoch). metrics.json holds the
  last epoch's values plus "best": the epoch whose weights were kept, its values and
  the clip-level val accuracy of the kept model.

With TF_CONFIG naming several workers (README, "Train on several machines"), every worker
runs this stage on the same shards and trains under MultiWorkerMirroredStrategy; only the
chief (task "chief", or worker 0) writes the outputs: the others write nothing.

A killed run (SIGKILL, a preempted machine) resumes: each epoch is backed up in
.genreclf-scratch/train_keras/<name>/<key>/ (outside the outputs, which DVC deletes before
it runs the stage; git and DVC ignore the folder), <key> a hash of section <name>, the
names, sizes and modification times of the files in data/shards and the code (stages/,
genreclf/), so that a change of params, data or code starts over. A rerun finds the backup
and goes on after its last complete epoch, dvclive's files put back as they were then; on
the same machine it writes the same bytes as an uninterrupted run (what the backup holds:
genreclf.models.resume). The folder .genreclf-scratch/train_keras/<name> is removed once
the outputs are written.

models/<name> is written under a temporary name and swapped in when complete;
dvclive/<name> is written by dvclive epoch by epoch (so a run can be followed live)
and removed if the stage fails. dvclive is told to write nothing else (no dvc.yaml,
no report, no params, no timestamps). The training time goes to the log only.

Benchmarks only: with <name>.max_steps = N (a param, null in a real run) the stage stops
training after N batches (over as many epochs as that takes, each validated on at most N
batches) and logs the step times, to time the steps at full size (benchmarks/rehearsal.py).
The model it writes is not a trained model.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from genreclf import catalog
from genreclf.artifacts import (
    DATA_DIR,
    DATASET_INFO_FILE,
    LABELS_FILE,
    MODEL_FILES,
    MODELS_DIR,
    PREPROCESSING_FILE,
    SHARD_DIR,
    read_dataset_info,
    write_model_folder,
)
from genreclf.errors import ParamError
from genreclf.models.cluster import VARIABLE as CLUSTER_VARIABLE
from genreclf.models.cluster import read_cluster
from stages.common import run_stage, stage_logger
from stages.config import PARAMS_FILE, load_config

DVCLIVE_DIR = Path("dvclive")
SCRATCH_DIR = Path(".genreclf-scratch") / "train_keras"  # epoch backups of the runs under way

log = stage_logger("train_keras")


def shortest_clip(dataset_info: dict) -> tuple[int, str]:
    """(samples, split) of the shortest clip over every split."""
    split, sizes = min(dataset_info["splits"].items(), key=lambda item: item[1]["min_samples"])
    return sizes["min_samples"], split


def check_settings_fit_data(model_name: str, settings: dict, dataset_info: dict) -> None:
    """The checks that need the data: a cnn1d window or a cnn2d segment must fit in the shortest clip."""
    where = f"{PARAMS_FILE}: {model_name}"
    samples, split = shortest_clip(dataset_info)
    source = f"split '{split}', {SHARD_DIR / DATASET_INFO_FILE}"
    if model_name == "cnn1d" and settings["window_size"] > samples:
        raise ParamError(
            f"{where}.window_size = {settings['window_size']} samples is longer than the shortest "
            f"clip ({samples} samples, {source}); use at most {samples}"
        )
    if model_name == "cnn2d":
        frames = 1 + samples // settings["hop_length"]
        if frames < settings["image_size"]:
            needed = (settings["image_size"] - 1) * settings["hop_length"]
            raise ParamError(
                f"{where}: segments of image_size = {settings['image_size']} frames at hop_length = "
                f"{settings['hop_length']} need clips of {needed} samples, but the shortest clip has "
                f"{samples} ({frames} frames; {source}); lower image_size or hop_length"
            )


def parse_model_name(argv: list[str] | None) -> str:
    parser = argparse.ArgumentParser(
        prog="python -m stages.train_keras", description="Train one Keras model on the TFRecord shards."
    )
    parser.add_argument("model", choices=catalog.KERAS_MODELS, help="the model to train")
    return parser.parse_args(argv).model


def step_times_summary(seconds: list[float]) -> str:
    """'N training step(s): the first X s ..., then Y s/step over N-1 step(s)' (benchmarks parse it)."""
    if not seconds:
        return "0 training step(s)"
    text = f"{len(seconds)} training step(s): the first {seconds[0]:.2f} s (tracing, input start-up)"
    if len(seconds) > 1:
        text += f", then {sum(seconds[1:]) / (len(seconds) - 1):.3f} s/step over {len(seconds) - 1} step(s)"
    return text


def step_limit_callback(max_steps: int, log):
    """A Keras callback that ends the fit after ``max_steps`` training batches, ends each validation
    after as many, and logs the wall time of each step (input included) when the fit ends.
    Built here so that TensorFlow is imported only once the params are known to be good."""
    import keras

    class StepLimit(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.seconds, self.evaluated = [], 0

        def on_train_batch_begin(self, batch, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)
            if len(self.seconds) >= max_steps:
                self.model.stop_training = True

        def on_test_begin(self, logs=None):
            self.evaluated = 0

        def on_test_batch_end(self, batch, logs=None):
            self.evaluated += 1
            if self.evaluated >= max_steps:
                self.model.stop_evaluating = True

        def on_train_end(self, logs=None):
            log(f"step times: {step_times_summary(self.seconds)}")

    return StepLimit()


def code_files() -> list[Path]:
    """The Python files of the stage layer and the library (a change of any starts a killed run over)."""
    here = Path(__file__).resolve().parent
    return sorted([*here.glob("*.py"), *(here.parent / "genreclf").rglob("*.py")])


def dvclive_callback(live, epochs_logged: int = 0):
    """dvclive's Keras callback, its steps continued over several fits (MobileNetV2's fine-tuning)
    and after the ``epochs_logged`` of a resumed run: ``live.end()`` at the end of a fit rewinds
    the step to the last epoch logged.
    Built here so that TensorFlow is imported only once the params are known to be good."""
    from dvclive.keras import DVCLiveCallback

    class DVCLiveSteps(DVCLiveCallback):
        def __init__(self):
            super().__init__(live=live)
            self.epochs_logged = epochs_logged

        def on_train_begin(self, logs=None):
            if self.epochs_logged:
                self.live.step = self.epochs_logged

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            self.epochs_logged += 1

    return DVCLiveSteps()


def train_without_outputs(
    model_name: str, settings: dict, dataset_info: dict, task: str, max_steps: int | None
) -> None:
    """A worker other than the chief: it trains in step with the others and writes nothing."""
    from genreclf.models import training

    log.info("%s: %s; this worker writes no output", CLUSTER_VARIABLE, task)
    callbacks = [] if max_steps is None else [step_limit_callback(max_steps, log.info)]
    result = training.train_model(model_name, settings, SHARD_DIR, dataset_info, callbacks=callbacks, log=log.info)
    log.info("training time: %.1f s for %d epoch(s) (log only)", result.seconds, result.epochs_run)


def main(argv: list[str] | None = None) -> None:
    model_name = parse_model_name(argv)
    cluster = read_cluster()  # a malformed TF_CONFIG stops the stage here, before TensorFlow loads
    settings = load_config().model_section(model_name).model_dump()
    dataset_info = read_dataset_info(SHARD_DIR)
    check_settings_fit_data(model_name, settings, dataset_info)
    max_steps = settings["max_steps"]  # benchmarks only: stop after this many training batches
    limit_source = f"{model_name}.max_steps"
    # TensorFlow takes seconds to load: only once the params are known to be good.
    from dvclive import Live
    from genreclf.models import training
    from genreclf.models.predictors import KerasPredictor
    from genreclf.models.resume import TrainingBackup, backup_key

    log.info("read %s section %s: %s", PARAMS_FILE, model_name, settings)
    if max_steps is not None:
        log.warning(
            "%s = %d: a benchmark run that stops after %d training batches; the model written is NOT a trained model",
            limit_source,
            max_steps,
            max_steps,
        )
    if model_name == "mobilenet" and settings["weights"] is None:
        log.warning(
            "mobilenet.weights is null: nothing to transfer, so the whole MobileNetV2 is trained from "
            "scratch (use imagenet or a weights file for transfer learning)"
        )
    log.info(
        "read %s: sample rate %d Hz, %d labels, clips %s",
        SHARD_DIR / DATASET_INFO_FILE,
        dataset_info["sample_rate"],
        len(dataset_info["labels"]),
        {split: sizes["clips"] for split, sizes in sorted(dataset_info["splits"].items())},
    )

    model_dir, live_dir = MODELS_DIR / model_name, DVCLIVE_DIR / model_name
    scratch = SCRATCH_DIR / model_name
    if cluster is not None and not cluster.is_chief:
        train_without_outputs(model_name, settings, dataset_info, cluster.describe(), max_steps)
        log.info("wrote nothing: the chief writes %s and %s", model_dir, live_dir)
        return
    try:
        # dvclive writes live_dir epoch by epoch (so a running experiment can be followed);
        # it is removed below if the stage fails, so no partial training curves remain.
        backup = TrainingBackup(
            scratch / backup_key("train_keras", settings, [SHARD_DIR], code_files()), folders={"dvclive": live_dir}
        )
        resumed = backup.load()
        if resumed is not None:  # dvclive's files as they were after the backup's epoch
            backup.restore_folders(resumed)
        live = Live(
            dir=str(live_dir),
            resume=resumed is not None,
            dvcyaml=False,
            save_dvc_exp=False,
            report=None,
            monitor_system=False,
        )
        callbacks = [dvclive_callback(live, resumed.epochs_done if resumed is not None else 0)]
        if max_steps is not None:
            callbacks.append(step_limit_callback(max_steps, log.info))
        result = training.train_model(
            model_name, settings, SHARD_DIR, dataset_info, callbacks=callbacks, log=log.info, backup=backup
        )
        log.info("training time: %.1f s for %d epoch(s) (log only)", result.seconds, result.epochs_run)

        clip_accuracy = None
        if max_steps is None:
            val = KerasPredictor(result.model, result.preprocessing, dataset_info["labels"]).predict_split(
                DATA_DIR, "val"
            )
            unit = "" if val.unit_name == "clip" else f"val {val.unit_name} accuracy {val.unit_accuracy:.4f}, "
            clip_accuracy = val.clip_accuracy
            log.info(
                "kept epoch %s: val loss %.4f, %sval clip accuracy %.4f",
                result.best_epoch,
                result.best_logs.get("val_loss", float("nan")),
                unit,
                clip_accuracy,
            )
        else:  # every unit of every val clip would cost more than the bounded training itself
            log.info("%s is set: the val clip accuracy is not computed", limit_source)
        logs = result.best_logs
        live.summary["best"] = {
            "step": result.best_epoch,
            "train": {"loss": logs.get("loss"), "accuracy": logs.get("accuracy")},
            "eval": {
                "loss": logs.get("val_loss"),
                "accuracy": logs.get("val_accuracy"),
                "clip_accuracy": clip_accuracy,
            },
        }
        live.make_summary()
        write_model_folder(
            model_dir,
            result.preprocessing,
            dataset_info["labels"],
            lambda path: training.save_model(result.model, path),
        )
        shutil.rmtree(scratch, ignore_errors=True)
    except BaseException:
        shutil.rmtree(live_dir, ignore_errors=True)
        log.error("removed %s: the run did not finish", live_dir)
        raise
    log.info(
        "wrote %s/{%s,%s,%s} and %s/{metrics.json,plots/metrics}",
        model_dir,
        MODEL_FILES["keras"],
        PREPROCESSING_FILE,
        LABELS_FILE,
        live_dir,
    )


if __name__ == "__main__":
    run_stage("train_keras", main)
