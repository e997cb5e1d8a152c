"""One interface to a trained model of either family, for the evaluate and predict commands.

``load_predictor(models/<name>)`` reads the model's preprocessing.json and returns an
object with

- ``labels``: the genre names, label i = labels[i];
- ``sample_rate``: the rate at which audio must be decoded for this model;
- ``predict_split(data_dir, split)`` -> (track_ids, y_true, clip probabilities
  [clips, genres], extra metrics such as ``{"window_accuracy": ...}``);
- ``predict_audio(int16 clip)`` -> probabilities [genres].

A scikit-learn model reads the feature table (data/features/<split>.csv) and computes
the features of new audio with genreclf.features and the very parameters it was
trained with; a Keras model is handled by genreclf.keras_inference.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from genreclf.errors import DataError, ParamError
from genreclf.models import sklearn_models

PREPROCESSING_FILE = "preprocessing.json"
LABELS_FILE = "labels.json"
FAMILIES = ("keras", "sklearn")
FEATURES_SUBDIR = "features"
SHARDS_SUBDIR = "shards"


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} is missing: {path.parent} is not a trained model; train it first "
                        f"(dvc repro train_sklearn@{path.parent.name} or train_keras@{path.parent.name})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e}); train the model again") from None


def read_model_description(model_dir: str | Path) -> tuple[dict, list[str]]:
    """models/<name>/preprocessing.json and labels.json, checked."""
    model_dir = Path(model_dir)
    preprocessing = _read_json(model_dir / PREPROCESSING_FILE)
    labels = _read_json(model_dir / LABELS_FILE)
    if not isinstance(preprocessing, dict) or preprocessing.get("family") not in FAMILIES:
        raise DataError(f"{model_dir / PREPROCESSING_FILE}: expected a 'family' of {list(FAMILIES)}; "
                        "train the model again")
    sample_rate = preprocessing.get("sample_rate")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise DataError(f"{model_dir / PREPROCESSING_FILE}: sample_rate = {sample_rate!r}; expected a "
                        "positive integer; train the model again")
    if not (isinstance(labels, list) and labels and all(isinstance(g, str) for g in labels)):
        raise DataError(f"{model_dir / LABELS_FILE}: expected a non-empty list of genre names")
    return preprocessing, labels


class SklearnPredictor:
    """A scikit-learn pipeline on the FMA feature set."""

    family = "sklearn"

    def __init__(self, model_dir: str | Path, preprocessing: dict, labels: list[str]):
        from genreclf.features import fma_features as features  # librosa is only needed to predict new audio

        self.model_dir = Path(model_dir)
        self.labels = labels
        self.sample_rate = preprocessing["sample_rate"]
        self.columns = preprocessing.get("columns")
        self.pipeline = sklearn_models.load_pipeline(self.model_dir / sklearn_models.MODEL_FILE)
        if not isinstance(self.columns, list) or self.pipeline.n_features_in_ != len(self.columns):
            raise DataError(f"{self.model_dir / PREPROCESSING_FILE}: its columns do not match the "
                            f"{self.pipeline.n_features_in_} features of the model; train the model again")
        try:
            self.feature_params = features.params_from_dict(
                preprocessing.get("features"), where=f"{self.model_dir / PREPROCESSING_FILE}: features")
        except ParamError as e:
            raise DataError(f"{e} (the feature settings the model was trained with); train the model again") from None
        if features.feature_columns(self.feature_params) != self.columns:
            raise DataError(f"{self.model_dir / PREPROCESSING_FILE}: its columns are not those of its feature "
                            "params; train the model again")
        self._features = features

    def predict_split(self, data_dir: str | Path, split: str):
        features_dir = Path(data_dir) / FEATURES_SUBDIR
        table = sklearn_models.read_feature_split(features_dir, split, self.columns)
        wrong = sorted({(int(label), genre) for label, genre in zip(table.labels, table.genres)
                        if not 0 <= label < len(self.labels) or self.labels[label] != genre})
        if wrong:
            raise DataError(f"{features_dir / split}.csv: the labels {wrong[:3]} do not match the model's genres "
                            f"{self.labels} ({self.model_dir / LABELS_FILE}); retrain the model on these features")
        probs = sklearn_models.class_probabilities(self.pipeline, table.features, len(self.labels))
        return table.track_ids, table.labels, probs, {}

    def predict_audio(self, clip: np.ndarray) -> np.ndarray:
        """Probabilities of the genres for one int16 clip decoded at ``sample_rate``."""
        samples = self._features.int16_to_float(clip)   # as the features stage reads its WAVs
        row = self._features.clip_features(samples, self.sample_rate, self.feature_params).reshape(1, -1)
        return sklearn_models.class_probabilities(self.pipeline, row, len(self.labels))[0]


class KerasModelPredictor:
    """A Keras model on the TFRecord shards (cnn1d, mobilenet, cnn2d), via genreclf.keras_inference."""

    family = "keras"

    def __init__(self, model_dir: str | Path, preprocessing: dict, labels: list[str]):
        from genreclf.models import keras_inference  # imports TensorFlow: only for Keras models

        self.model_dir = Path(model_dir)
        self._inference = keras_inference
        self._predictor = keras_inference.load_predictor(self.model_dir)
        self.labels = self._predictor.labels
        self.sample_rate = preprocessing["sample_rate"]

    def predict_split(self, data_dir: str | Path, split: str):
        """Clip probabilities, plus the accuracy over the units (windows, segments) when a clip has several."""
        result = self._inference.predict_split(self._predictor, Path(data_dir) / SHARDS_SUBDIR, split)
        extra = {} if result.unit_name == "clip" else {f"{result.unit_name}_accuracy": result.unit_accuracy}
        return result.track_ids, result.y_true, result.probabilities, extra

    def predict_audio(self, clip: np.ndarray) -> np.ndarray:
        return self._inference.predict_clip(self._predictor, clip)


def load_predictor(model_dir: str | Path) -> SklearnPredictor | KerasModelPredictor:
    """The predictor of the trained model in ``model_dir`` (models/<name>)."""
    preprocessing, labels = read_model_description(model_dir)
    if preprocessing["family"] == "sklearn":
        return SklearnPredictor(model_dir, preprocessing, labels)
    return KerasModelPredictor(model_dir, preprocessing, labels)
