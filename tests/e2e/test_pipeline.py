"""End to end: the real `dvc repro` of this repository on ../shared/data/gtzan_mini.

Every test here asks for the one project that the `pipeline_project` fixture builds (a file
lock lets the first test process build it and the others wait): what the repro ran and wrote,
the models it trained, and (the last section) that each stage depends on exactly the data it
reads.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.support.helpers import run_genreclf, set_params
from tests.support.pipeline_project import SMALL_PARAMS, clone_with_shared_cache, dvc, git, reads_log, stages_ran
from tests.test_stage_deps import PROJECT_PACKAGES, STAGES, dep_paths

pytestmark = pytest.mark.slow

PARAMS = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
SKLEARN, KERAS = PARAMS["models"]["sklearn"], PARAMS["models"]["keras"]
# models.sklearn maps each model to its table: its keys
MODELS = [*SKLEARN, *KERAS]
FEATURE_MODELS = [m for m, table in SKLEARN.items() if table == "features"]
DATA_STAGES = ["fetch", "convert", "split", "shard", "features", "pretrained", "embed"]


def test_first_repro_ran_every_stage(pipeline_project):
    log = (pipeline_project.parent / "first_repro.log").read_text()
    expected = (
        set(DATA_STAGES)
        | {f"{stage}_sklearn@{m}" for m in SKLEARN for stage in ("train", "evaluate")}
        | {f"{stage}_keras@{m}" for m in KERAS for stage in ("train", "evaluate")}
        | {"summarize", "recommend_index"}
    )
    assert stages_ran(log) == expected


def test_repro_leaves_nothing_untracked(pipeline_project):
    """Every output is a DVC output, already git-ignored: git sees only the new dvc.lock."""
    status = (pipeline_project.parent / "first_repro_git_status.txt").read_text().splitlines()
    assert status == ["?? dvc.lock"]


def test_outputs_are_the_cache_objects_not_copies(pipeline_project):
    """Every file DVC tracks in the workspace is a hard link to its cache object (.dvc/config
    cache.type), so the decoded audio is on disk twice (data/wav, data/shards), not four times."""
    cache = pipeline_project / ".dvc" / "cache" / "files" / "md5"
    cache_inodes = {p.stat().st_ino for p in cache.rglob("*") if p.is_file()}
    for folder in ("data/wav", "data/shards", "models", "evaluation"):
        # (the .gitignore files are DVC's own, written beside the outputs, not outputs)
        files = [p for p in (pipeline_project / folder).rglob("*") if p.is_file() and p.name != ".gitignore"]
        assert files, folder
        copies = [p.relative_to(pipeline_project).as_posix() for p in files if p.stat().st_ino not in cache_inodes]
        assert copies == [], f"{folder}: {len(copies)} of {len(files)} files are copies, e.g. {copies[:3]}"


def test_split_is_exactly_64_16_20_with_no_overlap(pipeline_project):
    manifest = pd.read_csv(pipeline_project / "data/split/split_manifest.csv", dtype={"track_id": str})
    assert len(manifest) == 100
    assert manifest["split"].value_counts().to_dict() == {"train": 64, "val": 16, "test": 20}
    assert manifest["track_id"].is_unique
    assert manifest["path"].is_unique
    labels = json.loads((pipeline_project / "data/split/labels.json").read_text())
    assert labels == sorted(manifest["genre"].unique()) and len(labels) == 10


def test_second_repro_runs_nothing(pipeline_project):
    out = dvc(["repro"], pipeline_project).stdout
    assert stages_ran(out) == set()
    assert "Data and pipelines are up to date" in out
    assert "up to date" in dvc(["status"], pipeline_project).stdout.lower()


@pytest.mark.parametrize("model", MODELS)
def test_every_models_metrics_are_those_of_its_test_predictions(pipeline_project, model):
    """The metrics are computed from the predictions the model made on the 20 test clips.
    (Not whether they beat chance: trained from scratch on 64 clips, a network's accuracy is
    whatever its CPU's rounding leads it to; MobileNetV2 scored 0.25 on one and 0.10 on another.)"""
    from sklearn.metrics import f1_score

    metrics = json.loads((pipeline_project / f"metrics/models/{model}.json").read_text())
    predictions = pd.read_csv(pipeline_project / f"evaluation/{model}/test_predictions.csv")
    assert metrics["n_test"] == len(predictions) == 20
    probs = predictions[[c for c in predictions.columns if c.startswith("prob_")]].to_numpy()
    genres = [c.removeprefix("prob_") for c in predictions.columns if c.startswith("prob_")]
    chosen = probs[range(len(probs)), [genres.index(g) for g in predictions["predicted"]]]
    assert (chosen == probs.max(axis=1)).all()  # the predicted genre is the most probable one
    assert metrics["accuracy"] == pytest.approx((predictions["actual"] == predictions["predicted"]).mean())
    actual, predicted = predictions["actual"], predictions["predicted"]
    macro_f1 = f1_score(actual, predicted, labels=genres, average="macro", zero_division=0)
    assert metrics["macro_f1"] == pytest.approx(macro_f1)


@pytest.mark.parametrize("model", KERAS)
def test_every_keras_model_trained_and_kept_its_best_val_epoch(pipeline_project, model):
    """From the stage's dvclive logs: every epoch's losses are finite, the training loss fell,
    and the epoch whose weights were kept is the one with the lowest val loss."""
    from tests.test_training import read_tsv

    live = pipeline_project / "dvclive" / model
    curves = {
        name: [float(row[Path(name).stem]) for row in read_tsv(live / "plots" / "metrics" / name)]
        for name in ("train/loss.tsv", "eval/loss.tsv", "train/accuracy.tsv", "eval/accuracy.tsv")
    }
    train_loss, val_loss = curves["train/loss.tsv"], curves["eval/loss.tsv"]
    assert 2 <= len(train_loss) <= SMALL_PARAMS[model]["epochs"]
    assert all(len(curve) == len(train_loss) for curve in curves.values())
    assert all(math.isfinite(v) for v in train_loss + val_loss)
    assert min(train_loss[1:]) < train_loss[0], f"{model}: the training loss never fell: {train_loss}"
    best = json.loads((live / "metrics.json").read_text())["best"]
    assert best["eval"]["loss"] == min(val_loss) == val_loss[best["step"]]
    assert best["train"]["loss"] == train_loss[best["step"]]
    assert 0 <= best["eval"]["clip_accuracy"] <= 1


# The issue's bar is 0.75 on gtzan_mini (default feature params, split 64/16/20, seed 0), and here
# both models score exactly that: 15 of the 20 test clips. Their decisions are not close (the top
# two probabilities of a test clip differ by 0.18 or more), but the SVM's settings, chosen by
# cross-validation on 64 clips, are: with the features moved by 1e-7 of each column's spread (less
# than another CPU's rounding does) it picks C 10, gamma 3e-4 or C 30, gamma 1e-4 instead of the
# latter with another CV score. All 9 such runs (1e-7 to 1e-3, 3 seeds) still scored 0.75, but a
# result exactly on the bar can fall a clip below it elsewhere: the bar keeps two clips of slack.
FEATURE_MODELS_BAR = 0.65


@pytest.mark.parametrize("model", ["svm", "logreg"])
def test_feature_models_reach_the_issues_bar_less_two_clips(pipeline_project, model):
    metrics = json.loads((pipeline_project / f"metrics/models/{model}.json").read_text())
    assert metrics["accuracy"] >= FEATURE_MODELS_BAR, f"{model}: {metrics['accuracy']} (0.75 on the reference machine)"


def test_metrics_show_lists_every_model(pipeline_project):
    out = dvc(["metrics", "show", "--json"], pipeline_project).stdout
    shown = json.dumps(json.loads(out))
    for model in MODELS:
        assert f"metrics/models/{model}.json" in shown
    summary = json.loads((pipeline_project / "metrics/summary.json").read_text())
    assert list(summary["models"]) == MODELS
    table = (pipeline_project / "metrics/summary.md").read_text()
    for model in MODELS:
        assert f"| {model} " in table


def test_mobilenet_without_weights_is_a_clip_model_with_its_spectrogram_layer(pipeline_project):
    """models/mobilenet, trained from scratch (`weights: null`): its folder, its preprocessing
    (one unit per clip: the longest training clip's samples) and, in the saved Keras file, the
    spectrogram layer that makes the mel image from the int16 audio."""
    folder = pipeline_project / "models" / "mobilenet"
    assert sorted(p.name for p in folder.iterdir()) == ["labels.json", "model.keras", "preprocessing.json"]
    prep = json.loads((folder / "preprocessing.json").read_text())
    info = json.loads((pipeline_project / "data/shards/dataset_info.json").read_text())
    size = SMALL_PARAMS["mobilenet"]["image_size"]
    assert (prep["input"], prep["unit"], prep["image_size"]) == ("audio_clip", "clip", size)
    assert prep["clip_samples"] == info["splits"]["train"]["max_samples"]
    with zipfile.ZipFile(folder / "model.keras") as saved:
        layers = json.loads(saved.read("config.json"))["config"]["layers"]
    spectrogram = next(layer["config"] for layer in layers if layer["config"]["name"] == "spectrogram")
    assert spectrogram["mode"] == "mobilenet_image"
    assert (spectrogram["image_size"], spectrogram["n_mels"]) == (prep["image_size"], prep["n_mels"])
    metrics = json.loads((pipeline_project / "metrics/models/mobilenet.json").read_text())
    # one unit per clip: no unit accuracy beside the clip accuracy
    assert set(metrics) == {"accuracy", "family", "macro_f1", "n_test", "per_class"}


def test_plots_hold_every_confusion_matrix_and_training_curve(pipeline_project):
    shown = json.loads(dvc(["plots", "show", "--json"], pipeline_project).stdout)
    plots = json.dumps(shown)
    for model in MODELS:
        assert f"evaluation/{model}/test_predictions.csv" in plots
    for model in KERAS:
        for curve in ("train/loss.tsv", "eval/loss.tsv", "train/accuracy.tsv", "eval/accuracy.tsv"):
            assert f"dvclive/{model}/plots/metrics/{curve}" in plots
    confusion = json.dumps(shown["data"]["evaluation/svm/test_predictions.csv"])
    assert '"rect"' in confusion and '"actual"' in confusion and '"predicted"' in confusion  # a heat map


def test_changing_a_features_param_reruns_only_features_and_what_depends_on_it(pipeline_project, tmp_path):
    """What `dvc repro` would run after a features param changes: features and every stage
    downstream of it (`--dry --force-downstream` lists them without running them), not the
    data stages before it, the musicnn embeddings, the models on them or the Keras models. (Real reruns after a
    param change, and that they run no more than this, are in test_experiments.py and
    test_remote_gcs.py.)"""
    clone = clone_with_shared_cache(pipeline_project, tmp_path / "clone")
    set_params(clone, {"features": {"n_mfcc": 13}})
    status = dvc(["status"], clone).stdout
    assert status.startswith("features:") and "modified:           features" in status, status
    assert "params.yaml" in status and status.count(":\n\tchanged deps:") == 1, status
    out = dvc(["repro", "--dry", "--force-downstream"], clone).stdout
    expected = (
        {"features", "recommend_index"}
        | {f"{stage}_sklearn@{m}" for m in FEATURE_MODELS for stage in ("train", "evaluate")}
        | {"summarize"}
    )
    assert stages_ran(out) == expected
    assert git(["status", "--porcelain"], clone).stdout == " M params.yaml\n"  # a dry run writes nothing


def test_repro_is_byte_identical(pipeline_project, tmp_path):
    """Forcing a model to train again, as DVC runs it, gives the same bytes.

    (The data stages' reruns are checked byte for byte in their own tests: convert, split,
    shard, features, embed, pretrained; all of them together on the Beam engine in
    test_beam_engine.py; the Keras stages' in test_training.py, cnn1d and cnn2d in another process.)
    """
    clone = clone_with_shared_cache(pipeline_project, tmp_path / "clone")
    dvc(["repro", "--force", "--single-item", "train_sklearn@svm"], clone, timeout=1200)
    # dvc.lock records the hash of every output: unchanged means byte-identical outputs.
    diff = git(["diff", "dvc.lock"], clone).stdout
    assert diff == "", diff


def test_recommend_answers_a_real_fma_song_from_the_gtzan_library(pipeline_project, shared_data):
    """An FMA mp3 (not in the library) gets its 10 most similar gtzan_mini clips, with genres."""
    metrics = json.loads((pipeline_project / "metrics" / "recommend.json").read_text())
    assert metrics["library_clips"] == 80 and metrics["queries"] == 20
    assert 0.1 < metrics["genre_precision_at_10"] <= 1.0  # above chance (0.1) on 10 balanced genres
    assert set(metrics["genre_precision_at_10_by_embedding"]) == {"musicnn", "features", "cnn2d"}
    assert metrics["genre_precision_at_10_artist_filtered"] is None  # GTZAN names no artist
    song = shared_data / "fma" / "fma_audio" / "000" / "000182.mp3"
    result = run_genreclf(pipeline_project, "recommend", str(song))
    lines = result.stdout.splitlines()
    assert lines[0] == str(song) and len(lines) == 11
    assert [line.split()[0] for line in lines[1:]] == [f"{rank}." for rank in range(1, 11)]
    genres = set(json.loads((pipeline_project / "data" / "split" / "labels.json").read_text()))
    assert all(line.split()[-1] in genres for line in lines[1:])  # and nothing after it: no artist, no title
    print(f"\n[recommend] genre precision@10 {metrics['genre_precision_at_10']}\n{result.stdout}")


# ---- each stage depends on exactly the data it reads
#
# The end-to-end project's first `dvc repro` ran with tests/support/stage_reads on PYTHONPATH:
# every stage process (and each process it forked) recorded the paths it opened or listed.
# A data dep that the stage never opens makes DVC rerun it for nothing; a file under data/ or
# models/ that it opens without naming it as a dep (or an output) would go stale. The code
# deps are checked without running anything, in test_stage_deps.py.

WATCHED = ("data", "models")  # the folders whose reads must be deps (or the stage's own outputs)


def reads_by_command(log_folder: Path) -> dict[str, set[str]]:
    """{"stages.evaluate svm": {paths opened or listed}} from the per-process logs."""
    reads = defaultdict(set)
    for log in log_folder.glob("*.txt"):
        command, *paths = log.read_text().splitlines()
        reads[command].update(paths)
    return reads


TEMPORARY_NAME = re.compile(r"^\.(.+)\.[^./]+\.tmp$")  # genreclf.io's atomic writes: .<name>.<random>.tmp


def final_path(path: str) -> str:
    """The path a temporary name stands for ("data/.wav.x1.tmp/.a.wav.y2.tmp" -> "data/wav/a.wav")."""
    return "/".join(TEMPORARY_NAME.sub(r"\1", part) for part in path.split("/"))


def under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def stage_command(stage: dict) -> str:
    return stage["cmd"].removeprefix("python -m ")


def out_paths(stage: dict) -> list[str]:
    return [
        o if isinstance(o, str) else next(iter(o)) for key in ("outs", "metrics", "plots") for o in stage.get(key, [])
    ]


@pytest.fixture(scope="module")
def reads(pipeline_project) -> dict[str, set[str]]:
    found = reads_by_command(reads_log(pipeline_project))
    assert found, f"{reads_log(pipeline_project)}: no stage recorded what it read"
    return found


# Deps that the end-to-end project's params do not read, with the params that do. DVC cannot
# choose a dep path by a param's value, so features names the inputs of every features.source;
# tests/test_feature_sources.py checks what each source opens.
READ_UNDER_OTHER_PARAMS = {"features": {"data/raw": "features.source: fma | fma_echonest"}}


@pytest.mark.parametrize("stage_name", sorted(STAGES))
def test_every_data_dep_is_read_by_its_stage(reads, stage_name):
    stage = STAGES[stage_name]
    opened = reads.get(stage_command(stage))
    assert opened, f"{stage_name}: no process of `{stage['cmd']}` recorded a read; did it run?"
    other = READ_UNDER_OTHER_PARAMS.get(stage_name, {})
    data_deps = [dep for dep in dep_paths(stage) if dep.split("/")[0] not in PROJECT_PACKAGES and dep not in other]
    unread = [dep for dep in data_deps if not any(under(path, dep) for path in opened)]
    assert not unread, f"dvc.yaml stage {stage_name}: deps {unread} are never opened by its command; remove them"


@pytest.mark.parametrize("stage_name", sorted(STAGES))
def test_every_data_file_a_stage_opens_is_a_dep_or_its_output(reads, stage_name):
    """(An output is written under a temporary name first: it counts as the output it becomes.)"""
    stage = STAGES[stage_name]
    named = dep_paths(stage) + out_paths(stage)
    opened = {final_path(path) for path in reads.get(stage_command(stage), set())}
    unnamed = sorted(
        path
        for path in opened
        if path.split("/")[0] in WATCHED and "/" in path and not any(under(path, dep) for dep in named)
    )
    assert not unnamed, f"dvc.yaml stage {stage_name}: opens {unnamed[:5]} without naming them as deps or outs"


def test_a_temporary_name_counts_as_the_file_it_becomes():
    assert final_path("data/.wav.x1_b.tmp/.blues.00004.wav.pk3090mp.tmp") == "data/wav/blues.00004.wav"
    assert final_path("models/.svm.q9o1711_.tmp") == "models/svm"
    assert final_path("data/split/train.csv") == "data/split/train.csv"


def test_a_features_param_change_reruns_only_the_stages_that_read_the_features(pipeline_project, tmp_path):
    """Once features has run with a new n_mfcc, `dvc repro --dry` would run exactly the stages
    that read data/features: the feature models' training and scoring, and recommend_index
    (which compares the feature embedding); not musicnn's, whose table is data/embeddings."""
    clone = clone_with_shared_cache(pipeline_project, tmp_path / "clone")
    set_params(clone, {"features": {"n_mfcc": 13}})
    assert stages_ran(dvc(["repro", "--single-item", "features"], clone, timeout=1200).stdout) == {"features"}
    out = dvc(["repro", "--dry"], clone).stdout
    readers = [m for m, table in SKLEARN.items() if table == "features"]
    expected = {f"{stage}_sklearn@{m}" for m in readers for stage in ("train", "evaluate")} | {"recommend_index"}
    assert stages_ran(out) == expected


def test_an_embed_experiment_runs_only_embed_and_what_reads_the_embeddings(pipeline_project, tmp_path):
    """`dvc exp run -S embed.patches_per_clip=2` reruns embed, the models on the embeddings, the
    similar-song index and the summary: no feature model, no Keras model."""
    clone = clone_with_shared_cache(pipeline_project, tmp_path / "clone")
    out = dvc(["exp", "run", "-S", "embed.patches_per_clip=2"], clone, timeout=1800).stdout
    readers = [m for m, table in SKLEARN.items() if table == "embeddings"]
    required = {"embed", "recommend_index"} | {
        f"{stage}_sklearn@{m}" for m in readers for stage in ("train", "evaluate")
    }
    # summarize runs when a model's metrics file changed, which new embeddings need not do
    assert required <= stages_ran(out) <= required | {"summarize"}, out[-3000:]
