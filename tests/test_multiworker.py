"""Training on several workers: the strategy chosen, the strategy.run loop against model.fit, two real workers."""

from __future__ import annotations

import copy
import json
import math
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from genreclf.errors import ParamError
from genreclf.models import keras_models, training
from stages import train_keras
from tests.support.helpers import ROOT, subprocess_env
from tests.support.keras_fixture import TINY_PARAMS, write_tiny_repo
from tests.test_training import DVCLIVE_FILES, MODEL_FILES, read_tsv

WORKER_TIMEOUT_S = 900
FINGERPRINT_RE = re.compile(r"kept weights: sha256 ([0-9a-f]{16})")


# ---- the strategy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tpus, gpus, workers, expected",
    [
        ([], [], 2, "multi_worker"),
        ([], ["GPU:0", "GPU:1"], 3, "multi_worker"),
        ([], ["GPU:0", "GPU:1"], 1, "mirrored"),  # a TF_CONFIG of one worker: as without one
        ([], [], 1, "default"),
    ],
)
def test_several_workers_choose_multi_worker(tpus, gpus, workers, expected):
    assert training.choose_strategy_kind(tpus, gpus, workers) == expected


def test_several_workers_on_a_tpu_are_refused():
    with pytest.raises(ParamError, match="TF_CONFIG names 2 workers, but this machine has a TPU.*unset TF_CONFIG"):
        training.choose_strategy_kind(["TPU:0"], [], 2)


def test_the_stage_refuses_a_malformed_tf_config_first(monkeypatch, tmp_path):
    """Before it reads params.yaml or the shards (none here) and before TensorFlow loads."""
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}}')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamError, match='TF_CONFIG: expected a JSON object with "cluster" and "task"'):
        train_keras.main(["cnn1d"])


# ---- the strategy.run loop does what model.fit does -------------------------------------------


def tiny_model() -> keras.Model:
    inputs = keras.Input(shape=(4,))
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.BatchNormalization()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden))
    keras_models.compile_model(model, learning_rate=0.05)
    return model


def tiny_datasets() -> training.Datasets:
    """30 training examples in batches of 8 (the last one short); the val labels are the opposite
    rule, so the val loss grows as the model learns: early stopping must stop it."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(42, 4)).astype("float32")
    rule = (x[:, 0] + x[:, 1] > 0).astype(int)
    train = tf.data.Dataset.from_tensor_slices((x[:30], np.eye(2, dtype="float32")[rule[:30]])).batch(8)
    val = tf.data.Dataset.from_tensor_slices((x[30:], np.eye(2, dtype="float32")[1 - rule[30:]])).batch(5)
    return training.Datasets(train, val, 30)


class EpochLogs(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append((epoch, {key: float(value) for key, value in logs.items()}))


def train_tiny(kind: str, initial_weights: list, epochs: int = 8, patience: int = 2):
    """(epoch logs, BestWeights, final weights) of a tiny model trained by training.fit on strategy ``kind``'s path."""
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.set_weights(initial_weights)
    best, logs = training.BestWeights(), EpochLogs()
    devices = training.Devices(kind, tf.distribute.get_strategy(), [], 8)
    training.fit(model, tiny_datasets(), epochs, patience, devices, [best, logs])
    training.restore_best_weights(best, lambda message: None)
    return logs.epochs, best, model.get_weights()


def test_the_strategy_run_loop_logs_stops_and_keeps_what_fit_does():
    """The multi-worker path's loop (here under the default strategy) against model.fit, from the same weights."""
    keras.utils.set_random_seed(1)
    initial = tiny_model().get_weights()
    fit_logs, fit_best, fit_weights = train_tiny("default", initial)
    loop_logs, loop_best, loop_weights = train_tiny("multi_worker", initial)
    assert [epoch for epoch, _ in loop_logs] == [epoch for epoch, _ in fit_logs]
    assert len(fit_logs) < 8  # early stopping stopped both, after the same epoch
    for (_, fit_values), (_, loop_values) in zip(fit_logs, loop_logs):
        assert sorted(loop_values) == sorted(fit_values) == ["accuracy", "loss", "val_accuracy", "val_loss"]
        for key in fit_values:
            assert loop_values[key] == pytest.approx(fit_values[key], rel=1e-5, abs=1e-6), key
    val_losses = [values["val_loss"] for _, values in loop_logs]
    assert loop_best.best_epoch == fit_best.best_epoch == int(np.argmin(val_losses))
    assert len(loop_logs) == loop_best.best_epoch + 2 + 1  # patience 2 after the best epoch
    assert loop_best.epochs_done == fit_best.epochs_done == len(loop_logs)
    for loop_array, fit_array in zip(loop_weights, fit_weights, strict=True):
        np.testing.assert_allclose(loop_array, fit_array, rtol=1e-5, atol=1e-6)
    assert not np.allclose(loop_weights[0], initial[0])  # it trained


# ---- two workers on this machine ----------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start_workers(project: Path, logs: Path, model: str, count: int) -> list[subprocess.Popen]:
    """``python -m stages.train_keras <model>`` once per worker of a TF_CONFIG cluster on 127.0.0.1, on the CPU."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(count)]
    env = dict(subprocess_env(), PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    workers = []
    for index in range(count):
        tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        log = open(logs / f"worker{index}.log", "w")
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "stages.train_keras", model],
                cwd=project,
                env=dict(env, TF_CONFIG=json.dumps(tf_config)),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
        log.close()
    return workers


def wait_for(workers: list[subprocess.Popen], logs: Path) -> list[str]:
    """Each worker's output once all have ended; kills them all if one is not done in time (a worker
    left alone waits for the others forever)."""
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    try:
        for worker in workers:
            worker.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    outputs = [(logs / f"worker{index}.log").read_text() for index in range(len(workers))]
    for index, (worker, output) in enumerate(zip(workers, outputs)):
        assert worker.returncode == 0, f"worker {index} exited with {worker.returncode}:\n{output[-4000:]}"
    return outputs


def project_files(project: Path) -> set[str]:
    return {p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()}


@pytest.mark.slow  # two processes that load TensorFlow and train together
def test_two_workers_train_cnn2d_in_step_and_only_the_chief_writes(tmp_path):
    project, logs = tmp_path / "project", tmp_path / "logs"
    logs.mkdir()
    params = copy.deepcopy(TINY_PARAMS)
    params["cnn2d"].update(epochs=2, patience=2)
    write_tiny_repo(project, params)
    before = project_files(project)
    outputs = wait_for(start_workers(project, logs, "cnn2d", 2), logs)
    for output in outputs:
        assert "strategy: multi_worker (2 replica(s)" in output and "global batch 16 = 8 per replica x 2" in output
    assert "task worker 0 of 2 worker(s), the chief" in outputs[0]
    assert "wrote nothing: the chief writes models/cnn2d" in outputs[1]
    fingerprints = [FINGERPRINT_RE.findall(output) for output in outputs]
    assert len(fingerprints[0]) == 1 and fingerprints[0] == fingerprints[1]  # the same weights on both workers
    written = {f"models/cnn2d/{name}" for name in MODEL_FILES} | {f"dvclive/cnn2d/{name}" for name in DVCLIVE_FILES}
    assert project_files(project) == before | written  # the chief's outputs, nothing else (no temp files)
    saved = keras.models.load_model(project / "models/cnn2d/model.keras")
    assert training.weights_fingerprint(saved) == fingerprints[0][0]
    metrics = json.loads((project / "dvclive/cnn2d/metrics.json").read_text())
    losses = [float(row["loss"]) for row in read_tsv(project / "dvclive/cnn2d/plots/metrics/eval/loss.tsv")]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert metrics["best"]["step"] == int(np.argmin(losses)) and metrics["best"]["eval"]["loss"] == min(losses)
    assert 0 <= metrics["best"]["eval"]["clip_accuracy"] <= 1
