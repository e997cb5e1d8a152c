"""FMA end to end: fetch (HTTP range reads from a loopback mirror), convert, split, shard, features.

A copy of the code and params.yaml runs each stage as ``python -m stages.<name>``, as dvc
would, on the FMA-format fixture (tests/support/fma_fixture.py) served by tests/support/http_range_server.py.
The fixture's clip without audio and its ~1 s clip must come out as skipped clips of convert.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from genreclf.data.fetch import VERIFIED_MEMBER_CRC32
from genreclf.data.tfrecords import SHARD_RE
from tests.support.fma_fixture import NO_AUDIO_ID, SHORT_ID, TABLE_LACKS_ID, build_fma_fixture
from tests.support.helpers import ROOT, make_project, run_stage
from tests.support.http_range_server import RangeServer

pytestmark = pytest.mark.slow  # the FMA end-to-end run: five stages as subprocesses, real mp3s decoded

STAGES = ("fetch", "convert", "split", "shard", "features")
CLIPS_PER_GENRE = 3
FEATURE_COLUMNS = 518


@pytest.fixture(scope="module")
def fma_run(shared_data, tmp_path_factory):
    """The fixture served on 127.0.0.1, and a project where the five stages ran on it."""
    base = tmp_path_factory.mktemp("fma_pipeline")
    fixture = build_fma_fixture(shared_data, base / "mirror")
    checksums = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]["checksums"]
    with RangeServer(fixture.directory) as server:
        assert server.url.endswith("/")
        project = make_project(
            base / "project",
            {
                "data": {
                    "source": server.url,
                    "clips_per_genre": CLIPS_PER_GENRE,
                    "seed": 0,
                    "checksums": dict(checksums, **fixture.sha1),
                },
                "split": {"method": "stratified"},
                "shard": {"num_shards": {"train": 2, "val": 1, "test": 1}},
            },
        )
        logs = {name: run_stage(project, name).stderr for name in STAGES}
        served = dict(server.bytes_served)
    return fixture, project, logs, served


def test_fetch_read_only_the_chosen_clips_and_verified_them(fma_run):
    fixture, project, logs, served = fma_run
    report = json.loads((project / "data/raw/fetch_report.json").read_text())
    assert {name: archive["verified"] for name, archive in report["archives"].items()} == {
        "fma_metadata": VERIFIED_MEMBER_CRC32,
        "fma_small": VERIFIED_MEMBER_CRC32,
    }
    assert report["clips_per_genre"] == {"Experimental": 2, "Folk": 3, "Pop": 2, "Rock": 2}
    assert served["fma_small.zip"] < fixture.archives["fma_small"].stat().st_size
    clips = pd.read_csv(project / "data/raw/clips.csv", dtype=str, keep_default_na=False)
    assert {NO_AUDIO_ID, SHORT_ID} <= set(clips["track_id"])  # all of Rock and Experimental are chosen
    assert "member-crc32" in logs["fetch"]
    names = pd.read_csv(project / "data/raw/track_info.csv", dtype=str, keep_default_na=False)
    assert list(names["track_id"]) == list(clips["track_id"])  # artist and title, for recommend_index
    assert names.values.tolist() == [
        [t, fixture.tracks[t]["artist"], fixture.tracks[t]["title"]] for t in clips["track_id"]
    ]
    assert (names["artist"] != "").all() and "data/raw/track_info.csv" in logs["fetch"]
    # FMA's own feature tables, read out of the remote metadata archive too: the chosen clips' rows
    kept = pd.read_csv(project / "data/raw/fma_metadata/features.csv", index_col=0, header=[0, 1, 2])
    assert sorted(f"{t:06d}" for t in kept.index) == sorted(set(clips["track_id"]) - {TABLE_LACKS_ID})
    assert report["feature_tables"]["features.csv"] == len(kept)


def test_convert_skipped_the_bad_clips(fma_run):
    _, project, _, _ = fma_run
    skipped = pd.read_csv(project / "data/convert_skipped.csv", dtype=str, keep_default_na=False)
    assert sorted(skipped["track_id"]) == [SHORT_ID, NO_AUDIO_ID]
    assert (skipped["reason"].str.len() > 0).all()
    assert set(skipped["source_path"]) == {f"data/raw/audio/{t[:3]}/{t}.mp3" for t in (SHORT_ID, NO_AUDIO_ID)}
    metrics = json.loads((project / "metrics/convert.json").read_text())
    assert (metrics["clips_in"], metrics["converted"], metrics["skipped"]) == (9, 7, 2)
    assert metrics["too_short"] == 1  # 098565; 099134 is counted under another reason
    converted = pd.read_csv(project / "data/converted.csv", dtype=str, keep_default_na=False)
    assert len(converted) == 7 and not {SHORT_ID, NO_AUDIO_ID} & set(converted["track_id"])
    assert all((project / path).is_file() for path in converted["path"])


def test_split_shard_and_features_cover_the_converted_clips(fma_run):
    _, project, _, _ = fma_run
    converted = pd.read_csv(project / "data/converted.csv", dtype=str, keep_default_na=False)
    manifest = pd.read_csv(project / "data/split/split_manifest.csv", dtype={"track_id": str})
    labels = json.loads((project / "data/split/labels.json").read_text())
    assert sorted(manifest["track_id"]) == sorted(converted["track_id"])
    assert labels == sorted(converted["genre"].unique())
    assert set(manifest["split"]) == {"train", "val", "test"}

    info = json.loads((project / "data/shards/dataset_info.json").read_text())
    assert info["labels"] == labels and info["sample_rate"] == 22050
    per_split = {split: int((manifest["split"] == split).sum()) for split in ("train", "val", "test")}
    assert {split: value["clips"] for split, value in info["splits"].items()} == per_split
    records = {}
    for shard in (project / "data/shards").glob("*.tfrecord"):
        match = SHARD_RE.match(shard.name)
        assert match, shard.name
        records[match["split"]] = records.get(match["split"], 0) + int(match["records"])
    assert records == per_split

    rows = 0
    for split in ("train", "val", "test"):
        table = pd.read_csv(project / f"data/features/{split}.csv", dtype={"track_id": str})
        assert list(table.columns[:3]) == ["track_id", "label", "genre"]
        assert table.shape[1] == 3 + FEATURE_COLUMNS
        assert sorted(table["track_id"]) == sorted(manifest.loc[manifest["split"] == split, "track_id"])
        assert table.iloc[:, 3:].notna().all().all()
        rows += len(table)
    assert rows == len(manifest) == 7
