"""One interface to a trained model of either family: evaluate, predict and train_keras use it.

``load_predictor("models/<name>")`` checks the model folder (``genreclf.artifacts.read_model_folder``)
and returns a predictor with

- ``family``: "sklearn" or "keras";
- ``labels``: the genre names, label i = labels[i];
- ``sample_rate``: the rate at which audio must be decoded for this model;
- ``preprocessing``: the folder's preprocessing.json (how a clip becomes the model's input);
- ``predict_split(data_dir, split)`` -> ``SplitPredictions``: track ids, true labels and clip
  probabilities [clips, genres] of one split of ``<data_dir>/features`` (scikit-learn) or
  ``<data_dir>/shards`` (Keras), with the accuracy over the units the model scores;
- ``predict_audio(clip)`` -> probabilities [genres] of one mono int16 clip at ``sample_rate``;
- Keras only: ``embed_audio(clip)`` -> the mean over the clip's units of the layer "dense"'s
  output (cnn2d: 128 values), from the same units: the similar-song embedding ``cnn2d``.

A scikit-learn model reads the feature table, and computes the features of new audio with
``genreclf.features.fma_features`` and the very parameters it was trained with. A model on
the pretrained embeddings (preprocessing.json ``"table": "embeddings"``: musicnn) reads
``<data_dir>/embeddings`` instead, and embeds new audio with the pretrained network it names.

A Keras model classifies *units* (cnn1d: consecutive windows; cnn2d: segments; mobilenet:
the whole clip as one image). A clip's probabilities are the mean of its units'
probabilities; for sigmoid outputs (cnn2d with loss: sigmoid) that mean is then
normalised to sum to 1 (the arg-max is unchanged). Inputs are computed from the audio by
the same TensorFlow ops as in training (``genreclf.models.tfdata``), with the settings of
the folder's preprocessing.json. Loading turns on TensorFlow's deterministic ops so that
the same model and data give the same probabilities. TensorFlow is imported only for a
Keras model, and scikit-learn (with skops) only for a scikit-learn one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genreclf import artifacts
from genreclf.errors import DataError, ParamError

PREDICT_BATCH_SIZE = 64
EMBEDDING_LAYER = "dense"  # the Keras layer whose output embed_audio averages (cnn2d: 128 values)


@dataclass
class SplitPredictions:
    """The predictions of a model on every clip of a split."""

    track_ids: list[str]
    y_true: np.ndarray  # int64 [clips]: label indices
    probabilities: np.ndarray  # float64 [clips, genres]: clip probabilities (rows sum to 1)
    unit_name: str  # what the model scores: "clip", "window" or "segment"
    unit_accuracy: float  # accuracy over those units (= the clip accuracy when a unit is a clip)
    num_units: int

    @property
    def clip_accuracy(self) -> float:
        return float(np.mean(self.probabilities.argmax(axis=1) == self.y_true))

    @property
    def extra_metrics(self) -> dict:
        """``{"<unit>_accuracy": ...}`` when a clip has several units, else nothing."""
        return {} if self.unit_name == "clip" else {f"{self.unit_name}_accuracy": self.unit_accuracy}


def clip_probabilities(
    unit_probabilities: np.ndarray, clip_index: np.ndarray, num_clips: int, output_activation: str = "softmax"
) -> np.ndarray:
    """Mean of the units' probabilities per clip [num_clips, C] (sigmoid: then normalised to sum 1)."""
    counts = np.bincount(clip_index, minlength=num_clips)
    sums = np.zeros((num_clips, unit_probabilities.shape[1]), dtype=np.float64)
    np.add.at(sums, clip_index, unit_probabilities.astype(np.float64))
    means = sums / counts[:, np.newaxis]
    if output_activation == "sigmoid":
        means = means / means.sum(axis=1, keepdims=True)
    return means


# ---- scikit-learn ---------------------------------------------------------------------


class SklearnPredictor:
    """A scikit-learn pipeline on the FMA feature set."""

    family = "sklearn"

    def __init__(self, folder: artifacts.ModelFolder):
        from genreclf.features import fma_tables  # librosa is only needed to predict new audio
        from genreclf.models import sklearn_models

        where = folder.path / artifacts.PREPROCESSING_FILE
        self.model_dir, self.preprocessing = folder.path, folder.preprocessing
        self.labels, self.sample_rate = folder.labels, folder.sample_rate
        self.columns = folder.preprocessing.get("columns")
        self.table = folder.preprocessing.get("table", artifacts.FEATURES_DIR.name)
        self.pipeline = sklearn_models.load_pipeline(folder.model_file)
        if not isinstance(self.columns, list) or self.pipeline.n_features_in_ != len(self.columns):
            raise DataError(
                f"{where}: its columns do not match the {self.pipeline.n_features_in_} features of the model",
                path=where,
            )
        if self.table == artifacts.EMBEDDINGS_DIR.name:
            self._check_embedding(where)
            return
        try:  # computed features (a selection of families), or FMA's own table: refused for new audio
            self._recipe = fma_tables.AudioRecipe(
                folder.preprocessing.get("features"), self.columns, f"{where}: features"
            )
        except ParamError as e:
            raise DataError(f"{e} (the feature settings the model was trained with)", path=where) from None

    def _check_embedding(self, where: Path) -> None:
        from genreclf.models import musicnn

        settings = self.preprocessing.get("features")
        embedding = settings.get("embedding") if isinstance(settings, dict) else None
        if embedding not in musicnn.EMBEDDING_SIZES or musicnn.embedding_columns(embedding) != self.columns:
            raise DataError(f"{where}: its columns are not those of a musicnn embedding", path=where)
        self.embedding, self._embedder = embedding, None

    def predict_split(self, data_dir: str | Path, split: str) -> SplitPredictions:
        features_dir = Path(data_dir) / self.table
        table = artifacts.read_feature_split(features_dir, split, self.columns)
        wrong = sorted(
            {
                (int(label), genre)
                for label, genre in zip(table.labels, table.genres)
                if not 0 <= label < len(self.labels) or self.labels[label] != genre
            }
        )
        if wrong:
            raise DataError(
                f"{features_dir / split}.csv: the labels {wrong[:3]} do not match the model's genres "
                f"{self.labels} ({self.model_dir / artifacts.LABELS_FILE}); retrain the model on "
                "these features",
                path=self.model_dir,
            )
        probs = self._probabilities(table.features)
        accuracy = float(np.mean(probs.argmax(axis=1) == table.labels))
        return SplitPredictions(table.track_ids, table.labels, probs, "clip", accuracy, len(table.track_ids))

    def predict_audio(self, clip: np.ndarray) -> np.ndarray:
        """Probabilities of the genres for one int16 clip decoded at ``sample_rate``."""
        from genreclf.features.fma_features import int16_to_float

        samples = int16_to_float(clip)  # as the features and embed stages read their WAVs
        if self.table == artifacts.EMBEDDINGS_DIR.name:
            row = self._embed(samples).reshape(1, -1)
        else:
            row = self._recipe(samples, self.sample_rate).reshape(1, -1)
        return self._probabilities(row)[0]

    def _probabilities(self, rows: np.ndarray) -> np.ndarray:
        """The pipeline's probabilities [rows, genres] of feature ``rows``."""
        from genreclf.models import sklearn_models

        return sklearn_models.class_probabilities(self.pipeline, rows, len(self.labels))

    def _embed(self, samples: np.ndarray) -> np.ndarray:
        """The clip's embedding, by the pretrained network the embeddings were made with (loaded once)."""
        from genreclf.models import musicnn

        if self._embedder is None:
            import keras

            model_file, _ = artifacts.read_pretrained(self.preprocessing["features"]["model"])
            self._embedder = keras.models.load_model(model_file, compile=False)
        return musicnn.clip_embedding(
            self._embedder, samples, self.embedding, self.preprocessing["features"].get("patches_per_clip")
        )


# ---- Keras ------------------------------------------------------------------------------


class KerasPredictor:
    """A Keras model on the TFRecord shards (cnn1d, mobilenet, cnn2d); ``model_dir`` None for one
    just trained and not yet saved."""

    family = "keras"

    def __init__(
        self,
        model,
        preprocessing: dict,
        labels: list[str],
        batch_size: int = PREDICT_BATCH_SIZE,
        model_dir: Path | None = None,
    ):
        self.model, self.preprocessing, self.labels = model, preprocessing, labels
        self.sample_rate = preprocessing["sample_rate"]
        self.batch_size, self.model_dir = batch_size, model_dir
        self._embedders: dict = {}  # layer name -> a model of the same weights that outputs it

    @classmethod
    def load(cls, folder: artifacts.ModelFolder, batch_size: int = PREDICT_BATCH_SIZE) -> KerasPredictor:
        import keras
        import tensorflow as tf

        from genreclf.models import tfdata

        where = folder.path / artifacts.PREPROCESSING_FILE
        if folder.preprocessing.get("input") not in tfdata.INPUT_KINDS:
            raise DataError(
                f"{where}: not the preprocessing of a Keras model of this project (input one of "
                f"{list(tfdata.INPUT_KINDS)})",
                path=where,
            )
        tf.config.experimental.enable_op_determinism()
        model = keras.models.load_model(folder.model_file, compile=False)
        return cls(model, folder.preprocessing, folder.labels, batch_size, folder.path)

    def predict_split(self, data_dir: str | Path, split: str) -> SplitPredictions:
        """Clip probabilities of every clip of a split of the shards, and the accuracy over the units."""
        from genreclf.models import tfdata

        prep, shard_dir = self.preprocessing, Path(data_dir) / artifacts.SHARD_DIR.name
        info = artifacts.read_dataset_info(shard_dir)
        if info["sample_rate"] != prep["sample_rate"] or info["labels"] != self.labels:
            raise DataError(
                f"{shard_dir / artifacts.DATASET_INFO_FILE}: sample rate {info['sample_rate']} and "
                f"labels {info['labels']} differ from the model's ({prep['sample_rate']}, "
                f"{self.labels}); retrain the model on these shards",
                path=self.model_dir,
            )
        unit_name = tfdata.UNIT_NAMES[prep["input"]]
        probs, clip_index, labels, track_ids = self._predict_units(
            tfdata.evaluation_dataset(shard_dir, split, prep, self.batch_size), split
        )
        if probs is None:
            raise DataError(f"{shard_dir}: split '{split}' gives no {unit_name}s to predict", path=shard_dir)
        num_clips = int(clip_index.max()) + 1
        present = np.bincount(clip_index, minlength=num_clips) > 0
        expected_clips = info["splits"].get(split, {}).get("clips")
        if not present.all() or (expected_clips is not None and num_clips != expected_clips):
            raise DataError(
                f"{shard_dir}: {int((~present).sum())} clip(s) of split '{split}' are too short for "
                f"one {unit_name} ({tfdata.min_clip_samples(prep)} samples); reshard with longer "
                f"clips (convert.min_seconds) or use a smaller window"
            )
        first = np.unique(clip_index, return_index=True)[1]
        return SplitPredictions(
            track_ids=[t.decode("utf-8") for t in track_ids[first]],
            y_true=labels[first].astype(np.int64),
            probabilities=clip_probabilities(probs, clip_index, num_clips, prep["output_activation"]),
            unit_name=unit_name,
            unit_accuracy=float(np.mean(probs.argmax(axis=1) == labels)),
            num_units=int(len(labels)),
        )

    def _predict_units(self, dataset, split: str):
        """(unit probabilities, clip index, label, track id) of every unit of ``dataset``, or Nones if empty."""
        from tqdm import tqdm

        parts = [], [], [], []
        for units, index, label, track_id in tqdm(dataset, desc=f"predict {split}", unit="batch"):
            parts[0].append(np.asarray(self.model.predict_on_batch(units), dtype=np.float64))
            for part, tensor in zip(parts[1:], (index, label, track_id)):
                part.append(tensor.numpy())
        if not parts[0]:
            return None, None, None, None
        return tuple(np.concatenate(part) for part in parts)

    def predict_audio(self, clip: np.ndarray) -> np.ndarray:
        """Clip probabilities [C] of one clip: mono int16 samples at the model's sample rate."""
        probs = self._unit_outputs(self.model, clip)
        return clip_probabilities(
            probs, np.zeros(len(probs), dtype=np.int64), 1, self.preprocessing["output_activation"]
        )[0]

    def embed_audio(self, clip: np.ndarray, layer: str = EMBEDDING_LAYER) -> np.ndarray:
        """The clip's embedding [layer units], float64: the mean over its units (cnn2d: segments) of
        the output of ``layer`` (cnn2d's 128-unit "dense", before dropout), the units made exactly as
        ``predict_audio`` makes them."""
        if layer not in self._embedders:
            try:
                output = self.model.get_layer(layer).output
            except ValueError:
                raise DataError(
                    f"{self.model_dir or 'the model'}: has no layer named {layer!r} to embed with", path=self.model_dir
                ) from None
            import keras

            self._embedders[layer] = keras.Model(self.model.inputs, output, name=f"{self.model.name}_{layer}")
        return self._unit_outputs(self._embedders[layer], clip).mean(axis=0)

    def _unit_outputs(self, model, clip: np.ndarray) -> np.ndarray:
        """``model``'s outputs [units, ...] on the units of one mono int16 clip, float64, in batches."""
        from genreclf.models import tfdata

        audio, prep = np.asarray(clip), self.preprocessing
        if audio.dtype != np.int16 or audio.ndim != 1:
            raise DataError(
                f"expected mono int16 samples at {prep['sample_rate']} Hz (1-D int16 array), got "
                f"{audio.dtype} with shape {audio.shape}; decode the clip at the model's sample rate"
            )
        if len(audio) < tfdata.min_clip_samples(prep):
            raise DataError(
                f"clip of {len(audio)} samples is too short for model '{prep['model']}': it needs at "
                f"least {tfdata.min_clip_samples(prep)} samples at {prep['sample_rate']} Hz"
            )
        units = tfdata.units_of_clip(audio, prep).numpy()
        return np.concatenate(
            [
                np.asarray(model.predict_on_batch(units[i : i + self.batch_size]), dtype=np.float64)
                for i in range(0, len(units), self.batch_size)
            ]
        )


def load_predictor(model_dir: str | Path) -> SklearnPredictor | KerasPredictor:
    """The predictor of the trained model in ``model_dir`` (models/<name>)."""
    folder = artifacts.read_model_folder(model_dir)
    if folder.family == "sklearn":
        return SklearnPredictor(folder)
    return KerasPredictor.load(folder)
