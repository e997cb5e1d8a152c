"""The settings of the pipeline: one pydantic model per params.yaml section, all checked at once.

Every stage calls ``load_config()`` first thing. It validates the WHOLE file, so an unknown
or misspelt key, a wrong type or an out-of-range value in any section stops the first stage
that runs, within a second and before any heavy work, with one line per problem:

    params.yaml: cnn1d.epoch = 3: Extra inputs are not permitted
    params.yaml: cnn1d.epochs = 0: Input should be greater than 0

(pydantic's location and message; a rule over several keys names them all with their values.)

Types are strict (``true`` is not a number, ``"3"`` is not an integer) and every key is
required: no setting has a default in the code. A stage then uses only its own section(s)
and hands the library plain values (``config.cnn1d.model_dump()``); the library knows
nothing of this file. What only the data can tell (a window longer than the shortest clip,
more PCA components than features, ...) is checked by the stage once it has read the data.

Every key has a ``Field(description=...)``: docs/params.md is generated from them
(``python -m stages.params_doc > docs/params.md``; a test fails when it is stale).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from genreclf import catalog
from genreclf.errors import ParamError

PARAMS_FILE = "params.yaml"
MISSING_HINT = "add it (see docs/params.md)"
SHOWN_VALUE_CHARS = 80  # longer values are cut in messages
SVM_KERNELS = ("linear", "poly", "rbf", "sigmoid")
SVM_GAMMA_WORDS = ("scale", "auto")
WEIGHTS_SUFFIX = ".h5"  # a Keras weights file: .h5 or .weights.h5
SHA1_PATTERN = r"^[0-9a-fA-F]{40}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
# gs://bucket[/prefix]: a bucket name as GCS allows it (3-222 of a-z 0-9 . _ -), then folders, no "/" at the end
GCS_ROOT_PATTERN = r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/[^/\s]+)*$"
FRACTIONS_TOLERANCE = 1e-6
LIBRARY_OF_THE_DATASET = "data/split"  # recommend.library: the dataset's train and val clips


class Rule(ValueError):
    """A rule over the keys of a model broken: the message names ``keys`` (dotted, from the model;
    "" for the model itself) and their values, then says what is wrong."""

    def __init__(self, keys: str | tuple[str, ...], message: str):
        super().__init__(message)
        self.keys = (keys,) if isinstance(keys, str) else keys


PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveNumber = Annotated[float, Field(gt=0)]
Seed = NonNegativeInt
Fraction = Annotated[float, Field(gt=0, lt=1)]
DropoutRate = Annotated[float, Field(ge=0, lt=1)]
Sha1 = Annotated[str, Field(pattern=SHA1_PATTERN)]
PcaComponents = Annotated[
    PositiveInt | None,
    Field(description="null: no PCA; N: the number of principal components kept after standardising."),
]
Layers = Annotated[list[PositiveInt], Field(min_length=1)]
Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN)]
DataRoot = Annotated[str, Field(pattern=GCS_ROOT_PATTERN)] | None


class Section(BaseModel):
    """A params.yaml section: exactly its keys, each of its type (no conversion), read-only."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ---- data stages -----------------------------------------------------------------------------


class Checksums(Section):
    """The SHA-1 of each archive; null: not checked. Only the dataset's own archives must be listed."""

    fma_metadata: Sha1 | None = Field(
        None, description="SHA-1 of fma_metadata.zip (the published one); null: not checked, its SHA-1 is logged."
    )
    fma_small: Sha1 | None = Field(None, description="SHA-1 of fma_small.zip; null: not checked.")
    fma_medium: Sha1 | None = Field(None, description="SHA-1 of fma_medium.zip; null: not checked.")
    fma_large: Sha1 | None = Field(None, description="SHA-1 of fma_large.zip; null: not checked.")
    gtzan: Sha1 | None = Field(None, description="SHA-1 of GTZAN's genres.tar.gz; null: not checked.")
    folder: Sha1 | None = Field(
        None, description="SHA-1 of the .zip or .tar.gz that data.source names for data.dataset folder; optional."
    )


class DataSection(Section):
    dataset: Literal[catalog.DATASETS] = Field(description="The dataset: an FMA subset or GTZAN.")
    source: Annotated[str, Field(min_length=1)] = Field(
        description=(
            "Where the archives come from: a URL prefix (the official FMA host, or a mirror), or a local directory "
            "holding the archives or the files already unpacked; for gtzan a directory laid out "
            "<genre>/<genre>.NNNNN.(wav|au|mp3), or genres.tar.gz. Checked against the disk by the fetch stage."
        ),
    )
    checksums: Checksums = Field(
        description="The SHA-1 of each archive; the dataset's own archives must be listed (null to skip a check)."
    )
    clips_per_genre: PositiveInt | None = Field(
        description="null: every clip; N: at most N clips per genre (a quick trial)."
    )
    seed: Seed = Field(description="Which clips a clips_per_genre trial picks.")
    root: DataRoot = Field(
        description=(
            "Where the raw clips, the WAVs and the TFRecord shards go: null = data/raw/audio, data/wav and "
            "data/shards in the workspace; gs://bucket/prefix (no '/' at the end) = objects under that prefix, "
            "data/raw, data/wav and data/shards then holding their manifests (docs/scaling.md)."
        ),
    )

    @model_validator(mode="after")
    def _dataset_archives_listed(self) -> DataSection:
        own = {catalog.GTZAN: (catalog.GTZAN,), catalog.FOLDER: ()}  # a folder's archive: checked if listed
        needed = own.get(self.dataset, (catalog.FMA_METADATA, self.dataset))
        for archive in needed:
            if archive not in self.checksums.model_fields_set:
                raise Rule(
                    f"checksums.{archive}",
                    f"missing; dataset {self.dataset} needs it: set it to "
                    "the archive's SHA-1, or to null to skip the check",
                )
        return self


class ConvertSection(Section):
    sample_rate: Annotated[int, Field(ge=8000, le=192000)] = Field(
        description="Hz; every clip is decoded to mono at this rate, 16-bit PCM."
    )
    min_seconds: Annotated[float, Field(ge=0)] = Field(
        description="Clips shorter than this (seconds) are skipped and reported."
    )
    excerpt_seconds: Annotated[float, Field(gt=0)] | None = Field(
        description="Seconds of each clip kept when it is decoded (songs of any length cut to one excerpt); "
        "null keeps every clip whole."
    )
    excerpt_from: Literal[catalog.EXCERPT_FROM] = Field(
        description="Where the excerpt of a longer clip starts: start (its first seconds) or middle."
    )

    @model_validator(mode="after")
    def _excerpt_not_shorter_than_kept(self) -> ConvertSection:
        if self.excerpt_seconds is not None and self.excerpt_seconds < self.min_seconds:
            raise Rule(
                ("excerpt_seconds", "min_seconds"),
                "the excerpt is shorter than the shortest clip kept, so every clip would be skipped",
            )
        return self


class Fractions(Section):
    train: Fraction = Field(description="Share of the clips in the train split.")
    val: Fraction = Field(description="Share of the clips in the val split.")
    test: Fraction = Field(description="Share of the clips in the test split.")

    @model_validator(mode="after")
    def _sum_to_one(self) -> Fractions:
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=FRACTIONS_TOLERANCE):
            raise Rule("", f"the fractions sum to {total:g}; they must sum to 1")
        return self


class SplitSection(Section):
    method: Literal["stratified", "official", "fault_filtered"] = Field(
        description="stratified: file level, by genre; official: FMA's artist-disjoint split; "
        "fault_filtered: GTZAN's artist-disjoint lists (fractions and seed unused)."
    )
    fractions: Fractions = Field(description="Shares of train, val and test (stratified); they sum to 1.")
    seed: Seed = Field(description="The stratified split's shuffle.")


class NumShards(Section):
    train: PositiveInt = Field(description="TFRecord files of the train split.")
    val: PositiveInt = Field(description="TFRecord files of the val split.")
    test: PositiveInt = Field(description="TFRecord files of the test split.")


class ShardSection(Section):
    num_shards: NumShards = Field(description="TFRecord files per split.")
    seed: Seed = Field(description="Order of the examples inside the shards.")


FAMILIES_EXPECTED = "expected all, or a non-empty list of feature families (e.g. [mfcc])"


class FeaturesSection(Section):
    source: Literal[catalog.FEATURE_SOURCES] = Field(
        description="where data/features comes from: computed (from the WAVs, with the keys below), "
        "fma (FMA's features.csv) or fma_echonest (FMA's echonest.csv); the fma ones for FMA datasets only"
    )
    families: str | list[str] = Field(
        description="the feature families kept: all, or a list of the source's families "
        "(computed and fma: chroma_cens ... zcr, e.g. [mfcc]; fma_echonest: audio_features, temporal_features)"
    )
    max_missing: Annotated[float, Field(ge=0, le=1)] = Field(
        description="fma and fma_echonest: the largest share of the split's clips that the table may "
        "lack (they are left out and listed in data/features/left_out.csv); more is an error"
    )
    n_fft: Annotated[int, Field(ge=16)] = Field(description="STFT window (samples) of the FMA feature set.")
    hop_length: PositiveInt = Field(description="STFT hop (samples); at most n_fft.")
    n_mfcc: PositiveInt = Field(description="MFCC coefficients (at most the mel bands).")
    n_chroma: PositiveInt = Field(description="Chroma bins.")
    n_octaves: PositiveInt = Field(description="CQT range (octaves) for chroma_cqt, chroma_cens and tonnetz.")
    n_bands: PositiveInt = Field(description="Spectral contrast bands.")

    @field_validator("families", mode="plain")
    @classmethod
    def _all_or_a_list(cls, value: Any) -> str | list[str]:
        if value == "all" or (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
            return value
        raise ValueError(FAMILIES_EXPECTED)

    @model_validator(mode="after")
    def _families_of_the_source(self) -> FeaturesSection:
        if self.families == "all":
            return self
        known = catalog.SOURCE_FAMILIES[self.source]
        unknown = [family for family in self.families if family not in known]
        if unknown:
            raise Rule(
                ("families", "source"),
                f"{show(unknown)} are not families of source {self.source}; its families are {', '.join(known)}",
            )
        if len(set(self.families)) != len(self.families):
            raise Rule("families", "names a family more than once; name each once")
        return self

    @model_validator(mode="after")
    def _frames_and_bands(self) -> FeaturesSection:
        if self.hop_length > self.n_fft:
            raise Rule(("hop_length", "n_fft"), "hop_length is more than n_fft; frames would skip samples")
        if self.n_mfcc > catalog.FEATURES_N_MELS:
            raise Rule("n_mfcc", f"expected at most the {catalog.FEATURES_N_MELS} mel bands")
        return self


class PretrainedSection(Section):
    """Where the musicnn wheel comes from (a local file, or PyPI into cache_dir) and its SHA-256."""

    wheel: Annotated[str, Field(min_length=1)] | None = Field(
        description=(
            "null: pip download musicnn==0.1.0 from PyPI into cache_dir; or the path of a local copy of the wheel "
            "(offline). Checked against the disk by the pretrained stage."
        ),
    )
    cache_dir: Annotated[str, Field(min_length=1)] = Field(
        description="Where the downloaded wheel is kept for the next run ('~' is the home folder)."
    )
    sha256: Sha256 = Field(description="SHA-256 of the wheel (64 lowercase hexadecimal digits).")


class EmbedSection(Section):
    embedding: Literal[catalog.MUSICNN_EMBEDDINGS] = Field(
        description=(
            "penultimate (200 values) or max_pool (753): the musicnn layer, averaged over the clip's 3 s patches."
        ),
    )
    patches_per_clip: PositiveInt | None = Field(
        description="null: every non-overlapping 3 s patch (10 in 30 s); N: N evenly spaced ones."
    )


SklearnModels = Annotated[dict[str, Literal[catalog.FEATURE_TABLES]], Field(min_length=1)]


class ModelsSection(Section):
    sklearn: SklearnModels = Field(
        description=(
            "Each scikit-learn model of the study and the table it is trained on: features (data/features, the FMA "
            "feature set) or embeddings (data/embeddings, musicnn's)."
        ),
    )
    keras: Annotated[list[Literal[catalog.KERAS_MODELS]], Field(min_length=1)] = Field(
        description=(
            "The Keras models of the study, each named once; summarize compares every model in this order "
            "(scikit-learn first)."
        ),
    )

    @model_validator(mode="after")
    def _known_and_each_once(self) -> ModelsSection:
        for name in self.sklearn:
            if name not in catalog.SKLEARN_MODELS:
                raise Rule(f"sklearn.{name}", f"unknown model; expected one of {json.dumps(catalog.SKLEARN_MODELS)}")
        repeated = sorted({name for name in self.keras if self.keras.count(name) > 1})
        if repeated:
            raise Rule("keras", f"names {show(repeated)} more than once; name each model once")
        return self

    def family_of(self) -> dict[str, str]:
        """Every model, in the order of the study (scikit-learn first): its family."""
        return {name: family for family in ("sklearn", "keras") for name in getattr(self, family)}


# ---- scikit-learn models ---------------------------------------------------------------------


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def svm_candidates(value: Any, words: tuple[str, ...] = ()) -> list:
    """One value or a non-empty list: numbers > 0 (as floats) or one of ``words``."""
    values = value if isinstance(value, list) else [value]
    if not values or not all((isinstance(v, str) and v in words) or (is_number(v) and v > 0) for v in values):
        choices = f" or one of {json.dumps(list(words))}" if words else ""
        raise ValueError(f"expected a number > 0{choices}, or a non-empty list of them")
    return [v if isinstance(v, str) else float(v) for v in values]


class LogregSection(Section):
    pca_components: PcaComponents
    C: PositiveNumber = Field(description="Inverse regularisation strength of the logistic regression.")
    max_iter: PositiveInt = Field(description="Solver iterations at most.")
    seed: Seed = Field(description="The solver's random state.")


class KnnSection(Section):
    pca_components: PcaComponents
    n_neighbors: PositiveInt = Field(description="Neighbours that vote (at most the training clips).")
    weights: Literal["uniform", "distance"] = Field(
        description="uniform: one vote each; distance: votes weighted by inverse distance."
    )


class GnbSection(Section):
    pca_components: PcaComponents
    var_smoothing: Annotated[float, Field(ge=0)] = Field(
        description="Share of the largest feature variance added to every variance."
    )


class SvmSection(Section):
    pca_components: PcaComponents
    C: list[float] = Field(
        description=(
            "A number > 0, or a non-empty list of them: the candidates, chosen by cross-validation on the train split."
        ),
    )
    kernel: Literal[SVM_KERNELS] = Field(description="The SVC's kernel.")
    gamma: list[float | str] = Field(
        description="A number > 0, scale or auto, or a non-empty list of them: the candidates, chosen with C."
    )
    cv_folds: Annotated[int, Field(ge=2)] = Field(
        description="Stratified folds of the choice of C and gamma (and at least as many train clips per genre)."
    )
    search_workers: PositiveInt = Field(
        description=(
            "Fits at once in that search (threads): the same choice whatever the number; each more holds its own fit "
            "(+48 MiB at 8000 clips, docs/benchmarks.md)."
        ),
    )
    seed: Seed = Field(description="The folds of the search and of the probability calibration.")

    @field_validator("C", mode="plain")
    @classmethod
    def _c_candidates(cls, value: Any) -> list[float]:
        return svm_candidates(value)

    @field_validator("gamma", mode="plain")
    @classmethod
    def _gamma_candidates(cls, value: Any) -> list[float | str]:
        return svm_candidates(value, SVM_GAMMA_WORDS)


class MusicnnSection(Section):
    """Standardised logistic regression on the musicnn embeddings; C chosen by CV on the train split."""

    pca_components: PcaComponents
    C: list[float] = Field(
        description=(
            "A number > 0, or a non-empty list of them chosen by stratified cv_folds-fold cross-validation on the "
            "train split."
        ),
    )
    cv_folds: Annotated[int, Field(ge=2)] = Field(description="Stratified folds of the choice of C.")
    max_iter: PositiveInt = Field(description="Solver iterations at most.")
    seed: Seed = Field(description="The folds and the solver's random state.")

    @field_validator("C", mode="plain")
    @classmethod
    def _c_candidates(cls, value: Any) -> list[float]:
        return svm_candidates(value)


# ---- Keras models ----------------------------------------------------------------------------


class KerasSection(Section):
    """The training settings every Keras model has."""

    dropout: DropoutRate = Field(description="Dropout rate before the output layer.")
    epochs: PositiveInt = Field(description="Training epochs at most (early stopping may end sooner).")
    batch_size: PositiveInt = Field(description="Examples per batch and replica.")
    learning_rate: PositiveNumber = Field(description="Adam's learning rate.")
    patience: NonNegativeInt = Field(
        description="Early stopping: epochs without a better validation loss before training stops."
    )
    mixed_precision: bool = Field(description="float16 compute on a GPU (ignored elsewhere).")
    seed: Seed = Field(description="Weights, shuffling and dropout.")
    max_steps: PositiveInt | None = Field(
        description=(
            "null: train in full; N: stop after N training batches, each validation after N (benchmarks/rehearsal.py "
            "times the steps this way): the model is then NOT a trained one."
        ),
    )


def check_mel_bands(n_mels: int, n_fft: int, mels_key: str) -> None:
    """A mel filterbank needs at least one STFT frequency bin per band."""
    if n_mels > n_fft // 2 + 1:
        raise Rule(
            (mels_key, "n_fft"),
            f"{n_mels} mel bands need n_fft >= {2 * (n_mels - 1)} ({n_fft} gives "
            f"{n_fft // 2 + 1} frequency bins); lower {mels_key} or raise n_fft",
        )


class Cnn1dSection(KerasSection):
    window_size: PositiveInt = Field(description="Samples per raw-audio window (at most the shortest clip).")
    conv_filters: Layers = Field(description="Filters of each 1-D convolution.")
    kernel_size: PositiveInt = Field(description="Kernel width of every convolution.")
    pool_size: PositiveInt = Field(description="Max-pooling after every convolution.")
    dense_units: Layers = Field(description="Units of each dense layer before the output.")
    val_windows_per_clip: PositiveInt | None = Field(
        description="Evenly spaced windows of each val clip scored per epoch; null: all (the test scores all)."
    )

    @model_validator(mode="after")
    def _window_survives_the_convolutions(self) -> Cnn1dSection:
        length = self.window_size
        for _ in self.conv_filters:
            length = (length - self.kernel_size + 1) // self.pool_size
        if length < 1:
            raise Rule(
                "window_size",
                f"too short for {len(self.conv_filters)} convolutions of kernel "
                f"{self.kernel_size} each pooled by {self.pool_size}; use a longer window",
            )
        return self


class MobilenetSection(KerasSection):
    weights: str | None = Field(
        description="imagenet, null (train from scratch) or the path of a weights file (.h5 or .weights.h5)."
    )
    image_size: Annotated[int, Field(ge=catalog.MOBILENET_MIN_IMAGE_SIZE)] = Field(
        description="Side of the square input image: the clip's log-mel spectrogram resized to it."
    )
    n_mels: PositiveInt = Field(description="Mel bands of the spectrogram.")
    n_fft: Annotated[int, Field(ge=2)] = Field(description="STFT window (samples); enough bins for n_mels bands.")
    hop_length: PositiveInt = Field(description="STFT hop (samples).")
    alpha: PositiveNumber = Field(
        description="MobileNetV2's width multiplier (ImageNet weights exist for a few values only)."
    )
    dense_units: PositiveInt = Field(description="Units of the dense layer of the head.")
    fine_tune_layers: NonNegativeInt = Field(
        description="> 0: unfreeze the top N layers of the base after the head is trained (needs weights)."
    )
    fine_tune_epochs: NonNegativeInt = Field(
        description="Epochs of that fine-tuning (> 0 exactly when fine_tune_layers is)."
    )
    fine_tune_learning_rate: PositiveNumber = Field(description="Learning rate of the fine-tuning.")

    @field_validator("weights")
    @classmethod
    def _weights_file(cls, weights: str | None) -> str | None:
        if weights in (None, "imagenet"):
            return weights
        if not weights.endswith(WEIGHTS_SUFFIX):
            raise ValueError("expected imagenet, null or the path of a weights file (.h5 or .weights.h5)")
        if not Path(weights).is_file():
            raise ValueError(
                "no such file (paths are relative to the repository root); give an existing "
                "weights file, imagenet or null"
            )
        return weights

    @model_validator(mode="after")
    def _transfer_settings(self) -> MobilenetSection:
        if self.weights == "imagenet" and self.alpha not in catalog.MOBILENET_IMAGENET_ALPHAS:
            raise Rule(
                ("alpha", "weights"),
                f"no ImageNet weights of this alpha; use one of "
                f"{list(catalog.MOBILENET_IMAGENET_ALPHAS)} or weights: null",
            )
        if (self.fine_tune_layers > 0) != (self.fine_tune_epochs > 0):
            raise Rule(("fine_tune_layers", "fine_tune_epochs"), "set both > 0 to fine-tune, or both to 0")
        if self.weights is None and self.fine_tune_layers > 0:
            raise Rule(
                ("fine_tune_layers", "weights"),
                "without pretrained weights the whole network trains "
                "already: set fine_tune_layers and fine_tune_epochs to "
                "0, or give imagenet or a weights file",
            )
        check_mel_bands(self.n_mels, self.n_fft, "n_mels")
        return self


class Cnn2dSection(KerasSection):
    segments_per_clip: PositiveInt = Field(description="Spectrogram segments cut from each clip.")
    image_size: PositiveInt = Field(description="Mel bands, and frames per segment.")
    n_fft: Annotated[int, Field(ge=2)] = Field(description="STFT window (samples); enough bins for image_size bands.")
    hop_length: PositiveInt = Field(description="STFT hop (samples).")
    filters: Layers = Field(description="Filters of each 2-D convolution.")
    pools: Layers = Field(description="Max-pooling after each convolution (as many as filters).")
    dense_units: PositiveInt = Field(description='Units of the dense layer named "dense" (the recommend embedding).')
    loss: Literal["softmax", "sigmoid"] = Field(
        description="softmax, or sigmoid (the study's sigmoid cross-entropy on one-hot labels)."
    )

    @model_validator(mode="after")
    def _layers_and_bands(self) -> Cnn2dSection:
        if len(self.filters) != len(self.pools):
            raise Rule(("filters", "pools"), "they must have the same length (one max-pooling after each convolution)")
        check_mel_bands(self.image_size, self.n_fft, "image_size")
        return self


# ---- similar songs ---------------------------------------------------------------------------


class RecommendSection(Section):
    # what the index is built on: data/embeddings, data/features, or models/cnn2d's layer "dense"
    embedding: Literal["musicnn", "features", "cnn2d"] = Field(
        description=(
            "What the similar-songs index is built on: musicnn (data/embeddings), features (the FMA feature set) or "
            "cnn2d (the trained cnn2d's layer \"dense\", mean over a clip's segments); metrics/recommend.json compares "
            "all three, so models.keras must list cnn2d."
        ),
    )
    top: PositiveInt = Field(description="Neighbours per query; metrics/recommend.json has the genre precision@top.")
    library: Annotated[
        str,
        Field(
            min_length=1,
            description="The songs the index answers with: data/split (the dataset's train and val clips) or a "
            "folder of your own music (any layout, unlabelled, absolute or relative to the project; a DVC dep).",
        ),
    ]

    @model_validator(mode="after")
    def _library_embedding(self) -> RecommendSection:
        if Path(self.library) != Path(LIBRARY_OF_THE_DATASET) and self.embedding == "cnn2d":
            raise Rule(("library", "embedding"), "a folder of your own music is indexed with musicnn or features")
        return self


# ---- the whole file --------------------------------------------------------------------------


class Config(Section):
    """Every section of params.yaml. A model's section may be left out when ``models`` does not list it."""

    data: DataSection = Field(description="The dataset and where it comes from (fetch).")
    convert: ConvertSection = Field(description="Decoding to WAV (convert).")
    split: SplitSection = Field(description="The train/val/test split (split).")
    shard: ShardSection = Field(description="The TFRecord shards (shard).")
    features: FeaturesSection = Field(description="The FMA feature set (features).")
    pretrained: PretrainedSection = Field(description="The pretrained musicnn network (pretrained).")
    embed: EmbedSection = Field(description="The musicnn embeddings (embed).")
    models: ModelsSection = Field(description="The models of the study.")
    logreg: LogregSection | None = Field(None, description="Logistic regression on its table.")
    knn: KnnSection | None = Field(None, description="k nearest neighbours on its table.")
    gnb: GnbSection | None = Field(None, description="Gaussian naive Bayes on its table.")
    svm: SvmSection | None = Field(
        None, description="The kernel SVM, its probabilities calibrated (temperature scaling)."
    )
    musicnn: MusicnnSection | None = Field(
        None, description="Logistic regression on the musicnn embeddings, C chosen by cross-validation."
    )
    cnn1d: Cnn1dSection | None = Field(None, description="The FMA study's 1-D CNN on raw-audio windows.")
    mobilenet: MobilenetSection | None = Field(
        None, description="MobileNetV2 transfer learning on mel-spectrogram images."
    )
    cnn2d: Cnn2dSection | None = Field(None, description="The GTZAN-style 4-convolution CNN on spectrogram segments.")
    recommend: RecommendSection = Field(
        description="Similar songs: a cosine nearest-neighbour index over the train and val clips."
    )

    @model_validator(mode="after")
    def _fma_tables_for_fma_datasets(self) -> Config:
        if self.features.source != catalog.FEATURES_COMPUTED and self.data.dataset not in catalog.FMA_DATASETS:
            raise Rule(
                ("features.source", "data.dataset"),
                f"FMA's tables hold FMA's tracks only; use features.source: {catalog.FEATURES_COMPUTED}, "
                f"or one of the datasets {show(list(catalog.FMA_DATASETS))}",
            )
        return self

    @model_validator(mode="after")
    def _listed_models_have_sections(self) -> Config:
        for name, family in self.models.family_of().items():
            if getattr(self, name) is None:
                raise Rule(name, f"missing; models.{family} lists {name}, so {MISSING_HINT}")
        return self

    @model_validator(mode="after")
    def _folder_split_stratified(self) -> Config:
        if self.data.dataset == catalog.FOLDER and self.split.method != "stratified":
            raise Rule(
                ("split.method", "data.dataset"),
                "a folder of your own music has no official or fault-filtered split; set split.method: stratified",
            )
        return self

    def model_section(self, name: str) -> Section:
        """The section of one model (train_sklearn / train_keras <name>)."""
        section = getattr(self, name, None)
        if section is None:
            raise ParamError(f"{PARAMS_FILE}: {name}: missing; {MISSING_HINT}")
        return section


def load_config(path: str | Path = PARAMS_FILE) -> Config:
    """params.yaml, every section validated; ParamError with one line per problem otherwise."""
    params = read_params_file(path)
    try:
        return Config.model_validate(params)
    except ValidationError as e:
        raise ParamError("\n".join(problems(e, str(path)))) from None


def read_params_file(path: str | Path) -> dict:
    """The params file as a dict (not yet validated)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            params = yaml.safe_load(f)
    except FileNotFoundError:
        raise ParamError(f"{path}: no params file here; run the stage from the repository root") from None
    except yaml.YAMLError as e:
        raise ParamError(f"{path}: not valid YAML ({e}); fix the file and run again") from None
    if not isinstance(params, dict):
        raise ParamError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


# ---- pydantic's errors -> one line per problem -------------------------------------------------


def sections(model: type[BaseModel] | None = None, prefix: str = ""):
    """(dotted name, model class) of the whole file ("") and of every section and mapping inside it,
    depth first in the order of the fields."""
    model = Config if model is None else model
    yield prefix, model
    for name, field in model.model_fields.items():
        for candidate in (field.annotation, *get_args(field.annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                yield from sections(candidate, f"{prefix}.{name}" if prefix else name)


def problems(error: ValidationError, file: str) -> list[str]:
    """One line per error: ``<file>: <dotted key> = <value>: <pydantic's message>``; a Rule names
    its own keys and values."""
    lines = []
    for e in error.errors():
        rule = e.get("ctx", {}).get("error")
        if isinstance(rule, Rule):
            paths = [tuple(part for part in key.split(".") if part) for key in rule.keys]
            keys, what = [(tuple(e["loc"]) + path, lookup(e["input"], path)) for path in paths], str(rule)
        elif e["type"] == "missing":
            keys, what = [(tuple(e["loc"]), _ABSENT)], f"missing; {MISSING_HINT}"
        elif e["type"] == "extra_forbidden":
            keys, what = [(tuple(e["loc"]), e["input"])], unknown_key(tuple(e["loc"]))
        else:
            keys, what = [(tuple(e["loc"]), e["input"])], e["msg"].removeprefix("Value error, ")
        named = ", ".join(dotted(loc) if value is _ABSENT else f"{dotted(loc)} = {show(value)}" for loc, value in keys)
        lines.append(f"{file}: {named}: {what}")
    return list(dict.fromkeys(lines))


_ABSENT = object()


def unknown_key(loc: tuple) -> str:
    """What is said of a key that its section does not have: the keys it has."""
    parent = tuple(part for part in loc[:-1] if not isinstance(part, int))
    model = dict(sections()).get(".".join(parent))
    known = f": the keys here are {', '.join(model.model_fields)}" if model is not None else ""
    return f"unknown key{known}; remove it or correct its name"


def lookup(data: Any, path: tuple) -> Any:
    """The value at ``path`` in the given params, or _ABSENT."""
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return _ABSENT
        data = data[part]
    return data


def dotted(loc: tuple) -> str:
    """("cnn1d", "conv_filters", 1) -> "cnn1d.conv_filters[1]"; () -> "(the file)"."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(the file)"


def show(value: Any) -> str:
    """A value as params.yaml would write it (JSON is YAML), cut when long."""
    text = json.dumps(value, default=str)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 3] + "..."
