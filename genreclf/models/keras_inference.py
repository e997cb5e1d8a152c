"""Predictions of a trained Keras model folder (``models/<name>/``) on clips.

API::

    from genreclf.models import keras_inference
    predictor = keras_inference.load_predictor("models/cnn1d")   # KerasPredictor
    predictor.labels                                             # ordered genre names
    result = keras_inference.predict_split(predictor, "data/shards", "test")
    result.track_ids         # list[str], in the shards' reading order
    result.y_true            # int64 [n]: label indices
    result.probabilities     # float64 [n, C]: clip probabilities (rows sum to 1)
    result.unit_accuracy     # accuracy over units (windows / segments; = clip accuracy for mobilenet)
    result.unit_name, result.num_units
    probabilities = keras_inference.predict_clip(predictor, audio_int16)   # float64 [C]

A model classifies *units* (cnn1d: consecutive windows; cnn2d: segments; mobilenet:
the whole clip as one image). A clip's probabilities are the mean of its units'
probabilities; for sigmoid outputs (cnn2d with loss: sigmoid) that mean is then
normalised to sum to 1 (the arg-max is unchanged). Inputs are computed from the
audio by the same TensorFlow ops as in training (``genreclf.tfdata`` /
``genreclf.spectrograms``), with the settings of the folder's preprocessing.json.
Loading turns on TensorFlow's deterministic ops so that the same model and data
give the same probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genreclf.errors import DataError
from genreclf.io import read_json
from genreclf.models import tfdata
from genreclf.models.training import LABELS_FILE, MODEL_FILE, PREPROCESSING_FILE

PREDICT_BATCH_SIZE = 64


@dataclass
class KerasPredictor:
    model: object            # keras.Model
    preprocessing: dict
    labels: list[str]
    batch_size: int = PREDICT_BATCH_SIZE


@dataclass
class SplitPredictions:
    track_ids: list[str]
    y_true: np.ndarray
    probabilities: np.ndarray
    unit_accuracy: float
    unit_name: str
    num_units: int


def load_predictor(model_dir: str | Path, batch_size: int = PREDICT_BATCH_SIZE) -> KerasPredictor:
    """Load ``model.keras``, ``preprocessing.json`` and ``labels.json`` from a model folder."""
    import keras
    import tensorflow as tf

    model_dir = Path(model_dir)
    for name in (MODEL_FILE, PREPROCESSING_FILE, LABELS_FILE):
        if not (model_dir / name).is_file():
            raise DataError(f"{model_dir / name}: not found; train the model first "
                            f"(dvc repro train_keras@{model_dir.name})")
    preprocessing = read_json(model_dir / PREPROCESSING_FILE)
    if preprocessing.get("family") != "keras" or preprocessing.get("input") not in tfdata.INPUT_KINDS:
        raise DataError(f"{model_dir / PREPROCESSING_FILE}: not the preprocessing of a Keras model of this "
                        f"project (family 'keras', input one of {list(tfdata.INPUT_KINDS)}); retrain it")
    labels = read_json(model_dir / LABELS_FILE)
    if labels != preprocessing.get("labels"):
        raise DataError(f"{model_dir}: labels.json and preprocessing.json disagree on the labels; retrain it")
    tf.config.experimental.enable_op_determinism()
    model = keras.models.load_model(model_dir / MODEL_FILE, compile=False)
    return KerasPredictor(model, preprocessing, labels, batch_size)


def clip_probabilities(unit_probabilities: np.ndarray, clip_index: np.ndarray, num_clips: int,
                       output_activation: str = "softmax") -> np.ndarray:
    """Mean of the units' probabilities per clip [num_clips, C] (sigmoid: then normalised to sum 1)."""
    counts = np.bincount(clip_index, minlength=num_clips)
    sums = np.zeros((num_clips, unit_probabilities.shape[1]), dtype=np.float64)
    np.add.at(sums, clip_index, unit_probabilities.astype(np.float64))
    means = sums / counts[:, np.newaxis]
    if output_activation == "sigmoid":
        means = means / means.sum(axis=1, keepdims=True)
    return means


def predict_split(predictor: KerasPredictor, shard_dir: str | Path, split: str) -> SplitPredictions:
    """Predict every clip of a split of the shards (clip probabilities and unit-level accuracy)."""
    from tqdm import tqdm

    prep = predictor.preprocessing
    info = tfdata.read_dataset_info(shard_dir)
    if info["sample_rate"] != prep["sample_rate"] or info["labels"] != predictor.labels:
        raise DataError(f"{Path(shard_dir) / tfdata.DATASET_INFO}: sample rate {info['sample_rate']} and labels "
                        f"{info['labels']} differ from the model's ({prep['sample_rate']}, {predictor.labels}); "
                        f"retrain the model on these shards")
    expected_clips = info["splits"].get(split, {}).get("clips")
    dataset = tfdata.evaluation_dataset(shard_dir, split, prep, predictor.batch_size)
    unit_probs, clip_index, unit_labels, unit_track_ids = [], [], [], []
    for units, index, label, track_id in tqdm(dataset, desc=f"predict {split}", unit="batch"):
        unit_probs.append(np.asarray(predictor.model.predict_on_batch(units), dtype=np.float64))
        clip_index.append(index.numpy())
        unit_labels.append(label.numpy())
        unit_track_ids.append(track_id.numpy())
    if not unit_probs:
        raise DataError(f"{shard_dir}: split '{split}' gives no {tfdata.UNIT_NAMES[prep['input']]}s to predict")
    unit_probs = np.concatenate(unit_probs)
    clip_index = np.concatenate(clip_index)
    unit_labels = np.concatenate(unit_labels)
    unit_track_ids = np.concatenate(unit_track_ids)
    num_clips = int(clip_index.max()) + 1
    present = np.bincount(clip_index, minlength=num_clips) > 0
    if not present.all() or (expected_clips is not None and num_clips != expected_clips):
        raise DataError(f"{shard_dir}: {int((~present).sum())} clip(s) of split '{split}' are too short for "
                        f"one {tfdata.UNIT_NAMES[prep['input']]} ({tfdata.min_clip_samples(prep)} samples); "
                        f"reshard with longer clips (convert.min_seconds) or use a smaller window")
    first = np.unique(clip_index, return_index=True)[1]
    probabilities = clip_probabilities(unit_probs, clip_index, num_clips, prep["output_activation"])
    unit_accuracy = float(np.mean(unit_probs.argmax(axis=1) == unit_labels))
    return SplitPredictions(track_ids=[t.decode("utf-8") for t in unit_track_ids[first]],
                            y_true=unit_labels[first].astype(np.int64), probabilities=probabilities,
                            unit_accuracy=unit_accuracy, unit_name=tfdata.UNIT_NAMES[prep["input"]],
                            num_units=int(len(unit_labels)))


def predict_clip(predictor: KerasPredictor, audio_int16: np.ndarray) -> np.ndarray:
    """Clip probabilities [C] of one clip: mono int16 samples at the model's sample rate."""
    audio = np.asarray(audio_int16)
    prep = predictor.preprocessing
    if audio.dtype != np.int16 or audio.ndim != 1:
        raise DataError(f"expected mono int16 samples at {prep['sample_rate']} Hz (1-D int16 array), got "
                        f"{audio.dtype} with shape {audio.shape}; decode the clip with the convert stage's settings")
    if len(audio) < tfdata.min_clip_samples(prep):
        raise DataError(f"clip of {len(audio)} samples is too short for model '{prep['model']}': it needs at least "
                        f"{tfdata.min_clip_samples(prep)} samples at {prep['sample_rate']} Hz")
    units = tfdata.units_of_clip(audio, prep).numpy()
    probs = [np.asarray(predictor.model.predict_on_batch(units[i:i + predictor.batch_size]), dtype=np.float64)
             for i in range(0, len(units), predictor.batch_size)]
    probs = np.concatenate(probs)
    return clip_probabilities(probs, np.zeros(len(probs), dtype=np.int64), 1, prep["output_activation"])[0]
