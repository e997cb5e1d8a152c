"""Shards that stay on GCS (data.root = gs://...): written by the shard stage's workers, listed in
data/shards/shard_manifest.json, checked and read by URL with tf.data.

The bucket is gcp-storage-emulator on 127.0.0.1 (tests/support/gcs_emulator.py): gcsfs reaches it through
STORAGE_EMULATOR_HOST. TensorFlow's own GCS filesystem has its endpoints compiled in; it reaches the
emulator through tests/support/gcs_tls_proxy.py (https_proxy + CURL_CA_BUNDLE + a test token), so the reads
by tf.data below are the real gs:// reads of TensorFlow, answered by the emulator.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from genreclf.artifacts import (
    DATASET_INFO_FILE,
    SHARD_MANIFEST_FILE,
    ObjectEntry,
    read_shard_manifest,
    write_shard_manifest,
)
from genreclf.data import gcs
from genreclf.data.sharding import shard_key, shard_target
from genreclf.errors import DataError, RemoteObjectError
from stages.common import with_hint
from tests.support.gcs_emulator import emulated_bucket, rewrite_on_beam
from tests.support.helpers import directory_bytes, make_project, run_stage, set_params
from tests.test_shard import NUM_SHARDS, read_shards, write_split_data

BUCKET = "genreclf-shards"
ROOT = f"gs://{BUCKET}/team/genres"
SHARD_FILES = sum(min(n, size) for n, size in zip(NUM_SHARDS.values(), (13, 4, 6)))  # test_shard.SPLIT_SIZES
KEY_INPUTS = {
    "clips": [("000000", 0, "train", "a" * 64), ("000001", 1, "test", "b" * 64)],
    "labels": ["blues", "jazz"],
    "sample_rate": 8000,
    "num_shards": {"train": 2, "val": 1, "test": 1},
    "seed": 0,
}
MD5 = "0" * 32


# ---- without a bucket --------------------------------------------------------------------


def test_the_key_changes_with_every_input_and_only_with_them():
    key = shard_key(**KEY_INPUTS)
    assert shard_key(**KEY_INPUTS) == key and len(key) == 32
    changes = {
        "clips": [("000000", 0, "train", "c" * 64), ("000001", 1, "test", "b" * 64)],  # a WAV's content
        "labels": ["blues", "rock"],
        "sample_rate": 16000,
        "num_shards": {"train": 3, "val": 1, "test": 1},
        "seed": 1,
    }
    keys = {shard_key(**dict(KEY_INPUTS, **{name: value})) for name, value in changes.items()}
    assert len(keys) == len(changes) and key not in keys
    swapped = [("000000", 0, "test", "a" * 64), ("000001", 1, "train", "b" * 64)]
    assert shard_key(**dict(KEY_INPUTS, clips=swapped)) != key


def test_a_shard_goes_to_a_file_or_an_object():
    assert shard_target("data/shards", "train-00000-of-00001.n3.tfrecord").as_posix() == (
        "data/shards/train-00000-of-00001.n3.tfrecord"
    )
    assert shard_target("gs://b/x/data/shards/k", "val.tfrecord") == "gs://b/x/data/shards/k/val.tfrecord"


def test_the_manifest_round_trips(tmp_path):
    assert read_shard_manifest(tmp_path) is None  # the shards are files of the folder
    prefix = f"{ROOT}/data/shards/k"
    objects = [ObjectEntry(f"{prefix}/train-00000-of-00001.n3.tfrecord", 120, MD5)]
    write_shard_manifest(tmp_path, prefix, objects)
    assert read_shard_manifest(tmp_path) == (prefix, objects)


@pytest.mark.parametrize(
    "manifest, message",
    [
        ({"prefix": "data/shards", "objects": []}, 'expected {"prefix": "gs://...", "objects"'),
        ({"prefix": "gs://b/p", "objects": []}, "with at least one object"),
        ({"prefix": "gs://b/p", "objects": [{"url": "gs://b/q/x", "size": 1, "md5": MD5}]}, "expected a url under"),
        ({"prefix": "gs://b/p", "objects": [{"url": "gs://b/p/x", "size": -1, "md5": MD5}]}, "a size (bytes"),
        ({"prefix": "gs://b/p", "objects": [{"url": "gs://b/p/x", "size": True, "md5": MD5}]}, "a size (bytes"),
        ({"prefix": "gs://b/p", "objects": [{"url": "gs://b/p/x", "size": 1, "md5": "ABC"}]}, "an md5 (32"),
        ({"prefix": "gs://b/p", "objects": ["gs://b/p/x"]}, "expected a url under gs://b/p/"),
    ],
)
def test_a_bad_manifest_is_named(tmp_path, manifest, message):
    (tmp_path / SHARD_MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"shard_manifest\.json: ") as caught:
        read_shard_manifest(tmp_path)
    assert message in str(caught.value)
    assert caught.value.path == str(tmp_path / SHARD_MANIFEST_FILE)


def test_a_damaged_object_asks_for_a_forced_run_of_the_shard_stage():
    error = RemoteObjectError(
        "gs://b/p/x: expected 3 bytes, …: write them again", path=f"data/shards/{SHARD_MANIFEST_FILE}"
    )
    assert with_hint(error, running="train_keras@cnn1d").endswith(": write them again with `dvc repro -f shard`")
    assert with_hint(error, running="shard").endswith(": write them again")


# ---- on the emulated bucket ----------------------------------------------------------------


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    """The emulator and TensorFlow's way to it, in this process's environment (and so the stages')."""
    with emulated_bucket(tmp_path_factory.mktemp("gcs"), BUCKET, tensorflow=True) as emulator:
        yield emulator


def sharded(project, root=None):
    """``project`` with the split data of test_shard and the shard stage run (data.root = ``root``)."""
    make_project(project, {"shard": {"num_shards": NUM_SHARDS, "seed": 0}, "data": {"root": root}})
    write_split_data(project)
    return run_stage(project, "shard")


@pytest.fixture(scope="module")
def local_project(tmp_path_factory):
    project = tmp_path_factory.mktemp("local")
    sharded(project)
    return project


@pytest.fixture(scope="module")
def gcs_project(tmp_path_factory, bucket):
    project = tmp_path_factory.mktemp("on_gcs")
    result = sharded(project, ROOT)
    assert f"uploaded {SHARD_FILES} objects; 0 were there already" in result.stderr
    return project


def manifest_of(project) -> tuple[str, list[ObjectEntry]]:
    return read_shard_manifest(project / "data" / "shards")


def generations(objects: list[ObjectEntry]) -> dict[str, str]:
    fs = gcs.filesystem()
    return {entry.url: fs.info(entry.url, refresh=True)["generation"] for entry in objects}


@pytest.mark.slow
def test_the_objects_hold_the_bytes_of_the_local_shards(local_project, gcs_project, bucket):
    local = directory_bytes(local_project / "data" / "shards")
    on_gcs = directory_bytes(gcs_project / "data" / "shards")
    assert sorted(on_gcs) == [DATASET_INFO_FILE, SHARD_MANIFEST_FILE]
    assert on_gcs[DATASET_INFO_FILE] == local[DATASET_INFO_FILE]
    prefix, objects = manifest_of(gcs_project)
    assert prefix.startswith(f"{ROOT}/data/shards/") and len(prefix.rsplit("/", 1)[1]) == 32
    names = [entry.url.rsplit("/", 1)[1] for entry in objects]
    assert sorted(names) == sorted(name for name in local if name.endswith(".tfrecord"))
    fs = gcs.filesystem()
    for name, entry in zip(names, objects):
        assert fs.cat_file(entry.url) == local[name], entry.url
        assert (entry.size, entry.md5) == (len(local[name]), hashlib.md5(local[name]).hexdigest())
    stored = bucket.object_names(prefix.removeprefix(f"gs://{BUCKET}/"))
    assert stored == sorted(entry.url.removeprefix(f"gs://{BUCKET}/") for entry in objects)  # nothing else


@pytest.mark.slow
def test_a_rerun_uploads_nothing_and_writes_the_same_manifest(gcs_project):
    manifest = (gcs_project / "data" / "shards" / SHARD_MANIFEST_FILE).read_bytes()
    _, objects = manifest_of(gcs_project)
    before = generations(objects)
    result = run_stage(gcs_project, "shard")
    assert f"uploaded 0 objects; {SHARD_FILES} were there already with the same bytes" in result.stderr
    assert generations(objects) == before  # no object was written again
    assert (gcs_project / "data" / "shards" / SHARD_MANIFEST_FILE).read_bytes() == manifest


@pytest.mark.slow
def test_the_beam_workers_write_the_same_objects_and_manifest(gcs_project):
    """Every object deleted, then the beam engine's workers write them again: the same bytes."""
    _, objects = manifest_of(gcs_project)
    manifest = gcs_project / "data" / "shards" / SHARD_MANIFEST_FILE
    log = rewrite_on_beam(gcs_project, "shard", manifest, [entry.url for entry in objects])
    assert f"uploaded {SHARD_FILES} objects; 0 were there already" in log


@pytest.mark.slow
def test_tf_data_reads_the_objects_by_url(local_project, gcs_project):
    from genreclf.models import tfdata

    shard_dir = gcs_project / "data" / "shards"
    for split in ("train", "val", "test"):
        files = tfdata.shard_files(shard_dir, split)
        assert files and all(f.startswith(f"{ROOT}/data/shards/") for f in files)
        from_gcs = read_shards_from(files)
        from_disk = read_shards(local_project / "data" / "shards", split)
        assert [(t, label) for t, label, _ in from_gcs] == [(t, label) for t, label, _ in from_disk]
        for (_, _, a), (_, _, b) in zip(from_gcs, from_disk):
            np.testing.assert_array_equal(a, b)


def read_shards_from(files: list[str]) -> list[tuple]:
    import tensorflow as tf

    from genreclf.data.tfrecords import parse_example

    dataset = tf.data.TFRecordDataset(files).map(parse_example)
    return [(r["track_id"].numpy().decode(), int(r["label"].numpy()), r["audio"].numpy()) for r in dataset]


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["deleted", "changed"])
def test_a_deleted_or_changed_object_is_named(gcs_project, damage):
    from genreclf.models import tfdata

    _, objects = manifest_of(gcs_project)
    entry = next(e for e in objects if "/val-00001-" in e.url)
    fs = gcs.filesystem()
    content = fs.cat_file(entry.url)
    try:
        if damage == "deleted":
            fs.rm(entry.url)
            found = "found no object on the bucket"
        else:
            changed = bytes([content[0] ^ 1]) + content[1:]  # same size, other bytes
            fs.pipe_file(entry.url, changed)
            found = f"found {entry.size} bytes with MD5 {hashlib.md5(changed).hexdigest()} on the bucket"
        tfdata.shard_files(gcs_project / "data" / "shards", "train")  # the other splits are not checked
        with pytest.raises(RemoteObjectError) as caught:
            tfdata.shard_files(gcs_project / "data" / "shards", "val")
    finally:
        fs.pipe_file(entry.url, content)
    message = str(caught.value)
    assert message.startswith(f"{entry.url}: expected {entry.size} bytes with MD5 {entry.md5} (as ")
    assert found in message and "write them again" in message
    assert caught.value.path.endswith(f"data/shards/{SHARD_MANIFEST_FILE}")


@pytest.mark.slow
def test_train_keras_from_the_bucket_fails_on_a_deleted_object_and_trains_once_it_is_written_again(tmp_path, bucket):
    """The Keras stage, in its own process, on shards that stay on the bucket: a deleted object stops
    it before training, naming the object and the command that writes it again; the shard stage run
    again uploads that object alone, and then the Keras stage trains from gs:// to the same model as
    from the same shards on disk."""
    from tests.support.keras_fixture import write_tiny_repo

    local, remote = tmp_path / "local", tmp_path / "remote"
    for project in (local, remote):
        write_tiny_repo(project)
    set_params(remote, {"data": {"root": f"gs://{BUCKET}/keras"}})
    run_stage(remote, "shard")
    _, objects = manifest_of(remote)
    fs = gcs.filesystem()
    entry = objects[0]
    content = fs.cat_file(entry.url)
    fs.rm(entry.url)
    failed = run_stage(remote, "train_keras", "cnn1d", check=False)
    repaired = run_stage(remote, "shard")  # what `dvc repro -f shard` runs
    assert f"uploaded 1 objects; {len(objects) - 1} were there already" in repaired.stderr
    assert fs.cat_file(entry.url) == content
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert f"{entry.url}: expected {entry.size} bytes" in failed.stderr
    assert "since they were written: write them again with `dvc repro -f shard`" in failed.stderr
    assert not (remote / "models" / "cnn1d").exists()
    for project in (local, remote):
        run_stage(project, "train_keras", "cnn1d")
    for folder in ("models/cnn1d", "dvclive/cnn1d"):
        assert directory_bytes(remote / folder) == directory_bytes(local / folder), folder
    assert not any(name.endswith(".tfrecord") for name in os.listdir(remote / "data" / "shards"))


def test_the_shards_of_the_workspace_stay_files(tmp_path):
    """data.root null: no manifest, the shards are read as files (today's behaviour)."""
    from genreclf.models import tfdata

    (tmp_path / "train-00000-of-00001.n2.tfrecord").write_bytes(b"")
    assert tfdata.shard_files(tmp_path, "train") == [str(tmp_path / "train-00000-of-00001.n2.tfrecord")]


@pytest.mark.slow
def test_a_bucket_that_does_not_exist_is_named(bucket, tmp_path):
    local = tmp_path / "shard.tfrecord"
    local.write_bytes(b"records")
    url = "gs://no-such-bucket-here/data/shards/k/train-00000-of-00001.n1.tfrecord"
    with pytest.raises(DataError) as caught:
        gcs.upload(local, url)
    assert str(caught.value).startswith(f"{url}: ")
    assert "check that the bucket exists" in str(caught.value) and caught.value.path == url
    with pytest.raises(RemoteObjectError, match="found no object on the bucket"):
        gcs.check_objects([ObjectEntry(url, 7, hashlib.md5(b"records").hexdigest())], "shard_manifest.json")
