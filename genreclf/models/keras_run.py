"""What a Keras training run adds around training.train_model: the checks that need the data, the
step limit of benchmark runs, and the summary of the kept epoch (dvclive's callback is the
stage's: stages/live.py).

The step limit is built by a function, so that TensorFlow is imported only when it is asked for
(a stage checks its params first). ``where`` names the settings in messages (the stage passes
``params.yaml: <model>``), ``info_file`` the dataset's info file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from genreclf.errors import ParamError


def shortest_clip(dataset_info: dict) -> tuple[int, str]:
    """(samples, split) of the shortest clip over every split."""
    split, sizes = min(dataset_info["splits"].items(), key=lambda item: item[1]["min_samples"])
    return sizes["min_samples"], split


def check_settings_fit_data(model_name: str, settings: dict, dataset_info: dict, where: str, info_file: Path) -> None:
    """The checks that need the data: a cnn1d window or a cnn2d segment must fit in the shortest clip."""
    samples, split = shortest_clip(dataset_info)
    source = f"split '{split}', {info_file}"
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


def step_times_summary(seconds: list[float]) -> str:
    """'N training step(s): the first X s ..., then Y s/step over N-1 step(s)' (benchmarks parse it)."""
    if not seconds:
        return "0 training step(s)"
    text = f"{len(seconds)} training step(s): the first {seconds[0]:.2f} s (tracing, input start-up)"
    if len(seconds) > 1:
        text += f", then {sum(seconds[1:]) / (len(seconds) - 1):.3f} s/step over {len(seconds) - 1} step(s)"
    return text


def step_limit_callback(max_steps: int, log: Callable[[str], None]):
    """A Keras callback that ends the fit after ``max_steps`` training batches, ends each validation
    after as many, and logs the wall time of each step (input included) when the fit ends."""
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


def best_summary(result, clip_accuracy: float | None) -> dict:
    """metrics.json's "best": the kept epoch (a training.TrainingResult), its train and val values,
    and the clip-level val accuracy of the kept model (None when not computed)."""
    logs = result.best_logs
    return {
        "step": result.best_epoch,
        "train": {"loss": logs.get("loss"), "accuracy": logs.get("accuracy")},
        "eval": {"loss": logs.get("val_loss"), "accuracy": logs.get("val_accuracy"), "clip_accuracy": clip_accuracy},
    }


def val_clip_accuracy(result, dataset_info: dict, data_dir: Path, log: Callable[[str], None]) -> float:
    """The clip-level accuracy of the kept model on the val split (every unit of every clip), logged."""
    from genreclf.models.predictors import KerasPredictor

    val = KerasPredictor(result.model, result.preprocessing, dataset_info["labels"]).predict_split(data_dir, "val")
    unit = "" if val.unit_name == "clip" else f"val {val.unit_name} accuracy {val.unit_accuracy:.4f}, "
    val_loss = result.best_logs.get("val_loss", float("nan"))
    log(f"kept epoch {result.best_epoch}: val loss {val_loss:.4f}, {unit}val clip accuracy {val.clip_accuracy:.4f}")
    return val.clip_accuracy


def train_without_outputs(model_name: str, settings: dict, shard_dir: Path, dataset_info: dict, log) -> None:
    """A worker other than the chief: it trains in step with the others (the step limit of
    ``settings["max_steps"]`` too) and keeps nothing."""
    from genreclf.models import training

    limit = settings["max_steps"]
    callbacks = [] if limit is None else [step_limit_callback(limit, log)]
    result = training.train_model(model_name, settings, shard_dir, dataset_info, callbacks=callbacks, log=log)
    log(f"training time: {result.seconds:.1f} s for {result.epochs_run} epoch(s) (log only)")
