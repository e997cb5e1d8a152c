"""Training the Keras models: devices, seeds, precision, input pipelines, early stopping, saving.

``train_model`` does the whole run for one model given plain, checked settings, in steps:

1. seeds (``keras.utils.set_random_seed``) and deterministic ops
   (``tf.config.experimental.enable_op_determinism``): same settings and data give
   the same model, byte for byte (``save_model``);
2. a distribution strategy chosen from TF_CONFIG and the devices (``choose_strategy_kind``:
   several workers in TF_CONFIG -> MultiWorkerMirroredStrategy, TPU -> TPUStrategy, several
   GPUs -> MirroredStrategy, else the default strategy); the batch size in the settings is
   per replica;
3. optional ``mixed_float16`` (GPU only; ignored with a log line elsewhere);
4. tf.data pipelines of the train and val splits (``genreclf.models.tfdata``), cached in
   memory when they fit (``cache_plan``); they ship int16 audio, and the spectrogram
   models (mobilenet, cnn2d) compute their log-mel images in their first layer;
5. ``fit`` with early stopping on the validation loss and the weights of the best
   validation epoch restored at the end (across both phases for MobileNetV2
   fine-tuning). The test split is never read here. Under MultiWorkerMirroredStrategy,
   where ``model.fit`` fails, the same callbacks run in a loop of ``strategy.run``
   (``genreclf.models.distributed``), and the model returned is a copy outside the strategy.
   Each epoch's batches come from the seed and the epoch's number (``tfdata.training_epochs``);
   with a ``resume.TrainingBackup``, every epoch is backed up and a run that finds a backup
   goes on after its epoch, to the same bytes (``genreclf.models.resume``).

Callbacks other than those (progress logging such as dvclive's) come from the caller.
"""

from __future__ import annotations

import hashlib
import io as _io
import json
import logging
import math
import os
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from genreclf.artifacts import MODEL_FILES
from genreclf.errors import ParamError
from genreclf.features import spectrograms
from genreclf.io import reproducible_zip
from genreclf.models import cluster as cluster_config
from genreclf.models import distributed, keras_models, resume, tfdata

MONITOR = "val_loss"
logger = logging.getLogger(__name__)
# what keras writes into metadata.json at save time and must not reach the model file
UNSTABLE_ZIP_KEYS = {"metadata.json": ["date_saved"]}


# ---- settings -> preprocessing and architecture --------------------------------------


# How each input is made, in words, for preprocessing.json (the settings' values are added to them).
AUDIO_DESCRIPTION = {
    "audio_scaling": "int16 samples / 32768",
    "clip_prediction": "mean of the units' probabilities",
}
WAVEFORM_DESCRIPTION = {
    "input": "waveform_windows",
    "unit": "window",
    "training_units": "one random window per clip and epoch",
    "evaluation_units": "consecutive non-overlapping windows (the rest of the clip is dropped)",
}
SPECTROGRAM_DESCRIPTION = {
    "top_db": spectrograms.TOP_DB,
    "stft": "centred frames (n_fft // 2 zeros padded at each end), periodic Hann window, power",
    "mel_filterbank": "librosa.filters.mel (Slaney scale and normalisation)",
    "image_layout": "height = mel bands (lowest at the bottom row), width = frames",
    "spectrogram_layer": "computed in the model's first layer (genreclf>SpectrogramLayer, float32) "
    "from the int16 audio that tf.data ships",
}
IMAGE_DESCRIPTION = {
    "input": "audio_clip",
    "unit": "clip",
    "clip_length": "the first clip_samples samples (the longest training clip), zero-padded at the end",
    "decibels": "librosa.power_to_db(ref=clip maximum, top_db=80), scaled (dB + 80) / 80 to [0, 1]",
    "channels": 3,
    "resize": "bilinear with antialiasing to image_size x image_size",
    "pixels": "x 255, copied to 3 channels, keras.applications.mobilenet_v2.preprocess_input",
}
SEGMENTS_DESCRIPTION = {
    "input": "audio_segments",
    "unit": "segment",
    "segment_starts": "evenly spaced frames of the clip's centred STFT from the first to the last possible "
    "start (rounded linspace; segments may overlap)",
    "segment_audio": "segment_samples = (image_size - 1) * hop_length + n_fft samples of the centre-padded "
    "clip: exactly the image_size frames' windows (uncentred STFT in the layer)",
    "decibels": "librosa.power_to_db(ref=segment maximum, top_db=80), scaled (dB + 80) / 80 to [0, 1]",
}
SIGMOID_CLIP_PREDICTION = "mean of the segments' sigmoid outputs, normalised to sum to 1"


def preprocessing_for(
    model_name: str, sample_rate: int, labels: list[str], settings: dict, clip_samples: int | None = None
) -> dict:
    """Everything that turns a raw clip into the model's inputs (written to preprocessing.json).

    ``clip_samples`` (mobilenet only): the fixed length of its clips, the longest training clip.
    """
    common = {"family": "keras", "model": model_name, "sample_rate": sample_rate, "labels": list(labels)}
    common.update(AUDIO_DESCRIPTION)
    if model_name == "cnn1d":
        return {
            **common,
            **WAVEFORM_DESCRIPTION,
            "output_activation": "softmax",
            "window_size": settings["window_size"],
        }
    if model_name not in ("mobilenet", "cnn2d"):
        raise ValueError(f"unknown model {model_name!r}; known: {list(keras_models.MODEL_NAMES)}")
    spectrogram = {
        **common,
        **SPECTROGRAM_DESCRIPTION,
        "n_fft": settings["n_fft"],
        "hop_length": settings["hop_length"],
    }
    spectrogram["image_size"] = settings["image_size"]
    if model_name == "mobilenet":
        if clip_samples is None:
            raise ValueError("mobilenet's preprocessing needs clip_samples (the longest training clip)")
        image = {**spectrogram, **IMAGE_DESCRIPTION, "output_activation": "softmax", "n_mels": settings["n_mels"]}
        return {**image, "clip_samples": int(clip_samples)}
    segments = {**spectrogram, **SEGMENTS_DESCRIPTION, "output_activation": settings["loss"]}
    segments.update(n_mels=settings["image_size"], segments_per_clip=settings["segments_per_clip"])
    segments["segment_samples"] = spectrograms.segment_samples(
        settings["image_size"], settings["n_fft"], settings["hop_length"]
    )
    if settings["loss"] == "sigmoid":
        segments["clip_prediction"] = SIGMOID_CLIP_PREDICTION
    return segments


# The settings each model's builder takes as keyword arguments of the same name (besides num_classes).
BUILDER_SETTINGS = {
    "cnn1d": ("window_size", "conv_filters", "kernel_size", "pool_size", "dense_units", "dropout"),
    "mobilenet": ("image_size", "weights", "alpha", "dense_units", "dropout"),
    "cnn2d": ("image_size", "filters", "pools", "dense_units", "dropout"),
}


def front_end_for(preprocessing: dict | None) -> keras_models.AudioFrontEnd | None:
    """The spectrogram layer and audio length of an "audio_clip"/"audio_segments" input, else None."""
    kind = (preprocessing or {}).get("input")
    if kind not in ("audio_clip", "audio_segments"):
        return None
    layer = spectrograms.SpectrogramLayer(
        "mobilenet_image" if kind == "audio_clip" else "segment_image",
        preprocessing["sample_rate"],
        preprocessing["n_fft"],
        preprocessing["hop_length"],
        preprocessing["n_mels"],
        preprocessing["image_size"],
        name="spectrogram",
    )
    if kind == "audio_clip":
        samples = preprocessing["clip_samples"]
    else:  # as tfdata slices them
        samples = spectrograms.segment_samples(
            preprocessing["image_size"], preprocessing["n_fft"], preprocessing["hop_length"]
        )
    return keras_models.AudioFrontEnd(samples, layer)


def build_model(model_name: str, settings: dict, num_classes: int, preprocessing: dict | None = None) -> keras.Model:
    """The uncompiled model for the validated settings of one model.

    With the ``preprocessing`` of an "audio_clip"/"audio_segments" input, the model takes
    that int16 audio and makes its images in its first layer (``front_end_for``).
    """
    builders = {
        "cnn1d": keras_models.build_cnn1d,
        "mobilenet": keras_models.build_mobilenet,
        "cnn2d": keras_models.build_cnn2d,
    }
    if model_name not in builders:
        raise ValueError(f"unknown model {model_name!r}; known: {list(keras_models.MODEL_NAMES)}")
    arguments = {key: settings[key] for key in BUILDER_SETTINGS[model_name]}
    front_end = front_end_for(preprocessing)
    if front_end is not None:
        arguments["front_end"] = front_end
    if model_name == "cnn2d":
        arguments["output_activation"] = settings["loss"]
    return builders[model_name](num_classes=num_classes, **arguments)


# ---- devices, seeds, precision, memory ------------------------------------------------


def choose_strategy_kind(tpu_devices: list, gpu_devices: list, workers: int = 1) -> str:
    """ "multi_worker" if TF_CONFIG names several ``workers``, else "tpu" if any TPU, "mirrored" if
    several GPUs, else "default" (one GPU or the CPU)."""
    if workers > 1:
        if tpu_devices:
            raise ParamError(
                f"{cluster_config.VARIABLE} names {workers} workers, but this machine has a TPU: TPUStrategy spans "
                f"the hosts of a TPU pod slice itself; unset {cluster_config.VARIABLE} there"
            )
        return "multi_worker"
    if tpu_devices:
        return "tpu"
    if len(gpu_devices) > 1:
        return "mirrored"
    return "default"


def detect_devices() -> tuple[list, list]:
    """(TPU devices, GPU devices) visible to TensorFlow.

    A TPU is looked for only where one can be: TPU_NAME set (Cloud TPU node) or TPU
    devices visible locally (TPU VM); no network probe otherwise.
    """
    tpus = list(tf.config.list_physical_devices("TPU"))
    if not tpus and os.environ.get("TPU_NAME"):
        tpus = [os.environ["TPU_NAME"]]
    return tpus, list(tf.config.list_physical_devices("GPU"))


def make_strategy(kind: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy of a kind from ``choose_strategy_kind``."""
    if kind == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", "local"))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi_worker":  # reads TF_CONFIG; must come before any other TensorFlow op
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown strategy kind {kind!r}")


def global_batch_size(per_replica: int, replicas: int) -> int:
    return per_replica * replicas


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; make TensorFlow ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def precision_policy(mixed_precision: bool, strategy_kind: str, gpu_devices: list) -> str:
    """Keras dtype policy: "mixed_float16" on GPUs if asked, "mixed_bfloat16" on TPUs, else "float32"."""
    if not mixed_precision:
        return "float32"
    if strategy_kind == "tpu":
        return "mixed_bfloat16"
    return "mixed_float16" if gpu_devices else "float32"


def cache_plan(
    split_bytes: dict[str, int], available_bytes: int | None, fraction: float = tfdata.CACHE_MEMORY_FRACTION
) -> dict[str, bool]:
    """Which splits to cache, in the given order, while their total fits in ``fraction`` of the memory."""
    plan, used = {}, 0
    for split, needed in split_bytes.items():
        plan[split] = tfdata.should_cache(used + needed, available_bytes, fraction)
        if plan[split]:
            used += needed
    return plan


# ---- best weights over one or more fits ----------------------------------------------


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the lowest validation loss, across several ``fit`` calls.

    ``epochs_done`` counts every epoch seen (the dvclive step of the next one);
    ``restore()`` puts the best weights back.
    """

    def __init__(self, monitor: str = MONITOR):
        super().__init__()
        self.monitor = monitor
        self.best_value = math.inf
        self.best_epoch: int | None = None
        self.best_logs: dict = {}
        self.best_weights: list | None = None
        self.epochs_done = 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is not None and value < self.best_value:
            self.best_value = float(value)
            self.best_epoch = self.epochs_done
            self.best_logs = {k: float(v) for k, v in logs.items()}
            self.best_weights = [(w, np.array(w.numpy())) for w in self.model.weights]
        self.epochs_done += 1

    def restore(self) -> None:
        for variable, value in self.best_weights or []:
            variable.assign(value)


# ---- training, step by step ------------------------------------------------------------


@dataclass
class Devices:
    kind: str  # choose_strategy_kind: "multi_worker", "tpu", "mirrored" or "default"
    strategy: tf.distribute.Strategy
    gpus: list
    global_batch: int  # the settings' batch size per replica x the replicas


@dataclass
class Datasets:
    # one epoch's batches, iterated again each epoch; or (first epoch, epochs) -> the batches of those
    # epochs one after the other, each epoch's order from the seed and its number (tfdata.training_epochs)
    train: tf.data.Dataset | Callable[[int, int], tf.data.Dataset]
    val: tf.data.Dataset
    units_per_epoch: int


@dataclass
class TrainingResult:
    model: keras.Model
    preprocessing: dict
    best_epoch: int | None  # 0-based over all epochs (= the dvclive step)
    best_logs: dict  # loss, accuracy, val_loss, val_accuracy of that epoch
    epochs_run: int
    seconds: float  # wall time of the fits (for the log only)


def set_up_devices(batch_size: int, log: Callable[[str], None]) -> Devices:
    """The distribution strategy of TF_CONFIG and the devices here, and the global batch size."""
    cluster = cluster_config.read_cluster()
    tpus, gpus = detect_devices()
    kind = choose_strategy_kind(tpus, gpus, cluster.workers if cluster else 1)
    strategy = make_strategy(kind)
    replicas = strategy.num_replicas_in_sync
    batch = global_batch_size(batch_size, replicas)
    where = f"; {cluster_config.VARIABLE}: {cluster.describe()}" if cluster else ""
    log(
        f"strategy: {kind} ({replicas} replica(s), {len(gpus)} GPU(s), {len(tpus)} TPU(s){where}); "
        f"global batch {batch} = {batch_size} per replica x {replicas}"
    )
    return Devices(kind, strategy, gpus, batch)


def set_up_precision(mixed_precision: bool, devices: Devices, log: Callable[[str], None]) -> None:
    """Set Keras' global dtype policy (see ``precision_policy``)."""
    policy = precision_policy(mixed_precision, devices.kind, devices.gpus)
    if mixed_precision and policy == "float32":
        log("mixed_precision: true is ignored: no GPU or TPU here (training in float32)")
    keras.mixed_precision.set_global_policy(policy)
    log(f"dtype policy: {policy}")


def make_datasets(
    shard_dir: str | Path,
    dataset_info: dict,
    preprocessing: dict,
    settings: dict,
    devices: Devices,
    log: Callable[[str], None],
) -> Datasets:
    """The train and val pipelines, each cached in memory when it fits (``cache_plan``)."""
    splits = dataset_info["splits"]
    needed = {
        split: splits[split]["clips"] * tfdata.feature_bytes_per_clip(preprocessing, splits[split]["max_samples"])
        for split in ("train", "val")
    }
    available = tfdata.available_memory_bytes()
    plan = cache_plan(needed, available)
    for split in needed:
        log(
            f"cache {split}: {'yes' if plan[split] else 'no'} (needs about {needed[split] / 2**20:.0f} MiB; "
            f"available {'unknown' if available is None else f'{available / 2**20:.0f} MiB'}, "
            f"cache limit {tfdata.CACHE_MEMORY_FRACTION:.0%} of it and {tfdata.cache_limit_bytes() / 2**20:.0f} MiB; "
            f"{tfdata.CACHE_LIMIT_VARIABLE} sets the MiB; without the cache the shards are read every epoch)"
        )
    num_classes, train_clips = len(dataset_info["labels"]), splits["train"]["clips"]

    def train(first_epoch: int, epochs: int) -> tf.data.Dataset:
        return tfdata.training_epochs(
            shard_dir,
            "train",
            preprocessing,
            num_classes,
            devices.global_batch,
            settings["seed"],
            train_clips,
            first_epoch,
            epochs,
            cache=plan["train"],
            drop_remainder=devices.kind == "tpu",
        )

    val_units = settings.get("val_windows_per_clip")  # cnn1d: the val loss per epoch on fewer windows
    val = tfdata.validation_dataset(
        shard_dir, "val", preprocessing, num_classes, devices.global_batch, cache=plan["val"], units_per_clip=val_units
    )
    if val_units is not None:
        log(f"validation each epoch: {val_units} evenly spaced {tfdata.UNIT_NAMES[preprocessing['input']]}s per clip")
    return Datasets(train, val, train_clips * tfdata.training_unit_count(preprocessing))


def build_and_compile(
    model_name: str, settings: dict, preprocessing: dict, num_classes: int, strategy: tf.distribute.Strategy
) -> keras.Model:
    with strategy.scope():
        model = build_model(model_name, settings, num_classes, preprocessing)
        keras_models.compile_model(model, settings["learning_rate"], preprocessing["output_activation"])
    return model


def fine_tune_layer_count(model_name: str, settings: dict, model: keras.Model) -> int:
    """The layers of MobileNetV2's base to fine-tune after the first fit (0: no fine-tuning)."""
    fine_tune_layers = settings.get("fine_tune_layers", 0) if model_name == "mobilenet" else 0
    if fine_tune_layers and fine_tune_layers > len(keras_models.mobilenet_base(model).layers):
        raise ParamError(
            f"mobilenet fine_tune_layers = {fine_tune_layers}, but the MobileNetV2 "
            f"base has only {len(keras_models.mobilenet_base(model).layers)} layers; lower it"
        )
    return fine_tune_layers


def fit_callbacks(
    data: Datasets,
    epochs: int,
    patience: int,
    batch: int,
    callbacks: list,
    after_stopper: Callable[[keras.callbacks.EarlyStopping], list] | None = None,
) -> list:
    """The caller's callbacks, then early stopping on the validation loss (and what ``after_stopper``
    makes of it: the backup) and a progress bar over the units."""
    from tqdm.keras import TqdmCallback

    stopper = keras.callbacks.EarlyStopping(monitor=MONITOR, patience=patience)
    progress = TqdmCallback(epochs=epochs, data_size=data.units_per_epoch, batch_size=batch, verbose=1)
    return [*callbacks, stopper, *(after_stopper(stopper) if after_stopper else []), progress]


def fit(
    model: keras.Model,
    data: Datasets,
    epochs: int,
    patience: int,
    devices: Devices,
    callbacks: list,
    initial_epoch: int = 0,
    epoch_offset: int = 0,
    after_stopper: Callable[[keras.callbacks.EarlyStopping], list] | None = None,
) -> None:
    """One ``fit`` of epochs ``initial_epoch`` .. ``epochs - 1``, early-stopped on the validation loss,
    with a progress bar over the training units. ``epoch_offset``: the epochs of earlier fits (the
    training batches of an epoch are those of its number over all fits).

    Under MultiWorkerMirroredStrategy, ``distributed.fit_with_strategy`` in its place (``model.fit`` fails there).
    """
    callbacks = fit_callbacks(data, epochs, patience, devices.global_batch, callbacks, after_stopper)
    train, steps = data.train, None
    if callable(train):
        train = train(epoch_offset + initial_epoch, epochs - initial_epoch)
        steps = int(train.cardinality()) // (epochs - initial_epoch)
    if devices.kind == "multi_worker":
        distributed.fit_with_strategy(model, train, data.val, epochs, devices.strategy, callbacks, steps)
        return
    with warnings.catch_warnings():
        # the validation set's size (windows per clip) is unknown until read once; Keras
        # warns when it first runs out. The training set's size is asserted in tfdata.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        model.fit(
            train,
            validation_data=data.val,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            verbose=0,
            shuffle=False,
            callbacks=callbacks,
        )


def prepare_fine_tuning(model: keras.Model, layers: int, settings: dict, devices: Devices) -> None:
    """The second phase of MobileNetV2: unfreeze the top ``layers`` of the base, compile at the fine-tuning rate."""
    with devices.strategy.scope():
        keras_models.unfreeze_top_layers(model, layers)
        keras_models.compile_model(model, settings["fine_tune_learning_rate"])


def restore_best_weights(best: BestWeights, log: Callable[[str], None]) -> None:
    """Put back the weights of the epoch of lowest validation loss (the last ones if none was finite)."""
    if best.best_weights is None:
        log("warning: the validation loss was never finite; keeping the last weights")
    best.restore()


def resume_best(best: BestWeights, state: resume.BackupState, backup: resume.TrainingBackup, model) -> None:
    """BestWeights as the backup left it."""
    saved = state.best
    best.best_value, best.best_epoch = saved["best_value"], saved["best_epoch"]
    best.best_logs, best.epochs_done = saved["best_logs"], saved["epochs_done"]
    arrays = backup.best_arrays(state)
    best.best_weights = None if arrays is None else list(zip(model.weights, arrays, strict=True))


def train_model(
    model_name: str,
    settings: dict,
    shard_dir: str | Path,
    dataset_info: dict,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    log: Callable[[str], None] | None = None,
    backup: resume.TrainingBackup | None = None,
) -> TrainingResult:
    """Train one model on the train split, early-stopped on the val split; return it with its best epoch.

    ``settings``: the validated settings of the model. ``callbacks``: more Keras callbacks
    for every fit (the stage's dvclive logger, for one), after the one that keeps the best
    weights. With MobileNetV2 fine-tuning there are two fits; the best epoch is taken over both.
    ``log`` receives the progress lines (default: this module's logger, at INFO).
    ``backup``: where each epoch is backed up; a run that finds a backup there continues
    after its epoch (``genreclf.models.resume``; not under MultiWorkerMirroredStrategy).
    """
    log = log or logger.info
    set_seeds(settings["seed"])
    preprocessing = preprocessing_for(
        model_name,
        dataset_info["sample_rate"],
        dataset_info["labels"],
        settings,
        clip_samples=dataset_info["splits"]["train"]["max_samples"],
    )
    devices = set_up_devices(settings["batch_size"], log)
    if backup is not None and devices.kind == "multi_worker":
        log("no epoch backups under MultiWorkerMirroredStrategy: a killed run starts over")
        backup = None
    state = backup.load() if backup is not None else None
    previous_policy = keras.mixed_precision.global_policy()
    set_up_precision(settings["mixed_precision"], devices, log)
    try:
        data = make_datasets(shard_dir, dataset_info, preprocessing, settings, devices, log)
        model = build_and_compile(model_name, settings, preprocessing, len(dataset_info["labels"]), devices.strategy)
        fine_tune_layers = fine_tune_layer_count(model_name, settings, model)
        best = BestWeights()
        callbacks = [best, *callbacks]
        phases = [(settings["epochs"], None)]
        if fine_tune_layers > 0:
            phases.append((settings["fine_tune_epochs"], fine_tune_layers))
        if state is not None:
            log(
                f"resuming from the backup {state.folder}: {state.epochs_done} epoch(s) done (fit {state.phase}); "
                f"training on from epoch {state.epochs_done} (0-based, the dvclive step)"
            )
            resume_best(best, state, backup, model)
        start = time.perf_counter()
        for phase, (epochs, layers) in enumerate(phases):
            if state is not None and phase < state.phase:
                continue
            if layers is not None:
                if state is None or state.phase < phase:
                    best.restore()
                prepare_fine_tuning(model, layers, settings, devices)
                log(
                    f"fine-tuning the top {layers} layers of the base for {epochs} epoch(s) at "
                    f"learning rate {settings['fine_tune_learning_rate']}"
                )
            first, offset = 0, best.epochs_done
            if state is not None and phase == state.phase:
                backup.restore_model(state, model)
                first, offset = state.epoch, state.first_epoch
                if state.stopped:
                    first = epochs
            if first < epochs:

                def after_stopper(stopper, phase=phase, offset=offset, resumed=state):
                    if backup is None:
                        return []
                    return [resume.BackupCallback(backup, phase, offset, stopper, best, resumed, log)]

                fit(model, data, epochs, settings["patience"], devices, callbacks, first, offset, after_stopper)
            state = None if state is not None and phase == state.phase else state
            if phase == 0:
                kept = f"best val_loss {best.best_value:.4f} at epoch {best.best_epoch}"
                log(f"trained {best.epochs_done} epoch(s); {kept}")
        seconds = time.perf_counter() - start
        restore_best_weights(best, log)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    if devices.kind == "multi_worker":  # predicting and saving need no workers but this one
        model = plain_copy(model)
        log(f"kept weights: sha256 {weights_fingerprint(model)} (compare it with the other workers' logs)")
    return TrainingResult(model, preprocessing, best.best_epoch, best.best_logs, best.epochs_done, seconds)


def plain_copy(model: keras.Model) -> keras.Model:
    """The same layers and weights, not compiled and outside any distribution strategy."""
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def weights_fingerprint(model: keras.Model) -> str:
    """The first 16 hex digits of the SHA-256 of the model's weights, in order (to compare two models' weights)."""
    digest = hashlib.sha256()
    for array in model.get_weights():
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def renumber_shared_objects(config):
    """Replace Keras' ``shared_object_id`` values (Python ``id()``s: memory addresses that change
    from run to run) by 1, 2, ... in order of first appearance; the sharing is unchanged."""
    numbers: dict = {}

    def walk(node):
        if isinstance(node, dict):
            return {
                key: (numbers.setdefault(value, len(numbers) + 1) if key == "shared_object_id" else walk(value))
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(config)


def save_model(model: keras.Model, path: str | Path) -> None:
    """Save ``model`` for inference as a ``.keras`` file with stable bytes.

    What is saved is the architecture and the weights, without the optimizer's state
    or the compile settings (an uncompiled copy: a third of the size for Adam; the
    loss is recorded in preprocessing.json). The zip gets fixed timestamps and no save
    date (``genreclf.io.reproducible_zip``); config.json gets run-independent
    shared-object ids (``renumber_shared_objects``); the weights member (HDF5) is
    byte-stable as written by Keras. Writes ``path`` directly: call it inside
    ``genreclf.io.atomic_dir``/``atomic_path``.
    """
    inference_model = plain_copy(model)
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / MODEL_FILES["keras"]
        inference_model.save(saved)
        members = keras_zip_members(saved)
    config = renumber_shared_objects(json.loads(members["config.json"]))
    members["config.json"] = json.dumps(config).encode("utf-8")
    buffer = _io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    Path(path).write_bytes(reproducible_zip(buffer.getvalue(), drop_json_keys=UNSTABLE_ZIP_KEYS))


def keras_zip_members(path: str | Path) -> dict[str, bytes]:
    """The members of a ``.keras`` file (for checks and tests)."""
    with zipfile.ZipFile(_io.BytesIO(Path(path).read_bytes())) as archive:
        return {name: archive.read(name) for name in archive.namelist()}
