"""The predict command (`python -m genreclf predict`, as the installed `genreclf predict`) and the
predictors, on a model trained here on a few real GTZAN clips."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from genreclf.cli import format_prediction, top_genres
from genreclf.data import audio
from genreclf.features import fma_features as features
from genreclf.models.predictors import load_predictor
from tests.support.helpers import call_stage, run_genreclf
from tests.support.sklearn_fixture import FEATURE_COLUMNS, feature_frame, write_feature_tables, write_params

GENRES = ["classical", "metal"]  # label order (sorted)
TRAIN_CLIPS = range(0, 4)  # <genre>.00000 ... 00003 train, 00004 val
VAL_CLIP = 4
HELD_OUT_CLIP = 9  # never seen in training
SAMPLE_RATE = 22050
FMA_MP3 = "fma/fma_audio/000/000182.mp3"  # 44.1 kHz stereo: decoded to the model's rate


def clip_path(gtzan_mini, genre, index):
    return gtzan_mini / genre / f"{genre}.{index:05d}.wav"


@pytest.fixture(scope="module")
def project(tmp_path_factory, gtzan_mini):
    """A project whose logreg was trained by the real stage on the features of 10 real clips,
    computed as the pipeline does: convert (decode -> 16-bit WAV), then the features of the WAV."""
    root = tmp_path_factory.mktemp("predict")
    write_params(root)
    params = features.DEFAULT_PARAMS
    tables = {}
    for split, indices in [("train", TRAIN_CLIPS), ("val", [VAL_CLIP])]:
        ids, labels, rows = [], [], []
        for label, genre in enumerate(GENRES):
            for index in indices:
                wav = root / "data" / "wav" / f"{genre}.{index:05d}.wav"
                result = audio.convert_clip(clip_path(gtzan_mini, genre, index), wav, SAMPLE_RATE, 10.0)
                assert result.ok, result.reason
                ids.append(wav.stem)
                labels.append(label)
                rows.append(features.wav_features(wav, SAMPLE_RATE, params))
        tables[split] = feature_frame(ids, labels, GENRES, np.stack(rows), FEATURE_COLUMNS)
    tables["test"] = tables["val"]
    write_feature_tables(root, tables, FEATURE_COLUMNS, SAMPLE_RATE, features.params_to_dict(params))
    call_stage(root, "train_sklearn", "logreg")
    (root / "unreadable.wav").write_bytes(b"RIFF but not really audio" * 10)
    return root


def parse_output(stdout: str) -> dict[str, list[tuple[str, float]]]:
    """{file: [(genre, probability), ...]} from predict's printout."""
    predictions, current = {}, None
    for line in stdout.splitlines():
        match = re.fullmatch(r"  (\d+)\. (\S+)\s+(\d\.\d{3})", line)
        if match:
            predictions[current].append((match[2], float(match[3])))
        else:
            current = line
            predictions[current] = []
    return predictions


@pytest.mark.slow
def test_predict_real_clips_and_report_an_unreadable_file(project, gtzan_mini, shared_data):
    classical = clip_path(gtzan_mini, "classical", HELD_OUT_CLIP)
    metal = clip_path(gtzan_mini, "metal", HELD_OUT_CLIP)
    mp3 = shared_data / FMA_MP3
    proc = run_genreclf(
        project,
        "predict",
        str(classical),
        "unreadable.wav",
        str(metal),
        str(mp3),
        "missing.wav",
        "--model",
        "logreg",
        "--top",
        "2",
        check=False,
    )
    assert proc.returncode == 1
    predictions = parse_output(proc.stdout)
    # every readable file is predicted, in the order given, the bad ones are not
    assert list(predictions) == [str(classical), str(metal), str(mp3)]
    assert predictions[str(classical)][0][0] == "classical"
    assert predictions[str(metal)][0][0] == "metal"
    for ranked in predictions.values():
        assert len(ranked) == 2 and ranked[0][1] >= ranked[1][1]
        assert sum(p for _, p in ranked) == pytest.approx(1.0, abs=2e-3)
    # one clear line per bad file: its name and why
    assert re.search(r"error: unreadable\.wav: cannot decode audio: libsndfile", proc.stderr)
    assert re.search(r"error: missing\.wav: cannot decode audio: file not found", proc.stderr)
    assert "2 of 5 files could not be answered" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_predict_audio_uses_the_training_preprocessing(project, gtzan_mini):
    """A clip's probabilities from new audio equal those from its row of the feature table."""
    predictor = load_predictor(project / "models" / "logreg")
    assert predictor.family == "sklearn" and predictor.labels == GENRES
    assert predictor.sample_rate == SAMPLE_RATE
    result = predictor.predict_split(project / "data", "val")
    assert result.extra_metrics == {} and result.unit_name == "clip" and result.num_units == 2
    assert result.track_ids == ["classical.00004", "metal.00004"] and result.y_true.tolist() == [0, 1]
    for row, track_id in enumerate(result.track_ids):
        genre, index = track_id.split(".")
        clip = audio.decode_clip(clip_path(gtzan_mini, genre, int(index)), predictor.sample_rate)
        np.testing.assert_allclose(predictor.predict_audio(clip), result.probabilities[row], rtol=1e-6, atol=1e-9)
    assert result.unit_accuracy == result.clip_accuracy == np.mean(result.probabilities.argmax(axis=1) == [0, 1])


@pytest.mark.slow  # its own process loads scikit-learn and librosa (seconds)
def test_a_scikit_learn_model_does_not_import_tensorflow(project, gtzan_mini, repo_root):
    """Evaluating or predicting with a scikit-learn model never loads TensorFlow (seconds and memory)."""
    code = (
        "import sys; from genreclf.data.audio import decode_clip; "
        "from genreclf.models.predictors import load_predictor; "
        "p = load_predictor('models/logreg'); p.predict_split('data', 'val'); "
        f"p.predict_audio(decode_clip({str(clip_path(gtzan_mini, 'metal', HELD_OUT_CLIP))!r}, p.sample_rate)); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(repo_root)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_default_model_is_the_best_in_the_summary(project, gtzan_mini):
    summary = {"models": {"svm": {"accuracy": 0.5}, "logreg": {"accuracy": 0.9}}}
    (project / "metrics").mkdir(exist_ok=True)
    (project / "metrics" / "summary.json").write_text(json.dumps(summary))
    try:
        proc = run_genreclf(project, "predict", str(clip_path(gtzan_mini, "metal", HELD_OUT_CLIP)))
    finally:
        (project / "metrics" / "summary.json").unlink()
    assert "model logreg (sklearn, the best in metrics/summary.json)" in proc.stderr
    assert len(parse_output(proc.stdout)[str(clip_path(gtzan_mini, "metal", HELD_OUT_CLIP))]) == 2


@pytest.mark.slow  # its process loads scikit-learn and librosa (seconds) before the stage refuses
def test_no_summary_and_no_model_is_a_clear_error_listing_the_models(project, gtzan_mini):
    proc = run_genreclf(project, "predict", str(clip_path(gtzan_mini, "metal", 0)), check=False)
    assert proc.returncode == 1
    assert "metrics/summary.json is missing" in proc.stderr and "models in models/: logreg" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "logreg", "--top", "0"], "argument --top: '0' is not an integer >= 1"),
        (["--model", "logreg", "--top", "two"], "argument --top: 'two' is not an integer >= 1"),
    ],
)
def test_bad_arguments_are_refused_by_the_parser(project, args, message):
    proc = run_genreclf(project, "predict", "x.wav", *args, check=False)
    assert proc.returncode == 2 and message in proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr


def test_a_model_that_is_not_trained_is_refused_naming_the_trained_ones(project):
    proc = run_genreclf(project, "predict", "x.wav", "--model", "cnn2d", check=False)
    assert proc.returncode == 1 and "no trained model 'cnn2d' in models/; trained: logreg" in proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "probs, k, expected",
    [
        ([0.1, 0.6, 0.3], 2, [("b", 0.6), ("c", 0.3)]),
        ([0.1, 0.6, 0.3], 5, [("b", 0.6), ("c", 0.3), ("a", 0.1)]),  # at most every genre
        ([0.4, 0.2, 0.4], 2, [("a", 0.4), ("c", 0.4)]),  # a tie: label order
    ],
)
def test_top_genres(probs, k, expected):
    assert top_genres(np.array(probs), ["a", "b", "c"], k) == expected


def test_format_prediction_aligns_the_genres():
    text = format_prediction("song.mp3", [("classical", 0.91234), ("pop", 0.05)])
    assert text == "song.mp3\n  1. classical  0.912\n  2. pop        0.050"
