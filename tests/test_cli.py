"""The `genreclf` command (genreclf/cli.py) on a small project: a logreg trained by the real stage
on FMA-feature tables, and a similar-song index of a library folder of real clips."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import soundfile as sf

from genreclf import cli, recommend
from genreclf.artifacts import write_similarity_index
from genreclf.features import fma_features as features
from genreclf.models import neighbours
from tests.support.helpers import ROOT, call_stage, run_command, subprocess_env
from tests.support.sklearn_fixture import FEATURE_COLUMNS, feature_frame, write_feature_tables, write_params

GENRES = ["jazz", "rock"]
FMA_MP3 = "fma/fma_audio/000/000182.mp3"  # not in the project's data
RATE = 22050


@pytest.fixture(scope="module")
def project(tmp_path_factory, gtzan_mini):
    """models/logreg trained on two clusters of feature rows, its metrics and the summary; a
    library folder of three 5 s GTZAN pieces (one tagged FLAC) indexed on the FMA features."""
    from mutagen.flac import FLAC

    root = tmp_path_factory.mktemp("cli")
    write_params(root)
    rng = np.random.default_rng(0)
    tables = {}
    for split in ("train", "val", "test"):
        labels = [0, 0, 0, 1, 1, 1]
        rows = np.where(np.array(labels)[:, None] == 0, 1.0, -1.0) + 0.1 * rng.standard_normal(
            (6, len(FEATURE_COLUMNS))
        )
        tables[split] = feature_frame([f"{split}{i}" for i in range(6)], labels, GENRES, rows, FEATURE_COLUMNS)
    write_feature_tables(root, tables)
    call_stage(root, "train_sklearn", "logreg")
    (root / "metrics" / "models").mkdir(parents=True)
    (root / "metrics" / "models" / "logreg.json").write_text(json.dumps({"accuracy": 0.75}))
    (root / "metrics" / "summary.json").write_text(json.dumps({"models": {"logreg": {"accuracy": 0.75}}}))
    library = root.parent / "cli music"
    for relative, genre in [("a/one.wav", "jazz"), ("b/two.flac", "metal"), ("three.wav", "blues")]:
        samples, rate = sf.read(gtzan_mini / genre / f"{genre}.00001.wav", dtype="int16")
        (library / relative).parent.mkdir(parents=True, exist_ok=True)
        sf.write(library / relative, samples[: 5 * rate], rate)
    tags = FLAC(library / "b" / "two.flac")
    tags.update({"artist": "Dio", "title": "Holy Diver"})
    tags.save()
    info = {
        "embedding": "features",
        "sample_rate": RATE,
        "params": features.params_to_dict(features.DEFAULT_PARAMS),
        "columns": FEATURE_COLUMNS,
        "library": library.as_posix(),
    }
    build = recommend.build_library(library, info, root / ".genreclf-scratch" / "recommend_library")
    index = neighbours.build_index(build.vectors)
    write_similarity_index(root / "models" / "recommend", index.mean, index.scale, index.vectors, build.table, info)
    (root / "unreadable.wav").write_bytes(b"RIFF but not really audio" * 10)
    return root


def genreclf(project, *args, cwd=None):
    """`python -m genreclf.cli args` in ``cwd`` (default: the project), as a user runs it."""
    env = dict(subprocess_env(), PYTHONPATH=str(ROOT))
    return run_command([sys.executable, "-m", "genreclf.cli", *args], cwd or project, env=env, check=False)


@pytest.mark.slow  # its process loads scikit-learn and librosa (seconds)
def test_predict_answers_an_mp3_not_in_the_data_and_reports_an_unreadable_file(project, shared_data):
    mp3 = str(shared_data / FMA_MP3)
    proc = genreclf(project, "predict", mp3, "unreadable.wav", "--top", "2", "--json")
    assert proc.returncode == 1
    document = json.loads(proc.stdout)  # one JSON document, nothing else on stdout
    assert document["model"] == "logreg"
    [answer] = document["predictions"]
    assert answer["file"] == mp3 and [g["genre"] for g in answer["genres"]] in (GENRES, GENRES[::-1])
    assert sum(g["probability"] for g in answer["genres"]) == pytest.approx(1.0, abs=1e-6)
    [error] = document["errors"]
    assert error["file"] == "unreadable.wav" and error["error"].startswith("unreadable.wav: cannot decode audio")
    error_lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert error_lines == [f"genreclf: error: {error['error']}"] and "Traceback" not in proc.stderr


def test_predict_prints_a_table_by_default(project, shared_data, capsys, monkeypatch):
    monkeypatch.chdir(project)
    assert cli.main(["predict", str(shared_data / FMA_MP3), "--model", "logreg"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(shared_data / FMA_MP3) and len(lines) == 3  # both genres: fewer than --top 3
    assert [line.split()[1] for line in lines[1:]] in (GENRES, GENRES[::-1])


def test_recommend_answers_with_the_library_files_by_path_and_tags(project, gtzan_mini, capsys, monkeypatch):
    """A library song's own source clip finds that song first; the rows name the files and the tags."""
    monkeypatch.chdir(project)
    metal = shutil.copy(gtzan_mini / "metal" / "metal.00001.wav", project / "query.wav")
    assert cli.main(["recommend", str(metal), "unreadable.wav", "--top", "3", "--json"]) == 1
    out = capsys.readouterr()
    document = json.loads(out.out)
    library = (project.parent / "cli music").as_posix()
    assert document["library"] == library and document["embedding"] == "features"
    [answer] = document["answers"]
    songs = answer["songs"]
    assert [s["path"] for s in songs][0] == f"{library}/b/two.flac"
    assert {s["path"] for s in songs} == {f"{library}/{p}" for p in ("a/one.wav", "b/two.flac", "three.wav")}
    assert (songs[0]["artist"], songs[0]["title"]) == ("Dio", "Holy Diver")
    assert [s["similarity"] for s in songs] == sorted((s["similarity"] for s in songs), reverse=True)
    assert document["errors"][0]["file"] == "unreadable.wav"
    assert "genreclf: error: unreadable.wav: cannot decode audio" in out.err

    assert cli.main(["recommend", str(metal), "--top", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(metal) and lines[1].split(maxsplit=2)[2] == f"{library}/b/two.flac  Dio - Holy Diver"


def test_models_lists_the_trained_ones_their_accuracy_and_the_default(project, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # elsewhere: --project names the project
    assert cli.main(["models", "--project", str(project), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document == {"models": [{"name": "logreg", "family": "sklearn", "accuracy": 0.75}], "default": "logreg"}
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--project", str(project), "models"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:3] == ["logreg", "sklearn", "0.750"] and "predict's default" in table[1]


def test_outside_a_project_is_one_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["models"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"genreclf: error: {tmp_path.resolve()}: not a genreclf project")
    assert "pass --project DIR" in err


@pytest.mark.slow  # builds a wheel and runs the installed command in a process of its own
def test_the_package_installs_a_genreclf_command(project, tmp_path):
    """A wheel of the package (built as `pip install .` builds it, from a copy of the sources)
    holds the library only and a `genreclf` console script that runs."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "genreclf", source / "genreclf", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(tmp_path / "dist"), str(source)]
    run_command(build, tmp_path, timeout=300)
    [wheel] = (tmp_path / "dist").glob("genreclf-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "genreclf/cli.py" in names and not any(n.startswith(("stages/", "tests/", "benchmarks/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "genreclf = genreclf.cli:run" in zipfile.ZipFile(wheel).read(entry_points).decode()
    site = tmp_path / "site"
    run_command([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], tmp_path, timeout=300)
    env = dict(subprocess_env(), PYTHONPATH=str(site))
    proc = subprocess.run(
        [str(site / "bin" / "genreclf"), "--project", str(project), "models"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].startswith("logreg")
