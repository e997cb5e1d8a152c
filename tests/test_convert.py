"""The convert stage, run as dvc runs it, on a small project with good and bad clips."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from genreclf.artifacts import CLIP_COLUMNS, read_clips, read_converted, read_skipped, write_clips
from genreclf.data.audio import decode_clip
from genreclf.errors import DataError
from genreclf.io import write_csv, write_csv_rows
from tests.support.helpers import directory_bytes, make_project, run_stage, tone, write_audio

FMA_MP3 = "fma/fma_audio/000/000182.mp3"
# track_id, genre, file under data/raw/audio, official_split
CLIPS = [
    ("000182", "Rock", "000/000182.mp3", "training"),  # real FMA mp3, 44.1 kHz stereo
    ("000200", "Folk", "000/000200.wav", "validation"),  # 11 s, 44.1 kHz stereo WAV
    ("000300", "Pop", "000/000300.au", "test"),  # 12 s, 8 kHz mono AU
    ("099134", "Rock", "099/099134.mp3", "training"),  # 0 bytes: no audio
    ("108925", "Pop", "108/108925.mp3", "test"),  # garbage bytes: decode error
    ("098565", "Folk", "098/098565.wav", "training"),  # 1 s: too short
    ("000400", "Folk", "000/000400.txt", "training"),  # listed but not audio
]
CONVERTED = ["000182", "000200", "000300"]
SKIPPED = {
    "098565": "too short: 1.00 s < 10.0 s",
    "099134": "no audio: empty file (0 bytes)",
    "108925": "decode failed: libsndfile cannot read it",
    "000400": "not an audio file: extension '.txt'",
}


def write_raw_data(project, shared_data):
    audio = project / "data" / "raw" / "audio"
    (audio / "000").mkdir(parents=True)
    shutil.copy(shared_data / FMA_MP3, audio / "000" / "000182.mp3")
    write_audio(audio / "000" / "000200.wav", np.stack([tone(11.0, 44100), tone(11.0, 44100, 220.0)], axis=1), 44100)
    write_audio(audio / "000" / "000300.au", tone(12.0, 8000, 300.0), 8000)
    (audio / "099").mkdir()
    (audio / "099" / "099134.mp3").write_bytes(b"")
    (audio / "108").mkdir()
    (audio / "108" / "108925.mp3").write_bytes(np.random.default_rng(0).bytes(3000))
    write_audio(audio / "098" / "098565.wav", tone(1.0, 22050), 22050)
    (audio / "000" / "000400.txt").write_text("liner notes\n")
    (audio / "000" / "stray.txt").write_text("not listed in clips.csv\n")
    rows = [(t, g, f"data/raw/audio/{f}", s) for t, g, f, s in CLIPS]
    write_clips(project / "data" / "raw" / "clips.csv", pd.DataFrame(rows, columns=CLIP_COLUMNS))


@pytest.fixture(scope="module")
def converted_project(tmp_path_factory, shared_data):
    project = make_project(tmp_path_factory.mktemp("convert"))
    write_raw_data(project, shared_data)
    result = run_stage(project, "convert")
    assert result.returncode == 0, result.stderr
    return project, result


@pytest.mark.slow
def test_converted_csv(converted_project):
    project, _ = converted_project
    converted = pd.read_csv(project / "data" / "converted.csv", dtype=str, keep_default_na=False)
    assert list(converted.columns) == ["track_id", "genre", "path", "official_split", "num_samples"]
    assert list(converted["track_id"]) == CONVERTED
    assert list(converted["genre"]) == ["Rock", "Folk", "Pop"]
    assert list(converted["official_split"]) == ["training", "validation", "test"]
    assert list(converted["path"]) == [f"data/wav/{t}.wav" for t in CONVERTED]
    assert list(converted["num_samples"].astype(int)) == [661560, 11 * 22050, 12 * 22050]
    checked = read_converted(project / "data" / "converted.csv")  # the contract's reader accepts it
    assert checked["track_id"].tolist() == CONVERTED and checked["num_samples"].tolist() == [661560, 242550, 264600]


@pytest.mark.slow
def test_wav_files_match_decode_clip(converted_project):
    project, _ = converted_project
    assert sorted(p.name for p in (project / "data" / "wav").iterdir()) == [f"{t}.wav" for t in CONVERTED]
    sources = {t: project / "data" / "raw" / "audio" / f for t, _, f, _ in CLIPS}
    for track_id in CONVERTED:
        wav = project / "data" / "wav" / f"{track_id}.wav"
        info = sf.info(wav)
        assert (info.format, info.subtype, info.channels, info.samplerate) == ("WAV", "PCM_16", 1, 22050)
        samples, _ = sf.read(wav, dtype="int16")
        np.testing.assert_array_equal(samples, decode_clip(sources[track_id], 22050))


@pytest.mark.slow
def test_skipped_clips_are_reported(converted_project):
    project, result = converted_project
    skipped = pd.read_csv(project / "data" / "convert_skipped.csv", dtype=str, keep_default_na=False)
    assert list(skipped.columns) == ["track_id", "source_path", "reason"]
    assert sorted(skipped["track_id"]) == sorted(SKIPPED)
    assert read_skipped(project / "data" / "convert_skipped.csv").equals(skipped)
    for row in skipped.itertuples():
        assert row.reason.startswith(SKIPPED[row.track_id])
        assert row.source_path.startswith(f"data/raw/audio/{row.track_id[:3]}/{row.track_id}.")
        assert f"skipped {row.track_id}" in result.stderr
    metrics = json.loads((project / "metrics" / "convert.json").read_text())
    assert metrics == {
        "clips_in": 7,
        "converted": 3,
        "skipped": 4,
        "no_audio": 1,
        "too_short": 1,
        "decode_error": 1,
        "not_audio": 1,
    }


@pytest.mark.slow
def test_rerun_is_byte_identical(converted_project):
    project, _ = converted_project
    outputs = ["data/wav", "data/converted.csv", "data/convert_skipped.csv", "metrics/convert.json"]

    def snapshot():
        return {
            name: directory_bytes(project / name) if (project / name).is_dir() else (project / name).read_bytes()
            for name in outputs
        }

    first = snapshot()
    result = run_stage(project, "convert")
    assert result.returncode == 0, result.stderr
    assert snapshot() == first
    assert not [p.name for p in (project / "data").iterdir() if p.name.startswith(".")]  # no temporary leftovers


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no clips.csv", "data/raw/clips.csv does not exist; run `dvc repro fetch`"),
        ("no genre column", "data/raw/clips.csv: missing columns ['genre']"),
        ("missing file", "data/raw/clips.csv lists 1 files that do not exist"),
        ("duplicate id", "track ids listed more than once: ['000001']"),
        ({"sample_rate": 0}, "params.yaml: convert.sample_rate = 0: Input should be greater than or equal to 8000"),
        (
            {"sample_rate": 500000},
            "params.yaml: convert.sample_rate = 500000: Input should be less than or equal to 192000",
        ),
        (
            {"sample_rate": "22050"},
            'params.yaml: convert.sample_rate = "22050": Input should be a valid integer',
        ),
        ({"min_seconds": -1}, "params.yaml: convert.min_seconds = -1: Input should be greater than or equal to 0"),
        ({"min_seconds": None}, "params.yaml: convert.min_seconds = null: Input should be a valid number"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, breakage, message):
    project = make_project(tmp_path, {"convert": breakage if isinstance(breakage, dict) else {}})
    raw = project / "data" / "raw"
    write_audio(raw / "audio" / "a.wav", tone(11.0, 8000), 8000)
    rows = [("000001", "Rock", "data/raw/audio/a.wav", "")]
    if breakage == "missing file":
        rows.append(("000002", "Rock", "data/raw/audio/absent.wav", ""))
    if breakage == "duplicate id":
        rows.append(rows[0])
    clips = pd.DataFrame(rows, columns=["track_id", "genre", "path", "official_split"])
    if breakage == "no genre column":
        clips = clips.drop(columns="genre")
    if breakage != "no clips.csv":
        clips.to_csv(raw / "clips.csv", index=False)

    result = run_stage(project, "convert", check=False)

    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "data" / "wav").exists()
    assert not (project / "data" / "converted.csv").exists()


def test_the_clip_table_reader_names_the_file_and_no_stage(tmp_path):
    path = tmp_path / "clips.csv"
    with pytest.raises(DataError, match="clips.csv does not exist") as e:
        read_clips(path)
    assert e.value.path == str(path) and "dvc repro" not in str(e.value)
    write_audio(tmp_path / "a.wav", tone(1.0, 8000), 8000)
    clips = pd.DataFrame(
        {"track_id": ["b", "a"], "genre": ["Rock", "Pop"], "path": [str(tmp_path / "a.wav")] * 2, "official_split": ""}
    )
    write_clips(path, clips)
    assert [clip.track_id for clip in read_clips(path)] == ["a", "b"]
    write_clips(path, clips.assign(track_id=["../b", "a"]))
    with pytest.raises(DataError, match=r"track ids must be letters, digits, '.', '_' or '-', got \['\.\./b'\]") as e:
        read_clips(path)
    assert e.value.path == str(path) and "dvc repro" not in str(e.value)


def test_the_tables_convert_writes_without_pandas_are_the_bytes_pandas_writes(tmp_path):
    """write_csv_rows (convert's tables) against write_csv of the same rows as a DataFrame (the other
    stages' tables): cells that need quoting, empty cells, integers, non-ASCII text, no rows."""
    rows = [
        ("a", "Rock", 'say "hi", then go', 661500),
        ("b", "", "line\nbreak", 0),
        ("c", "Électronique", "café,crème", 12),
        ("d", "Pop", " spaced ", 3),
    ]
    columns = ["track_id", "genre", "path", "num_samples"]
    for chosen in (rows, []):
        write_csv_rows(tmp_path / "rows.csv", columns, chosen)
        write_csv(tmp_path / "frame.csv", pd.DataFrame(chosen, columns=columns))
        assert (tmp_path / "rows.csv").read_bytes() == (tmp_path / "frame.csv").read_bytes()
