"""Each stage depends on exactly the data it reads, seen in the real `dvc repro` of gtzan_mini.

The end-to-end project's first `dvc repro` ran with tests/support/stage_reads on PYTHONPATH:
every stage process (and each process it forked) recorded the paths it opened or listed.
A data dep that the stage never opens makes DVC rerun it for nothing; a file under data/ or
models/ that it opens without naming it as a dep (or an output) would go stale. The code
deps are checked without running anything, in test_stage_deps.py.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from tests.support.helpers import set_params
from tests.support.pipeline_project import clone_with_shared_cache, dvc, reads_log, stages_ran
from tests.test_stage_deps import PROJECT_PACKAGES, STAGES, dep_paths

pytestmark = pytest.mark.slow

PARAMS = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
TABLE_OF = PARAMS["models"]["sklearn"]  # each scikit-learn model -> the table it reads
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
    readers = [m for m, table in TABLE_OF.items() if table == "features"]
    expected = {f"{stage}_sklearn@{m}" for m in readers for stage in ("train", "evaluate")} | {"recommend_index"}
    assert stages_ran(out) == expected


def test_an_embed_experiment_runs_only_embed_and_what_reads_the_embeddings(pipeline_project, tmp_path):
    """`dvc exp run -S embed.patches_per_clip=2` reruns embed, the models on the embeddings, the
    similar-song index and the summary: no feature model, no Keras model."""
    clone = clone_with_shared_cache(pipeline_project, tmp_path / "clone")
    out = dvc(["exp", "run", "-S", "embed.patches_per_clip=2"], clone, timeout=1800).stdout
    readers = [m for m, table in TABLE_OF.items() if table == "embeddings"]
    required = {"embed", "recommend_index"} | {
        f"{stage}_sklearn@{m}" for m in readers for stage in ("train", "evaluate")
    }
    # summarize runs when a model's metrics file changed, which new embeddings need not do
    assert required <= stages_ran(out) <= required | {"summarize"}, out[-3000:]
