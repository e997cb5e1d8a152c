"""The FMA-format source of the scale rehearsal (tests/support/fma_source.py), and the Keras stage's
step limit that the rehearsal uses.

The source is built from the real clips in ../shared/data on a handful of clips (seconds); the
rehearsal itself runs at smoke size in tests/test_benchmarks.py.
"""

from __future__ import annotations

import hashlib
import io
import re

import numpy as np
import pytest
import soundfile as sf

from genreclf.data.fma import audio_members, read_tracks, subset_clips
from tests.support import fma_source

CLIPS = 16  # two per genre; clip 9 is made from GTZAN
STEP_TIMES = re.compile(
    r"(\d+) training step\(s\): the first ([0-9.]+) s \(tracing, input start-up\)"
    r"(?:, then ([0-9.]+) s/step over \d+ step\(s\))?"
)


def sha1s(source) -> dict[str, str]:
    return {
        p.relative_to(source).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted((source / fma_source.DATASET).rglob("*.mp3"))
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("rehearsal")


@pytest.fixture(scope="module")
def source(workdir, shared_data):
    return fma_source.build_source(CLIPS, 0, shared_data, workdir, workers=2, log=lambda message: None)


def test_source_is_an_fma_small_copy_that_fetch_reads(source, tmp_path):
    from genreclf.data.fma import fetch_fma

    tracks = read_tracks(source / "fma_metadata" / "tracks.csv")
    clips, without_genre = subset_clips(tracks, "fma_small")
    assert without_genre == 0 and len(clips) == CLIPS
    assert clips["genre"].value_counts().to_dict() == {genre: 2 for genre in fma_source.GENRES}
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
    fma, gtzan = fma_source.base_files(shared_data)
    plan = fma_source.plan_clips(CLIPS, 0, fma, gtzan)[0]
    base, _ = sf.read(shared_data / plan.base, dtype="float32")
    clip, _ = sf.read(source / fma_source.audio_member(plan.track_id), dtype="float32")
    ratio = np.sqrt(np.mean(clip**2) / np.mean(base**2))
    # the whole clip plan.clip_steps steps down; GRANULE_DIPS of ~2300 granules one step more
    assert ratio == pytest.approx(2 ** (-plan.clip_steps / 4), rel=0.02)


def test_gain_change_in_the_bit_stream_is_exact(shared_data):
    fma, _ = fma_source.base_files(shared_data)
    data = (shared_data / fma[3]).read_bytes()
    base, _ = sf.read(io.BytesIO(data), dtype="float32")
    halved, _ = sf.read(io.BytesIO(fma_source.with_gain_changes(data, 4, [])), dtype="float32")
    np.testing.assert_array_equal(halved, 0.5 * base)  # 4 steps of 2^(1/4)


def test_frames_that_cannot_be_edited_are_refused():
    crc_protected = bytes([0xFF, 0xFA, 0x90, 0x00]) + bytes(500)  # MPEG-1 layer III, CRC bit set
    with pytest.raises(ValueError, match="not an unprotected MPEG-1 layer III"):
        fma_source.mp3_frames(crc_protected)
    with pytest.raises(ValueError, match="no MPEG audio frame"):
        fma_source.mp3_frames(b"ID3\x04\x00\x00\x00\x00\x00\x00")


def test_same_seed_same_bytes_other_seed_other_bytes(source, workdir, shared_data):
    first = sha1s(source)
    assert fma_source.build_source(CLIPS, 0, shared_data, workdir, workers=2, log=lambda m: None) == source
    assert sha1s(source) == first  # reused, not rebuilt
    tracks = (source / "fma_metadata" / "tracks.csv").read_bytes()

    rebuilt_dir = workdir / "again"
    rebuilt = fma_source.build_source(CLIPS, 0, shared_data, rebuilt_dir, workers=2, log=lambda m: None)
    assert sha1s(rebuilt) == first
    assert (rebuilt / "fma_metadata" / "tracks.csv").read_bytes() == tracks

    other = fma_source.build_source(CLIPS, 1, shared_data, rebuilt_dir, workers=2, log=lambda m: None)
    assert set(sha1s(other).values()).isdisjoint(first.values())


def test_clip_i_does_not_depend_on_n(shared_data):
    fma, gtzan = fma_source.base_files(shared_data)
    small, large = fma_source.plan_clips(80, 3, fma, gtzan), fma_source.plan_clips(800, 3, fma, gtzan)
    strip = [(p.genre, p.split, p.base, p.clip_steps, p.dipped) for p in small]
    assert strip == [(p.genre, p.split, p.base, p.clip_steps, p.dipped) for p in large[:80]]
    assert sum(p.base.startswith("gtzan_mini/") for p in large) == 80  # one in ten
    assert {p.split for p in large[:80]} == {"training", "validation", "test"}


def test_track_ids_spread_like_fma_small():
    assert fma_source.track_ids(3) == ["000002", "051668", "103334"]
    ids = fma_source.track_ids(8000)
    assert len(set(ids)) == 8000 and ids[-1] <= "155000"
    assert len({t[:3] for t in ids}) == 152  # ~53 clips per NNN folder, as in fma_small
    with pytest.raises(ValueError, match="6-digit"):
        fma_source.track_ids(2_000_000)


def test_step_times_summary_of_the_keras_stage():
    from stages.train_keras import step_times_summary

    # what benchmarks/rehearsal.py reads back from the stage's log (its smoke run checks that it does,
    # with the step limit it sets as <model>.max_steps in its clone's params.yaml)
    summary = step_times_summary([3.0, 0.5, 0.7])
    assert summary == (
        "3 training step(s): the first 3.00 s (tracing, input start-up), then 0.600 s/step over 2 step(s)"
    )
    assert STEP_TIMES.fullmatch(summary).groups() == ("3", "3.00", "0.600")
    assert step_times_summary([2.5]) == "1 training step(s): the first 2.50 s (tracing, input start-up)"


def read_tsv_rows(path) -> int:
    return len(path.read_text().strip().splitlines()) - 1


@pytest.mark.slow  # trains in-process: TensorFlow's import and tracing take about 15 s
def test_the_keras_stage_stops_after_the_step_limit_and_logs_the_step_times(tmp_path, caplog):
    from tests.support.helpers import call_stage, set_params
    from tests.support.keras_fixture import TINY_PARAMS, write_tiny_repo

    # 18 training clips in batches of 8: 3 steps per epoch; 2 epochs at most, patience 2
    write_tiny_repo(tmp_path, {**TINY_PARAMS, "cnn1d": dict(TINY_PARAMS["cnn1d"], patience=5)})
    for limit, epochs in ((4, 2), (2, 1)):
        set_params(tmp_path, {"cnn1d": {"max_steps": limit}})
        caplog.clear()
        with caplog.at_level("INFO"):
            call_stage(tmp_path, "train_keras", "cnn1d")
        timing = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("step times: "))
        steps, first, steady = STEP_TIMES.fullmatch(timing.removeprefix("step times: ")).groups()
        assert steps == str(limit) and float(first) > 0 and float(steady) > 0
        assert f"over {limit - 1} step(s)" in timing
        assert read_tsv_rows(tmp_path / "dvclive" / "cnn1d" / "plots" / "metrics" / "train" / "loss.tsv") == epochs
        assert (tmp_path / "models" / "cnn1d" / "model.keras").is_file()
        messages = [r.getMessage() for r in caplog.records]
        assert "cnn1d.max_steps is set: the val clip accuracy is not computed" in messages
        assert not any(m.startswith("kept epoch") for m in messages)
