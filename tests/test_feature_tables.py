"""data/features/<split>.csv: read in chunks, the same values and checks as a whole table."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from genreclf import artifacts
from genreclf.errors import DataError

COLUMNS = ["a_mean_01", "b_std_01"]


def write_table(path, rows: int, labels=None, values=None):
    rng = np.random.default_rng(rows)
    table = pd.DataFrame(
        {
            "track_id": [f"{i:06d}" for i in range(rows)],
            "label": labels if labels is not None else [i % 3 for i in range(rows)],
            "genre": [f"g{i % 3}" for i in range(rows)],
            "a_mean_01": values if values is not None else rng.normal(size=rows),
            "b_std_01": rng.normal(size=rows) * 1e-7,
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return table


@pytest.mark.parametrize("chunk_rows", [1, 2, 7, 512])
def test_chunks_give_the_whole_table_exactly(tmp_path, monkeypatch, chunk_rows):
    table = write_table(tmp_path / "train.csv", 11)
    monkeypatch.setattr(artifacts, "FEATURE_READ_CHUNK_ROWS", chunk_rows)

    split = artifacts.read_feature_split(tmp_path, "train", COLUMNS)

    whole = pd.read_csv(tmp_path / "train.csv", dtype={"track_id": str, "genre": str})
    np.testing.assert_array_equal(split.features, whole[COLUMNS].to_numpy(dtype=np.float64))
    assert split.features.dtype == np.float64 and split.features.shape == (11, 2)
    assert split.track_ids == table["track_id"].tolist() and split.genres == table["genre"].tolist()
    assert split.labels.tolist() == table["label"].tolist()


def test_a_nan_in_a_later_chunk_names_its_clip(tmp_path, monkeypatch):
    values = np.arange(9, dtype=float)
    values[[6, 8]] = [np.nan, np.inf]
    write_table(tmp_path / "val.csv", 9, values=values)
    monkeypatch.setattr(artifacts, "FEATURE_READ_CHUNK_ROWS", 4)

    with pytest.raises(DataError, match=r"val.csv: NaN or infinite features for the clips \['000006', '000008'\]"):
        artifacts.read_feature_split(tmp_path, "val", COLUMNS)


@pytest.mark.parametrize("labels", [[0, 1, 2, 0, -1], [0, 1, 2, 0, None]])
def test_a_bad_label_in_a_later_chunk_is_refused(tmp_path, monkeypatch, labels):
    write_table(tmp_path / "test.csv", 5, labels=labels)
    monkeypatch.setattr(artifacts, "FEATURE_READ_CHUNK_ROWS", 2)

    with pytest.raises(DataError, match="test.csv: the label column must hold non-negative integers"):
        artifacts.read_feature_split(tmp_path, "test", COLUMNS)


def test_a_header_alone_has_no_clips_and_other_columns_are_named(tmp_path):
    write_table(tmp_path / "train.csv", 0)
    with pytest.raises(DataError, match="train.csv: no clips"):
        artifacts.read_feature_split(tmp_path, "train", COLUMNS)
    with pytest.raises(DataError, match=r"missing: \['c_max_01'\], unexpected: \['a_mean_01'\]"):
        artifacts.read_feature_split(tmp_path, "train", ["c_max_01", "b_std_01"])


@pytest.mark.parametrize("tail, lines", [(b"a\nb\n", 2), (b"a\nb", 2), (b"", 0), (b"\n\n", 2)])
def test_count_lines_counts_a_last_line_without_its_newline(tmp_path, monkeypatch, tail, lines):
    monkeypatch.setattr(artifacts, "LINE_COUNT_BYTES", 1)  # blocks that split the text anywhere
    (tmp_path / "t.csv").write_bytes(tail)
    assert artifacts.count_lines(tmp_path / "t.csv") == lines


def test_blank_lines_and_quoted_line_breaks_give_only_the_clips(tmp_path):
    """The matrix is sized by the lines of the file: lines that are not clips leave no rows."""
    path = tmp_path / "train.csv"
    table = write_table(path, 5)
    text = path.read_text().replace("g1", '"g\n1"') + "\n\n"
    path.write_text(text)

    split = artifacts.read_feature_split(tmp_path, "train", COLUMNS)

    np.testing.assert_array_equal(split.features, table[COLUMNS].to_numpy(dtype=np.float64))
    assert split.features.shape == (5, 2) and split.labels.shape == (5,)
    assert split.genres == ["g0", "g\n1", "g2", "g0", "g\n1"]


def test_reading_holds_the_matrix_once(tmp_path, monkeypatch):
    """Traced memory (numpy arrays, pandas' chunks) at its peak while reading: the float64
    matrix and a few chunks, not two copies of the matrix (a list of chunks, then their
    concatenation, took twice the matrix)."""
    rows, columns = 3000, [f"c_{i:03d}" for i in range(200)]
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(rows, len(columns))), columns=columns)
    table.insert(0, "genre", "g")
    table.insert(0, "label", 0)
    table.insert(0, "track_id", [f"{i:06d}" for i in range(rows)])
    table.to_csv(tmp_path / "train.csv", index=False)
    monkeypatch.setattr(artifacts, "FEATURE_READ_CHUNK_ROWS", 100)
    matrix = rows * len(columns) * 8

    tracemalloc.start()
    try:
        split = artifacts.read_feature_split(tmp_path, "train", columns)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert split.features.nbytes == matrix
    assert peak < 1.5 * matrix, f"peak {peak / matrix:.2f} times the matrix"
