"""dvclive for the Keras stages: a Live that writes only metrics and plots, and a Keras callback
whose steps go on across fits and resumed runs. dvclive is imported only when asked for (the
stage checks its params first)."""

from __future__ import annotations

from pathlib import Path


def dvclive_callback(live, epochs_logged: int = 0):
    """dvclive's Keras callback, its steps continued over several fits (MobileNetV2's fine-tuning)
    and after the ``epochs_logged`` of a resumed run: ``live.end()`` at the end of a fit rewinds
    the step to the last epoch logged."""
    from dvclive.keras import DVCLiveCallback

    class DVCLiveSteps(DVCLiveCallback):
        def __init__(self):
            super().__init__(live=live)
            self.epochs_logged = epochs_logged

        def on_train_begin(self, logs=None):
            if self.epochs_logged:
                self.live.step = self.epochs_logged

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            self.epochs_logged += 1

    return DVCLiveSteps()


def open_live(live_dir: Path, resumed: bool):
    """A dvclive Live writing only the metrics and their plots into ``live_dir`` (no dvc.yaml, no
    report, no params, no system monitor), continuing the files there when ``resumed``."""
    from dvclive import Live

    return Live(dir=str(live_dir), resume=resumed, dvcyaml=False, save_dvc_exp=False, report=None, monitor_system=False)
