"""The three Keras models, each built in one function (keras-io style).

- ``build_cnn1d``: the FMA study's 1D CNN on raw-audio windows.
- ``build_mobilenet``: MobileNetV2 transfer learning on log-mel spectrogram images.
- ``build_cnn2d``: the GTZAN-style study's 4-convolution CNN on log-mel segments.

cnn1d takes raw-audio windows from ``tf.data``. mobilenet and cnn2d take int16 audio
(a fixed-length clip, or a segment's samples) when given an ``AudioFrontEnd``: their
first layer, ``genreclf.features.spectrograms.SpectrogramLayer``, computes the log-mel
image on the device; without one they take ready images (a model of the images alone,
as the tests build them). Under a ``mixed_float16`` policy the output layer
is kept float32 (numerically stable softmax / sigmoid).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from genreclf import catalog
from genreclf.features.spectrograms import SpectrogramLayer

MODEL_NAMES = catalog.KERAS_MODELS
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")
# batch-norm momentum of a MobileNetV2 trained from scratch (weights: null); see build_mobilenet
SCRATCH_BATCHNORM_MOMENTUM = 0.9
# alpha values for which keras.applications has ImageNet weights of MobileNetV2
MOBILENET_IMAGENET_ALPHAS = catalog.MOBILENET_IMAGENET_ALPHAS
MOBILENET_MIN_IMAGE_SIZE = catalog.MOBILENET_MIN_IMAGE_SIZE
AUDIO_INPUT_NAME = "audio"


@dataclass(frozen=True)
class AudioFrontEnd:
    """int16 audio of ``samples`` samples per unit, made into the model's image by ``layer``."""

    samples: int
    layer: SpectrogramLayer


def model_input(front_end: AudioFrontEnd | None, image_shape: tuple, name: str):
    """(the model's input, the image tensor): an image input, or int16 audio and its spectrogram layer."""
    if front_end is None:
        inputs = keras.Input(shape=image_shape, name=name)
        return inputs, inputs
    inputs = keras.Input(shape=(front_end.samples,), dtype="int16", name=AUDIO_INPUT_NAME)
    return inputs, front_end.layer(inputs)


def build_cnn1d(
    window_size: int,
    num_classes: int,
    conv_filters=(128, 64),
    kernel_size: int = 3,
    pool_size: int = 2,
    dense_units=(100, 20),
    dropout: float = 0.5,
) -> keras.Model:
    """1D CNN on raw audio windows [window_size, 1]: conv + max-pool blocks, dense + dropout, softmax."""
    inputs = keras.Input(shape=(window_size, 1), name="waveform")
    x = inputs
    for i, filters in enumerate(conv_filters, start=1):
        x = layers.Conv1D(filters, kernel_size, activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling1D(pool_size, name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate(dense_units, start=1):
        x = layers.Dense(units, activation="relu", name=f"dense{i}")(x)
        x = layers.Dropout(dropout, name=f"dropout{i}")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="genre")(x)
    return keras.Model(inputs, outputs, name="cnn1d")


def build_mobilenet(
    image_size: int,
    num_classes: int,
    weights: str | None = "imagenet",
    alpha: float = 1.0,
    dense_units: int = 128,
    dropout: float = 0.5,
    front_end: AudioFrontEnd | None = None,
) -> keras.Model:
    """MobileNetV2 base (global average pooling) + a new dense head, on [s, s, 3] images
    (or on int16 clips made into those images by ``front_end``).

    ``weights``: "imagenet" (Keras downloads them: needs internet), the path of a
    weights file for the base (e.g. the official
    ``mobilenet_v2_weights_tf_dim_ordering_tf_kernels_<alpha>_<size>_no_top.h5``, or a
    ``.weights.h5`` saved from ``MobileNetV2(include_top=False)`` with the same alpha),
    or None: random initialisation.

    With pretrained weights the base is frozen (transfer learning: only the head
    learns) and called with ``training=False``, so its batch-norm statistics stay fixed
    even when its top layers are unfrozen for fine-tuning (``unfreeze_top_layers``).
    With None there is nothing to transfer: a frozen random base passes almost nothing
    on, so the whole network is trained from scratch, batch norm included.

    The base is the layer named "mobilenetv2_base".
    """
    inputs, image = model_input(front_end, (image_size, image_size, 3), "image")
    base = keras.applications.MobileNetV2(
        input_shape=(image_size, image_size, 3),
        alpha=alpha,
        include_top=False,
        weights=weights,
        pooling="avg",
        name="mobilenetv2_base",
    )
    if weights is None:
        # Trained from scratch: Keras' MobileNetV2 keeps batch-norm running statistics with
        # momentum 0.999, which a small data set never moves far from their initial values
        # in the few hundred steps it trains, so inference would see wrong statistics.
        for layer in base.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = SCRATCH_BATCHNORM_MOMENTUM
        x = base(image)
    else:
        base.trainable = False
        x = base(image, training=False)  # transfer: frozen, batch norm in inference mode
    x = layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="genre")(x)
    return keras.Model(inputs, outputs, name="mobilenet")


def mobilenet_base(model: keras.Model) -> keras.Model:
    """The MobileNetV2 base inside a model made by ``build_mobilenet``."""
    return model.get_layer("mobilenetv2_base")


def unfreeze_top_layers(model: keras.Model, count: int) -> None:
    """Make the top ``count`` layers of the MobileNetV2 base trainable (the rest stay frozen)."""
    base = mobilenet_base(model)
    base.trainable = True
    for layer in base.layers[: len(base.layers) - count]:
        layer.trainable = False


def build_cnn2d(
    image_size: int,
    num_classes: int,
    filters=(64, 128, 256, 512),
    pools=(2, 4, 4, 4),
    dense_units: int = 128,
    dropout: float = 0.5,
    output_activation: str = "softmax",
    front_end: AudioFrontEnd | None = None,
) -> keras.Model:
    """2D CNN on log-mel segments [s, s, 1] (or on int16 segment audio made into them by
    ``front_end``): 3x3 ELU convolutions, each followed by max-pooling."""
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}")
    if len(filters) != len(pools):
        raise ValueError(f"filters {list(filters)} and pools {list(pools)} must have the same length")
    inputs, x = model_input(front_end, (image_size, image_size, 1), "segment")
    for i, (count, pool) in enumerate(zip(filters, pools), start=1):
        x = layers.Conv2D(count, 3, padding="same", activation="elu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(pool, padding="same", name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="elu", name="dense")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation=output_activation, dtype="float32", name="genre")(x)
    return keras.Model(inputs, outputs, name="cnn2d")


def compile_model(model: keras.Model, learning_rate: float, output_activation: str = "softmax") -> None:
    """Adam + cross-entropy on one-hot labels; accuracy = argmax(prediction) == argmax(label).

    softmax outputs: categorical cross-entropy; sigmoid outputs: binary cross-entropy
    on each class (the GTZAN study's choice).
    """
    if output_activation == "softmax":
        loss = keras.losses.CategoricalCrossentropy()
    elif output_activation == "sigmoid":
        loss = keras.losses.BinaryCrossentropy()
    else:
        raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}")
    # explicit names: auto-names ("adam_1", ...) would depend on what the process built before
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate, name="adam"),
        loss=loss,
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
