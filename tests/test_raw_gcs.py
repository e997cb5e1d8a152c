"""Raw clips that stay on GCS (data.root = gs://...): uploaded by the fetch stage as objects named by
their content, listed in data/raw/raw_manifest.json, checked by the convert stage before any work
and read by URL by its workers.

The bucket is gcp-storage-emulator on 127.0.0.1 (tests/support/gcs_emulator.py). The source is a GTZAN
folder of three clips: two gtzan_mini WAVs and one FMA mp3 under a GTZAN name. The stages run
in this process (their main), in a project that holds params.yaml alone; only the beam engine's
run is a process of its own.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pandas as pd
import pytest

from genreclf.artifacts import (
    RAW_MANIFEST_FILE,
    WAV_MANIFEST_FILE,
    ObjectEntry,
    raw_object_name,
    read_raw_manifest,
    read_wav_manifest,
    write_raw_manifest,
)
from genreclf.data import gcs
from genreclf.data.audio import check_raw_clips
from genreclf.errors import DataError, RemoteObjectError
from stages import convert as convert_stage
from stages import fetch as fetch_stage
from stages.common import with_hint
from tests.support.gcs_emulator import emulated_bucket, rewrite_on_beam
from tests.support.helpers import directory_bytes, make_project

BUCKET = "genreclf-raw"
ROOT = f"gs://{BUCKET}/team/genres"
PREFIX = f"{ROOT}/data/raw/audio"
# track id: (where it lies in the source, a GTZAN folder; the file it is a copy of, under ../shared/data)
SOURCE = {
    "blues.00000": ("blues/blues.00000.wav", "gtzan_mini/blues/blues.00000.wav"),
    "jazz.00001": ("jazz/jazz.00001.wav", "gtzan_mini/jazz/jazz.00001.wav"),
    "rock.00000": ("rock/rock.00000.mp3", "fma/fma_audio/000/000003.mp3"),
}
MD5 = "0" * 32
RAW_TABLES = ("fetch_report.json", "track_info.csv")


# ---- without a bucket --------------------------------------------------------------------


def test_raw_object_names_put_the_md5_before_the_extension():
    assert raw_object_name("blues/blues.00000.wav", MD5) == f"blues/blues.00000.{MD5}.wav"
    assert raw_object_name("000/000002.mp3", MD5) == f"000/000002.{MD5}.mp3"
    assert raw_object_name("a/b/noextension", MD5) == f"a/b/noextension.{MD5}"


def test_the_raw_manifest_round_trips_and_names_a_bad_object(tmp_path):
    assert read_raw_manifest(tmp_path) is None  # the raw clips are files of the folder
    objects = {t: ObjectEntry(f"{PREFIX}/{raw_object_name(name, MD5)}", 10, MD5) for t, (name, _) in SOURCE.items()}
    written = write_raw_manifest(tmp_path, PREFIX, dict(reversed(objects.items())))
    assert [item["track_id"] for item in written["objects"]] == sorted(SOURCE)
    assert read_raw_manifest(tmp_path) == (PREFIX, objects)
    item = {"track_id": "jazz.00001", "url": f"{PREFIX}/blues/blues.00000.{MD5}.wav", "size": 1, "md5": MD5}
    (tmp_path / RAW_MANIFEST_FILE).write_text(json.dumps({"prefix": PREFIX, "objects": [item]}))
    with pytest.raises(DataError, match=r"raw_manifest\.json: object .* expected a track_id and the url") as caught:
        read_raw_manifest(tmp_path)
    assert caught.value.path == str(tmp_path / RAW_MANIFEST_FILE)


def test_local_raw_clips_need_no_manifest_and_urls_do(tmp_path):
    assert check_raw_clips([str(tmp_path / "a.wav")], tmp_path) == {}
    with pytest.raises(DataError, match=r"raw_manifest\.json does not exist, but the raw clips are objects on GCS"):
        check_raw_clips([f"{PREFIX}/a.{MD5}.wav"], tmp_path)


# ---- on the emulated bucket ----------------------------------------------------------------


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    with emulated_bucket(tmp_path_factory.mktemp("gcs"), BUCKET) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def source(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("gtzan_source")
    for name, copy_of in SOURCE.values():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / copy_of, folder / name)
    return folder


def run_in(project, main) -> None:
    """A stage's main run in ``project`` (its working directory), in this process."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        patch.delenv("GENRECLF_ENGINE", raising=False)
        main()


def fetched(project, source, root=None):
    """``project`` (params.yaml alone) with the fetch stage run on ``source`` (data.root = ``root``)."""
    data = {"dataset": "gtzan", "source": str(source), "checksums": {"gtzan": None}, "root": root}
    make_project(project, {"data": data}, contents="params")
    run_in(project, fetch_stage.main)
    return project


@pytest.fixture(scope="module")
def local_project(tmp_path_factory, source):
    return fetched(tmp_path_factory.mktemp("local"), source)


@pytest.fixture(scope="module")
def gcs_project(tmp_path_factory, source, bucket):
    return fetched(tmp_path_factory.mktemp("on_gcs"), source, ROOT)


def generations(objects) -> dict[str, str]:
    fs = gcs.filesystem()
    return {entry.url: fs.info(entry.url, refresh=True)["generation"] for entry in objects}


def test_fetch_uploads_the_clips_and_keeps_no_audio(local_project, gcs_project, source, bucket):
    raw, local_raw = gcs_project / "data" / "raw", local_project / "data" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(["clips.csv", RAW_MANIFEST_FILE, *RAW_TABLES])
    prefix, objects = read_raw_manifest(raw)
    assert prefix == PREFIX and sorted(objects) == sorted(SOURCE)
    fs = gcs.filesystem()
    for track_id, (name, _) in SOURCE.items():
        content = (source / name).read_bytes()
        assert (local_raw / "audio" / name).read_bytes() == content
        md5 = hashlib.md5(content).hexdigest()
        assert objects[track_id] == ObjectEntry(f"{PREFIX}/{raw_object_name(name, md5)}", len(content), md5)
        assert fs.cat_file(objects[track_id].url) == content
    stored = bucket.object_names("team/genres/")  # nothing else on the bucket
    assert stored == sorted(entry.url.removeprefix(f"gs://{BUCKET}/") for entry in objects.values())
    local, remote = (pd.read_csv(p / "clips.csv", dtype=str, keep_default_na=False) for p in (local_raw, raw))
    assert remote["path"].tolist() == [objects[t].url for t in remote["track_id"]]
    assert local["path"].tolist() == [f"data/raw/audio/{SOURCE[t][0]}" for t in local["track_id"]]
    pd.testing.assert_frame_equal(local.drop(columns="path"), remote.drop(columns="path"))
    for name in RAW_TABLES:
        assert (raw / name).read_bytes() == (local_raw / name).read_bytes(), name


def test_a_rerun_of_fetch_uploads_nothing(gcs_project, caplog):
    raw = gcs_project / "data" / "raw"
    before, stored = directory_bytes(raw), generations(read_raw_manifest(raw)[1].values())
    with caplog.at_level("INFO"):
        run_in(gcs_project, fetch_stage.main)
    assert f"uploaded 0 clips to {PREFIX}/; {len(SOURCE)} were there already with the same bytes" in caplog.text
    assert generations(read_raw_manifest(raw)[1].values()) == stored  # no object was written again
    assert directory_bytes(raw) == before


@pytest.fixture(scope="module")
def converted(local_project, gcs_project):
    """Both projects converted; the WAVs of the gs:// one are objects too."""
    for project in (local_project, gcs_project):
        run_in(project, convert_stage.main)
    return local_project, gcs_project


def test_convert_from_the_objects_writes_the_wavs_of_the_local_files(converted):
    local_project, gcs_project = converted
    wavs = read_wav_manifest(gcs_project / "data" / "wav")[1]
    local = directory_bytes(local_project / "data" / "wav")
    assert sorted(wavs) == sorted(SOURCE) and sorted(local) == [f"{t}.wav" for t in sorted(SOURCE)]
    fs = gcs.filesystem()
    for track_id, entry in wavs.items():
        assert fs.cat_file(entry.url) == local[f"{track_id}.wav"], entry.url
    for name in ("data/convert_skipped.csv", "metrics/convert.json"):
        assert (gcs_project / name).read_bytes() == (local_project / name).read_bytes(), name
    local_table, remote_table = (pd.read_csv(p / "data" / "converted.csv", dtype=str) for p in converted)
    assert remote_table["path"].tolist() == [wavs[t].url for t in remote_table["track_id"]]
    pd.testing.assert_frame_equal(local_table.drop(columns="path"), remote_table.drop(columns="path"))


@pytest.mark.slow
def test_the_beam_workers_read_the_raw_objects_and_write_the_same_wavs(converted):
    """Every WAV object deleted, then convert on the beam engine (2 worker processes, which read the
    raw clips by URL): the same objects and the same manifest."""
    _, project = converted
    urls = [entry.url for entry in read_wav_manifest(project / "data" / "wav")[1].values()]
    log = rewrite_on_beam(project, "convert", project / "data" / "wav" / WAV_MANIFEST_FILE, urls)
    assert f"uploaded {len(SOURCE)} objects to {ROOT}/data/wav/; 0 were there already" in log


def test_a_deleted_raw_object_stops_convert_before_any_work(converted):
    _, project = converted
    entry = read_raw_manifest(project / "data" / "raw")[1]["rock.00000"]
    fs = gcs.filesystem()
    content = fs.cat_file(entry.url)
    shutil.rmtree(project / "data" / "wav")
    fs.rm(entry.url)
    try:
        with pytest.raises(RemoteObjectError) as caught:
            run_in(project, convert_stage.main)
    finally:
        fs.pipe_file(entry.url, content)
    message = with_hint(caught.value, running="convert")
    assert "\n" not in message
    assert message.startswith(f"{entry.url}: expected {entry.size} bytes with MD5 {entry.md5} (as data/raw/")
    assert "found no object on the bucket (1 of the 3 objects differ)" in message
    assert message.endswith("since they were written: write them again with `dvc repro -f fetch`")
    assert not (project / "data" / "wav").exists()  # nothing was converted
