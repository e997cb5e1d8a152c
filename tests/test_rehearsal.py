"""The pure parts of benchmarks/rehearsal.py: the FMA-format source it builds, and its projection.

The source is built from the real clips in ../shared/data on a handful of clips (seconds);
the pipeline run itself is the benchmark's job, not a test's.
"""

from __future__ import annotations

import hashlib
import io
import math

import numpy as np
import pytest
import soundfile as sf

from benchmarks import rehearsal
from genreclf.data.fma import audio_members, read_tracks, subset_clips

CLIPS = 16  # two per genre; clip 9 is made from GTZAN


def sha1s(source) -> dict[str, str]:
    return {
        p.relative_to(source).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted((source / rehearsal.DATASET).rglob("*.mp3"))
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("rehearsal")


@pytest.fixture(scope="module")
def source(workdir, shared_data):
    return rehearsal.build_source(CLIPS, 0, shared_data, workdir, workers=2, log=lambda message: None)


def test_source_is_an_fma_small_copy_that_fetch_reads(source, tmp_path):
    from genreclf.data.fma import fetch_fma

    tracks = read_tracks(source / "fma_metadata" / "tracks.csv")
    clips, without_genre = subset_clips(tracks, "fma_small")
    assert without_genre == 0 and len(clips) == CLIPS
    assert clips["genre"].value_counts().to_dict() == {genre: 2 for genre in rehearsal.GENRES}
    assert set(clips["official_split"]) == {"training"}  # 2 per genre: positions 0 and 1 of the cycle
    assert all(len(t) == 6 for t in clips["track_id"])
    assert (source / "fma_metadata" / "genres.csv").is_file()

    names = [p.relative_to(source).as_posix() for p in (source / "fma_small").rglob("*") if p.is_file()]
    members, ignored = audio_members(names, "fma_small")
    assert ignored == [] and sorted(members) == sorted(clips["track_id"])

    report = fetch_fma("fma_small", str(source), {}, None, 0, tmp_path / "raw", tmp_path / "downloads")
    assert report["clips"] == CLIPS
    assert report["skipped"]["tracks_not_in_archive"]["count"] == 0


def test_clips_are_distinct_30_s_stereo_mp3s_at_44100_hz(source):
    digests = sha1s(source)
    assert len(digests) == CLIPS and len(set(digests.values())) == CLIPS
    for path in digests:
        info = sf.info(source / path)
        assert (info.samplerate, info.channels, info.format) == (44100, 2, "MP3")
        assert 29.5 < info.duration < 30.5, path
        kbit_per_s = (source / path).stat().st_size * 8 / info.duration / 1000
        assert 100 < kbit_per_s < 330, (path, kbit_per_s)


def test_a_clip_is_its_base_with_the_planned_gain(source, shared_data):
    fma, gtzan = rehearsal.base_files(shared_data)
    plan = rehearsal.plan_clips(CLIPS, 0, fma, gtzan)[0]
    base, _ = sf.read(shared_data / plan.base, dtype="float32")
    clip, _ = sf.read(source / rehearsal.audio_member(plan.track_id), dtype="float32")
    ratio = np.sqrt(np.mean(clip**2) / np.mean(base**2))
    # the whole clip plan.clip_steps steps down; GRANULE_DIPS of ~2300 granules one step more
    assert ratio == pytest.approx(2 ** (-plan.clip_steps / 4), rel=0.02)


def test_gain_change_in_the_bit_stream_is_exact(shared_data):
    fma, _ = rehearsal.base_files(shared_data)
    data = (shared_data / fma[3]).read_bytes()
    base, _ = sf.read(io.BytesIO(data), dtype="float32")
    halved, _ = sf.read(io.BytesIO(rehearsal.with_gain_changes(data, 4, [])), dtype="float32")
    np.testing.assert_array_equal(halved, 0.5 * base)  # 4 steps of 2^(1/4)


def test_frames_that_cannot_be_edited_are_refused():
    crc_protected = bytes([0xFF, 0xFA, 0x90, 0x00]) + bytes(500)  # MPEG-1 layer III, CRC bit set
    with pytest.raises(ValueError, match="not an unprotected MPEG-1 layer III"):
        rehearsal.mp3_frames(crc_protected)
    with pytest.raises(ValueError, match="no MPEG audio frame"):
        rehearsal.mp3_frames(b"ID3\x04\x00\x00\x00\x00\x00\x00")


def test_same_seed_same_bytes_other_seed_other_bytes(source, workdir, shared_data):
    first = sha1s(source)
    assert rehearsal.build_source(CLIPS, 0, shared_data, workdir, workers=2, log=lambda m: None) == source
    assert sha1s(source) == first  # reused, not rebuilt
    tracks = (source / "fma_metadata" / "tracks.csv").read_bytes()

    rebuilt_dir = workdir / "again"
    rebuilt = rehearsal.build_source(CLIPS, 0, shared_data, rebuilt_dir, workers=2, log=lambda m: None)
    assert sha1s(rebuilt) == first
    assert (rebuilt / "fma_metadata" / "tracks.csv").read_bytes() == tracks

    other = rehearsal.build_source(CLIPS, 1, shared_data, rebuilt_dir, workers=2, log=lambda m: None)
    assert set(sha1s(other).values()).isdisjoint(first.values())


def test_clip_i_does_not_depend_on_n(shared_data):
    fma, gtzan = rehearsal.base_files(shared_data)
    small, large = rehearsal.plan_clips(80, 3, fma, gtzan), rehearsal.plan_clips(800, 3, fma, gtzan)
    strip = [(p.genre, p.split, p.base, p.clip_steps, p.dipped) for p in small]
    assert strip == [(p.genre, p.split, p.base, p.clip_steps, p.dipped) for p in large[:80]]
    assert sum(p.base.startswith("gtzan_mini/") for p in large) == 80  # one in ten
    assert {p.split for p in large[:80]} == {"training", "validation", "test"}


def test_track_ids_spread_like_fma_small():
    assert rehearsal.track_ids(3) == ["000002", "051668", "103334"]
    ids = rehearsal.track_ids(8000)
    assert len(set(ids)) == 8000 and ids[-1] <= "155000"
    assert len({t[:3] for t in ids}) == 152  # ~53 clips per NNN folder, as in fma_small
    with pytest.raises(ValueError, match="6-digit"):
        rehearsal.track_ids(2_000_000)


def stage(name, seconds, tree_mib, leaf_mib, **more):
    return {
        "stage": name,
        "seconds": seconds,
        "peak_tree_rss": tree_mib * rehearsal.MIB,
        "peak_leaf_rss": leaf_mib * rehearsal.MIB,
        **more,
    }


def test_projection_arithmetic():
    stages = [
        stage("fetch", 36, 100, 100),
        stage("convert", 72, 300, 100),
        stage("features", 40, 400, 100, work_seconds=36),
        stage("train_sklearn@knn", 3.6, 200, 200),
        stage("train_sklearn@svm", 36, 500, 500),
        stage(
            "train_keras@cnn2d",
            150,
            2000,
            2000,
            steps=10,
            work_seconds=100,
            seconds_per_step=3,
            batch_size=64,
            units_per_clip=11,
        ),
        stage(
            "train_keras@cnn1d",
            8,
            900,
            900,
            steps=4,
            work_seconds=None,
            seconds_per_step=None,
            batch_size=64,
            units_per_clip=1,
        ),
        stage(
            "train_keras@mobilenet",
            90,
            3000,
            3000,
            steps=2,
            work_seconds=60,
            seconds_per_step=None,
            batch_size=32,
            units_per_clip=1,
        ),
    ]
    p = rehearsal.project_large(
        stages,
        clips=100,
        cores=2,
        disk={"workspace": 5e8, "cache": 3e8, "data": 4e8},
        train_fraction=0.64,
        target=1000,
        reference_cores=32,
    )
    hours = {name: row["hours"] for name, row in p["stages"].items()}
    assert hours["fetch"] == pytest.approx({"measured_cores": 0.1, "reference_cores": 0.1})  # 36 s x 10 / 3600
    assert hours["convert"] == pytest.approx({"measured_cores": 0.2, "reference_cores": 0.0125})  # pool: / 16
    assert hours["train_sklearn@svm"] == pytest.approx({"measured_cores": 1.0, "reference_cores": 1.0})  # x 10^2
    # features: 4 s of start-up once, its 36 s of work x 10 (on 32 cores / 16)
    assert hours["features"] == pytest.approx({"measured_cores": 364 / 3600, "reference_cores": 26.5 / 3600})
    assert p["data_half_hours"] == pytest.approx(
        {"measured_cores": 0.3 + 364 / 3600, "reference_cores": 0.1125 + 26.5 / 3600}
    )
    assert p["sklearn_hours"] == pytest.approx({"measured_cores": 1.01, "reference_cores": 1.01})

    cnn2d = p["keras"]["train_keras@cnn2d"]  # 640 train clips x 11 segments / 64 = 110 steps
    assert cnn2d["steps_per_epoch"] == 110 and cnn2d["seconds_per_step"] == 3 and not cnn2d["upper_bound"]
    assert cnn2d["hours_per_epoch"] == pytest.approx(
        {"measured_cores": 110 * 3 / 3600, "reference_cores": 110 * 3 / 3600 / 16}
    )
    mobilenet = p["keras"]["train_keras@mobilenet"]  # one step measured: the fit's 60 s over 2 steps
    assert mobilenet["steps_per_epoch"] == 20 and mobilenet["seconds_per_step"] == 30 and mobilenet["upper_bound"]
    cnn1d = p["keras"]["train_keras@cnn1d"]  # no fit time in the log: the stage's 8 s over 4 steps
    assert cnn1d["steps_per_epoch"] == 10 and cnn1d["seconds_per_step"] == 2

    # 1e8 bytes of models once; data/ (4e8) x 10; the cache: the models once, its other 2e8 bytes x 10
    assert p["workspace_bytes"] == pytest.approx(4.1e9) and p["cache_bytes"] == pytest.approx(2.1e9)
    # convert on 32 cores: 300 MiB + 30 more workers of 100 MiB
    assert p["stages"]["convert"]["peak_rss"]["reference_cores"] == 3300 * rehearsal.MIB
    # features on 32 cores: 400 MiB + 30 x 100 MiB
    assert p["peak_rss"] == {"measured_cores": 3000 * rehearsal.MIB, "reference_cores": 3400 * rehearsal.MIB}


def test_keras_epoch_steps_round_up():
    assert rehearsal.keras_epoch_steps(106_574, 0.64, 11, 64) == math.ceil(68_207 * 11 / 64)
    assert rehearsal.keras_epoch_steps(100, 0.64, 1, 32) == 2


def test_params_change_only_the_source_and_the_mobilenet_weights(repo_root, tmp_path):
    import yaml

    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    changed = rehearsal.rehearsal_params(params, tmp_path)
    assert changed["data"] == {
        **params["data"],
        "dataset": "fma_small",
        "source": str(tmp_path),
        "clips_per_genre": None,
    }
    assert changed["mobilenet"] == {**params["mobilenet"], "weights": None}
    assert {k: v for k, v in changed.items() if k not in ("data", "mobilenet")} == {
        k: v for k, v in params.items() if k not in ("data", "mobilenet")
    }


def test_step_limit_of_the_keras_stage():
    from genreclf.errors import ParamError
    from stages.train_keras import MAX_STEPS_ENV, read_step_limit, step_times_summary

    assert MAX_STEPS_ENV == rehearsal.STEPS_ENV
    assert read_step_limit({}) is None and read_step_limit({MAX_STEPS_ENV: " "}) is None
    assert read_step_limit({MAX_STEPS_ENV: "20"}) == 20
    for bad in ("0", "-3", "2.5", "ten"):
        with pytest.raises(ParamError, match=MAX_STEPS_ENV):
            read_step_limit({MAX_STEPS_ENV: bad})
    # what the benchmark reads back from the stage's log
    summary = step_times_summary([3.0, 0.5, 0.7])
    assert summary == (
        "3 training step(s): the first 3.00 s (tracing, input start-up), then 0.600 s/step over 2 step(s)"
    )
    assert rehearsal.STEP_COUNT_RE.search("step times: " + summary).group(1) == "3"
    assert rehearsal.FIRST_STEP_RE.search("step times: " + summary).group(1) == "3.00"
    assert rehearsal.STEADY_STEP_RE.search("step times: " + summary).group(1) == "0.600"
    assert step_times_summary([2.5]) == "1 training step(s): the first 2.50 s (tracing, input start-up)"


def read_tsv_rows(path) -> int:
    return len(path.read_text().strip().splitlines()) - 1


@pytest.mark.slow  # trains in-process: TensorFlow's import and tracing take about 15 s
def test_the_keras_stage_stops_after_the_step_limit_and_logs_the_step_times(tmp_path, monkeypatch, caplog):
    from stages.train_keras import MAX_STEPS_ENV
    from tests.helpers import call_stage
    from tests.keras_fixture import TINY_PARAMS, write_tiny_repo

    # 18 training clips in batches of 8: 3 steps per epoch; 2 epochs at most, patience 2
    write_tiny_repo(tmp_path, {**TINY_PARAMS, "cnn1d": dict(TINY_PARAMS["cnn1d"], patience=5)})
    for limit, epochs in ((4, 2), (2, 1)):
        monkeypatch.setenv(MAX_STEPS_ENV, str(limit))
        caplog.clear()
        with caplog.at_level("INFO"):
            call_stage(tmp_path, "train_keras", "cnn1d")
        timing = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("step times: "))
        assert rehearsal.STEP_COUNT_RE.search(timing).group(1) == str(limit)
        assert float(rehearsal.FIRST_STEP_RE.search(timing).group(1)) > 0
        assert f"over {limit - 1} step(s)" in timing and float(rehearsal.STEADY_STEP_RE.search(timing).group(1)) > 0
        assert read_tsv_rows(tmp_path / "dvclive" / "cnn1d" / "plots" / "metrics" / "train" / "loss.tsv") == epochs
        assert (tmp_path / "models" / "cnn1d" / "model.keras").is_file()
        messages = [r.getMessage() for r in caplog.records]
        assert f"{MAX_STEPS_ENV} is set: the val clip accuracy is not computed" in messages
        assert not any(m.startswith("kept epoch") for m in messages)


@pytest.mark.parametrize(("linked", "copies"), [(True, 2.0), (False, 4.0)])
def test_audio_copies_counts_the_workspace_and_the_cache_once_each_inode(tmp_path, linked, copies):
    """Two audio outputs of 300 and 100 bytes per clip; a cache object for each file."""
    import json
    import os

    import yaml

    cache = tmp_path / ".dvc" / "cache" / "files" / "md5"
    outs = []
    for out, size in (("data/wav", 300), ("data/shards", 100)):
        manifest = []
        for index in range(3):
            content = bytes([index]) * size + out.encode()
            md5 = hashlib.md5(content).hexdigest()
            workspace_file = tmp_path / out / f"{index}.bin"
            workspace_file.parent.mkdir(parents=True, exist_ok=True)
            workspace_file.write_bytes(content)
            cached = cache / md5[:2] / md5[2:]
            cached.parent.mkdir(parents=True, exist_ok=True)
            os.link(workspace_file, cached) if linked else cached.write_bytes(content)
            manifest.append({"md5": md5, "relpath": f"{index}.bin"})
        text = json.dumps(manifest)
        dir_md5 = hashlib.md5(text.encode()).hexdigest() + ".dir"
        (cache / dir_md5[:2]).mkdir(parents=True, exist_ok=True)
        (cache / dir_md5[:2] / dir_md5[2:]).write_text(text)
        outs.append({"path": out, "md5": dir_md5})
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"stages": {"convert": {"outs": outs}}}))

    wav, shards = 300 + len("data/wav"), 100 + len("data/shards")
    assert rehearsal.audio_copies(tmp_path) == pytest.approx(copies * (wav + shards) / 2 / wav)


@pytest.mark.parametrize("skip_keras", [False, True])
def test_the_noop_repro_names_every_stage_that_ran_with_one_pattern(skip_keras):
    import fnmatch

    import yaml

    params = yaml.safe_load((rehearsal.ROOT / "params.yaml").read_text())
    planned = rehearsal.pipeline_stages(params, skip_keras)
    every_stage = rehearsal.pipeline_stages(params, False)

    flag, pattern = rehearsal.noop_targets(planned, planned)

    assert flag == "--glob"
    assert [s for s in every_stage if fnmatch.fnmatch(s, pattern)] == [s for s in planned if s.startswith("train_")]
    assert rehearsal.noop_targets(planned[:3], planned) == planned[:3]  # a run that stopped early
