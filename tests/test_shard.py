"""genreclf.data.sharding and the shard stage: TFRecords that give back exactly the clips, deterministically."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from genreclf import resume
from genreclf.artifacts import MANIFEST_COLUMNS, read_dataset_info, read_split, read_split_clips, write_split
from genreclf.data import sharding
from genreclf.data.sharding import Clip, shard_chunks, write_shard
from genreclf.data.tfrecords import SHARD_RE, count_records, list_shards, parse_example, serialize_example, shard_name
from genreclf.engine import Engine
from tests.support.helpers import directory_bytes, make_project, run_stage, set_params, write_audio

LABELS = ["blues", "jazz", "rock"]
SPLIT_SIZES = {"train": 13, "val": 4, "test": 6}
NUM_SHARDS = {"train": 3, "val": 2, "test": 10}  # test: more shards than clips
SAMPLE_RATE = 8000


@pytest.mark.parametrize(
    "num_clips, num_shards, sizes",
    [(10, 3, [4, 3, 3]), (16, 4, [4, 4, 4, 4]), (3, 5, [1, 1, 1]), (1, 1, [1]), (7, 1, [7])],
)
def test_shard_chunks_are_balanced_and_cover_every_clip(num_clips, num_shards, sizes):
    chunks = shard_chunks(num_clips, num_shards, np.random.default_rng(0))
    assert [len(c) for c in chunks] == sizes
    assert sorted(np.concatenate(chunks)) == list(range(num_clips))


def test_shard_chunks_are_seeded():
    first = np.concatenate(shard_chunks(50, 4, np.random.default_rng(0)))
    assert np.array_equal(np.concatenate(shard_chunks(50, 4, np.random.default_rng(0))), first)
    assert not np.array_equal(np.concatenate(shard_chunks(50, 4, np.random.default_rng(1))), first)
    assert not np.array_equal(first, np.arange(50))


def tensorflow_example(audio: np.ndarray, label: int, track_id: str) -> bytes:
    import tensorflow as tf

    feature = {
        "audio": tf.train.Feature(bytes_list=tf.train.BytesList(value=[audio.astype("<i2").tobytes()])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "track_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[track_id.encode("utf-8")])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


@pytest.mark.slow
def test_the_shards_are_the_bytes_tensorflow_writes(tmp_path):
    """write_shard frames and encodes the records itself: the same bytes as TensorFlow's
    deterministic Example serialisation written by its TFRecordWriter (on this machine)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    clips = [  # an empty clip, a long one, labels that take 1, 2 and 10 bytes, a non-ASCII id, ...
        (np.zeros(0, np.int16), 0, "empty"),
        (rng.integers(-32768, 32768, 300_000).astype(np.int16), 9, "blues.00001"),
        (rng.integers(-32768, 32768, 1000).astype(np.int16), 300, "caf\u00e9"),
        (np.arange(-5, 5, dtype=np.int16), -1, ""),
        (np.arange(128, dtype=np.int16)[::2], 1, "x" * 128),  # strided; lengths at a varint's 1-2 byte edge
    ]
    for audio, label, track_id in clips:
        assert serialize_example(audio, label, track_id) == tensorflow_example(audio, label, track_id)
    with tf.io.TFRecordWriter(str(tmp_path / "tensorflow.tfrecord")) as writer:
        for audio, label, track_id in clips[:3]:
            writer.write(tensorflow_example(audio, label, track_id))
    wavs = [write_audio(tmp_path / f"{i}.wav", audio, SAMPLE_RATE) for i, (audio, _, _) in enumerate(clips[:3])]
    ours = [Clip(str(wav), label, track_id) for wav, (_, label, track_id) in zip(wavs, clips)]
    assert write_shard(tmp_path / "ours.tfrecord", ours, SAMPLE_RATE) == [0, 300_000, 1000]
    assert (tmp_path / "ours.tfrecord").read_bytes() == (tmp_path / "tensorflow.tfrecord").read_bytes()


def write_split_data(project) -> dict[str, np.ndarray]:
    """data/split/ and data/wav/ for 23 clips of int16 noise of different lengths; returns the samples."""
    rng = np.random.default_rng(0)
    rows, audio = [], {}
    for split, size in SPLIT_SIZES.items():
        for _ in range(size):
            track_id = f"{len(rows):06d}"
            label = int(rng.integers(len(LABELS)))
            audio[track_id] = rng.integers(-32768, 32768, int(rng.integers(50, 3000))).astype(np.int16)
            write_audio(project / "data" / "wav" / f"{track_id}.wav", audio[track_id], SAMPLE_RATE)
            rows.append((track_id, f"data/wav/{track_id}.wav", LABELS[label], label, split))
    write_split(project / "data" / "split", pd.DataFrame(rows, columns=MANIFEST_COLUMNS), LABELS)
    return audio


def read_shards(shard_dir, split):
    import tensorflow as tf

    files = [str(p) for p in list_shards(shard_dir, split)]
    dataset = tf.data.TFRecordDataset(files).map(parse_example)
    return [(r["track_id"].numpy().decode(), int(r["label"].numpy()), r["audio"].numpy()) for r in dataset]


@pytest.fixture(scope="module")
def sharded_project(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("shard"), {"shard": {"num_shards": NUM_SHARDS, "seed": 0}})
    audio = write_split_data(project)
    result = run_stage(project, "shard")
    assert result.returncode == 0, result.stderr
    return project, audio, result


@pytest.mark.slow
def test_shard_files_are_named_with_their_counts(sharded_project):
    project, _, result = sharded_project
    shard_dir = project / "data" / "shards"
    names = sorted(p.name for p in shard_dir.iterdir())
    assert "dataset_info.json" in names
    for split, size in SPLIT_SIZES.items():
        files = list_shards(shard_dir, split)
        count = min(NUM_SHARDS[split], size)
        assert len(files) == count
        assert count_records(shard_dir, split) == size
        records = [int(SHARD_RE.match(p.name)["records"]) for p in files]
        assert max(records) - min(records) <= 1
        assert [p.name for p in files] == [shard_name(split, i, count, n) for i, n in enumerate(records)]
        assert [len(read_split_file(p)) for p in files] == records
    assert len(names) == 1 + sum(min(NUM_SHARDS[s], SPLIT_SIZES[s]) for s in SPLIT_SIZES)
    assert "test: 10 shards asked for but only 6 clips; writing one shard per clip" in result.stderr


def read_split_file(path):
    import tensorflow as tf

    return list(tf.data.TFRecordDataset([str(path)]))


@pytest.mark.slow
def test_round_trip_gives_back_exact_clips(sharded_project):
    project, audio, _ = sharded_project
    manifest, _ = read_split(project / "data" / "split", check_wavs=False)
    for split in SPLIT_SIZES:
        records = read_shards(project / "data" / "shards", split)
        expected = manifest[manifest["split"] == split]
        assert sorted(t for t, _, _ in records) == sorted(expected["track_id"])
        labels = dict(zip(expected["track_id"], expected["label"]))
        for track_id, label, samples in records:
            assert label == labels[track_id]
            assert samples.dtype == np.int16
            np.testing.assert_array_equal(samples, audio[track_id])
        if split == "train":  # shuffled, not in track id order
            assert [t for t, _, _ in records] != sorted(labels)


@pytest.mark.slow
def test_dataset_info(sharded_project):
    project, audio, _ = sharded_project
    info = read_dataset_info(project / "data" / "shards")
    manifest, _ = read_split(project / "data" / "split", check_wavs=False)
    lengths = {
        split: [len(audio[t]) for t in manifest["track_id"][manifest["split"] == split]] for split in SPLIT_SIZES
    }
    assert info == {
        "sample_rate": SAMPLE_RATE,
        "labels": LABELS,
        "splits": {
            s: {"clips": SPLIT_SIZES[s], "min_samples": min(lengths[s]), "max_samples": max(lengths[s])}
            for s in SPLIT_SIZES
        },
    }


@pytest.mark.slow
def test_rerun_is_byte_identical_and_the_seed_matters(sharded_project):
    project, _, _ = sharded_project
    shard_dir = project / "data" / "shards"
    first = directory_bytes(shard_dir)
    assert run_stage(project, "shard").returncode == 0
    assert directory_bytes(shard_dir) == first
    first_order = [t for t, _, _ in read_shards(shard_dir, "train")]

    set_params(project, {"shard": {"seed": 1}})
    assert run_stage(project, "shard").returncode == 0
    second = directory_bytes(shard_dir)
    assert second["dataset_info.json"] == first["dataset_info.json"]
    assert second != first
    second_order = [t for t, _, _ in read_shards(shard_dir, "train")]
    assert second_order != first_order and sorted(second_order) == sorted(first_order)


@pytest.mark.parametrize(
    "shard_params, message",
    [
        (
            {"num_shards": {"train": 0, "val": 1, "test": 1}},
            "params.yaml: shard.num_shards.train = 0: Input should be greater than 0",
        ),
        ({"num_shards": {"train": 2, "val": 1}}, "params.yaml: shard.num_shards.test: missing; add it"),
        (
            {"num_shards": {"train": 2.5, "val": 1, "test": 1}},
            "params.yaml: shard.num_shards.train = 2.5: Input should be a valid integer",
        ),
        (
            {"num_shards": 4},
            "params.yaml: shard.num_shards = 4: Input should be a valid dictionary or instance of NumShards",
        ),
        ({"seed": "zero"}, 'params.yaml: shard.seed = "zero": Input should be a valid integer'),
    ],
)
def test_bad_params_are_a_clear_error(tmp_path, shard_params, message):
    project = make_project(tmp_path, {"shard": shard_params})
    write_split_data(project)
    result = run_stage(project, "shard", check=False)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "data" / "shards").exists()


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no split dir", "data/split/split_manifest.csv does not exist; run `dvc repro split`"),
        (
            "missing wav",
            "data/split/split_manifest.csv lists 1 WAV files that do not exist (e.g. "
            "['data/wav/000003.wav']); run `dvc repro convert`",
        ),
        ("wrong label", "labels do not match the genres of data/split/labels.json"),
        pytest.param(
            "stereo wav",
            "data/wav/000005.wav: expected mono 16-bit PCM, got 2 channels of PCM_16; run `dvc repro convert`",
        ),  # found while sharding
    ],
)
def test_bad_data_is_a_clear_error(tmp_path, breakage, message):
    project = make_project(tmp_path, {"shard": {"num_shards": NUM_SHARDS}})
    write_split_data(project)
    manifest_path = project / "data" / "split" / "split_manifest.csv"
    if breakage == "no split dir":
        manifest_path.unlink()
    elif breakage == "missing wav":
        (project / "data" / "wav" / "000003.wav").unlink()
    elif breakage == "wrong label":
        manifest = pd.read_csv(manifest_path, dtype={"track_id": str})
        manifest.loc[0, "label"] = (manifest.loc[0, "label"] + 1) % len(LABELS)
        manifest.to_csv(manifest_path, index=False)
    elif breakage == "stereo wav":
        write_audio(project / "data" / "wav" / "000005.wav", np.zeros((100, 2), dtype=np.int16), SAMPLE_RATE)

    result = run_stage(project, "shard", check=False)

    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "data" / "shards").exists()


def test_a_resumed_run_counts_only_the_clips_it_writes(tmp_path, capsys):
    """The shards a scratch holds are not written again, and the progress bar's total is the
    clips of the others: it ends full, not part-way."""
    write_split_data(tmp_path)
    manifest, _ = read_split_clips(tmp_path / "data" / "split", check_wavs=False)
    manifest = [dataclasses.replace(clip, path=str(tmp_path / clip.path)) for clip in manifest]
    scratch = resume.Scratch.open(tmp_path / "scratch", "shard", "key", sharding.SHARD_CODEC)
    shards, _ = sharding.plan_shards(scratch.files, manifest, NUM_SHARDS, 0, SAMPLE_RATE)
    first = shards[0]
    scratch.store(0, resume.WritesFile(write_shard, at=0)(*first))
    capsys.readouterr()
    sharding.write_resumably(shards, Engine(), scratch)
    remaining = sum(len(clips) for _, clips, _ in shards[1:])
    assert scratch.counts() == (1, len(shards) - 1)
    assert f"{remaining}/{remaining}" in capsys.readouterr().err
