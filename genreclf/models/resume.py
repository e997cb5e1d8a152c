"""Resuming a Keras training that was killed (a preempted machine, SIGKILL): a backup per epoch.

At the end of every epoch, ``TrainingBackup`` writes what the rest of the run depends on into
a folder of the caller's choosing (the train_keras stage: ``.genreclf-scratch/train_keras/<model>/<key>/``,
outside the stage's outputs, which DVC deletes before it runs a stage; git and DVC ignore it):

- every variable of the model (``model.variables``: weights, BatchNormalization statistics
  and the dropout layers' seed-generator states) and of its optimizer (Adam's step count,
  moments and learning rate), in their order, checked by shape when read back;
- the epoch count, the fit ("phase": 0, or 1 for MobileNetV2's fine-tuning) and whether
  early stopping ended it;
- early stopping's counter (``wait``), best value and best epoch;
- ``BestWeights``' best value, epoch, logs and the best epoch's weights;
- copies of the caller's folders (the stage's dvclive folder: its curves so far).

Each epoch's backup is written under a temporary name and renamed into place
(``epoch-NNNNN``), then the older ones are removed: a kill at any moment leaves the last
complete backup. A new run with a backup continues after its epoch, with the same state.
What else a run depends on is rebuilt the same way: the seeds are params, and the batches
of epoch e come from the seed and e alone (``tfdata.training_epochs``), not from the state
of an iterator; so on the same machine a resumed run writes the same bytes as an
uninterrupted one. A run on several workers (MultiWorkerMirroredStrategy) is not backed up.

The folder is named by ``backup_key``: the stage, the model's settings, the names, sizes and
modification times of the input files and the content of the code, so that a change of params,
data or code never resumes from stale work. The caller removes the folder once its outputs are written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

STATE_FILE = "state.json"
ARRAYS_FILE = "arrays.npz"
FOLDERS = "folders"
EPOCH_DIR_RE = re.compile(r"^epoch-(\d{5,})$")
KEY_DIGITS = 16


def backup_key(stage: str, settings: dict, inputs: Iterable[str | Path], code: Iterable[str | Path] = ()) -> str:
    """The first 16 hex digits of the SHA-256 of the stage, its settings, the name, size and
    modification time of every file under ``inputs`` (a file or a folder; the data, which can be
    large) and the content of the ``code`` files."""
    files = []
    for top in map(Path, inputs):
        for path in sorted([top] if top.is_file() else (p for p in top.rglob("*") if p.is_file())):
            info = path.stat()
            files.append([path.as_posix(), info.st_size, info.st_mtime_ns])
    sources = {Path(path).as_posix(): hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in code}
    text = json.dumps(
        {"stage": stage, "settings": settings, "inputs": files, "code": sources}, sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_DIGITS]


@dataclass
class BackupState:
    """A backup read back: where the run stood after its last complete epoch."""

    folder: Path
    phase: int  # the fit: 0, or 1 for MobileNetV2's fine-tuning
    epoch: int  # epochs done in that fit
    first_epoch: int  # epochs done before that fit (the global number of its first epoch)
    stopped: bool  # early stopping (or a step limit) ended that fit
    stopper: dict  # EarlyStopping's wait, best, best_epoch
    best: dict  # BestWeights' best_value, best_epoch, best_logs, epochs_done

    @property
    def epochs_done(self) -> int:
        return self.first_epoch + self.epoch


def variable_arrays(variables: Iterable) -> dict[str, np.ndarray]:
    """Each variable's value, by its place in the list (auto-generated layer names differ from one
    model build to the next in a process; the order of a model's variables does not)."""
    return {str(i): np.array(variable.numpy()) for i, variable in enumerate(variables)}


def assign_arrays(variables: list, arrays: dict[str, np.ndarray], what: str) -> None:
    """Assign each variable its saved value; ValueError if the backup holds other variables."""
    if len(arrays) != len(variables):
        raise ValueError(f"the backup holds {len(arrays)} variables of the {what}, not {len(variables)}")
    for i, variable in enumerate(variables):
        if arrays[str(i)].shape != tuple(variable.shape):
            raise ValueError(
                f"the backup does not match the {what}: {arrays[str(i)].shape} for {variable.path} {variable.shape}"
            )
        variable.assign(arrays[str(i)])


class TrainingBackup:
    """The backups of one training run in ``folder``; ``folders``: the caller's folders copied with each."""

    def __init__(self, folder: str | Path, folders: dict[str, str | Path] | None = None):
        self.folder = Path(folder)
        self.folders = {name: Path(path) for name, path in (folders or {}).items()}

    def epoch_dirs(self) -> list[Path]:
        """The complete backups, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [p for p in self.folder.iterdir() if EPOCH_DIR_RE.match(p.name) and (p / STATE_FILE).is_file()]
        return sorted(found, key=lambda p: int(EPOCH_DIR_RE.match(p.name).group(1)))

    def load(self) -> BackupState | None:
        """The last complete backup, or None. Temporary folders of an unfinished write are removed."""
        for partial in self.folder.glob(".tmp-*") if self.folder.is_dir() else ():
            shutil.rmtree(partial, ignore_errors=True)
        dirs = self.epoch_dirs()
        if not dirs:
            return None
        state = json.loads((dirs[-1] / STATE_FILE).read_text())
        return BackupState(folder=dirs[-1], **state)

    def restore_folders(self, state: BackupState) -> None:
        """Put the caller's folders back as they were after the backup's epoch."""
        for name, target in self.folders.items():
            shutil.rmtree(target, ignore_errors=True)
            source = state.folder / FOLDERS / name
            if source.is_dir():
                shutil.copytree(source, target)

    def restore_model(self, state: BackupState, model: keras.Model) -> None:
        """The model's and its optimizer's variables as they were after the backup's epoch."""
        with np.load(state.folder / ARRAYS_FILE) as saved:
            arrays = dict(saved)
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        assign_arrays(model.variables, {k[6:]: v for k, v in arrays.items() if k.startswith("model/")}, "model")
        optimizer = {k[10:]: v for k, v in arrays.items() if k.startswith("optimizer/")}
        assign_arrays(model.optimizer.variables, optimizer, "optimizer")

    def best_arrays(self, state: BackupState) -> list[np.ndarray] | None:
        """The saved weights of the best epoch, in ``model.weights`` order, or None if none was kept."""
        with np.load(state.folder / ARRAYS_FILE) as saved:
            count = len([k for k in saved.files if k.startswith("best/")])
            return [saved[f"best/{i}"] for i in range(count)] if count else None

    def save(self, model: keras.Model, state: dict, best_weights: list | None) -> None:
        """One epoch's backup, written under a temporary name and renamed into place; older ones removed."""
        self.folder.mkdir(parents=True, exist_ok=True)
        done = state["first_epoch"] + state["epoch"]
        final = self.folder / f"epoch-{done:05d}"
        partial = self.folder / f".tmp-{done:05d}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        arrays = {f"model/{k}": v for k, v in variable_arrays(model.variables).items()}
        arrays.update({f"optimizer/{k}": v for k, v in variable_arrays(model.optimizer.variables).items()})
        arrays.update({f"best/{i}": np.asarray(w) for i, w in enumerate(best_weights or [])})
        with open(partial / ARRAYS_FILE, "wb") as f:
            np.savez(f, **arrays)
        for name, source in self.folders.items():
            if source.is_dir():
                shutil.copytree(source, partial / FOLDERS / name)
        (partial / STATE_FILE).write_text(json.dumps(state))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        for older in self.epoch_dirs():
            if older != final:
                shutil.rmtree(older, ignore_errors=True)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def json_number(value) -> float | None:
    return None if value is None else float(value)


class BackupCallback(keras.callbacks.Callback):
    """Saves a backup at the end of each epoch of one fit and, when resuming, puts early stopping's
    counters back at its start. It must come after the EarlyStopping and BestWeights callbacks
    (it records their state once they have seen the epoch)."""

    def __init__(
        self,
        backup: TrainingBackup,
        phase: int,
        first_epoch: int,
        stopper: keras.callbacks.EarlyStopping,
        best,
        resumed: BackupState | None,
        log: Callable[[str], None],
    ):
        super().__init__()
        self.backup, self.phase, self.first_epoch = backup, phase, first_epoch
        self.stopper, self.best, self.resumed, self.log = stopper, best, resumed, log

    def on_train_begin(self, logs=None):
        if self.resumed is not None and self.resumed.phase == self.phase:
            saved = self.resumed.stopper
            self.stopper.wait, self.stopper.best_epoch = saved["wait"], saved["best_epoch"]
            self.stopper.best = saved["best"]

    def on_epoch_end(self, epoch, logs=None):
        best = self.best
        state = {
            "phase": self.phase,
            "epoch": epoch + 1,
            "first_epoch": self.first_epoch,
            "stopped": bool(self.model.stop_training),
            "stopper": {
                "wait": int(self.stopper.wait),
                "best": json_number(self.stopper.best),
                "best_epoch": int(self.stopper.best_epoch),
            },
            "best": {
                "best_value": float(best.best_value),
                "best_epoch": best.best_epoch,
                "best_logs": best.best_logs,
                "epochs_done": best.epochs_done,
            },
        }
        self.backup.save(self.model, state, [w for _, w in best.best_weights] if best.best_weights else None)
