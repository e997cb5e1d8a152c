"""Every script of benchmarks/ runs to completion at a smoke size and writes its JSON document.

Each runs as a subprocess (``python benchmarks/X.py ...``), as a user runs it; the tests check
its exit status and the fields of its JSON (benchmarks/record.py's document), not its wording.
The sizes are the smallest that still run every part of a benchmark, so the figures mean nothing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from genreclf.artifacts import EMBEDDINGS_DIR, FEATURE_ID_COLUMNS, write_features
from tests.support.helpers import ROOT, subprocess_env

pytestmark = pytest.mark.slow

SCHEMA = ("benchmark", "command", "date", "commit", "machine", "load_average", "seconds", "figures")
GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def run_benchmark(script: str, *args: str, json_path: Path, timeout: int = 600) -> dict:
    """``python benchmarks/<script>.py ARGS --json JSON_PATH`` from the repository root; its document's figures."""
    command = [sys.executable, f"benchmarks/{script}.py", *args, "--json", str(json_path)]
    result = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    doc = json.loads(json_path.read_text())
    assert tuple(doc) == SCHEMA
    assert doc["benchmark"] == script
    assert doc["command"].startswith(f"python benchmarks/{script}.py")
    assert doc["machine"]["cores"] >= 1 and doc["seconds"] > 0
    return doc["figures"]


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def gtzan_few(tmp_path_factory, gtzan_mini) -> Path:
    """gtzan_mini with 2 clips per genre (20 clips), linked: a quicker --gtzan or --source."""
    folder = tmp_path_factory.mktemp("gtzan_few")
    for genre in GTZAN_GENRES:
        (folder / genre).mkdir()
        for wav in sorted((gtzan_mini / genre).glob("*.wav"))[:2]:
            (folder / genre / wav.name).symlink_to(wav)
    return folder


def test_bench_data(tmp_path, gtzan_mini):
    args = ("--clips", "2", "--workers", "2", "--plain", "--source", str(gtzan_mini))
    figures = run_benchmark("bench_data", *args, json_path=tmp_path / "b.json")
    assert figures["workers"] == 2 and figures["sample_rate_hz"] == 22050
    assert [p["phase"] for p in figures["phases"]] == ["convert", "features", "plain"]
    for phase in figures["phases"]:
        assert phase["clips"] == 2
        for key in (
            "seconds",
            "clips_per_s",
            "cpu_seconds_per_clip",
            "peak_tree_rss_mib",
            "peak_largest_worker_rss_mib",
        ):
            assert is_number(phase[key]) and phase[key] > 0, (phase["phase"], key)
    assert is_number(figures["phases"][1]["steady_clips_per_s"])
    assert [r["clips"] for r in figures["plain_over_features"]] == [2]
    assert is_number(figures["plain_over_features"][0]["speedup"])


def test_bench_features(tmp_path, gtzan_mini):
    args = ("--every", "50", "--source", str(gtzan_mini))
    figures = run_benchmark("bench_features", *args, json_path=tmp_path / "b.json")
    assert figures["clips"] == 2
    for key in ("features_cpu_seconds_per_clip", "plain_cpu_seconds_per_clip"):
        assert figures[key]["mean"] > 0 and figures[key]["median"] > 0
    assert is_number(figures["plain_over_features"])


def test_bench_input(tmp_path):
    """4 synthetic clips of 10 s; the models at params.yaml's settings but with 64 x 64 images, 2 cnn2d segments."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["mobilenet"]["image_size"] = params["cnn2d"]["image_size"] = 64
    params["cnn2d"]["segments_per_clip"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    args = ("--synthetic", "4", "--seconds", "10", "--train-steps", "1", "--min-seconds", "0")
    args += ("--params", str(tmp_path / "params.yaml"))
    figures = run_benchmark("bench_input", *args, json_path=tmp_path / "b.json")
    assert figures["synthetic"] is True and figures["clips"] == 4 and figures["usable_cores"] >= 1
    assert [m["model"] for m in figures["models"]] == ["cnn1d", "mobilenet", "cnn2d"]
    for model in figures["models"]:
        for key in ("input_examples_per_s", "input_cached_examples_per_s", "train_examples_per_s"):
            assert is_number(model[key]) and model[key] > 0, (model["model"], key)
        assert model["cores_for_target"] >= 1 and model["units_per_epoch"] >= 4
    assert "wav_comparison" not in figures


def test_bench_recommend(tmp_path):
    args = ("--clips", "2000", "--dims", "16", "8", "--queries", "5")
    library = ("--songs", "2", "--song-seconds", "7", "--library-songs", "300")
    figures = run_benchmark("bench_recommend", *args, *library, json_path=tmp_path / "b.json")
    assert (figures["clips"], figures["queries"], figures["top"]) == (2000, 5, 10)
    assert [row["dims"] for row in figures["dims"]] == [16, 8]
    assert (figures["library"]["songs"], figures["library"]["dims"]) == (300, 200)
    for row in [*figures["dims"], figures["library"]]:
        for key in ("build_seconds", "index_mb", "median_ms_per_query", "mean_ms_per_query", "batch_ms_per_query"):
            assert is_number(row[key]) and row[key] > 0, key
    embedding = figures["embedding"]
    assert (embedding["songs"], embedding["song_seconds"], embedding["patches"]) == (2, 7.0, 4)  # 2 patches of 3 s
    for key in ("build_seconds", "songs_per_s", "patches_per_s", "model_alone_patches_per_s", "efficiency"):
        assert is_number(embedding[key]) and embedding[key] > 0, key


def test_bench_sklearn_memory(tmp_path, gtzan_few):
    args = ("--clips", "80", "96", "--models", "gnb", "svm", "--svm-grid", "small")
    args += ("--source", str(gtzan_few), "--workdir", str(tmp_path / "work"))
    figures = run_benchmark("bench_sklearn_memory", *args, json_path=tmp_path / "b.json")
    stages = [(s["stage"], s["clips"]) for s in figures["stages"]]
    expected = [
        (f"{m}@{model}", n) for n in (80, 96) for model in ("gnb", "svm") for m in ("train_sklearn", "evaluate")
    ]
    assert stages == expected
    for stage in figures["stages"]:
        assert stage["seconds"] > 0 and stage["peak_tree_rss_mib"] > 0 and stage["processes"] >= 1
    assert {g["stage"] for g in figures["growth"]} == {s for s, _ in expected}
    assert all(is_number(g["tree_growth_percent"]) for g in figures["growth"])
    svm = figures["facts"]["svm@96"]
    assert 0 <= svm["test_accuracy"] <= 1 and 0 < svm["support_vectors"] <= svm["train_clips"]
    assert all(len(digest) == 64 for digests in figures["output_sha256"].values() for digest in digests.values())


def test_gcs_shards(tmp_path, gtzan_few):
    args = ("--gtzan", str(gtzan_few), "--workdir", str(tmp_path / "work"))
    figures = run_benchmark("gcs_shards", *args, json_path=tmp_path / "b.json")
    assert figures["clips"] == 20 and figures["shard_objects"] > 0 and figures["shard_bytes"] > 0
    assert [s["exit_status"] == 0 for s in figures["steps"]] == [True] * 5 + [False]
    assert figures["checks"] and all(figures["checks"].values()), figures["checks"]


def test_gcs_wavs(tmp_path, gtzan_few):
    args = ("--gtzan", str(gtzan_few), "--workdir", str(tmp_path / "work"))
    figures = run_benchmark("gcs_wavs", *args, json_path=tmp_path / "b.json")
    assert figures["clips"] == 20
    assert [s["exit_status"] == 0 for s in figures["steps"]] == [True] * 5 + [False] * 2
    assert len(figures["checks"]) >= 10 and all(figures["checks"].values()), figures["checks"]


def test_musicnn_seeds(tmp_path):
    """On a project holding only embedding tables: 5 genres x 10 clips of 16 values, genre-dependent."""
    rng = np.random.default_rng(0)
    genres = GTZAN_GENRES[:5]
    columns = [f"e{i:02d}" for i in range(16)]
    labels = np.repeat(np.arange(len(genres)), 10)
    ids = pd.DataFrame(
        {"track_id": [f"{i:06d}" for i in range(len(labels))], "label": labels, "genre": [genres[g] for g in labels]}
    )
    values = rng.normal(size=(len(labels), len(columns))) + labels[:, None]
    parts = {"train": ids.iloc[:30], "val": ids.iloc[30:40], "test": ids.iloc[40:]}
    rows = iter(np.concatenate([values[:30], values[30:40], values[40:]]))
    project = tmp_path / "project"
    write_features(
        project / EMBEDDINGS_DIR, {s: p[FEATURE_ID_COLUMNS] for s, p in parts.items()}, rows, columns, 16000, {}
    )
    figures = run_benchmark(
        "musicnn_seeds", "--project", str(project), "--seeds", "0", "1", json_path=tmp_path / "b.json"
    )
    assert (figures["clips"], figures["columns"]) == (50, 16)
    assert [s["seed"] for s in figures["seeds"]] == [0, 1]
    for seed in figures["seeds"]:
        assert seed["test_clips"] == 10 and 0 <= seed["test_right"] <= 10 and seed["C"] > 0
        assert seed["test_accuracy"] == pytest.approx(seed["test_right"] / 10)
    assert 0 <= figures["mean_test_accuracy"] <= 1 and figures["std_test_accuracy"] >= 0


def test_numba_cache_race(tmp_path):
    """One trial of one process on an empty cache (each process compiles every librosa gufunc, some
    20 s of CPU): it may crash (what the benchmark counts), the benchmark may not."""
    args = ("--trials", "1", "--processes", "1")
    figures = run_benchmark("numba_cache_race", *args, json_path=tmp_path / "b.json")
    assert (figures["trials"], figures["processes"], figures["warm"], figures["total_processes"]) == (1, 1, False, 1)
    [statuses] = figures["exit_statuses"]
    assert len(statuses) == 1 and figures["failed_processes"] == sum(status != 0 for status in statuses)


def test_results_table(tmp_path):
    project = tmp_path / "project"
    folder = project / "metrics" / "models"
    folder.mkdir(parents=True)
    (folder / "svm.json").write_text(json.dumps({"accuracy": 0.75, "macro_f1": 0.7031}))
    (folder / "cnn2d.json").write_text(json.dumps({"accuracy": 0.55, "macro_f1": 0.52, "segment_accuracy": 0.5}))
    (folder / "knn.json").write_text(json.dumps({"accuracy": 0.65, "macro_f1": 0.587}))
    (tmp_path / "first_repro.log").write_text(
        "Running stage 'train_sklearn@svm':\n> python -m stages.train_sklearn svm\n"
        "12:00:01 stages.train_sklearn: trained svm in 1.40 s (log only)\n"
        "Running stage 'train_keras@cnn2d':\n> python -m stages.train_keras cnn2d\n"
        "12:01:00 stages.train_keras: training time: 60.6 s for 8 epoch(s) (log only)\n"
        "Running stage 'evaluate_keras@cnn2d':\n"
    )
    figures = run_benchmark("results_table", str(project), json_path=tmp_path / "b.json")
    assert figures["models"] == [
        {
            "model": "cnn2d",
            "accuracy": 0.55,
            "macro_f1": 0.52,
            "unit_accuracy": 0.5,
            "unit": "segment",
            "training_seconds": 60.6,
            "epochs": 8,
        },
        {
            "model": "knn",
            "accuracy": 0.65,
            "macro_f1": 0.587,
            "unit_accuracy": None,
            "unit": None,
            "training_seconds": None,
            "epochs": None,
        },
        {
            "model": "svm",
            "accuracy": 0.75,
            "macro_f1": 0.7031,
            "unit_accuracy": None,
            "unit": None,
            "training_seconds": 1.4,
            "epochs": None,
        },
    ]


TOY_STAGE = """\
import json, pathlib, yaml
seed = yaml.safe_load(open("params.yaml"))["split"]["seed"]
pathlib.Path("metrics").mkdir(exist_ok=True)
summary = {"models": {"svm": {"accuracy": 0.5 + seed / 10}, "knn": {"accuracy": 0.25}}}
pathlib.Path("metrics/summary.json").write_text(json.dumps(summary))
"""


def toy_dvc_project(dest: Path) -> Path:
    """A DVC project whose one stage writes metrics/summary.json from split.seed, after `dvc repro`, committed."""
    dest.mkdir()
    env = subprocess_env()

    def run(*command: str) -> None:
        subprocess.run(command, cwd=dest, env=env, check=True, capture_output=True, timeout=120)

    (dest / "summarize.py").write_text(TOY_STAGE)
    (dest / "params.yaml").write_text(yaml.safe_dump({"split": {"seed": 0}}))
    stage = {"cmd": "python summarize.py", "deps": ["summarize.py"], "params": ["split.seed"]}
    stage["metrics"] = [{"metrics/summary.json": {"cache": False}}]
    (dest / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"summarize": stage}}))
    run("git", "init", "-q", "-b", "main")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run(sys.executable, "-m", "dvc", "repro", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "toy project")
    return dest


def test_split_seeds(tmp_path):
    """On a toy DVC project: the clone, one `dvc exp run` per seed, the summary read back."""
    project = toy_dvc_project(tmp_path / "project")
    args = ("--project", str(project), "--workdir", str(tmp_path / "work"), "--seeds", "0", "3")
    figures = run_benchmark("split_seeds", *args, json_path=tmp_path / "b.json")
    assert figures["seeds"] == [0, 3]
    assert [(r["seed"], r["accuracy"]) for r in figures["runs"]] == [
        (0, {"svm": 0.5, "knn": 0.25}),
        (3, {"svm": 0.8, "knn": 0.25}),
    ]
    svm, knn = figures["models"]
    assert (svm["model"], svm["accuracies"], knn["model"], knn["accuracies"]) == (
        "svm",
        [0.5, 0.8],
        "knn",
        [0.25, 0.25],
    )
    assert svm["mean_accuracy"] == pytest.approx(0.65) and svm["std_accuracy"] == pytest.approx(0.15)
    assert (knn["mean_accuracy"], knn["std_accuracy"]) == (0.25, 0.0)


def test_rehearsal(tmp_path, shared_data):
    """80 clips (the smallest that has val and test clips of every genre), one step per Keras model, small images,
    one musicnn patch and two cnn2d segments per clip; one model of each kind (a feature model, the embedding
    model and one Keras model): every stage of the pipeline, each foreach stage for fewer items."""
    args = ("--clips", "80", "--keras-steps", "1", "--workdir", str(tmp_path / "work"), "--shared", str(shared_data))
    models = {"sklearn": {"svm": "features", "musicnn": "embeddings"}, "keras": ["cnn2d"]}
    settings = ["cnn2d.image_size=64", "cnn2d.segments_per_clip=2", "embed.patches_per_clip=1"]
    settings += [f"models.{kind}={json.dumps(value)}" for kind, value in models.items()]
    for setting in settings:
        args += ("--set", setting)
    figures = run_benchmark("rehearsal", *args, json_path=tmp_path / "b.json", timeout=1200)
    every_stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = {**yaml.safe_load((ROOT / "params.yaml").read_text()), "models": models}
    assert figures["complete"] and figures["clips"] == 80 and figures["keras_step_limit"] == 1
    ran = [s["stage"] for s in figures["stages"]]
    assert ran == figures["planned"]
    expected = set()
    for name, stage in every_stage.items():
        if "foreach" in stage:
            group = stage["foreach"].removeprefix("${").removesuffix("}").split(".")
            items = params[group[0]][group[1]]
            expected |= {f"{name}@{item}" for item in items}
        else:
            expected.add(name)
    assert set(ran) == expected and len(ran) == len(expected)
    for stage in figures["stages"]:
        assert stage["status"] == 0 and stage["seconds"] > 0 and stage["peak_tree_rss_mib"] > 0, stage
        if stage["stage"].startswith("train_keras@"):
            assert stage["steps"] == 1 and stage["first_step_seconds"] > 0, stage
        else:
            assert stage["clips_per_s"] > 0
    work = {s["stage"]: s["work_seconds"] for s in figures["stages"]}
    for name in ("convert", "features", "embed", "train_sklearn@svm"):
        assert work[name] is not None and work[name] > 0, name
    disk = figures["disk"]
    assert disk["workspace_bytes"] > 0 and disk["cache_bytes"] > 0 and disk["source_bytes"] > 0
    assert disk["audio_copies"] >= 1
    book = figures["bookkeeping"]
    assert book["noop_repro_command"] == "dvc repro" and book["noop_repro_reran"] == []
    projection = figures["projection"]
    assert projection["clips"] == 106_574 and set(projection["stages"]) | set(projection["keras"]) == set(ran)
    for key in ("data_hours", "sklearn_hours", "other_hours"):
        assert projection[key]["measured_cores"] > 0, key


def test_bench_resume(tmp_path, gtzan_mini, shared_data):
    """20 clips: convert (of WAVs, and of mp3s), shard, features, embed (one patch a clip) killed at
    about half their clips, cnn1d's training (2 epochs) after its first epoch, then run again."""
    args = ("--clips", "20", "--embed-patches", "1", "--keras-epochs", "2", "--workdir", str(tmp_path))
    args += ("--source", str(gtzan_mini), "--mp3-source", str(shared_data / "fma" / "fma_audio"))
    args += ("--settle-seconds", "0")
    figures = run_benchmark("bench_resume", *args, json_path=tmp_path / "b.json", timeout=1200)
    assert figures["clips"] == 20 and figures["keras_epochs"] == 2 and figures["repeats"] == 1
    stages = ["convert", "convert_mp3", "shard", "features", "embed", "train_keras@cnn1d"]
    assert [s["stage"] for s in figures["stages"]] == [r["stage"] for r in figures["runs"]] == stages
    for stage in figures["stages"]:
        assert stage["same_bytes"], stage
        assert stage["full_seconds"] > 0 and stage["rerun_seconds"] > 0 and stage["killed_at"] > 0, stage
        if stage["unit"] == "clips":
            assert stage["reused"] + stage["computed"] == 20, stage
        elif stage["unit"] == "shards":
            assert stage["killed_at_unit"] == "clips" and stage["reused"] > 0 and stage["computed"] > 0, stage
        else:
            assert stage["unit"] == "epochs" and stage["resumed_from_epoch"] == stage["killed_at"] == 1, stage
            assert stage["reused"] + stage["computed"] == 2, stage
