"""WAVs that stay on GCS (data.root = gs://...): written by the convert stage's workers as objects
named by their content, listed in data/wav/wav_manifest.json, checked by the stages that read them
and read by URL.

The bucket is gcp-storage-emulator on 127.0.0.1 (tests/support/gcs_emulator.py), which gcsfs reaches
through STORAGE_EMULATOR_HOST. A handful of gtzan_mini clips, and one too short to convert.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from genreclf.artifacts import (
    CLIP_COLUMNS,
    MANIFEST_COLUMNS,
    WAV_MANIFEST_FILE,
    ObjectEntry,
    read_split,
    read_wav_manifest,
    wav_object_name,
    write_clips,
    write_split,
    write_wav_manifest,
)
from genreclf.data import gcs
from genreclf.data.audio import check_wavs, decode_clip, read_wav
from genreclf.errors import DataError, RemoteObjectError
from stages.common import with_hint
from tests.support.gcs_emulator import emulated_bucket, rewrite_on_beam
from tests.support.helpers import directory_bytes, make_project, run_stage, tone, write_audio

BUCKET = "genreclf-wavs"
ROOT = f"gs://{BUCKET}/team/genres"
PREFIX = f"{ROOT}/data/wav"
# track id (the gtzan_mini file blues/blues.00000.wav ...), its split in the split written below
CLIPS = {"blues.00000": "train", "blues.00001": "val", "jazz.00000": "train", "jazz.00001": "test"}
SHORT = "short.00000"  # 1 s: skipped
MD5 = "0" * 32
OUTPUTS = ("data/converted.csv", "data/convert_skipped.csv", "metrics/convert.json")


# ---- without a bucket --------------------------------------------------------------------


def test_the_manifest_round_trips(tmp_path):
    assert read_wav_manifest(tmp_path) is None  # the WAVs are files of the folder
    objects = {t: ObjectEntry(f"{PREFIX}/{wav_object_name(t, MD5)}", 100 + i, MD5) for i, t in enumerate(CLIPS)}
    written = write_wav_manifest(tmp_path, PREFIX, dict(reversed(objects.items())))
    assert [item["track_id"] for item in written["objects"]] == sorted(CLIPS)  # sorted by track id
    assert list(written["objects"][0]) == ["track_id", "url", "size", "md5"]
    assert read_wav_manifest(tmp_path) == (PREFIX, objects)


@pytest.mark.parametrize(
    "item, message",
    [
        ({"url": f"{PREFIX}/a.{MD5}.wav", "size": 1, "md5": MD5}, "expected a track_id and the url"),
        ({"track_id": "b", "url": f"{PREFIX}/a.{MD5}.wav", "size": 1, "md5": MD5}, "expected a track_id and the url"),
        ({"track_id": "a", "url": f"{PREFIX}/a.{'1' * 32}.wav", "size": 1, "md5": MD5}, "<track_id>.<md5>.wav"),
        ({"track_id": "a", "url": f"{PREFIX}/a.{MD5}.wav", "size": -1, "md5": MD5}, "a size (bytes"),
        ({"track_id": "../a", "url": f"{PREFIX}/../a.{MD5}.wav", "size": 1, "md5": MD5}, "expected a track_id"),
    ],
)
def test_a_bad_manifest_is_named(tmp_path, item, message):
    (tmp_path / WAV_MANIFEST_FILE).write_text(json.dumps({"prefix": PREFIX, "objects": [item]}))
    with pytest.raises(DataError, match=r"wav_manifest\.json: ") as caught:
        read_wav_manifest(tmp_path)
    assert message in str(caught.value) and caught.value.path == str(tmp_path / WAV_MANIFEST_FILE)


def test_a_track_listed_twice_is_named(tmp_path):
    item = {"track_id": "a", "url": f"{PREFIX}/a.{MD5}.wav", "size": 1, "md5": MD5}
    (tmp_path / WAV_MANIFEST_FILE).write_text(json.dumps({"prefix": PREFIX, "objects": [item, item]}))
    with pytest.raises(DataError, match="track id a listed more than once"):
        read_wav_manifest(tmp_path)


def test_a_damaged_object_asks_for_a_forced_run_of_the_convert_stage():
    error = RemoteObjectError("gs://b/p/x.wav: expected …: write them again", path=f"data/wav/{WAV_MANIFEST_FILE}")
    assert with_hint(error, running="features").endswith(": write them again with `dvc repro -f convert`")


def test_local_wavs_need_no_manifest_and_urls_do(tmp_path):
    write_audio(tmp_path / "a.wav", tone(1.0, 8000), 8000)
    assert check_wavs([str(tmp_path / "a.wav")], tmp_path / "wav") == {}
    url = f"{PREFIX}/a.{MD5}.wav"
    with pytest.raises(DataError, match=r"wav_manifest\.json does not exist, but the WAVs are objects on GCS"):
        check_wavs([url], tmp_path / "wav")
    write_wav_manifest(tmp_path / "wav", PREFIX, {"a": ObjectEntry(url, 1, MD5)})
    with pytest.raises(DataError, match=r"wav_manifest\.json does not list 1 of the WAVs to read") as caught:
        check_wavs([f"{PREFIX}/b.{MD5}.wav"], tmp_path / "wav")
    assert caught.value.path == str(tmp_path / "wav" / WAV_MANIFEST_FILE)


def test_a_split_of_objects_is_read_without_looking_for_files(tmp_path):
    """read_split checks that local WAVs exist; it leaves the URLs to check_wavs (the bucket)."""
    genres, rows = ["blues", "jazz"], []
    for track_id, split in CLIPS.items():
        genre = track_id.split(".")[0]
        rows.append((track_id, f"{PREFIX}/{wav_object_name(track_id, MD5)}", genre, genres.index(genre), split))
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    write_split(tmp_path, manifest, genres)
    assert read_split(tmp_path)[0]["path"].tolist() == manifest["path"].tolist()


# ---- on the emulated bucket ----------------------------------------------------------------


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    with emulated_bucket(tmp_path_factory.mktemp("gcs"), BUCKET) as emulator:
        yield emulator


def converted(project, gtzan_mini, root=None):
    """``project`` with the raw clips and the convert stage run (data.root = ``root``)."""
    make_project(project, {"data": {"root": root}})
    audio = project / "data" / "raw" / "audio"
    audio.mkdir(parents=True)
    for track_id in CLIPS:
        shutil.copy(gtzan_mini / track_id.split(".")[0] / f"{track_id}.wav", audio / f"{track_id}.wav")
    write_audio(audio / f"{SHORT}.wav", tone(1.0, 22050), 22050)
    rows = [(t, t.split(".")[0], f"data/raw/audio/{t}.wav", "") for t in [*CLIPS, SHORT]]
    write_clips(project / "data" / "raw" / "clips.csv", pd.DataFrame(rows, columns=CLIP_COLUMNS))
    return run_stage(project, "convert")


@pytest.fixture(scope="module")
def local_project(tmp_path_factory, gtzan_mini):
    project = tmp_path_factory.mktemp("local")
    converted(project, gtzan_mini)
    return project


@pytest.fixture(scope="module")
def gcs_project(tmp_path_factory, gtzan_mini, bucket):
    project = tmp_path_factory.mktemp("on_gcs")
    result = converted(project, gtzan_mini, ROOT)
    assert f"uploaded {len(CLIPS)} objects to {PREFIX}/; 0 were there already" in result.stderr
    return project


def objects_of(project) -> dict[str, ObjectEntry]:
    return read_wav_manifest(project / "data" / "wav")[1]


def generations(objects) -> dict[str, str]:
    fs = gcs.filesystem()
    return {entry.url: fs.info(entry.url, refresh=True)["generation"] for entry in objects}


@pytest.mark.slow
def test_the_objects_hold_the_bytes_of_the_local_wavs(local_project, gcs_project, bucket):
    local = directory_bytes(local_project / "data" / "wav")
    assert sorted(directory_bytes(gcs_project / "data" / "wav")) == [WAV_MANIFEST_FILE]
    objects = objects_of(gcs_project)
    assert sorted(objects) == sorted(CLIPS) and sorted(local) == [f"{t}.wav" for t in sorted(CLIPS)]
    fs = gcs.filesystem()
    for track_id, entry in objects.items():
        content = local[f"{track_id}.wav"]
        assert fs.cat_file(entry.url) == content, entry.url
        md5 = hashlib.md5(content).hexdigest()
        assert entry == ObjectEntry(f"{PREFIX}/{track_id}.{md5}.wav", len(content), md5)
    stored = bucket.object_names(PREFIX.removeprefix(f"gs://{BUCKET}/"))
    assert stored == sorted(entry.url.removeprefix(f"gs://{BUCKET}/") for entry in objects.values())


@pytest.mark.slow
def test_converted_csv_lists_the_objects_and_the_other_outputs_are_the_local_ones(local_project, gcs_project):
    local, remote = (pd.read_csv(p / "data" / "converted.csv", dtype=str) for p in (local_project, gcs_project))
    assert remote["path"].tolist() == [objects_of(gcs_project)[t].url for t in remote["track_id"]]
    assert local["path"].tolist() == [f"data/wav/{t}.wav" for t in local["track_id"]]
    pd.testing.assert_frame_equal(local.drop(columns="path"), remote.drop(columns="path"))
    for name in OUTPUTS[1:]:
        assert (gcs_project / name).read_bytes() == (local_project / name).read_bytes(), name


@pytest.mark.slow
def test_a_rerun_uploads_nothing_and_writes_the_same_outputs(gcs_project):
    before = {name: (gcs_project / name).read_bytes() for name in (*OUTPUTS, f"data/wav/{WAV_MANIFEST_FILE}")}
    stored = generations(objects_of(gcs_project).values())
    result = run_stage(gcs_project, "convert")
    assert f"uploaded 0 objects to {PREFIX}/; {len(CLIPS)} were there already with the same bytes" in result.stderr
    assert generations(objects_of(gcs_project).values()) == stored  # no object was written again
    assert {name: (gcs_project / name).read_bytes() for name in before} == before


@pytest.mark.slow
def test_the_beam_workers_write_the_same_objects_and_manifest(gcs_project):
    """Every object deleted, then the beam engine's workers write them again: the same bytes."""
    urls = [entry.url for entry in objects_of(gcs_project).values()]
    log = rewrite_on_beam(gcs_project, "convert", gcs_project / "data" / "wav" / WAV_MANIFEST_FILE, urls)
    assert f"uploaded {len(CLIPS)} objects to {PREFIX}/; 0 were there already" in log


@pytest.mark.slow
def test_features_samples_and_shard_key_from_the_objects_equal_the_local_ones(local_project, gcs_project):
    from genreclf.data.sharding import wav_digests
    from genreclf.features import fma_features

    urls = pd.read_csv(gcs_project / "data" / "converted.csv", dtype=str)["path"].tolist()
    paths = [str(local_project / "data" / "wav" / f"{t}.wav") for t in sorted(CLIPS)]
    objects = check_wavs(urls, gcs_project / "data" / "wav")
    assert wav_digests(urls, objects)[0] == wav_digests(paths, {})[0]  # the shard key: the same prefix
    for url, path in zip(urls, paths):
        (remote, rate), (local, local_rate) = read_wav(url), read_wav(path)
        np.testing.assert_array_equal(remote, local)
        assert rate == local_rate == 22050
    np.testing.assert_array_equal(decode_clip(urls[0], 16000), decode_clip(paths[0], 16000))  # embed's read
    params = fma_features.FeatureParams()
    np.testing.assert_array_equal(
        fma_features.wav_features(urls[-1], 22050, params), fma_features.wav_features(paths[-1], 22050, params)
    )


def damage(entry: ObjectEntry, how: str) -> str:
    """Delete or change (same size, one bit) the object; what a check then finds."""
    fs = gcs.filesystem()
    if how == "deleted":
        fs.rm(entry.url)
        return "found no object on the bucket"
    content = fs.cat_file(entry.url)
    changed = content[:100] + bytes([content[100] ^ 1]) + content[101:]
    fs.pipe_file(entry.url, changed)
    return f"found {entry.size} bytes with MD5 {hashlib.md5(changed).hexdigest()} on the bucket"


@pytest.fixture
def split_on_gcs(gcs_project):
    """data/split of the converted clips written; every object as convert wrote it again afterwards."""
    converted = pd.read_csv(gcs_project / "data" / "converted.csv", dtype=str)
    manifest = converted.assign(split=converted["track_id"].map(CLIPS), label=converted["genre"].eq("jazz") * 1)
    write_split(gcs_project / "data" / "split", manifest, ["blues", "jazz"])
    fs = gcs.filesystem()
    contents = {entry.url: fs.cat_file(entry.url) for entry in objects_of(gcs_project).values()}
    yield gcs_project, manifest["path"].tolist()
    for url, content in contents.items():
        fs.pipe_file(url, content)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["deleted", "changed"])
def test_a_deleted_or_changed_object_is_named_before_a_stage_reads(split_on_gcs, how):
    project, urls = split_on_gcs
    entry = objects_of(project)["jazz.00000"]
    found = damage(entry, how)
    with pytest.raises(RemoteObjectError) as caught:
        check_wavs(urls, project / "data" / "wav")
    message = str(caught.value)
    assert message.startswith(f"{entry.url}: expected {entry.size} bytes with MD5 {entry.md5} (as ")
    assert found in message and "(1 of the 4 objects differ)" in message and "write them again" in message
    assert caught.value.path.endswith(f"data/wav/{WAV_MANIFEST_FILE}")


@pytest.mark.slow
def test_the_shard_stage_stops_on_a_deleted_wav_before_any_work(split_on_gcs):
    project, _ = split_on_gcs
    entry = objects_of(project)["blues.00001"]
    damage(entry, "deleted")
    result = run_stage(project, "shard", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"{entry.url}: expected {entry.size} bytes with MD5 {entry.md5}" in errors[0]
    assert errors[0].endswith("since they were written: write them again with `dvc repro -f convert`")
    assert not (project / "data" / "shards").exists()
