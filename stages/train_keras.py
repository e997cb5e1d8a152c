"""Stage train_keras: train one Keras model on the TFRecord shards, early-stopped on the val split.

    python -m stages.train_keras <cnn1d|mobilenet|cnn2d>

Reads params.yaml section <name>, data/shards (train and val splits; never test) and
data/shards/dataset_info.json. Writes:

- models/<name>/model.keras (byte-stable), preprocessing.json (how a raw clip becomes
  the model's input: "family": "keras", "model", "sample_rate", "labels" and every
  setting), labels.json;
- dvclive/<name>/metrics.json and dvclive/<name>/plots/metrics/{train,eval}/{loss,accuracy}.tsv:
  per-epoch train and val loss and accuracy (step = epoch). metrics.json holds the
  last epoch's values plus "best": the epoch whose weights were kept, its values and
  the clip-level val accuracy of the kept model.

models/<name> is written under a temporary name and swapped in when complete;
dvclive/<name> is written by dvclive epoch by epoch (so a run can be followed live)
and removed if the stage fails. dvclive is told to write nothing else (no dvc.yaml,
no report, no params, no timestamps). The training time goes to the log only.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from dvclive import Live
from genreclf.errors import ParamError
from genreclf.io import atomic_dir, write_json
from genreclf.models import keras_inference, keras_models, tfdata, training
from stages.common import run_stage, stage_logger
from stages.config import get, load_params, section

SHARD_DIR = Path("data/shards")
MODELS_DIR = Path("models")
DVCLIVE_DIR = Path("dvclive")
MODEL_NAMES = keras_models.MODEL_NAMES
N_FFT_DEFAULT = 2048            # optional keys mobilenet.n_fft, mobilenet.hop_length and cnn2d.n_fft
MOBILENET_HOP_DEFAULT = 512

log = stage_logger("train_keras")


def positive_int_list(sec: dict, key: str, where: str) -> list[int]:
    values = get(sec, key, where, types=list)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ParamError(f"{where}.{key} = {values!r}; expected a non-empty list of positive integers")
    return values


def read_common(sec: dict, where: str) -> dict:
    """Settings every Keras model has: epochs, batch, learning rate, patience, precision, seed, dropout."""
    settings = {
        "epochs": get(sec, "epochs", where, types=int, minimum=1),
        "batch_size": get(sec, "batch_size", where, types=int, minimum=1),
        "learning_rate": get(sec, "learning_rate", where, types=(int, float)),
        "patience": get(sec, "patience", where, types=int, minimum=0),
        "mixed_precision": get(sec, "mixed_precision", where, types=bool),
        "seed": get(sec, "seed", where, types=int, minimum=0),
        "dropout": get(sec, "dropout", where, types=(int, float), minimum=0),
    }
    if settings["learning_rate"] <= 0:
        raise ParamError(f"{where}.learning_rate = {settings['learning_rate']!r}; expected a positive number")
    if settings["dropout"] >= 1:
        raise ParamError(f"{where}.dropout = {settings['dropout']!r}; expected a rate in [0, 1)")
    return settings


def read_n_fft(sec: dict, where: str, n_mels: int) -> int:
    """n_fft (optional key, default 2048): at least 2 and with a frequency bin per mel band."""
    n_fft = get(sec, "n_fft", where, types=int, minimum=2) if "n_fft" in sec else N_FFT_DEFAULT
    if n_mels > n_fft // 2 + 1:
        raise ParamError(f"{where}: {n_mels} mel bands need n_fft >= {2 * (n_mels - 1)} "
                         f"(n_fft = {n_fft} gives {n_fft // 2 + 1} frequency bins); lower the mel bands or "
                         f"set {where.split(': ')[-1]}.n_fft")
    return n_fft


def shortest_clip(dataset_info: dict) -> tuple[int, str]:
    """(samples, split) of the shortest clip over every split."""
    split, sizes = min(dataset_info["splits"].items(), key=lambda item: item[1]["min_samples"])
    return sizes["min_samples"], split


def read_cnn1d(sec: dict, where: str, dataset_info: dict) -> dict:
    settings = {**read_common(sec, where),
                "window_size": get(sec, "window_size", where, types=int, minimum=1),
                "conv_filters": positive_int_list(sec, "conv_filters", where),
                "kernel_size": get(sec, "kernel_size", where, types=int, minimum=1),
                "pool_size": get(sec, "pool_size", where, types=int, minimum=1),
                "dense_units": positive_int_list(sec, "dense_units", where)}
    samples, split = shortest_clip(dataset_info)
    if settings["window_size"] > samples:
        raise ParamError(f"{where}.window_size = {settings['window_size']} samples is longer than the shortest "
                         f"clip ({samples} samples, split '{split}', data/shards/dataset_info.json); "
                         f"use at most {samples}")
    length = settings["window_size"]
    for _ in settings["conv_filters"]:
        length = (length - settings["kernel_size"] + 1) // settings["pool_size"]
    if length < 1:
        raise ParamError(f"{where}.window_size = {settings['window_size']} is too short for "
                         f"{len(settings['conv_filters'])} convolutions of kernel {settings['kernel_size']} "
                         f"each pooled by {settings['pool_size']}; use a longer window")
    return settings


def read_mobilenet(sec: dict, where: str, dataset_info: dict) -> dict:
    weights = get(sec, "weights", where, types=str, allow_none=True)
    if weights not in (None, "imagenet"):
        if not weights.endswith(".h5"):
            raise ParamError(f"{where}.weights = {weights!r}; expected imagenet, null or the path of a weights "
                             f"file (.h5 or .weights.h5)")
        if not Path(weights).is_file():
            raise ParamError(f"{where}.weights = {weights!r}: no such file (paths are relative to the "
                             f"repository root); give an existing weights file, imagenet or null")
    settings = {**read_common(sec, where), "weights": weights,
                "image_size": get(sec, "image_size", where, types=int,
                                  minimum=keras_models.MOBILENET_MIN_IMAGE_SIZE),
                "n_mels": get(sec, "n_mels", where, types=int, minimum=1),
                "alpha": get(sec, "alpha", where, types=(int, float)),
                "dense_units": get(sec, "dense_units", where, types=int, minimum=1),
                "fine_tune_layers": get(sec, "fine_tune_layers", where, types=int, minimum=0),
                "fine_tune_epochs": get(sec, "fine_tune_epochs", where, types=int, minimum=0),
                "fine_tune_learning_rate": get(sec, "fine_tune_learning_rate", where, types=(int, float)),
                "hop_length": (get(sec, "hop_length", where, types=int, minimum=1) if "hop_length" in sec
                               else MOBILENET_HOP_DEFAULT)}
    settings["n_fft"] = read_n_fft(sec, where, settings["n_mels"])
    if weights is None:
        log.warning("%s.weights is null: nothing to transfer, so the whole MobileNetV2 is trained from "
                    "scratch (use imagenet or a weights file for transfer learning)", where)
    if settings["alpha"] <= 0:
        raise ParamError(f"{where}.alpha = {settings['alpha']!r}; expected a positive width multiplier")
    if weights == "imagenet" and settings["alpha"] not in keras_models.MOBILENET_IMAGENET_ALPHAS:
        raise ParamError(f"{where}.alpha = {settings['alpha']!r} has no ImageNet weights; use one of "
                         f"{list(keras_models.MOBILENET_IMAGENET_ALPHAS)} or weights: null")
    if (settings["fine_tune_layers"] > 0) != (settings["fine_tune_epochs"] > 0):
        raise ParamError(f"{where}: fine_tune_layers = {settings['fine_tune_layers']} and fine_tune_epochs = "
                         f"{settings['fine_tune_epochs']}; set both > 0 to fine-tune, or both to 0")
    if weights is None and settings["fine_tune_layers"] > 0:
        raise ParamError(f"{where}.fine_tune_layers = {settings['fine_tune_layers']} with weights: null; "
                         f"without pretrained weights the whole network trains already: set "
                         f"fine_tune_layers and fine_tune_epochs to 0, or give imagenet or a weights file")
    if settings["fine_tune_learning_rate"] <= 0:
        raise ParamError(f"{where}.fine_tune_learning_rate = {settings['fine_tune_learning_rate']!r}; "
                         f"expected a positive number")
    return settings


def read_cnn2d(sec: dict, where: str, dataset_info: dict) -> dict:
    settings = {**read_common(sec, where),
                "segments_per_clip": get(sec, "segments_per_clip", where, types=int, minimum=1),
                "image_size": get(sec, "image_size", where, types=int, minimum=1),
                "hop_length": get(sec, "hop_length", where, types=int, minimum=1),
                "filters": positive_int_list(sec, "filters", where),
                "pools": positive_int_list(sec, "pools", where),
                "dense_units": get(sec, "dense_units", where, types=int, minimum=1),
                "loss": get(sec, "loss", where, types=str, choices=("softmax", "sigmoid"))}
    settings["n_fft"] = read_n_fft(sec, where, settings["image_size"])
    if len(settings["filters"]) != len(settings["pools"]):
        raise ParamError(f"{where}: filters {settings['filters']} and pools {settings['pools']} must have the "
                         f"same length (one max-pooling after each convolution)")
    samples, split = shortest_clip(dataset_info)
    frames = 1 + samples // settings["hop_length"]
    if frames < settings["image_size"]:
        needed = (settings["image_size"] - 1) * settings["hop_length"]
        raise ParamError(f"{where}: segments of image_size = {settings['image_size']} frames at hop_length = "
                         f"{settings['hop_length']} need clips of {needed} samples, but the shortest clip has "
                         f"{samples} ({frames} frames; split '{split}', data/shards/dataset_info.json); "
                         f"lower image_size or hop_length")
    return settings


READERS = {"cnn1d": read_cnn1d, "mobilenet": read_mobilenet, "cnn2d": read_cnn2d}


def read_settings(model_name: str, params: dict, dataset_info: dict) -> dict:
    """The validated settings of one Keras model, or a ParamError saying what to fix."""
    if model_name not in MODEL_NAMES:
        raise ParamError(f"unknown Keras model {model_name!r}; known models: {', '.join(MODEL_NAMES)}")
    where = f"params.yaml: {model_name}"
    return READERS[model_name](section(params, model_name), where, dataset_info)


def parse_model_name(argv: list[str]) -> str:
    if len(argv) != 1:
        raise ParamError(f"usage: python -m stages.train_keras <model>, with <model> one of "
                         f"{', '.join(MODEL_NAMES)}")
    return argv[0]


def main(argv: list[str] | None = None) -> None:
    model_name = parse_model_name(sys.argv[1:] if argv is None else argv)
    params = load_params()
    dataset_info = tfdata.read_dataset_info(SHARD_DIR)
    settings = read_settings(model_name, params, dataset_info)
    log.info("read params.yaml section %s: %s", model_name, settings)
    log.info("read %s: sample rate %d Hz, %d labels, clips %s", SHARD_DIR / tfdata.DATASET_INFO,
             dataset_info["sample_rate"], len(dataset_info["labels"]),
             {split: sizes["clips"] for split, sizes in sorted(dataset_info["splits"].items())})

    model_dir, live_dir = MODELS_DIR / model_name, DVCLIVE_DIR / model_name
    try:
        # dvclive writes live_dir epoch by epoch (so a running experiment can be followed);
        # it is removed below if the stage fails, so no partial training curves remain.
        live = Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None, monitor_system=False)
        result = training.train_model(model_name, settings, SHARD_DIR, dataset_info, live=live, log=log.info)
        log.info("training time: %.1f s for %d epoch(s) (log only)", result.seconds, result.epochs_run)

        predictor = keras_inference.KerasPredictor(result.model, result.preprocessing, dataset_info["labels"])
        val = keras_inference.predict_split(predictor, SHARD_DIR, "val")
        clip_accuracy = float(np.mean(val.probabilities.argmax(axis=1) == val.y_true))
        unit = "" if val.unit_name == "clip" else f"val {val.unit_name} accuracy {val.unit_accuracy:.4f}, "
        log.info("kept epoch %s: val loss %.4f, %sval clip accuracy %.4f",
                 result.best_epoch, result.best_logs.get("val_loss", float("nan")), unit, clip_accuracy)
        logs = result.best_logs
        live.summary["best"] = {
            "step": result.best_epoch,
            "train": {"loss": logs.get("loss"), "accuracy": logs.get("accuracy")},
            "eval": {"loss": logs.get("val_loss"), "accuracy": logs.get("val_accuracy"),
                     "clip_accuracy": clip_accuracy},
        }
        live.make_summary()

        with atomic_dir(model_dir) as model_tmp:
            training.save_model(result.model, model_tmp / training.MODEL_FILE)
            write_json(model_tmp / training.PREPROCESSING_FILE, result.preprocessing)
            write_json(model_tmp / training.LABELS_FILE, dataset_info["labels"])
    except BaseException:
        shutil.rmtree(live_dir, ignore_errors=True)
        log.error("removed %s: the run did not finish", live_dir)
        raise
    log.info("wrote %s/{%s,%s,%s} and %s/{metrics.json,plots/metrics}", model_dir, training.MODEL_FILE,
             training.PREPROCESSING_FILE, training.LABELS_FILE, live_dir)


if __name__ == "__main__":
    run_stage("train_keras", main)
