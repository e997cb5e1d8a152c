"""The TFRecord format of the shards: one tf.train.Example per clip.

Each example holds the whole decoded clip as 16-bit PCM plus its label:

    audio     bytes   the int16 samples, little-endian, mono, at the dataset's sample rate
    label     int64   index into the ordered label list (data/split/labels.json)
    track_id  bytes   the clip's id (FMA: '000182'; GTZAN: 'blues.00000'), UTF-8

Shard files are named ``{split}-{index:05d}-of-{count:05d}.n{records}.tfrecord``:
the record count is in the name, so a reader knows the size of a split without
reading it. Spectrograms are not stored: the input pipelines in
``genreclf.models.tfdata`` compute them from the audio with the same TensorFlow ops at
training, evaluation and prediction time.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

# Bump when the bytes of a shard change for the same clips and params: the shards on GCS then go
# under a new prefix (genreclf.data.sharding.shard_key), and objects never change in place.
FORMAT_VERSION = 1
SHARD_RE = re.compile(r"^(?P<split>[a-z]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.n(?P<records>\d+)\.tfrecord$")


def shard_name(split: str, index: int, count: int, records: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.n{records}.tfrecord"


def varint(value: int) -> bytes:
    """``value`` as a protocol buffer varint (a negative int64 as its 64-bit two's complement)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field_head(field: int, length: int) -> bytes:
    """The tag and length that start a length-delimited field (wire type 2) of ``length`` bytes."""
    return varint(field << 3 | 2) + varint(length)


def length_delimited(field: int, payload: bytes) -> bytes:
    """One length-delimited field of a protocol buffer message."""
    return field_head(field, len(payload)) + payload


def map_entry(key: str, feature: bytes) -> bytes:
    """One entry of Features' map: {key = 1, value = 2}, as field 1 of Features."""
    return length_delimited(1, length_delimited(1, key.encode()) + length_delimited(2, feature))


def serialize_example(audio: np.ndarray, label: int, track_id: str) -> bytes:
    """Serialise one clip (int16 samples) as a tf.train.Example, deterministically.

    The protocol buffer wire format is written here, without TensorFlow (whose start costs seconds
    in every process that shards): the same bytes as ``tf.train.Example(...).SerializeToString(
    deterministic=True)``, whose map of features is ordered by key (tests/test_shard.py compares them).
    Example {features = 1: Features {feature = 1: map<string, Feature>}}; a map entry is
    {key = 1, value = 2}; Feature {bytes_list = 1: BytesList {value = 1}, int64_list = 3:
    Int64List {value = 1, packed}}. The samples are copied once, into the result: the fields
    around them are framed from their lengths.
    """
    audio = np.asarray(audio)
    if audio.dtype != np.int16 or audio.ndim != 1:
        raise ValueError(f"audio must be a 1-D int16 array, got {audio.dtype} with shape {audio.shape}")
    samples = memoryview(np.ascontiguousarray(audio.astype("<i2", copy=False))).cast("B")
    bytes_list = len(field_head(1, len(samples))) + len(samples)  # BytesList {value = 1: the samples}
    feature = len(field_head(1, bytes_list)) + bytes_list  # Feature {bytes_list = 1}
    key = length_delimited(1, b"audio")
    entry = len(key) + len(field_head(2, feature)) + feature
    # the keys in order: "audio" first, then the small entries
    audio_head = field_head(1, entry) + key + field_head(2, feature) + field_head(1, bytes_list)
    audio_head += field_head(1, len(samples))
    rest = map_entry("label", length_delimited(3, length_delimited(1, varint(int(label))))) + map_entry(
        "track_id", length_delimited(1, length_delimited(1, track_id.encode("utf-8")))
    )
    example = field_head(1, len(audio_head) + len(samples) + len(rest))
    return b"".join((example, audio_head, samples, rest))


def masked_crc(data: bytes) -> bytes:
    """The masked CRC-32C of ``data`` that frames a TFRecord, little-endian."""
    import google_crc32c

    crc = google_crc32c.value(data)
    return ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF).to_bytes(4, "little")


def write_record(file, data: bytes) -> None:
    """Write one TFRecord to the binary ``file``: the length (uint64, little-endian), its masked
    CRC-32C, ``data``, its masked CRC-32C. A file of these is what ``tf.io.TFRecordWriter`` writes
    without compression."""
    length = len(data).to_bytes(8, "little")
    file.write(length + masked_crc(length))
    file.write(data)
    file.write(masked_crc(data))


def parse_example(serialized):
    """Parse one serialised example (a scalar string tensor) into a dict of tensors.

    Returns ``{"audio": int16 [n], "label": int64 [], "track_id": string []}``.
    Usable inside ``tf.data.Dataset.map``.
    """
    import tensorflow as tf

    spec = {
        "audio": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "track_id": tf.io.FixedLenFeature([], tf.string),
    }
    parsed = tf.io.parse_single_example(serialized, spec)
    parsed["audio"] = tf.io.decode_raw(parsed["audio"], tf.int16, little_endian=True)
    return parsed


def list_shards(shard_dir: str | Path, split: str) -> list[Path]:
    """The shard files of one split, in index order."""
    shard_dir = Path(shard_dir)
    files = [p for p in shard_dir.iterdir() if (m := SHARD_RE.match(p.name)) and m["split"] == split]
    return sorted(files, key=lambda p: int(SHARD_RE.match(p.name)["index"]))


def count_records(shard_dir: str | Path, split: str) -> int:
    """Number of examples in a split, read from the shard file names."""
    return sum(int(SHARD_RE.match(p.name)["records"]) for p in list_shards(shard_dir, split))
