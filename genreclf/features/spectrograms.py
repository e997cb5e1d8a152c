"""Model inputs computed from raw audio with TensorFlow ops, in ``tf.data`` or in the model.

The shards (``genreclf.data.tfrecords``) hold only whole int16 clips: every model input
(raw-audio windows, log-mel images, log-mel segments) is computed from the audio by
the functions below. ``genreclf.models.tfdata`` maps the cheap ones over the clips (windows;
crop/pad to a fixed length; the segments' audio); the log-mel images of the spectrogram
models are computed by ``SpectrogramLayer``, the models' first layer, on the device. The same
functions run at training, evaluation and prediction time, so a model always sees
its inputs computed the same way; the settings they take are written to the model's
``preprocessing.json``.

Conventions follow librosa (checked against it in tests/test_tfdata.py):

- audio: int16 samples scaled to [-1, 1) by dividing by 32768;
- STFT: centred frames (``n_fft // 2`` zeros padded at each end, librosa's
  ``center=True, pad_mode="constant"``), periodic Hann window, power spectrum,
  so a clip of ``n`` samples gives ``1 + n // hop_length`` frames;
- mel filterbank: ``librosa.filters.mel`` (Slaney mel scale and area normalisation),
  taken as a constant matrix;
- decibels: ``librosa.power_to_db(S, ref=np.max, top_db=80)``, i.e. relative to the
  loudest bin of the clip (of the segment, for ``segment_images``), floored at -80 dB; then scaled to [0, 1] by
  ``(dB + top_db) / top_db``.

Spectrograms are laid out as images: height = mel bands (lowest band at the bottom
row), width = time frames.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import tensorflow as tf

INT16_SCALE = 32768.0
TOP_DB = 80.0
AMIN = 1e-10  # floor of the power before the logarithm (librosa's amin)


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa's mel filterbank, transposed: float32 [n_fft // 2 + 1, n_mels]."""
    import librosa

    weights = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)
    return np.ascontiguousarray(weights.T, dtype=np.float32)


def num_frames(num_samples: int, hop_length: int) -> int:
    """Frames of a centred STFT of ``num_samples`` samples (librosa's count)."""
    return 1 + num_samples // hop_length


def audio_to_float(audio_int16: tf.Tensor) -> tf.Tensor:
    """int16 samples [n] -> float32 in [-1, 1)."""
    return tf.cast(audio_int16, tf.float32) / INT16_SCALE


def pad_centred(audio: tf.Tensor, n_fft: int) -> tf.Tensor:
    """``n_fft // 2`` zeros at each end of the last axis (librosa's ``center=True, pad_mode="constant"``)."""
    paddings = [[0, 0]] * (audio.shape.rank - 1) + [[n_fft // 2, n_fft // 2]]
    return tf.pad(audio, paddings)


def log_mel_spectrogram(
    audio: tf.Tensor,
    sample_rate: int,
    n_fft: int,
    hop_length: int,
    n_mels: int,
    top_db: float = TOP_DB,
    centred: bool = True,
) -> tf.Tensor:
    """float32 audio [..., n] -> log-mel spectrogram in dB relative to each clip's maximum, [..., frames, n_mels].

    Same values as ``librosa.power_to_db(librosa.feature.melspectrogram(y=audio,
    sr=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels), ref=np.max,
    top_db=top_db).T`` (up to float32 round-off). Leading axes are a batch: the maximum
    is taken per item. ``centred=False``: the audio is already padded (no zeros are added),
    so ``n`` samples give ``1 + (n - n_fft) // hop_length`` frames.
    """
    audio = tf.convert_to_tensor(audio, tf.float32)
    padded = pad_centred(audio, n_fft) if centred else audio
    stft = tf.signal.stft(
        padded,
        frame_length=n_fft,
        frame_step=hop_length,
        fft_length=n_fft,
        window_fn=tf.signal.hann_window,
        pad_end=False,
    )
    power = tf.math.square(tf.math.abs(stft))
    mel = tf.linalg.matmul(power, tf.constant(mel_filterbank(sample_rate, n_fft, n_mels)))
    decibels = 10.0 * tf.math.log(tf.maximum(mel, AMIN)) / tf.math.log(10.0)
    decibels = decibels - tf.reduce_max(decibels, axis=[-2, -1], keepdims=True)
    return tf.maximum(decibels, -top_db)


def scale_decibels(decibels: tf.Tensor, top_db: float = TOP_DB) -> tf.Tensor:
    """dB in [-top_db, 0] -> [0, 1]."""
    return (decibels + top_db) / top_db


def spectrogram_image(log_mel: tf.Tensor) -> tf.Tensor:
    """[..., frames, n_mels] -> image layout [..., n_mels, frames, 1], lowest mel band at the bottom row."""
    return tf.reverse(tf.linalg.matrix_transpose(log_mel), axis=[-2])[..., tf.newaxis]


# ---- the three kinds of model input -----------------------------------------------


def waveform_windows(audio_int16: tf.Tensor, window_size: int) -> tf.Tensor:
    """Consecutive non-overlapping windows of a clip: float32 [n // window_size, window_size, 1].

    The samples after the last whole window are dropped.
    """
    count = tf.shape(audio_int16)[0] // window_size
    windows = tf.reshape(audio_to_float(audio_int16[: count * window_size]), [count, window_size, 1])
    return tf.ensure_shape(windows, [None, window_size, 1])


def random_waveform_window(audio_int16: tf.Tensor, window_size: int, seed: tf.Tensor) -> tf.Tensor:
    """One window of ``window_size`` samples at a random start: float32 [window_size, 1].

    ``seed`` is a shape [2] integer tensor (stateless random op): the same seed picks
    the same start.
    """
    last_start = tf.shape(audio_int16)[0] - window_size
    start = tf.random.stateless_uniform([], seed=seed, minval=0, maxval=last_start + 1, dtype=tf.int32)
    window = audio_to_float(audio_int16[start : start + window_size])
    return tf.ensure_shape(tf.reshape(window, [window_size, 1]), [window_size, 1])


def mel_image(
    audio_int16: tf.Tensor, sample_rate: int, n_fft: int, hop_length: int, n_mels: int, image_size: int
) -> tf.Tensor:
    """Whole-clip log-mel spectrogram resized to an image: float32 [image_size, image_size, 1] in [0, 1].

    A batch of clips of one length [b, n] gives [b, image_size, image_size, 1]. Resizing
    is bilinear with antialiasing (the time axis is usually shrunk).
    """
    audio_int16 = tf.convert_to_tensor(audio_int16)
    log_mel = log_mel_spectrogram(audio_to_float(audio_int16), sample_rate, n_fft, hop_length, n_mels)
    image = spectrogram_image(scale_decibels(log_mel))
    image = tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=True)
    shape = audio_int16.shape[:-1].concatenate([image_size, image_size, 1])
    return tf.ensure_shape(tf.clip_by_value(image, 0.0, 1.0), shape)


def mobilenet_pixels(image: tf.Tensor) -> tf.Tensor:
    """[0, 1] one-channel image [..., 1] -> MobileNetV2 input [..., 3].

    Scaled to [0, 255], copied to 3 channels, then
    ``keras.applications.mobilenet_v2.preprocess_input`` (which maps to [-1, 1]).
    """
    from keras.applications.mobilenet_v2 import preprocess_input

    pixels = tf.concat([image, image, image], axis=-1) * 255.0
    return preprocess_input(pixels)


def segment_starts(frames: tf.Tensor, segment_frames: int, segments_per_clip: int) -> tf.Tensor:
    """Start frames of ``segments_per_clip`` segments evenly spaced over a clip (they may overlap)."""
    last_start = tf.cast(frames - segment_frames, tf.float32)
    starts = tf.round(tf.linspace(0.0, last_start, segments_per_clip))
    return tf.cast(starts, tf.int32)


# ---- audio shipped by tf.data, spectrograms computed in the model ----------------------
#
# The "audio_clip" and "audio_segments" inputs: tf.data only crops, pads and slices the
# int16 audio (cheap), and ``SpectrogramLayer``, the model's first layer, computes the
# log-mel images on the accelerator with the ops above.


def fixed_length(audio_int16: tf.Tensor, num_samples: int) -> tf.Tensor:
    """The first ``num_samples`` samples of a clip, zero-padded at the end if it is shorter: [num_samples]."""
    audio = audio_int16[:num_samples]
    padded = tf.pad(audio, [[0, num_samples - tf.shape(audio)[0]]])
    return tf.ensure_shape(padded, [num_samples])


def segment_samples(image_size: int, n_fft: int, hop_length: int) -> int:
    """Samples of a segment's audio: the span of ``image_size`` STFT frames (no centring)."""
    return (image_size - 1) * hop_length + n_fft


def segment_audio(
    audio_int16: tf.Tensor, n_fft: int, hop_length: int, image_size: int, segments_per_clip: int
) -> tf.Tensor:
    """The audio of a clip's segments: int16 [segments_per_clip, segment_samples].

    The segments start at ``segment_starts`` frames of the clip's centred STFT (evenly
    spaced from the first to the last possible one): segment i is the span of the clip, padded with ``n_fft // 2``
    zeros at each end, that frames ``start_i .. start_i + image_size - 1`` cover, so an
    uncentred STFT of it (``segment_images``) gives exactly those frames.
    """
    audio_int16 = tf.convert_to_tensor(audio_int16)
    frames = 1 + tf.shape(audio_int16)[0] // hop_length
    starts = segment_starts(frames, image_size, segments_per_clip)
    length = segment_samples(image_size, n_fft, hop_length)
    index = starts[:, tf.newaxis] * hop_length + tf.range(length)[tf.newaxis, :]
    segments = tf.gather(pad_centred(audio_int16, n_fft), index)
    return tf.ensure_shape(segments, [segments_per_clip, length])


def segment_images(segments_int16: tf.Tensor, sample_rate: int, n_fft: int, hop_length: int, n_mels: int) -> tf.Tensor:
    """Log-mel images of segments' audio [..., segment_samples] -> float32 [..., n_mels, frames, 1] in [0, 1].

    Uncentred STFT (the audio already spans the frames' windows); dB relative to each
    segment's own maximum.
    """
    audio = audio_to_float(tf.convert_to_tensor(segments_int16))
    log_mel = log_mel_spectrogram(audio, sample_rate, n_fft, hop_length, n_mels, centred=False)
    return spectrogram_image(scale_decibels(log_mel))


SPECTROGRAM_LAYER_MODES = ("mobilenet_image", "segment_image")


@keras.saving.register_keras_serializable(package="genreclf")
class SpectrogramLayer(keras.layers.Layer):
    """int16 audio [batch, samples] -> log-mel images, computed in float32 inside the model.

    mode "mobilenet_image": ``mobilenet_pixels(mel_image(...))`` of each clip,
    [batch, image_size, image_size, 3]; mode "segment_image": ``segment_images`` of
    each segment's audio, [batch, n_mels, frames, 1]. No weights; the settings are
    the layer's config, so ``keras.saving.load_model`` rebuilds it.
    """

    def __init__(self, mode, sample_rate, n_fft, hop_length, n_mels, image_size, **kwargs):
        if mode not in SPECTROGRAM_LAYER_MODES:
            raise ValueError(f"SpectrogramLayer mode must be one of {SPECTROGRAM_LAYER_MODES}, got {mode!r}")
        kwargs.setdefault("dtype", "float32")  # spectrograms in float32 even under mixed precision
        super().__init__(**kwargs)
        self.mode, self.sample_rate, self.n_fft = mode, int(sample_rate), int(n_fft)
        self.hop_length, self.n_mels, self.image_size = int(hop_length), int(n_mels), int(image_size)

    def call(self, audio_int16):
        if self.mode == "mobilenet_image":
            image = mel_image(audio_int16, self.sample_rate, self.n_fft, self.hop_length, self.n_mels, self.image_size)
            return mobilenet_pixels(image)
        return segment_images(audio_int16, self.sample_rate, self.n_fft, self.hop_length, self.n_mels)

    def compute_output_shape(self, input_shape):
        if self.mode == "mobilenet_image":
            return (input_shape[0], self.image_size, self.image_size, 3)
        samples = input_shape[-1]
        frames = None if samples is None else 1 + (samples - self.n_fft) // self.hop_length
        return (input_shape[0], self.n_mels, frames, 1)

    def get_config(self):
        return {
            **super().get_config(),
            "mode": self.mode,
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "n_mels": self.n_mels,
            "image_size": self.image_size,
        }
