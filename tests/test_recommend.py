"""Similar songs: genreclf.models.neighbours on tiny exact cases, the recommend_index stage and
the `python -m stages.recommend` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genreclf.artifacts import FEATURE_ID_COLUMNS, read_similarity_index, write_embeddings
from genreclf.models import neighbours
from tests.helpers import call_stage, make_project, run_stage, tone, write_audio
from tests.sklearn_fixture import FEATURE_COLUMNS, feature_frame, write_feature_tables, write_params

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
    exclude = np.array([[True, False, True, True]])
    found, similarity = neighbours.nearest(index, query, top=3, exclude=exclude)
    assert found.tolist() == [[1, -1, -1]]
    assert np.isinf(similarity[0, 1:]).all()


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


@pytest.fixture
def index_project(tmp_path):
    """The FMA features cluster by genre; the (musicnn-like) embeddings are mostly noise."""
    project = make_project(tmp_path / "project")
    write_params(project, {"recommend": {"embedding": "features", "top": 3}})
    write_feature_tables(project, clustered_tables(np.random.default_rng(0), FEATURE_COLUMNS, 0.01))
    embeddings = clustered_tables(np.random.default_rng(1), EMBEDDING_COLUMNS, 100.0)
    write_embeddings(
        project / "data" / "embeddings",
        {split: table[FEATURE_ID_COLUMNS] for split, table in embeddings.items()},
        (row for table in embeddings.values() for row in table[EMBEDDING_COLUMNS].to_numpy()),
        EMBEDDING_COLUMNS,
        16000,
        {"embedding": "penultimate"},
    )
    return project


def test_stage_indexes_train_and_val_and_scores_the_test_queries(index_project):
    call_stage(index_project, "recommend_index")
    metrics = json.loads((index_project / "metrics" / "recommend.json").read_text())
    by_embedding = metrics.pop("genre_precision_at_3_by_embedding")
    expected = {"embedding": "features", "library_clips": 16, "queries": 4, "top": 3, "genre_precision_at_3": 1.0}
    assert metrics == expected
    assert by_embedding["features"] == 1.0 and by_embedding["musicnn"] < 1.0
    arrays, library, info = read_similarity_index(index_project / "models" / "recommend")
    assert list(library["split"]) == ["train"] * 12 + ["val"] * 4
    assert arrays[2].shape == (16, len(FEATURE_COLUMNS)) and info["embedding"] == "features"
    first = {p.name: p.read_bytes() for p in (index_project / "models" / "recommend").iterdir()}
    call_stage(index_project, "recommend_index")
    assert {p.name: p.read_bytes() for p in (index_project / "models" / "recommend").iterdir()} == first


def test_command_without_an_index_says_what_to_run(tmp_path):
    project = make_project(tmp_path / "project")
    result = run_stage(project, "recommend", "song.wav", check=False)
    assert result.returncode == 1
    assert "models/recommend/vectors.npy does not exist; run `dvc repro recommend_index`" in result.stderr


@pytest.mark.slow
def test_command_answers_real_audio_and_reports_an_unreadable_file(index_project, tmp_path):
    """A tone goes through the real decode and feature path; the index is of clustered features,
    so only the shape of the answer is known: 3 neighbours, most similar first, with genres."""
    call_stage(index_project, "recommend_index")
    song = write_audio(tmp_path / "song.wav", tone(3.0, 22050, frequency=440.0), 22050)
    (tmp_path / "broken.mp3").write_bytes(b"not audio")
    result = run_stage(index_project, "recommend", str(song), str(tmp_path / "broken.mp3"), "--top", "3", check=False)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == str(song) and len(lines) == 4
    similarities = [float(line.split()[1]) for line in lines[1:]]
    assert similarities == sorted(similarities, reverse=True)
    assert all(line.split()[-1] in GENRES for line in lines[1:])
    assert f"{tmp_path / 'broken.mp3'}:" in result.stderr
    assert "1 of 2 files could not be answered" in result.stderr
