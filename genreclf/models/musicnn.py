"""musicnn (Pons & Serra, 2019), the MSD_musicnn tagger, re-implemented in Keras 3 for its embeddings.

The published model is a TF1 graph whose checkpoint ships in the PyPI wheel ``musicnn==0.1.0``
(ISC licence, ``musicnn/MSD_musicnn/``; trained on the Million Song Dataset's 50 most common
last.fm tags). Its code no longer runs (TF1 layers, numpy < 1.17), so the architecture is
written here again from the paper ("musicnn: pre-trained convolutional neural networks for
music audio tagging", ISMIR 2019 LBD; "End-to-end learning for music audio tagging at scale",
ISMIR 2018) and the shapes of the checkpoint's variables, which map one to one onto the
layers below (``CHECKPOINT_SCOPES``). Agreement with the original graph on the same input is
tested against outputs recorded from it (``tests/data/musicnn_parity.npz``).

The network, on one patch of 187 log-mel frames × 96 bands (3 s of 16 kHz audio):

- **front end**: batch-normalised input, then musically motivated convolutions, each
  followed by ReLU, batch normalisation and a max over frequency:
  timbral filters 7 frames × 38 and 7 × 67 bands (204 each, time zero-padded by 3 frames
  so the output keeps 187 frames), temporal filters 128, 64 and 32 frames × 1 band (51 each,
  'same' padding); concatenated: 561 features per frame;
- **mid end**: three 1D convolutions over time (7 frames, 64 filters, ReLU, batch norm),
  the second and third with residual connections; the front end and the three outputs are
  concatenated: 753 features per frame;
- **back end**: max and mean over time (interleaved: max₀, mean₀, max₁, …), batch norm,
  dense 200 + ReLU + batch norm (the *penultimate* layer), dense 50 + sigmoid (the tags).

The embeddings offered are the patch's ``penultimate`` layer (200) and its ``max_pool``
(753, the max over time of the mid end); a clip's embedding is their mean over its
non-overlapping patches. Dropout layers (inactive at inference) are left out.

Front end (``log_mel``): librosa's mel spectrogram of 16 kHz audio (n_fft 512, hop 256,
96 bands, power 2), rounded to float16 as the original does, then ``log10(10000 x + 1)``
in float32. The original takes that logarithm in float16, where ``10000 x`` overflows to
inf for loud bins (x > 6.55) under numpy 2's casting rules and the network then returns
NaN; in float32 the product is finite and equals what the model was trained on.

This module knows nothing of DVC or params.yaml: it takes arrays and paths.
"""

from __future__ import annotations

import queue
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from genreclf.errors import DataError, GenreError

SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
PATCH_FRAMES = 187  # 3 s: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
LOG_SCALE = 10000.0
N_TAGS = 50
EMBEDDING_SIZES = {"penultimate": 200, "max_pool": 753}
OUTPUTS = ("taggram", *EMBEDDING_SIZES)  # the model's outputs, in order
BN_EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization's default
PREFETCH_CLIPS = 2  # clips decoded ahead of the network (memory: a few clips of float32 audio)

# The checkpoint inside the wheel: files "<dir>/.index" and "<dir>/.data-00000-of-00001"
# (an empty checkpoint prefix), read with the prefix "<dir>/".
WHEEL_CHECKPOINT_DIR = "musicnn/MSD_musicnn/"
CHECKPOINT_FILES = (".index", ".data-00000-of-00001")

# The MSD model's 50 tags, in the order of its outputs (musicnn/configuration.py, MSD_LABELS).
MSD_TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock",
    "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental",
    "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental",
    "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy",
    "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop",
    "sad", "House", "happy",
)  # fmt: skip

TIMBRAL_WIDTHS = (38, 67)  # bands: int(0.4 * 96), int(0.7 * 96)
TIMBRAL_FILTERS = 204  # int(1.6 * 128)
TEMPORAL_LENGTHS = (128, 64, 32)  # frames
TEMPORAL_FILTERS = 51  # int(1.6 * 32)
MIDEND_FILTERS = 64
MIDEND_KERNEL = 7
BACKEND_UNITS = 200

# Keras layer -> the variable scope of the TF1 checkpoint that holds its weights. The TF1 code
# numbered its layers in the order it built them: input, timbral, temporal, mid end, back end.
CHECKPOINT_SCOPES = {
    "input_bn": "batch_normalization",
    "timbral_7x38_conv": "conv2d",
    "timbral_7x38_bn": "batch_normalization_1",
    "timbral_7x67_conv": "conv2d_1",
    "timbral_7x67_bn": "batch_normalization_2",
    "temporal_128x1_conv": "conv2d_2",
    "temporal_128x1_bn": "batch_normalization_3",
    "temporal_64x1_conv": "conv2d_3",
    "temporal_64x1_bn": "batch_normalization_4",
    "temporal_32x1_conv": "conv2d_4",
    "temporal_32x1_bn": "batch_normalization_5",
    "midend_1_conv": "conv2d_5",
    "midend_1_bn": "batch_normalization_6",
    "midend_2_conv": "conv2d_6",
    "midend_2_bn": "batch_normalization_7",
    "midend_3_conv": "conv2d_7",
    "midend_3_bn": "batch_normalization_8",
    "pool_bn": "batch_normalization_9",
    "penultimate_dense": "dense",
    "penultimate": "batch_normalization_10",
    "tags_dense": "dense_1",
}
# The variables of each kind of layer, in the order of Keras' get_weights().
WEIGHT_NAMES = {
    "conv": ("kernel", "bias"),
    "dense": ("kernel", "bias"),
    "bn": ("gamma", "beta", "moving_mean", "moving_variance"),
}


# ---- front end: audio -> log-mel patches ---------------------------------------------------


def log_compress(mel: np.ndarray) -> np.ndarray:
    """``log10(10000 x + 1)`` of a mel power spectrogram rounded to float16, computed in float32."""
    rounded = np.asarray(mel).astype(np.float16).astype(np.float32)
    return np.log10(np.float32(LOG_SCALE) * rounded + np.float32(1.0))


def mel_power(samples: np.ndarray) -> np.ndarray:
    """The mel power spectrogram [frames, 96] of mono float audio at 16 kHz (librosa's defaults otherwise)."""
    import librosa  # only the front end needs it

    mel = librosa.feature.melspectrogram(
        y=np.asarray(samples, dtype=np.float32), sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS
    )
    return mel.T


def log_mel(samples: np.ndarray) -> np.ndarray:
    """The model's input representation of a clip: float32 [frames, 96]."""
    return log_compress(mel_power(samples))


def patches(spectrogram: np.ndarray, frames: int = PATCH_FRAMES) -> np.ndarray:
    """Consecutive non-overlapping patches [n, frames, bands] from the start; a partial last one is dropped.

    Raises ValueError for a spectrogram shorter than one patch.
    """
    count = spectrogram.shape[0] // frames
    if count == 0:
        raise ValueError(f"{spectrogram.shape[0]} frames is shorter than one patch of {frames} frames (3 s)")
    return np.ascontiguousarray(spectrogram[: count * frames].reshape(count, frames, spectrogram.shape[1]))


def spaced(batch: np.ndarray, count: int | None) -> np.ndarray:
    """``count`` patches of ``batch`` evenly spaced from the first to the last (all if None or more)."""
    if count is None or count >= len(batch):
        return batch
    return batch[np.linspace(0, len(batch) - 1, count).round().astype(np.int64)]


# ---- the network ----------------------------------------------------------------------------


def build_model():
    """The MSD_musicnn network (untrained): input [batch, 187, 96] log-mel patches; outputs
    [taggram (50, sigmoid), penultimate (200), max_pool (753)]."""
    import keras
    from keras import layers

    def conv_bn(x, filters: int, kernel: tuple[int, int], padding: str, name: str):
        x = layers.Conv2D(filters, kernel, padding=padding, activation="relu", name=f"{name}_conv")(x)
        return layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)

    def max_over_frequency(x, name: str):
        """[b, T, F, C] -> [b, T, C]."""
        x = layers.MaxPooling2D(pool_size=(1, x.shape[2]), name=f"{name}_pool")(x)
        return layers.Reshape((PATCH_FRAMES, x.shape[3]), name=f"{name}_squeeze")(x)

    def pad_time(x, name: str):
        return layers.ZeroPadding2D(((3, 3), (0, 0)), name=name)(x)

    inputs = keras.Input((PATCH_FRAMES, N_MELS), name="log_mel")
    x = layers.Reshape((PATCH_FRAMES, N_MELS, 1), name="input_channel")(inputs)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="input_bn")(x)

    front = []
    padded = pad_time(x, "timbral_pad")
    for width in TIMBRAL_WIDTHS:
        name = f"timbral_7x{width}"
        front.append(max_over_frequency(conv_bn(padded, TIMBRAL_FILTERS, (7, width), "valid", name), name))
    for length in TEMPORAL_LENGTHS:
        name = f"temporal_{length}x1"
        front.append(max_over_frequency(conv_bn(x, TEMPORAL_FILTERS, (length, 1), "same", name), name))
    front = layers.Concatenate(axis=-1, name="front_end")(front)  # [b, 187, 561]

    def midend_block(x, index: int):
        """A 1D convolution over time written as the checkpoint's 2D one: [b, T, C] -> [b, T, 64]."""
        name = f"midend_{index}"
        x = layers.Reshape((PATCH_FRAMES, x.shape[2], 1), name=f"{name}_channel")(x)
        x = conv_bn(pad_time(x, f"{name}_pad"), MIDEND_FILTERS, (MIDEND_KERNEL, x.shape[2]), "valid", name)
        return layers.Reshape((PATCH_FRAMES, MIDEND_FILTERS), name=f"{name}_squeeze")(x)

    cnn1 = midend_block(front, 1)
    cnn2 = layers.Add(name="midend_2_residual")([midend_block(cnn1, 2), cnn1])
    cnn3 = layers.Add(name="midend_3_residual")([midend_block(cnn2, 3), cnn2])
    midend = layers.Concatenate(axis=-1, name="mid_end")([front, cnn1, cnn2, cnn3])  # [b, 187, 753]

    max_pool = layers.GlobalMaxPooling1D(name="max_pool")(midend)
    mean_pool = layers.GlobalAveragePooling1D(name="mean_pool")(midend)
    width = midend.shape[2]
    pooled = layers.Concatenate(axis=-1, name="pool_pairs")(
        [
            layers.Reshape((width, 1), name="max_column")(max_pool),
            layers.Reshape((width, 1), name="mean_column")(mean_pool),
        ]
    )
    pooled = layers.Flatten(name="pool_interleaved")(pooled)  # max_0, mean_0, max_1, mean_1, ...
    pooled = layers.BatchNormalization(epsilon=BN_EPSILON, name="pool_bn")(pooled)
    dense = layers.Dense(BACKEND_UNITS, activation="relu", name="penultimate_dense")(pooled)
    penultimate = layers.BatchNormalization(epsilon=BN_EPSILON, name="penultimate")(dense)
    logits = layers.Dense(N_TAGS, name="tags_dense")(penultimate)
    taggram = layers.Activation("sigmoid", name="taggram")(logits)
    return keras.Model(inputs, [taggram, penultimate, max_pool], name="msd_musicnn")


# ---- the checkpoint's weights -----------------------------------------------------------------


def layer_kind(layer_name: str) -> str:
    if layer_name.endswith("_conv"):
        return "conv"
    if layer_name.endswith("_dense"):
        return "dense"
    return "bn"


def checkpoint_variable_names() -> list[str]:
    """Every checkpoint variable the model uses ("conv2d/kernel", ...), in CHECKPOINT_SCOPES order."""
    return [
        f"{scope}/{weight}" for layer, scope in CHECKPOINT_SCOPES.items() for weight in WEIGHT_NAMES[layer_kind(layer)]
    ]


def set_checkpoint_weights(model, variables: dict[str, np.ndarray]) -> None:
    """Copy the checkpoint's ``variables`` (name -> array) into the layers of ``build_model()``.

    Raises ValueError naming every variable that is missing or whose shape differs from its layer's.
    """
    problems = []
    for layer_name, scope in CHECKPOINT_SCOPES.items():
        layer = model.get_layer(layer_name)
        values = []
        for weight, current in zip(WEIGHT_NAMES[layer_kind(layer_name)], layer.get_weights()):
            name = f"{scope}/{weight}"
            if name not in variables:
                problems.append(f"{name} (for {layer_name}) is missing")
                continue
            value = np.asarray(variables[name])
            if value.shape != current.shape:
                problems.append(f"{name} has shape {list(value.shape)}; {layer_name} needs {list(current.shape)}")
            values.append(value.astype(current.dtype))
        if len(values) == len(layer.get_weights()) and not problems:
            layer.set_weights(values)
    if problems:
        raise ValueError("the checkpoint does not fit the musicnn architecture: " + "; ".join(problems))


def read_checkpoint(prefix: str) -> dict[str, np.ndarray]:
    """The variables the model uses, read from a TF1 checkpoint ``prefix`` (e.g. "<dir>/")."""
    import tensorflow as tf

    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    available = reader.get_variable_to_shape_map()
    return {name: reader.get_tensor(name) for name in checkpoint_variable_names() if name in available}


def read_wheel_checkpoint(wheel: str | Path, checkpoint_dir: str = WHEEL_CHECKPOINT_DIR) -> dict[str, np.ndarray]:
    """The model's variables from the checkpoint inside the musicnn wheel (a zip), without installing it.

    Raises ValueError if the wheel does not hold the checkpoint's files.
    """
    with zipfile.ZipFile(wheel) as archive, tempfile.TemporaryDirectory() as tmp:
        names = set(archive.namelist())
        missing = [checkpoint_dir + f for f in CHECKPOINT_FILES if checkpoint_dir + f not in names]
        if missing:
            raise ValueError(f"{wheel}: not a musicnn wheel; it lacks {missing}")
        folder = Path(tmp) / "checkpoint"
        folder.mkdir()
        for f in CHECKPOINT_FILES:
            (folder / f).write_bytes(archive.read(checkpoint_dir + f))
        return read_checkpoint(f"{folder}/")


def pretrained_model(wheel: str | Path):
    """build_model() with the MSD_musicnn weights of the wheel."""
    model = build_model()
    set_checkpoint_weights(model, read_wheel_checkpoint(wheel))
    return model


# ---- embeddings -------------------------------------------------------------------------------


def patch_outputs(model, batch: np.ndarray) -> dict[str, np.ndarray]:
    """The model's outputs (OUTPUTS -> float32 array) for a batch of log-mel patches."""
    return dict(zip(OUTPUTS, (np.asarray(out) for out in model.predict_on_batch(batch))))


def clip_patches(samples: np.ndarray, patches_per_clip: int | None = None) -> np.ndarray:
    """The log-mel patches a clip of 16 kHz float audio is embedded from (``patches_per_clip``
    evenly spaced ones; None: all)."""
    return spaced(patches(log_mel(samples)), patches_per_clip)


def patches_embedding(model, batch: np.ndarray, embedding: str, batch_size: int = 16) -> np.ndarray:
    """The ``embedding`` (a key of EMBEDDING_SIZES) of one clip from its patches: their mean, float64."""
    if embedding not in EMBEDDING_SIZES:
        raise ValueError(f"unknown embedding {embedding!r}; known: {list(EMBEDDING_SIZES)}")
    outputs = [patch_outputs(model, batch[i : i + batch_size])[embedding] for i in range(0, len(batch), batch_size)]
    return np.concatenate(outputs).astype(np.float64).mean(axis=0)


def clip_embedding(
    model, samples: np.ndarray, embedding: str, patches_per_clip: int | None = None, batch_size: int = 16
) -> np.ndarray:
    """The ``embedding`` (a key of EMBEDDING_SIZES) of one clip of 16 kHz float audio: the mean over
    its patches (``patches_per_clip`` evenly spaced ones; None: all), float64."""
    if embedding not in EMBEDDING_SIZES:
        raise ValueError(f"unknown embedding {embedding!r}; known: {list(EMBEDDING_SIZES)}")
    return patches_embedding(model, clip_patches(samples, patches_per_clip), embedding, batch_size)


def prefetched(items: Iterable, work: Callable, depth: int = PREFETCH_CLIPS) -> Iterator:
    """``work(item)`` of each item in order (or the GenreError it raised), computed in a thread
    at most ``depth`` items ahead of the consumer: decoding overlapped with the network, which
    runs in the consumer's thread. Any other exception is raised in the consumer."""
    results: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                try:
                    results.put(work(item))
                except GenreError as e:
                    results.put(e)
        except BaseException as e:  # an unexpected fault: re-raised in the consumer
            results.put(e)
        results.put(done)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while (result := results.get()) is not done:
            if isinstance(result, BaseException) and not isinstance(result, GenreError):
                raise result
            yield result
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                results.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def embedding_columns(embedding: str) -> list[str]:
    """The table's column names: ``<embedding>_000`` ..."""
    return [f"{embedding}_{i:03d}" for i in range(EMBEDDING_SIZES[embedding])]


def clip_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """A clip's audio as the network takes it: the file or object ``path`` decoded at
    ``sample_rate`` (``genreclf.data.audio.decode_clip``, resampled with soxr as convert resamples),
    as float32; a DataError if it is shorter than one patch."""
    from genreclf.data.audio import decode_clip
    from genreclf.features.fma_features import int16_to_float

    samples = int16_to_float(decode_clip(path, sample_rate))
    if samples.size < PATCH_FRAMES * HOP_LENGTH:
        raise DataError(f"{path}: shorter than one 3 s patch", path=path)
    return samples


def clip_embeddings(
    model, items: Iterable, audio: Callable[[object], np.ndarray], embedding: str, patches_per_clip: int | None = None
) -> Iterator[np.ndarray]:
    """The embedding (``clip_embedding``) of each item's clip, in order. ``audio(item)`` gives the
    clip's 16 kHz float audio: it runs in a thread up to PREFETCH_CLIPS items ahead (``prefetched``)
    while the network embeds in this one; a GenreError it raises is raised here, in its item's turn."""
    for samples in prefetched(items, audio):
        if isinstance(samples, GenreError):
            raise samples
        yield clip_embedding(model, samples, embedding, patches_per_clip)
