"""Scores from predictions (genreclf.evaluation), the evaluate stage and the summarize stage.

The expected numbers are worked out by hand in the comments from a known confusion matrix.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from genreclf.artifacts import read_model_metrics, read_summary, write_model_metrics
from genreclf.errors import DataError
from genreclf.evaluation.metrics import classification_metrics, evaluation_report, predictions_table
from tests.support.helpers import call_stage, run_stage
from tests.support.sklearn_fixture import FEATURE_COLUMNS, feature_frame, write_feature_tables, write_params

LABELS = ["blues", "jazz", "rock"]
B, J, R = 0, 1, 2

# Ten test clips as (actual, predicted). Confusion matrix (rows actual, columns predicted):
#             blues jazz rock   support
#   blues       3     1    0       4
#   jazz        0     3    0       3
#   rock        2     0    1       3
#   predicted   5     4    1
# accuracy  = (3 + 3 + 1) / 10 = 0.7
# blues: precision 3/5 = 0.6,  recall 3/4 = 0.75, F1 = 2*0.6*0.75/1.35 = 2/3
# jazz:  precision 3/4 = 0.75, recall 3/3 = 1,    F1 = 2*0.75/1.75    = 6/7
# rock:  precision 1/1 = 1,    recall 1/3,        F1 = (2/3)/(4/3)    = 1/2
# macro-F1 = (2/3 + 6/7 + 1/2) / 3 = (28 + 36 + 21) / 126 = 85/126
PAIRS = [(B, B)] * 3 + [(B, J)] + [(J, J)] * 3 + [(R, B)] * 2 + [(R, R)]
EXPECTED = {
    "accuracy": 0.7,
    "macro_f1": 85 / 126,
    "n_test": 10,
    "per_class": {
        "blues": {"precision": 0.6, "recall": 0.75, "f1": 2 / 3, "support": 4},
        "jazz": {"precision": 0.75, "recall": 1.0, "f1": 6 / 7, "support": 3},
        "rock": {"precision": 1.0, "recall": 1 / 3, "f1": 0.5, "support": 3},
    },
}


def assert_metrics_equal(actual: dict, expected: dict) -> None:
    assert set(actual) >= set(expected)
    for key, value in expected.items():
        if isinstance(value, dict):
            assert_metrics_equal(actual[key], value)
        else:
            assert actual[key] == pytest.approx(value, abs=1e-12), key


def one_hot_probs(predicted: list[int], n_labels: int = 3) -> np.ndarray:
    probs = np.full((len(predicted), n_labels), 0.1)
    probs[np.arange(len(predicted)), predicted] = 0.8
    return probs


def test_metrics_of_a_known_confusion_matrix():
    y_true = np.array([a for a, _ in PAIRS])
    y_pred = np.array([p for _, p in PAIRS])
    assert_metrics_equal(classification_metrics(y_true, y_pred, LABELS), EXPECTED)


@pytest.mark.parametrize(
    "y_true, y_pred, accuracy, macro_f1, blues",
    [
        # all right: every score is 1
        ([0, 1, 2, 0], [0, 1, 2, 0], 1.0, 1.0, {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}),
        # always "blues": blues precision 2/4, recall 1, F1 2/3; jazz and rock 0 -> macro (2/3)/3
        ([0, 1, 2, 0], [0, 0, 0, 0], 0.5, 2 / 9, {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 2}),
        # all wrong: blues never predicted (precision 0 by convention), recall 0
        ([0, 1, 2, 0], [1, 2, 0, 2], 0.0, 0.0, {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}),
    ],
)
def test_metrics_of_simple_cases(y_true, y_pred, accuracy, macro_f1, blues):
    metrics = classification_metrics(np.array(y_true), np.array(y_pred), LABELS)
    assert metrics["accuracy"] == pytest.approx(accuracy)
    assert metrics["macro_f1"] == pytest.approx(macro_f1)
    assert metrics["per_class"]["blues"] == pytest.approx(blues)
    assert metrics["n_test"] == len(y_true)


def test_predictions_table_names_genres_and_breaks_ties_by_label_order():
    probs = np.array([[0.2, 0.7, 0.1], [0.4, 0.4, 0.2], [0.0, 0.0, 1.0]])
    table = predictions_table(["a", "b", "c"], np.array([1, 1, 0]), probs, LABELS)
    assert list(table.columns) == ["track_id", "actual", "predicted", "prob_blues", "prob_jazz", "prob_rock"]
    assert table["actual"].tolist() == ["jazz", "jazz", "blues"]
    assert table["predicted"].tolist() == ["jazz", "blues", "rock"]  # row b: a tie, the first genre wins
    np.testing.assert_array_equal(table[["prob_blues", "prob_jazz", "prob_rock"]].to_numpy(), probs)


def test_report_adds_family_and_unit_accuracy():
    y_true = [a for a, _ in PAIRS]
    probs = one_hot_probs([p for _, p in PAIRS])
    metrics, table = evaluation_report(
        [f"t{i}" for i in range(10)], y_true, probs, LABELS, family="keras", extra_metrics={"window_accuracy": 0.625}
    )
    assert_metrics_equal(metrics, EXPECTED)
    assert metrics["family"] == "keras" and metrics["window_accuracy"] == 0.625
    assert (table["actual"] == table["predicted"]).mean() == pytest.approx(0.7)


@pytest.mark.parametrize(
    "track_ids, y_true, probs, message",
    [
        (["a", "b"], [0, 1], np.ones((2, 2)), "shape"),
        (["a"], [0, 1], np.ones((2, 3)), "as many"),
        (["a", "b"], [0, 3], np.ones((2, 3)), "0..2"),
        ([], [], np.ones((0, 3)), "no clips"),
        (["a", "b"], [0, 1], np.array([[0.5, np.nan, 0.5], [1, 0, 0]]), "NaN"),
    ],
)
def test_inconsistent_predictions_are_refused(track_ids, y_true, probs, message):
    with pytest.raises(DataError, match=message):
        evaluation_report(track_ids, np.array(y_true, dtype=int), probs, LABELS, family="sklearn")


# ---- the evaluate stage, end to end with a real 1-nearest-neighbour model whose answers are known

COLUMNS = FEATURE_COLUMNS  # the real 518 columns; only the first 6 vary


def prototype(genre: int, offset: float) -> np.ndarray:
    """Clips of one genre sit near 10 * e_genre; ``offset`` (small, in column 3 + genre) tells them apart."""
    point = np.zeros(len(COLUMNS))
    point[genre] = 10.0
    point[3 + genre] = offset
    return point


def clips_frame(clips: list[tuple[str, int, int, float]]):
    """A features table of (track id, label, genre whose prototype it sits near, offset) clips."""
    features = np.stack([prototype(near, offset) for _, _, near, offset in clips])
    return feature_frame([c[0] for c in clips], [c[1] for c in clips], LABELS, features, COLUMNS)


@pytest.fixture(scope="module")
def evaluated_knn(tmp_path_factory):
    project = tmp_path_factory.mktemp("evaluate")
    write_params(project, {"knn": {"n_neighbors": 1, "weights": "uniform"}})
    train = [(f"train.{i}", g, g, o) for i, (g, o) in enumerate((g, o) for g in (B, J, R) for o in (-0.1, 0.1))]
    val = [(f"val.{i}", g, g, 0.0) for i, g in enumerate((B, J, R))]
    # a test clip labelled `actual` placed beside the training clips of `predicted`
    test = [(f"{LABELS[a]}.{i:05d}", a, p, 0.01 * i) for i, (a, p) in enumerate(PAIRS)]
    tables = {split: clips_frame(clips) for split, clips in (("train", train), ("val", val), ("test", test))}
    write_feature_tables(project, tables, COLUMNS)
    call_stage(project, "train_sklearn", "knn")
    call_stage(project, "evaluate", "knn")
    return project


def test_evaluate_stage_scores_match_the_hand_computed_ones(evaluated_knn):
    metrics = read_model_metrics(evaluated_knn / "metrics/models/knn.json")
    assert_metrics_equal(metrics, EXPECTED)
    assert metrics["family"] == "sklearn"


def test_evaluate_stage_json_keys_are_stable_and_sorted(evaluated_knn):
    text = (evaluated_knn / "metrics/models/knn.json").read_text()
    metrics = json.loads(text)
    assert list(metrics) == ["accuracy", "family", "macro_f1", "n_test", "per_class"]
    assert list(metrics["per_class"]) == LABELS
    for scores in metrics["per_class"].values():
        assert list(scores) == ["f1", "precision", "recall", "support"]
    assert text == json.dumps(metrics, indent=2, sort_keys=True) + "\n"


def test_evaluate_stage_predictions_csv(evaluated_knn):
    table = pd.read_csv(evaluated_knn / "evaluation/knn/test_predictions.csv", dtype={"track_id": str})
    assert list(table.columns) == ["track_id", "actual", "predicted", "prob_blues", "prob_jazz", "prob_rock"]
    assert list(zip(table["actual"], table["predicted"])) == [(LABELS[a], LABELS[p]) for a, p in PAIRS]
    # one neighbour: the probability of the predicted genre is 1, the others 0
    predicted_prob = [row[f"prob_{row['predicted']}"] for _, row in table.iterrows()]
    assert predicted_prob == [1.0] * 10
    assert table[["prob_blues", "prob_jazz", "prob_rock"]].sum(axis=1).tolist() == [1.0] * 10


@pytest.mark.slow  # its process loads scikit-learn and librosa (seconds) before the stage refuses
def test_evaluate_stage_takes_only_a_trained_model(evaluated_knn):
    """The model argument's choices are the folders of models/ that hold a trained model."""
    proc = run_stage(evaluated_knn, "evaluate", "svm", check=False)
    assert proc.returncode == 2  # argparse's status for a bad argument
    assert "argument MODEL: invalid choice: 'svm' (choose from 'knn')" in proc.stderr
    assert "Traceback" not in proc.stderr and not (evaluated_knn / "metrics/models/svm.json").exists()


# ---- the summarize stage


def write_metrics(project, name, accuracy, macro_f1, family, supports=(4, 3, 3)):
    per_class = {
        genre: {"f1": 0.5, "precision": 0.5, "recall": 0.5, "support": s} for genre, s in zip(LABELS, supports)
    }
    metrics = {
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "n_test": sum(supports),
        "family": family,
        "per_class": per_class,
    }
    write_model_metrics(project / "metrics" / "models" / f"{name}.json", metrics)


def write_model_lists(project, sklearn, keras):
    """The repository's params with the model lists (the order of the table) that summarize reads;
    each scikit-learn model on the features table (models.sklearn maps a model to its table)."""
    write_params(project, {"models": {"sklearn": dict.fromkeys(sklearn, "features"), "keras": keras}})


def test_summarize_keeps_the_given_order_and_rounds_to_3_decimals(tmp_path):
    write_metrics(tmp_path, "svm", 0.8, 0.79444, "sklearn")
    write_metrics(tmp_path, "cnn1d", 0.4, 0.35, "keras")
    write_metrics(tmp_path, "logreg", 0.75, 0.7456, "sklearn")
    write_model_lists(tmp_path, ["svm", "logreg"], ["cnn1d"])
    run_stage(tmp_path, "summarize")
    summary = read_summary(tmp_path / "metrics/summary.json")
    assert list(summary["models"]) == ["svm", "logreg", "cnn1d"]
    assert summary["models"]["cnn1d"] == {"accuracy": 0.4, "family": "keras", "macro_f1": 0.35, "n_test": 10}
    # 3 genres: a uniform guess is right 1/3 of the time; always "blues" 4/10
    assert summary["chance"] == {"majority_accuracy": 0.4, "uniform_accuracy": pytest.approx(1 / 3)}
    table = (tmp_path / "metrics/summary.md").read_text().splitlines()
    rows = [line for line in table if line.startswith("| ") and "---" not in line]
    assert rows == [
        "| model | family | accuracy | macro-F1 | test clips |",
        "| svm | sklearn | 0.800 | 0.794 | 10 |",
        "| logreg | sklearn | 0.750 | 0.746 | 10 |",
        "| cnn1d | keras | 0.400 | 0.350 | 10 |",
    ]
    chance = [line for line in table if line.startswith("Chance level")]
    assert chance and "0.333" in chance[0] and "3 genres" in chance[0] and "0.400" in chance[0]


def test_summarize_names_a_missing_metrics_file_and_the_stage_to_run(tmp_path):
    write_metrics(tmp_path, "svm", 0.8, 0.79, "sklearn")
    write_model_lists(tmp_path, ["svm"], ["cnn2d"])
    proc = run_stage(tmp_path, "summarize", check=False)
    assert proc.returncode == 1
    assert (
        "metrics/models/cnn2d.json does not exist; run `dvc repro evaluate_sklearn@cnn2d or evaluate_keras@cnn2d`"
        in proc.stderr
    )
    assert not (tmp_path / "metrics/summary.json").exists()


def test_summarize_refuses_metrics_of_different_genres(tmp_path):
    write_metrics(tmp_path, "svm", 0.8, 0.79, "sklearn")
    metrics = read_model_metrics(tmp_path / "metrics/models/svm.json")
    metrics["per_class"]["pop"] = metrics["per_class"].pop("rock")
    write_model_metrics(tmp_path / "metrics/models/cnn1d.json", metrics)
    write_model_lists(tmp_path, ["svm"], ["cnn1d"])
    proc = run_stage(tmp_path, "summarize", check=False)
    assert proc.returncode == 1 and "different genres" in proc.stderr


# ---- the charts of dvc.yaml --------------------------------------------------------------------

VAL_ACCURACY = "dvclive/{}/plots/metrics/eval/accuracy.tsv"
TRAIN_ACCURACY = "dvclive/{}/plots/metrics/train/accuracy.tsv"


def top_level_plots(root) -> dict:
    """dvc.yaml's top-level plots: {id: its properties}."""
    import yaml

    entries = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["plots"]
    return {key: value for entry in entries for key, value in entry.items()}


def test_the_top_level_plots_compare_every_model(repo_root):
    """One chart of every Keras model's val accuracy, train against val for each, and a normalised
    confusion matrix of every model (the plain one is each evaluate stage's own plot)."""
    from genreclf import catalog

    plots = top_level_plots(repo_root)
    assert set(plots["val_accuracy"]["y"]) == {VAL_ACCURACY.format(m) for m in catalog.KERAS_MODELS}
    for model in catalog.KERAS_MODELS:
        assert plots[f"{model}_train_vs_val"]["y"] == {
            TRAIN_ACCURACY.format(model): "accuracy",
            VAL_ACCURACY.format(model): "accuracy",
        }
    for model in (*catalog.SKLEARN_MODELS, *catalog.KERAS_MODELS):
        plot = plots[f"{model}_confusion_normalized"]
        assert plot["template"] == "confusion_normalized" and plot["x"] == "actual"
        assert plot["y"] == {f"evaluation/{model}/test_predictions.csv": "predicted"}


@pytest.mark.slow  # dvc starts in a few seconds
def test_dvc_draws_the_comparisons_from_dvclive_and_evaluate_files(repo_root, tmp_path):
    """`dvc plots show --json` on curves written by dvclive (two Keras models of three) and one
    model's predictions: the comparison charts hold every file there is, the missing one aside."""
    import shutil
    import subprocess
    import sys

    from dvclive import Live

    shutil.copy(repo_root / "dvc.yaml", tmp_path)
    shutil.copy(repo_root / "params.yaml", tmp_path)
    for model in ("cnn1d", "cnn2d"):
        live = Live(dir=str(tmp_path / "dvclive" / model), dvcyaml=False, save_dvc_exp=False, report=None)
        for train, val in [(0.3, 0.25), (0.5, 0.4)]:
            live.log_metric("train/accuracy", train)
            live.log_metric("eval/accuracy", val)
            live.next_step()
        live.end()
    (tmp_path / "evaluation/knn").mkdir(parents=True)
    (tmp_path / "evaluation/knn/test_predictions.csv").write_text(
        "track_id,actual,predicted\n1,rock,rock\n2,rock,jazz\n3,jazz,jazz\n", encoding="utf-8"
    )
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    shown = subprocess.run([*dvc, "plots", "show", "--json"], cwd=tmp_path, capture_output=True, text=True, check=True)
    data = json.loads(shown.stdout)["data"]

    def values(plot_id):
        (chart,) = data[plot_id]
        return chart["content"]["data"]["values"]

    assert len(values("val_accuracy")) == 4  # two epochs of cnn1d and of cnn2d
    assert {float(v["accuracy"]) for v in values("cnn1d_train_vs_val")} == {0.3, 0.5, 0.25, 0.4}
    assert len(values("knn_confusion_normalized")) == 3
    assert not any(data[plot_id] for plot_id in data if plot_id.startswith("mobilenet"))  # no file: no chart
