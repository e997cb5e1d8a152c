"""benchmarks/results_table.py: the README's results table from a project's metrics and repro log."""

from __future__ import annotations

import json

from benchmarks.results_table import table, training_times

LOG = """Running stage 'train_sklearn@svm':
> python -m stages.train_sklearn svm
12:00:01 stages.train_sklearn: trained svm in 1.40 s (log only)
Running stage 'train_keras@cnn2d':
> python -m stages.train_keras cnn2d
12:01:00 stages.train_keras: training time: 60.6 s for 8 epoch(s) (log only)
Running stage 'evaluate_keras@cnn2d':
"""


def test_training_times_are_read_per_stage():
    assert training_times(LOG) == {"svm": "1.40 s", "cnn2d": "60.6 s (8 epochs)"}


def test_table_has_a_row_per_model_with_its_unit_accuracy(tmp_path):
    folder = tmp_path / "metrics" / "models"
    folder.mkdir(parents=True)
    (folder / "svm.json").write_text(json.dumps({"accuracy": 0.75, "macro_f1": 0.7031}))
    (folder / "cnn2d.json").write_text(json.dumps({"accuracy": 0.55, "macro_f1": 0.52, "segment_accuracy": 0.5}))
    (folder / "knn.json").write_text(json.dumps({"accuracy": 0.65, "macro_f1": 0.587}))
    rows = table(tmp_path, LOG).splitlines()[2:]
    assert rows == [
        "| cnn2d | 0.550 | 0.520 | segment 0.500 | 60.6 s (8 epochs) |",
        "| knn | 0.650 | 0.587 |  | not in the log |",
        "| svm | 0.750 | 0.703 |  | 1.40 s |",
    ]
