"""The train_keras stage and the Keras predictor on tiny synthetic shards: files, determinism, params, learning."""

from __future__ import annotations

import ast
import copy
import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from genreclf.artifacts import read_model_folder
from genreclf.errors import DataError, ParamError
from genreclf.models import keras_models, keras_run, predictors, resume, tfdata, training
from stages import train_keras
from stages.config import load_config
from stages.live import dvclive_callback as live_steps
from tests.support.helpers import ROOT, call_stage, directory_bytes, run_stage, set_params, subprocess_env
from tests.support.keras_fixture import LABELS, TINY_PARAMS, write_tiny_repo, write_tiny_shards

DVCLIVE_FILES = [
    "metrics.json",
    "plots/metrics/eval/accuracy.tsv",
    "plots/metrics/eval/loss.tsv",
    "plots/metrics/train/accuracy.tsv",
    "plots/metrics/train/loss.tsv",
]
MODEL_FILES = ["labels.json", "model.keras", "preprocessing.json"]


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture(scope="module")
def cnn1d_repo(tmp_path_factory):
    """A tiny repository in which the cnn1d stage has run once."""
    root = tmp_path_factory.mktemp("repo_a")
    write_tiny_repo(root)
    call_stage(root, "train_keras", "cnn1d")
    return root


# ---- pure choices -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tpus, gpus, expected",
    [
        ([], [], "default"),
        ([], ["GPU:0"], "default"),
        ([], ["GPU:0", "GPU:1"], "mirrored"),
        (["TPU:0"], [], "tpu"),
        (["TPU:0"], ["GPU:0", "GPU:1"], "tpu"),
    ],
)
def test_choose_strategy_kind(tpus, gpus, expected):
    assert training.choose_strategy_kind(tpus, gpus) == expected


def test_default_strategy_and_global_batch():
    strategy = training.make_strategy("default")
    assert strategy.num_replicas_in_sync == 1
    assert training.global_batch_size(64, 8) == 512
    with pytest.raises(ValueError):
        training.make_strategy("quantum")


@pytest.mark.parametrize(
    "mixed, kind, gpus, expected",
    [
        (False, "default", ["GPU:0"], "float32"),
        (True, "default", ["GPU:0"], "mixed_float16"),
        (True, "mirrored", ["GPU:0", "GPU:1"], "mixed_float16"),
        (True, "default", [], "float32"),
        (True, "tpu", [], "mixed_bfloat16"),
    ],
)
def test_precision_policy(mixed, kind, gpus, expected):
    assert training.precision_policy(mixed, kind, gpus) == expected


def test_cache_plan_fills_memory_in_order():
    assert training.cache_plan({"train": 40, "val": 10}, 100) == {"train": True, "val": True}
    assert training.cache_plan({"train": 45, "val": 10}, 100) == {"train": True, "val": False}
    assert training.cache_plan({"train": 60, "val": 10}, 100) == {"train": False, "val": True}
    assert training.cache_plan({"train": 1, "val": 1}, None) == {"train": False, "val": False}


# ---- params ----------------------------------------------------------------------------------

INFO_FILE = Path("data/shards/dataset_info.json")

INFO = {
    "sample_rate": 4000,
    "labels": LABELS,
    "splits": {
        "train": {"clips": 18, "min_samples": 3000, "max_samples": 4400},
        "val": {"clips": 6, "min_samples": 2500, "max_samples": 4400},
        "test": {"clips": 6, "min_samples": 3100, "max_samples": 4400},
    },
}


@pytest.mark.parametrize(
    "model, changes, message",
    [
        (
            "cnn1d",
            {"window_size": 2501},
            r"cnn1d.window_size = 2501 samples is longer than the shortest clip \(2500 "
            r"samples, split 'val'",
        ),
        ("cnn2d", {"image_size": 48}, "need clips of 3008 samples, but the shortest clip has 2500"),
        ("cnn2d", {"hop_length": 128}, "need clips of 3968 samples"),
    ],
)
def test_settings_that_do_not_fit_the_data_are_refused(model, changes, message):
    """The checks that need dataset_info.json (the others: tests/test_config.py)."""
    with pytest.raises(ParamError, match=message):
        keras_run.check_settings_fit_data(
            model, dict(TINY_PARAMS[model], **changes), INFO, f"params.yaml: {model}", INFO_FILE
        )


@pytest.mark.parametrize(
    "model, changes",
    [
        ("cnn1d", {"window_size": 2500}),  # exactly the shortest clip
        ("cnn2d", {"image_size": 40}),  # 1 + 2500 // 64 = 40 frames
        ("mobilenet", {}),
    ],
)
def test_settings_that_fit_the_data_pass(model, changes):
    keras_run.check_settings_fit_data(
        model, dict(TINY_PARAMS[model], **changes), INFO, f"params.yaml: {model}", INFO_FILE
    )


def test_the_model_argument_takes_only_known_models(capsys):
    with pytest.raises(SystemExit) as stop:
        train_keras.main(["resnet"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "argument model: invalid choice: 'resnet' (choose from 'cnn1d', 'mobilenet', 'cnn2d')" in err
    with pytest.raises(SystemExit):
        train_keras.main([])
    assert "the following arguments are required: model" in capsys.readouterr().err


def test_a_tiny_params_file_gives_the_stage_its_section(tmp_path):
    """The fixture's params.yaml validates, and the stage's settings are its section as written."""
    write_tiny_repo(tmp_path)
    config = load_config(tmp_path / "params.yaml")
    for model in TINY_PARAMS:
        assert config.model_section(model).model_dump() == TINY_PARAMS[model]


# ---- the stage, end to end ---------------------------------------------------------------


def test_cnn1d_stage_writes_exactly_its_outputs(cnn1d_repo):
    assert sorted(directory_bytes(cnn1d_repo / "dvclive" / "cnn1d")) == DVCLIVE_FILES
    assert sorted(directory_bytes(cnn1d_repo / "models" / "cnn1d")) == MODEL_FILES
    assert sorted(p.name for p in (cnn1d_repo / "dvclive").iterdir()) == ["cnn1d"]  # no temp folders left
    assert sorted(p.name for p in (cnn1d_repo / "models").iterdir()) == ["cnn1d"]
    metrics = json.loads((cnn1d_repo / "dvclive/cnn1d/metrics.json").read_text())
    epochs = TINY_PARAMS["cnn1d"]["epochs"]
    assert metrics["step"] == epochs - 1
    for part in ("train", "eval"):
        assert math.isfinite(metrics[part]["loss"]) and 0 <= metrics[part]["accuracy"] <= 1
    best = metrics["best"]
    assert 0 <= best["step"] < epochs and 0 <= best["eval"]["clip_accuracy"] <= 1
    for name in DVCLIVE_FILES[1:]:
        rows = read_tsv(cnn1d_repo / "dvclive/cnn1d" / name)
        assert list(rows[0]) == ["step", Path(name).stem]  # no timestamp column
        assert [int(r["step"]) for r in rows] == list(range(epochs))
        assert all(math.isfinite(float(r[Path(name).stem])) for r in rows)
    eval_loss = [float(r["loss"]) for r in read_tsv(cnn1d_repo / "dvclive/cnn1d/plots/metrics/eval/loss.tsv")]
    assert best["eval"]["loss"] == min(eval_loss) == eval_loss[best["step"]]
    folder = read_model_folder(cnn1d_repo / "models/cnn1d")
    assert {
        "family": "keras",
        "model": "cnn1d",
        "sample_rate": 4000,
        "labels": LABELS,
        "window_size": 256,
        "input": "waveform_windows",
        "unit": "window",
    }.items() <= folder.preprocessing.items()
    assert folder.labels == LABELS and folder.model_file == cnn1d_repo / "models/cnn1d/model.keras"


@pytest.mark.slow
def test_same_params_and_data_give_the_same_bytes(cnn1d_repo, tmp_path):
    """Run again in another process, as DVC would: every output byte is the same."""
    write_tiny_repo(tmp_path)
    done = run_stage(tmp_path, "train_keras", "cnn1d", timeout=900)
    assert "training time:" in done.stderr
    for folder in ("models/cnn1d", "dvclive/cnn1d"):
        assert directory_bytes(tmp_path / folder) == directory_bytes(cnn1d_repo / folder), folder
    weights = training.keras_zip_members(tmp_path / "models/cnn1d/model.keras")["model.weights.h5"]
    assert weights == training.keras_zip_members(cnn1d_repo / "models/cnn1d/model.keras")["model.weights.h5"]


@pytest.mark.slow
def test_cnn2d_gives_the_same_bytes_in_another_process(tmp_path):
    """cnn2d, whose first layer computes the spectrograms, trained by the stage in this process
    and again in another one, as DVC runs it: every output byte is the same. (The end-to-end
    test forces a rerun of train_sklearn@svm; the Keras stages' reruns are checked here.)"""
    here, there = tmp_path / "here", tmp_path / "there"
    for root in (here, there):
        write_tiny_repo(root)
    call_stage(here, "train_keras", "cnn2d")
    run_stage(there, "train_keras", "cnn2d")
    for folder in ("models/cnn2d", "dvclive/cnn2d"):
        assert directory_bytes(there / folder) == directory_bytes(here / folder), folder


@pytest.mark.slow  # trains in-process twice: TensorFlow's tracing takes seconds
def test_max_steps_stops_training_and_logs_the_step_times(tmp_path, caplog):
    """cnn1d.max_steps, a param (so DVC sees it): the fit ends after that many training batches."""
    # 18 training clips in batches of 8: 3 steps per epoch; 2 epochs at most, patience 5
    for limit, epochs in ((4, 2), (2, 1)):
        project = tmp_path / f"limit{limit}"
        write_tiny_repo(project, {**TINY_PARAMS, "cnn1d": dict(TINY_PARAMS["cnn1d"], patience=5, max_steps=limit)})
        caplog.clear()
        with caplog.at_level("INFO"):
            call_stage(project, "train_keras", "cnn1d")
        messages = [r.getMessage() for r in caplog.records]
        timing = next(m for m in messages if m.startswith("step times: "))
        assert timing.startswith(f"step times: {limit} training step(s): the first ")
        assert f"over {limit - 1} step(s)" in timing
        assert len(read_tsv(project / "dvclive/cnn1d/plots/metrics/train/loss.tsv")) == epochs
        assert (project / "models/cnn1d/model.keras").is_file()
        assert "cnn1d.max_steps is set: the val clip accuracy is not computed" in messages
        assert not any(m.startswith("kept epoch") for m in messages)


def start_stage(project: Path, model: str, stderr_path: Path) -> subprocess.Popen:
    """``python -m stages.train_keras <model>`` in ``project`` as run_stage runs it, in the background."""
    env = dict(subprocess_env(), PYTHONPATH=str(ROOT))
    with open(stderr_path, "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "stages.train_keras", model],
            cwd=project,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def backed_up_epochs(scratch: Path) -> int:
    """The epochs of the last complete backup under ``scratch`` (0 if none)."""
    found = [int(m.group(1)) for p in scratch.glob("*/epoch-*") if (m := resume.EPOCH_DIR_RE.match(p.name))]
    return max(found, default=0)


@pytest.mark.slow  # four processes of the stage
def test_a_killed_run_resumes_after_its_last_epoch_with_the_same_bytes(tmp_path):
    """SIGKILL once epoch k's backup is written; the rerun goes on from epoch k and writes the bytes of
    an uninterrupted run. With other params the backup is not used (another key)."""
    params = copy.deepcopy(TINY_PARAMS)
    params["cnn1d"].update(epochs=12, patience=12)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for root in (whole, killed):
        write_tiny_repo(root, params)
    run_stage(whole, "train_keras", "cnn1d")
    scratch = killed / train_keras.SCRATCH_DIR / "cnn1d"
    assert not (whole / train_keras.SCRATCH_DIR / "cnn1d").exists()

    proc = start_stage(killed, "cnn1d", tmp_path / "killed.log")
    deadline = time.monotonic() + 600
    while backed_up_epochs(scratch) < 2:
        assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    done = backed_up_epochs(scratch)
    assert 2 <= done < 12, done
    assert not (killed / "models" / "cnn1d").exists()

    changed = tmp_path / "changed"  # the same shards (modification times copied) and backups, other params
    shutil.copytree(killed, changed)
    set_params(changed, {"cnn1d": {"learning_rate": 0.002}})
    rerun = run_stage(changed, "train_keras", "cnn1d")
    assert "resuming from the backup" not in rerun.stderr and "trained 12 epoch(s)" in rerun.stderr

    for folder in ("models/cnn1d", "dvclive/cnn1d"):  # DVC deletes the outputs before it runs the stage
        shutil.rmtree(killed / folder, ignore_errors=True)
    rerun = run_stage(killed, "train_keras", "cnn1d")
    assert f"{done} epoch(s) done (fit 0); training on from epoch {done} (0-based" in rerun.stderr
    for folder in ("models/cnn1d", "dvclive/cnn1d"):
        assert directory_bytes(killed / folder) == directory_bytes(whole / folder), folder
    assert not scratch.exists()


def test_a_change_of_params_or_data_is_another_backup(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    for name in ("train-00000-of-00002.n9.tfrecord", "train-00001-of-00002.n9.tfrecord", "dataset_info.json"):
        (shards / name).write_bytes(name.encode())
    settings = TINY_PARAMS["cnn1d"]
    key = resume.backup_key("train_keras", settings, [shards])
    assert resume.backup_key("train_keras", dict(settings), [shards]) == key
    assert resume.backup_key("train_keras", dict(settings, learning_rate=0.002), [shards]) != key
    assert resume.backup_key("train_keras", dict(settings, max_steps=3), [shards]) != key
    assert resume.backup_key("other_stage", settings, [shards]) != key
    code = tmp_path / "module.py"
    code.write_text("A = 1\n")
    with_code = resume.backup_key("train_keras", settings, [shards], [code])
    assert with_code != key
    code.write_text("A = 2\n")
    assert resume.backup_key("train_keras", settings, [shards], [code]) != with_code
    shard = sorted(shards.glob("train-*"))[0]
    info = shard.stat()
    os.utime(shard, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    assert resume.backup_key("train_keras", settings, [shards]) != key


def test_the_epochs_of_a_resumed_run_get_the_batches_of_an_uninterrupted_one(tmp_path):
    info = write_tiny_shards(tmp_path)
    preprocessing = training.preprocessing_for("cnn1d", 4000, LABELS, TINY_PARAMS["cnn1d"])
    clips = info["splits"]["train"]["clips"]

    def batches(first, epochs, cache):
        stream = tfdata.training_epochs(tmp_path, "train", preprocessing, 3, 8, 0, clips, first, epochs, cache=cache)
        return [x.numpy().tobytes() + y.numpy().tobytes() for x, y in stream]

    whole = batches(0, 4, cache=True)
    assert len(whole) == 4 * 3 and len(set(whole)) == len(whole)  # 18 clips in batches of 8; new order each epoch
    assert batches(2, 2, cache=False) == whole[6:]


def test_another_seed_gives_another_model(cnn1d_repo, tmp_path):
    params = copy.deepcopy(TINY_PARAMS)
    params["cnn1d"]["seed"] = 1
    write_tiny_repo(tmp_path, params)
    call_stage(tmp_path, "train_keras", "cnn1d")
    assert (tmp_path / "models/cnn1d/model.keras").read_bytes() != (
        cnn1d_repo / "models/cnn1d/model.keras"
    ).read_bytes()


# ---- inference --------------------------------------------------------------------------


def test_predict_split_averages_the_windows_of_each_clip(cnn1d_repo):
    predictor = predictors.load_predictor(cnn1d_repo / "models/cnn1d")
    assert predictor.family == "keras" and predictor.labels == LABELS and predictor.sample_rate == 4000
    shard_dir = cnn1d_repo / "data/shards"
    result = predictor.predict_split(cnn1d_repo / "data", "test")
    clips = {c["track_id"].decode(): c for c in tfdata.read_clips(shard_dir, "test").as_numpy_iterator()}
    assert sorted(result.track_ids) == sorted(clips) and result.probabilities.shape == (len(clips), 3)
    assert result.unit_name == "window"
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, rtol=1e-6)
    correct_windows = 0
    for track_id, probabilities, label in zip(result.track_ids, result.probabilities, result.y_true):
        clip = clips[track_id]
        assert label == clip["label"]
        windows = clip["audio"][: len(clip["audio"]) // 256 * 256].reshape(-1, 256, 1) / 32768.0
        window_probs = predictor.model.predict_on_batch(windows.astype("float32"))
        np.testing.assert_allclose(probabilities, window_probs.mean(axis=0), rtol=1e-5)
        np.testing.assert_allclose(predictor.predict_audio(clip["audio"]), probabilities, rtol=1e-5)
        correct_windows += int((window_probs.argmax(axis=1) == label).sum())
    assert result.num_units == sum(len(c["audio"]) // 256 for c in clips.values())
    assert result.unit_accuracy == pytest.approx(correct_windows / result.num_units)
    assert result.extra_metrics == {"window_accuracy": result.unit_accuracy}


def test_predict_clip_refuses_bad_audio(cnn1d_repo):
    predictor = predictors.load_predictor(cnn1d_repo / "models/cnn1d")
    with pytest.raises(DataError, match="too short for model 'cnn1d': it needs at least 256 samples"):
        predictor.predict_audio(np.zeros(255, np.int16))
    with pytest.raises(DataError, match="expected mono int16 samples at 4000 Hz"):
        predictor.predict_audio(np.zeros(1000, np.float32))
    with pytest.raises(DataError, match="models/none/preprocessing.json does not exist") as missing:
        predictors.load_predictor(cnn1d_repo / "models/none")
    assert "dvc repro" not in str(missing.value)
    assert missing.value.path == str(cnn1d_repo / "models/none/preprocessing.json")


def test_clip_probabilities_mean_and_sigmoid_normalisation():
    units = np.array([[0.2, 0.4], [0.4, 0.8], [0.9, 0.3]])
    np.testing.assert_allclose(predictors.clip_probabilities(units, np.array([0, 0, 1]), 2), [[0.3, 0.6], [0.9, 0.3]])
    np.testing.assert_allclose(
        predictors.clip_probabilities(units, np.array([0, 0, 1]), 2, "sigmoid"), [[1 / 3, 2 / 3], [0.75, 0.25]]
    )


def test_cnn2d_with_sigmoid_loss(tmp_path):
    params = copy.deepcopy(TINY_PARAMS)
    params["cnn2d"]["loss"] = "sigmoid"
    write_tiny_repo(tmp_path, params)
    call_stage(tmp_path, "train_keras", "cnn2d")
    assert sorted(directory_bytes(tmp_path / "dvclive/cnn2d")) == DVCLIVE_FILES
    model = keras.models.load_model(tmp_path / "models/cnn2d/model.keras")
    assert model.get_layer("genre").activation.__name__ == "sigmoid"
    assert read_model_folder(tmp_path / "models/cnn2d").preprocessing["output_activation"] == "sigmoid"
    predictor = predictors.load_predictor(tmp_path / "models/cnn2d")
    result = predictor.predict_split(tmp_path / "data", "val")
    assert result.unit_name == "segment" and result.num_units == 2 * len(result.track_ids)
    assert predictor.preprocessing["input"] == "audio_segments" and model.input.dtype == "int16"
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, rtol=1e-6)
    clip = next(
        c
        for c in tfdata.read_clips(tmp_path / "data/shards", "val").as_numpy_iterator()
        if c["track_id"].decode() == result.track_ids[0]
    )
    segment_probs = model.predict_on_batch(tfdata.units_of_clip(clip["audio"], predictor.preprocessing))
    mean = segment_probs.mean(axis=0)
    np.testing.assert_allclose(result.probabilities[0], mean / mean.sum(), rtol=1e-5)
    # the logged val loss is the binary cross-entropy of the sigmoid outputs on one-hot labels
    metrics = json.loads((tmp_path / "dvclive/cnn2d/metrics.json").read_text())
    batches = list(tfdata.validation_dataset(tmp_path / "data/shards", "val", predictor.preprocessing, 3, 8))
    probs = np.clip(np.concatenate([model.predict_on_batch(x) for x, _ in batches]), 1e-7, 1 - 1e-7)
    onehot = np.concatenate([y.numpy() for _, y in batches])
    binary_ce = -np.mean(onehot * np.log(probs) + (1 - onehot) * np.log(1 - probs))
    assert metrics["eval"]["loss"] == pytest.approx(binary_ce, rel=1e-4)
    assert math.isfinite(metrics["train"]["loss"])


@pytest.mark.slow  # trains MobileNetV2 twice (fit, then fine-tuning): half a minute of graph building
def test_mobilenet_from_a_weights_file_with_fine_tuning(tmp_path):
    from dvclive import Live

    info = write_tiny_shards(tmp_path / "shards")
    keras.utils.set_random_seed(5)
    source = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None, pooling="avg"
    )
    weights_file = tmp_path / "base.weights.h5"
    source.save_weights(weights_file)
    settings = dict(
        TINY_PARAMS["mobilenet"],
        weights=str(weights_file),
        epochs=1,
        fine_tune_layers=3,
        fine_tune_epochs=1,
        mixed_precision=True,
    )
    messages = []
    live = Live(dir=str(tmp_path / "live"), dvcyaml=False, save_dvc_exp=False)
    result = training.train_model(
        "mobilenet",
        settings,
        tmp_path / "shards",
        info,
        callbacks=[live_steps(live)],
        log=messages.append,
    )
    assert any("mixed_precision: true is ignored" in m for m in messages)
    assert any("fine-tuning the top 3 layers" in m for m in messages)
    assert result.epochs_run == 2
    base = keras_models.mobilenet_base(result.model)
    assert len(base.layers) == len(source.layers)
    compared = 0
    for layer, source_layer in zip(base.layers[:-3], source.layers[:-3]):  # the frozen part: still the file's
        for variable, saved in zip(layer.weights, source_layer.weights, strict=True):
            np.testing.assert_array_equal(variable.numpy(), saved.numpy())
            compared += 1
    assert compared > 100
    rows = read_tsv(tmp_path / "live/plots/metrics/eval/loss.tsv")
    assert [int(r["step"]) for r in rows] == [0, 1]  # the fine-tuning epoch continues the steps
    assert all(math.isfinite(float(r["loss"])) for r in rows)


class CopyBackupAt(keras.callbacks.Callback):
    """At the start of the ``at``-th epoch over all fits, copies the backup folder ``source`` to
    ``target``: what a run killed at that moment (SIGKILL, which runs no clean-up) leaves on disk."""

    def __init__(self, source: Path, target: Path, at: int):
        super().__init__()
        self.source, self.target, self.at, self.begun = source, target, at, 0

    def on_epoch_begin(self, epoch, logs=None):
        if self.begun == self.at:
            shutil.copytree(self.source, self.target)
        self.begun += 1


@pytest.mark.slow  # trains MobileNetV2 with fine-tuning, then the fine-tuning's last epoch again
def test_a_run_killed_while_fine_tuning_resumes_in_the_second_fit(tmp_path):
    """MobileNetV2, 2 epochs then 2 of fine-tuning: the backup as a run killed in the fine-tuning's
    second epoch leaves it, resumed; the kept weights, best epoch and logs are those of the
    uninterrupted run."""
    info = write_tiny_shards(tmp_path / "shards")
    settings = dict(TINY_PARAMS["mobilenet"], epochs=2, fine_tune_layers=3, fine_tune_epochs=2, patience=5)

    def train(backup, extra=()):
        messages = []
        result = training.train_model(
            "mobilenet", settings, tmp_path / "shards", info, callbacks=list(extra), log=messages.append, backup=backup
        )
        return result, messages

    killed_at = CopyBackupAt(tmp_path / "whole", tmp_path / "killed", at=3)
    whole, _ = train(resume.TrainingBackup(tmp_path / "whole"), [killed_at])
    backup = resume.TrainingBackup(tmp_path / "killed")
    state = backup.load()
    assert (state.phase, state.epoch, state.first_epoch) == (1, 1, 2)
    resumed, messages = train(backup)
    assert any("3 epoch(s) done (fit 1); training on from epoch 3" in m for m in messages)
    assert any("fine-tuning the top 3 layers" in m for m in messages)
    assert (resumed.best_epoch, resumed.best_logs, resumed.epochs_run) == (
        whole.best_epoch,
        whole.best_logs,
        whole.epochs_run,
    )
    assert training.weights_fingerprint(resumed.model) == training.weights_fingerprint(whole.model)


def test_fine_tune_layers_beyond_the_base_are_refused(tmp_path):
    info = write_tiny_shards(tmp_path / "shards")
    settings = dict(TINY_PARAMS["mobilenet"], fine_tune_layers=1000, fine_tune_epochs=1)
    with pytest.raises(ParamError, match="fine_tune_layers = 1000, but the MobileNetV2 base has only"):
        training.train_model("mobilenet", settings, tmp_path / "shards", info, log=lambda m: None)


# ---- learning ----------------------------------------------------------------------------


def test_cnn1d_learns_to_tell_tones_apart(tmp_path):
    info = write_tiny_shards(tmp_path / "shards", seed=1, clips_per_label={"train": 20, "val": 6, "test": 2})
    settings = dict(
        TINY_PARAMS["cnn1d"],
        conv_filters=[16, 8],
        epochs=30,
        patience=30,
        learning_rate=0.003,
        batch_size=16,
        dropout=0.2,
    )
    result = training.train_model("cnn1d", settings, tmp_path / "shards", info, log=lambda m: None)
    val = predictors.KerasPredictor(result.model, result.preprocessing, LABELS).predict_split(tmp_path, "val")
    clip_accuracy = np.mean(val.probabilities.argmax(axis=1) == val.y_true)
    assert val.clip_accuracy == clip_accuracy
    assert clip_accuracy >= 0.9 and val.unit_accuracy >= 0.9  # chance: 1/3
    assert result.best_logs["val_accuracy"] == pytest.approx(val.unit_accuracy, abs=1e-6)


class EpochLosses(keras.callbacks.Callback):
    """The training loss of each epoch, as the stage's dvclive callback logs it."""

    def __init__(self):
        super().__init__()
        self.losses: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        self.losses.append(float(logs["loss"]))


@pytest.mark.parametrize("seed", [0, 1])
def test_cnn2d_training_loss_falls_on_tones_whose_genre_is_their_pitch(tmp_path, seed):
    """A task built to be learnt: 3 genres, each a noisy tone at its own pitch (150, 500 and
    1400 Hz, tests/support/keras_fixture.py), 8 training clips each. cnn2d, spectrogram layer included,
    trained by train_model for 10 epochs: its cross-entropy falls from about ln 3 (guessing)
    to a small fraction of it, and it tells the val clips apart. Measured on three seeds, with
    the vector code capped or not: from 1.10-1.13 to 0.001-0.07, every val clip right."""
    info = write_tiny_shards(tmp_path / "shards", seed=2, clips_per_label={"train": 8, "val": 4, "test": 1})
    settings = dict(TINY_PARAMS["cnn2d"], epochs=10, patience=10, learning_rate=0.01, dropout=0.0, seed=seed)
    losses = EpochLosses()
    result = training.train_model("cnn2d", settings, tmp_path / "shards", info, callbacks=[losses], log=lambda m: None)
    assert len(losses.losses) == 10 and all(math.isfinite(loss) for loss in losses.losses)
    assert losses.losses[0] > 0.8 * math.log(3)  # it starts about where guessing is
    assert min(losses.losses[-3:]) < 0.25 * losses.losses[0], losses.losses
    val = predictors.KerasPredictor(result.model, result.preprocessing, LABELS).predict_split(tmp_path, "val")
    assert val.clip_accuracy >= 0.75  # chance: 1/3


def test_a_failed_run_leaves_no_outputs(tmp_path):
    write_tiny_repo(tmp_path)
    for shard in (tmp_path / "data/shards").glob("val-*"):
        shard.unlink()
    with pytest.raises(DataError, match="no 'val-\\*.tfrecord' shards"):
        call_stage(tmp_path, "train_keras", "cnn1d")
    assert not (tmp_path / "dvclive" / "cnn1d").exists()
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_the_library_does_not_import_dvclive(repo_root):
    """dvclive is the stage's business: train_model takes its callback from the caller."""
    for path in (repo_root / "genreclf").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(name.split(".")[0] == "dvclive" for name in names), path
