"""Similar songs: genreclf.models.neighbours on tiny exact cases, the recommend_index stage and
the `python -m genreclf recommend` command."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from genreclf.artifacts import (
    FEATURE_ID_COLUMNS,
    read_similarity_index,
    write_embeddings,
    write_model_folder,
    write_split,
    write_track_info,
)
from genreclf.models import neighbours
from tests.support.helpers import call_stage, make_project, run_genreclf, to_int16, tone, write_audio
from tests.support.sklearn_fixture import FEATURE_COLUMNS, feature_frame, write_feature_tables, write_params

GENRES = ["jazz", "rock"]


def test_a_library_clip_is_its_own_nearest_neighbour_at_similarity_one():
    library = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, 5.0], [1.0, 1.0, 5.0], [-1.0, 0.0, 5.0]])
    index = neighbours.build_index(library)
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1.0)
    assert np.all(index.scale[2] == 1.0) and np.all(index.vectors[:, 2] == 0)  # constant dimension: no NaN
    found, similarity = neighbours.nearest(index, neighbours.query_vectors(index, library), top=1)
    assert found[:, 0].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(similarity[:, 0], 1.0, rtol=1e-6)


def test_ties_go_to_the_earlier_clip_and_excluded_or_missing_ones_are_minus_one():
    index = neighbours.build_index(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
    query = neighbours.query_vectors(index, np.array([[1.0, 0.0]]))
    found, _ = neighbours.nearest(index, query, top=2)
    assert found.tolist() == [[0, 1]]
    groups = (np.array([0]), np.array([0, -1, 0, 0]))  # library clips 0, 2 and 3 in the query's group
    found, similarity = neighbours.nearest(index, query, top=3, groups=groups)
    assert found.tolist() == [[1, -1, -1]]
    assert np.isinf(similarity[0, 1:]).all()


def test_artist_groups_leave_out_the_querys_artist_and_never_for_a_blank_one():
    groups = neighbours.artist_groups(["Ann", "", "Bob"], ["Ann", "Bob", "Ann", ""])
    assert [g.tolist() for g in groups] == [[0, -1, 1], [0, 1, 0, -1]]
    assert neighbours.artist_groups(["", ""], ["", "", ""]) is None  # GTZAN: no artist anywhere
    index = neighbours.build_index(np.eye(4))
    queries = neighbours.query_vectors(index, np.eye(4)[[0, 3, 1]])  # each query is its library clip
    found, _ = neighbours.nearest(index, queries, top=4, groups=groups)
    # Ann's query loses clips 0 and 2 (Ann's); the blank one loses none; Bob's loses clip 1.
    assert [sorted(row[row >= 0].tolist()) for row in found] == [[1, 3], [0, 1, 2, 3], [0, 2, 3]]


def test_groups_are_applied_one_block_of_queries_at_a_time(monkeypatch):
    monkeypatch.setattr(neighbours, "QUERY_BLOCK", 2)
    library = np.random.default_rng(0).normal(size=(9, 3))
    index = neighbours.build_index(library)
    queries = neighbours.query_vectors(index, library[:5])
    groups = (np.array([0, 1, -1, 0, 2]), np.array([0, 0, 1, 1, 2, 2, -1, 0, 1]))
    found, _ = neighbours.nearest(index, queries, top=9, groups=groups)
    for query, row in zip(groups[0], found):
        left_out = set() if query < 0 else set(np.flatnonzero(groups[1] == query).tolist())
        assert set(row[row >= 0].tolist()) == set(range(9)) - left_out


def test_the_querys_own_artist_is_left_out_and_the_next_clips_move_up():
    """Eight clips at 0, 45, ..., 315 degrees (mean 0, equal deviations: the standardised cosine is
    the plain one); the query at 10 degrees is nearest 0, 45, 315, 90. The two nearest are by its
    artist: filtered, 315 and 90 are its neighbours."""
    angles = np.radians(np.arange(0, 360, 45))
    index = neighbours.build_index(np.stack([np.cos(angles), np.sin(angles)], axis=1))
    query = neighbours.query_vectors(index, np.array([[np.cos(np.radians(10)), np.sin(np.radians(10))]]))
    genres = ["a", "a", "b", "b", "b", "b", "b", "a"]
    found, _ = neighbours.nearest(index, query, top=2)
    assert found.tolist() == [[0, 1]] and neighbours.genre_precision(["a"], genres, found) == 1.0
    groups = neighbours.artist_groups(["Ann"], ["Ann", "Ann", "Bob", "", "Cid", "Cid", "Cid", "Bob"])
    found, _ = neighbours.nearest(index, query, top=2, groups=groups)
    assert found.tolist() == [[7, 2]] and neighbours.genre_precision(["a"], genres, found) == 0.5


@pytest.mark.parametrize(
    "neighbour_genres, expected",
    [([["a", "a"], ["b", "a"]], 0.75), ([["b", "b"], ["a", "a"]], 0.0), ([["a", None], ["a", "a"]], 0.25)],
)
def test_genre_precision_is_the_mean_share_of_same_genre_neighbours(neighbour_genres, expected):
    library_genres = ["a", "b"]
    positions = {"a": 0, "b": 1, None: -1}
    found = np.array([[positions[g] for g in row] for row in neighbour_genres])
    assert neighbours.genre_precision(["a", "b"], library_genres, found) == expected


EMBEDDING_COLUMNS = [f"penultimate_{i:03d}" for i in range(8)]


def clustered_tables(rng: np.random.Generator, columns: list[str], noise: float) -> dict:
    """Two genres whose rows sit around two far-apart points, plus ``noise``: with little noise
    every neighbour is of the query's genre; with much, about half."""
    tables = {}
    for split, per_genre in {"train": 6, "val": 2, "test": 2}.items():
        labels = [g for g in range(len(GENRES)) for _ in range(per_genre)]
        centres = np.where(np.array(labels)[:, None] == 0, 1.0, -1.0) * np.linspace(1, 2, len(columns))
        features = centres + noise * rng.standard_normal(centres.shape)
        track_ids = [f"{split}{i:03d}" for i in range(len(labels))]
        tables[split] = feature_frame(track_ids, labels, GENRES, features, columns)
    return tables


CNN2D_RATE = 4000
CNN2D_SETTINGS = {  # a tiny cnn2d (untrained: its layer "dense" is still a deterministic embedding)
    "image_size": 16,
    "n_fft": 128,
    "hop_length": 32,
    "filters": [2, 2],
    "pools": [2, 2],
    "dense_units": 4,
    "dropout": 0.5,
    "loss": "softmax",
    "segments_per_clip": 2,
}
# FMA-like names: most jazz library clips and both jazz queries are by Ann; rock is by others.
ARTISTS = {"jazz": {"train": "Ann", "val": "Bob", "test": "Ann"}, "rock": {"train": "Cid", "val": "Cid", "test": "Dee"}}


def write_cnn2d_and_split(project, tables: dict) -> None:
    """models/cnn2d (seeded, saved as train_keras saves it) and data/split with a 1 s tone WAV
    per clip of ``tables``, at a pitch of its own."""
    import keras

    from genreclf.models import training

    manifest = pd.concat([t.assign(split=split) for split, t in tables.items()], ignore_index=True)
    manifest["path"] = [f"data/wav/{t}.wav" for t in manifest["track_id"]]
    for i, path in enumerate(manifest["path"]):
        write_audio(project / path, to_int16(tone(1.0, CNN2D_RATE, 200.0 + 40 * i)), CNN2D_RATE)
    write_split(project / "data" / "split", manifest, GENRES)
    prep = training.preprocessing_for("cnn2d", CNN2D_RATE, GENRES, CNN2D_SETTINGS)
    keras.utils.set_random_seed(0)
    model = training.build_model("cnn2d", CNN2D_SETTINGS, len(GENRES), prep)
    write_model_folder(project / "models" / "cnn2d", prep, GENRES, lambda path: training.save_model(model, path))


def write_names(project, tables: dict, named: bool) -> None:
    """data/raw/track_info.csv: FMA-like artists (ARTISTS) and titles, or GTZAN's blanks."""
    info = pd.concat([t.assign(split=split) for split, t in tables.items()], ignore_index=True)
    if named:
        info["artist"] = [ARTISTS[g][s] for g, s in zip(info["genre"], info["split"])]
        info["title"] = [f"Song {t}" for t in info["track_id"]]
    write_track_info(project / "data" / "raw" / "track_info.csv", info)


def write_index_inputs(project, named: bool) -> None:
    """What recommend_index reads: the FMA features cluster by genre; the (musicnn-like)
    embeddings are mostly noise; cnn2d is an untrained tiny network; artists where ``named``."""
    features = clustered_tables(np.random.default_rng(0), FEATURE_COLUMNS, 0.01)
    write_feature_tables(project, features)
    embeddings = clustered_tables(np.random.default_rng(1), EMBEDDING_COLUMNS, 100.0)
    write_embeddings(
        project / "data" / "embeddings",
        {split: table[FEATURE_ID_COLUMNS] for split, table in embeddings.items()},
        (row for table in embeddings.values() for row in table[EMBEDDING_COLUMNS].to_numpy()),
        EMBEDDING_COLUMNS,
        16000,
        {"embedding": "penultimate"},
    )
    write_cnn2d_and_split(project, {split: table[FEATURE_ID_COLUMNS] for split, table in features.items()})
    write_names(project, features, named=named)


@pytest.fixture(params=[True, False], ids=["fma-names", "gtzan-no-names"])
def index_project(tmp_path, request):
    """(project, whether its clips have artists): write_index_inputs in a project of the code."""
    project = make_project(tmp_path / "project")
    write_params(project, {"recommend": {"embedding": "features", "top": 3}})
    write_index_inputs(project, named=request.param)
    return project, request.param


def test_stage_indexes_train_and_val_and_scores_the_test_queries(index_project):
    index_project, named = index_project
    call_stage(index_project, "recommend_index")
    metrics = json.loads((index_project / "metrics" / "recommend.json").read_text())
    by_embedding = metrics.pop("genre_precision_at_3_by_embedding")
    filtered_by_embedding = metrics.pop("genre_precision_at_3_artist_filtered_by_embedding")
    # Filtered, a jazz query (by Ann) keeps only the 2 jazz clips by Bob, so its third neighbour
    # is rock: (2/3 + 2/3 + 1 + 1) / 4. Unfiltered, the features give every query its genre.
    filtered = 0.833333 if named else None
    expected = {
        "embedding": "features",
        "library_clips": 16,
        "queries": 4,
        "top": 3,
        "genre_precision_at_3": 1.0,
        "genre_precision_at_3_artist_filtered": filtered,
    }
    assert metrics == expected
    assert set(by_embedding) == {"musicnn", "features", "cnn2d"} == set(filtered_by_embedding)
    assert by_embedding["features"] == 1.0 and by_embedding["musicnn"] < 1.0
    assert 0.0 <= by_embedding["cnn2d"] <= 1.0
    assert filtered_by_embedding["features"] == filtered
    assert (filtered_by_embedding["cnn2d"] is None) == (not named)
    arrays, library, info = read_similarity_index(index_project / "models" / "recommend")
    assert list(library["split"]) == ["train"] * 12 + ["val"] * 4
    artists = ["Ann"] * 6 + ["Cid"] * 6 + ["Bob"] * 2 + ["Cid"] * 2 if named else [""] * 16
    assert list(library["artist"]) == artists
    assert library["title"].iloc[0] == ("Song train000" if named else "")
    assert arrays[2].shape == (16, len(FEATURE_COLUMNS)) and info["embedding"] == "features"
    first = {p.name: p.read_bytes() for p in (index_project / "models" / "recommend").iterdir()}
    call_stage(index_project, "recommend_index")
    assert {p.name: p.read_bytes() for p in (index_project / "models" / "recommend").iterdir()} == first


@pytest.mark.slow
def test_cnn2d_index_and_command_embed_a_clip_the_same_way(index_project):
    """A library clip's own WAV, embedded by the command, finds itself at similarity 1 (the stage
    embedded it the same way); the neighbours name artist and title where the data has them."""
    index_project, named = index_project
    write_params(index_project, {"recommend": {"embedding": "cnn2d", "top": 3}})
    call_stage(index_project, "recommend_index")
    _, library, info = read_similarity_index(index_project / "models" / "recommend")
    assert info["embedding"] == "cnn2d" and info["sample_rate"] == CNN2D_RATE
    assert info["params"] == {"model": "models/cnn2d", "layer": "dense"} and len(info["columns"]) == 4
    result = run_genreclf(index_project, "recommend", "data/wav/train003.wav", "--top", "2")
    lines = result.stdout.splitlines()
    assert lines[0] == "data/wav/train003.wav" and len(lines) == 3
    name = "  Ann - Song train003" if named else ""
    assert lines[1] == f"   1.  1.000  train003  jazz{name}"


def test_command_without_an_index_says_what_to_run(tmp_path):
    project = make_project(tmp_path / "project")
    result = run_genreclf(project, "recommend", "song.wav", check=False)
    assert result.returncode == 1
    assert "models/recommend/vectors.npy does not exist; run `dvc repro recommend_index`" in result.stderr


@pytest.mark.slow
def test_command_answers_real_audio_and_reports_an_unreadable_file(index_project, tmp_path):
    """A tone goes through the real decode and feature path; the index is of clustered features,
    so only the shape of the answer is known: 3 neighbours, most similar first, with genres."""
    index_project, named = index_project
    call_stage(index_project, "recommend_index")
    song = write_audio(tmp_path / "song.wav", tone(3.0, 22050, frequency=440.0), 22050)
    (tmp_path / "broken.mp3").write_bytes(b"not audio")
    result = run_genreclf(
        index_project, "recommend", str(song), str(tmp_path / "broken.mp3"), "--top", "3", check=False
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == str(song) and len(lines) == 4
    similarities = [float(line.split()[1]) for line in lines[1:]]
    assert similarities == sorted(similarities, reverse=True)
    assert all(line.split()[3] in GENRES for line in lines[1:])
    names = [line.split(maxsplit=4)[4:] for line in lines[1:]]  # after rank, similarity, track id, genre
    if named:
        assert all(name[0].endswith(f" - Song {line.split()[2]}") for name, line in zip(names, lines[1:]))
    else:
        assert names == [[]] * 3
    assert f"{tmp_path / 'broken.mp3'}:" in result.stderr
    assert "1 of 2 files could not be answered" in result.stderr


def write_library_song(folder, name: str, frequency: float, artist: str = "") -> None:
    """A 3 s tone at 22050 Hz; an mp3 gets the artist and title of its ID3 tags."""
    from mutagen.easyid3 import EasyID3

    path = write_audio(folder / name, tone(3.0, 22050, frequency=frequency), 22050)
    if artist:
        tags = EasyID3()
        tags.update({"artist": artist, "title": path.stem})
        tags.save(path)


@pytest.mark.slow  # two runs of the stage, each with the tiny cnn2d (TensorFlow)
def test_a_library_folder_is_indexed_incrementally_and_answered_by_path(index_project, tmp_path, caplog):
    """recommend.library set to a folder outside the project: the index holds its songs (path,
    tags); 2 songs added, the rerun embeds those 2 and reuses the 3 others, and writes the index a
    build from scratch writes; the command answers with the library's files."""
    import logging

    index_project, _ = index_project
    music = tmp_path / "my music"
    for i, name in enumerate(["a/one.mp3", "b/two.wav", "three.flac"]):
        write_library_song(music, name, 220.0 * (i + 1), artist="Ann" if name.endswith(".mp3") else "")
    (music / "notes.txt").write_text("not audio")
    write_params(index_project, {"recommend": {"embedding": "features", "top": 3, "library": str(music)}})
    call_stage(index_project, "recommend_index")
    _, library, info = read_similarity_index(index_project / "models" / "recommend")
    assert library["track_id"].tolist() == ["a/one.mp3", "b/two.wav", "three.flac"]
    assert library["artist"].tolist() == ["Ann", "", ""] and library["title"].tolist() == ["one", "", ""]
    assert set(library["split"]) == {"library"} and info["library"] == str(music)
    metrics = json.loads((index_project / "metrics" / "recommend.json").read_text())
    assert metrics["library_clips"] == 3 and metrics["genre_precision_at_3"] == 1.0  # the dataset's test queries

    write_library_song(music, "c/four.wav", 1000.0)
    write_library_song(music, "c/five.mp3", 1500.0, artist="Bob")
    with caplog.at_level(logging.INFO, logger="stages.recommend_index"):
        call_stage(index_project, "recommend_index")
    assert any("embedded 2, reused 3" in r.getMessage() for r in caplog.records)
    incremental = {p.name: p.read_bytes() for p in (index_project / "models" / "recommend").iterdir()}
    shutil.rmtree(index_project / ".genreclf-scratch" / "recommend_library")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="stages.recommend_index"):
        call_stage(index_project, "recommend_index")
    assert any("embedded 5, reused 0" in r.getMessage() for r in caplog.records)
    assert {p.name: p.read_bytes() for p in (index_project / "models" / "recommend").iterdir()} == incremental

    result = run_genreclf(index_project, "recommend", str(music / "c" / "five.mp3"), "--top", "2")
    lines = result.stdout.splitlines()
    assert lines[0] == str(music / "c" / "five.mp3") and len(lines) == 3
    assert lines[1].split(maxsplit=2)[1:] == ["1.000", f"{music.as_posix()}/c/five.mp3  Bob - five"]


def test_cnn2d_is_refused_for_a_library_folder(tmp_path):
    from genreclf.errors import ParamError
    from stages.config import load_config

    write_params(tmp_path, {"recommend": {"embedding": "cnn2d", "top": 3, "library": "/music"}})
    with pytest.raises(ParamError, match="a folder of your own music is indexed with musicnn or features"):
        load_config(tmp_path / "params.yaml")
    write_params(tmp_path, {"recommend": {"embedding": "cnn2d", "top": 3, "library": "data/split"}})
    assert load_config(tmp_path / "params.yaml").recommend.library == "data/split"


@pytest.mark.slow  # dvc repro, three times, each run loading TensorFlow for the tiny cnn2d
def test_dvc_tracks_a_library_folder_outside_the_project(tmp_path):
    """recommend.library outside the project is a dep of recommend_index (dvc.yaml templates
    it): dvc repro reruns the stage when a song is added, and not otherwise."""
    from tests.support.pipeline_project import dvc, git

    music = tmp_path / "music"
    for i, name in enumerate(["one.wav", "two.mp3"]):
        write_library_song(music, name, 300.0 * (i + 1))
    project = make_project(tmp_path / "project", contents="repository")
    write_params(project, {"recommend": {"embedding": "features", "top": 2, "library": str(music)}})
    write_index_inputs(project, named=False)
    git(["init", "-q", "-b", "main"], project)
    first = dvc(["repro", "--single-item", "recommend_index"], project).stdout
    assert "embedded 2, reused 0" in first
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["recommend_index"]
    assert str(music) in [dep["path"] for dep in lock["deps"]]
    again = dvc(["repro", "--single-item", "recommend_index"], project).stdout
    assert "Running stage 'recommend_index'" not in again
    write_library_song(music, "new/three.flac", 900.0)
    added = dvc(["repro", "--single-item", "recommend_index"], project).stdout
    assert "Running stage 'recommend_index'" in added and "embedded 1, reused 2" in added
    _, library, _ = read_similarity_index(project / "models" / "recommend")
    assert library["track_id"].tolist() == ["new/three.flac", "one.wav", "two.mp3"]
