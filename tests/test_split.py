"""genreclf.data.splits and the split stage: exact sizes, stratification, determinism, FMA's official
split, GTZAN's fault-filtered split."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from genreclf.artifacts import read_split, read_split_clips, write_split
from genreclf.data.splits import (
    FAULT_FILTERED_FILES,
    SPLITS,
    allocate_counts,
    listed_split,
    official_split,
    read_fault_filtered_lists,
    split_totals,
    stratified_split,
)
from genreclf.errors import DataError
from tests.support.helpers import ROOT, make_project, run_stage

FRACTIONS = {"train": 0.64, "val": 0.16, "test": 0.20}
GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]


def gtzan_like(clips_per_genre: int = 10) -> tuple[list[str], list[str]]:
    track_ids = [f"{g}.{i:05d}" for g in GENRES for i in range(clips_per_genre)]
    return track_ids, [t.split(".")[0] for t in track_ids]


def sized_genres(sizes: list[int]) -> tuple[list[str], list[str]]:
    genres = [f"g{g:02d}" for g, size in enumerate(sizes) for _ in range(size)]
    return [f"{i:06d}" for i in range(len(genres))], genres


@pytest.mark.parametrize(
    "num_clips, fractions, expected",
    [
        (100, FRACTIONS, {"train": 64, "val": 16, "test": 20}),
        (10, FRACTIONS, {"train": 6, "val": 2, "test": 2}),
        (7, FRACTIONS, {"train": 5, "val": 1, "test": 1}),
        (1000, {"train": 0.8, "val": 0.1, "test": 0.1}, {"train": 800, "val": 100, "test": 100}),
        (8000, FRACTIONS, {"train": 5120, "val": 1280, "test": 1600}),
        (4, {"train": 0.5, "val": 0.25, "test": 0.25}, {"train": 2, "val": 1, "test": 1}),
        (2, {"train": 0.5, "val": 0.25, "test": 0.25}, {"train": 0, "val": 1, "test": 1}),  # halves round up
    ],
)
def test_split_totals(num_clips, fractions, expected):
    assert split_totals(num_clips, fractions) == expected


def test_100_clips_split_exactly_64_16_20():
    track_ids, genres = gtzan_like()
    splits = stratified_split(track_ids, genres, FRACTIONS, seed=0)

    assert len(splits) == 100 and set(splits) == set(SPLITS)  # each clip in exactly one split
    assert Counter(splits) == {"train": 64, "val": 16, "test": 20}
    per_genre = Counter(zip(genres, splits))
    for genre in GENRES:
        # 10 clips x (0.64, 0.16, 0.20) = (6.4, 1.6, 2.0): each count is the floor or the ceiling
        assert per_genre[genre, "train"] in (6, 7)
        assert per_genre[genre, "val"] in (1, 2)
        assert per_genre[genre, "test"] == 2


def test_deterministic_and_seeded():
    track_ids, genres = gtzan_like()
    first = stratified_split(track_ids, genres, FRACTIONS, seed=0)
    assert stratified_split(track_ids, genres, FRACTIONS, seed=0) == first
    other = stratified_split(track_ids, genres, FRACTIONS, seed=1)
    assert other != first
    assert Counter(other) == Counter(first)


def test_input_order_does_not_matter():
    track_ids, genres = gtzan_like()
    order = np.random.default_rng(5).permutation(len(track_ids))
    shuffled = stratified_split([track_ids[i] for i in order], [genres[i] for i in order], FRACTIONS, seed=3)
    straight = dict(zip(track_ids, stratified_split(track_ids, genres, FRACTIONS, seed=3)))
    assert dict(zip([track_ids[i] for i in order], shuffled)) == straight


@pytest.mark.parametrize("sizes", [[1], [1, 2], [2, 1, 1, 2, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 50], [40, 2, 1, 7]])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiny_genres(sizes, seed):
    track_ids, genres = sized_genres(sizes)
    splits = stratified_split(track_ids, genres, FRACTIONS, seed)
    assert len(splits) == len(track_ids) and set(splits) <= set(SPLITS)
    assert Counter(splits) == Counter(split_totals(len(track_ids), FRACTIONS))
    per_genre = Counter(zip(genres, splits))
    for genre, size in Counter(genres).items():
        for split in SPLITS:
            assert abs(per_genre[genre, split] - size * FRACTIONS[split]) < 1


@pytest.mark.parametrize("case", range(40))
def test_allocation_is_exact_and_within_one_clip_of_the_quota(case):
    rng = np.random.default_rng(case)
    sizes = rng.integers(1, 60, size=rng.integers(1, 17))
    fractions = np.clip(rng.dirichlet([4, 1, 1]), 0.03, None)
    fractions /= fractions.sum()
    totals = split_totals(int(sizes.sum()), dict(zip(SPLITS, fractions)))

    counts = allocate_counts(sizes, fractions, np.array([totals[s] for s in SPLITS]), rng.permutation(len(sizes)))

    assert (counts >= 0).all()
    np.testing.assert_array_equal(counts.sum(axis=1), sizes)
    np.testing.assert_array_equal(counts.sum(axis=0), [totals[s] for s in SPLITS])
    assert np.abs(counts - sizes[:, None] * fractions[None, :]).max() < 1


def test_official_split():
    assert official_split(["training", "validation", "test"], ["1", "2", "3"], "x.csv") == ["train", "val", "test"]
    with pytest.raises(DataError, match=r"x.csv: official_split must be .* e\.g\. \[\('2', ''\)\]"):
        official_split(["training", "", "test"], ["1", "2", "3"], "x.csv")


def test_fault_filtered_lists_are_the_published_ones(shared_data):
    listed = read_fault_filtered_lists()
    assert Counter(listed.values()) == {"train": 443, "val": 197, "test": 290}
    for split, name in FAULT_FILTERED_FILES.items():  # the shipped copy is ../shared's, line for line
        published = (shared_data / "gtzan_splits" / name).read_text().split()
        assert [f"{t.split('.')[0]}/{t}.wav" for t, s in listed.items() if s == split] == published


@pytest.mark.parametrize(
    "line, message",
    [
        ("blues/blues.00012.au", "'blues/blues.00012.au' is not genre/genre.NNNNN.wav"),
        ("rock/blues.00012.wav", "'rock/blues.00012.wav' is not genre/genre.NNNNN.wav"),
        ("blues/blues.00001.wav", "blues.00001 is listed twice"),
    ],
)
def test_a_malformed_list_names_its_file_and_line(tmp_path, line, message):
    (tmp_path / "train_filtered.txt").write_text("blues/blues.00001.wav\n")
    (tmp_path / "valid_filtered.txt").write_text("rock/rock.00001.wav\n")
    (tmp_path / "test_filtered.txt").write_text(f"\n{line}\n")
    with pytest.raises(DataError, match=rf"test_filtered.txt, line 2: {message}"):
        read_fault_filtered_lists(tmp_path)


def test_listed_split_leaves_out_unlisted_clips_and_reports_unmatched_entries():
    listed = {"a.1": "train", "a.2": "val", "b.1": "test", "b.2": "train"}
    split = listed_split(["b.1", "a.1", "c.9"], listed)
    assert split.assignment == ["test", "train", None]
    assert split.unmatched == {"train": ["b.2"], "val": ["a.2"], "test": []}


# ---- the stage


def write_converted(project, track_ids, genres, official=None):
    """data/converted.csv in a shuffled order (the stage must sort it), written directly."""
    frame = pd.DataFrame(
        {
            "track_id": track_ids,
            "genre": genres,
            "path": [f"data/wav/{t}.wav" for t in track_ids],
            "official_split": official or [""] * len(track_ids),
            "num_samples": 661500,
        }
    )
    (project / "data").mkdir(exist_ok=True)
    frame.sample(frac=1, random_state=0).to_csv(project / "data" / "converted.csv", index=False)


def read_outputs(project):
    return read_split(project / "data" / "split", check_wavs=False)


def test_stage_stratified(tmp_path):
    project = make_project(tmp_path)
    track_ids, genres = gtzan_like()
    write_converted(project, track_ids, genres)

    result = run_stage(project, "split")

    assert result.returncode == 0, result.stderr
    manifest, labels = read_outputs(project)
    assert labels == GENRES
    header = (project / "data" / "split" / "split_manifest.csv").read_text().splitlines()[0]
    assert header == "track_id,path,genre,label,split"
    assert json.loads((project / "data" / "split" / "labels.json").read_text()) == GENRES
    assert list(manifest["track_id"]) == sorted(track_ids)
    assert list(manifest["path"]) == [f"data/wav/{t}.wav" for t in sorted(track_ids)]
    assert [labels[i] for i in manifest["label"]] == list(manifest["genre"])
    assert manifest["split"].value_counts().to_dict() == {"train": 64, "test": 20, "val": 16}
    assert list(manifest["split"]) == stratified_split(sorted(track_ids), sorted(genres), FRACTIONS, 0)
    assert "train 64, val 16, test 20" in result.stderr

    first = (project / "data" / "split" / "split_manifest.csv").read_bytes()
    assert run_stage(project, "split").returncode == 0
    assert (project / "data" / "split" / "split_manifest.csv").read_bytes() == first


def test_stage_fault_filtered_on_gtzan_mini(tmp_path, gtzan_mini):
    """93 of gtzan_mini's 100 clips are in the lists: 40 train, 49 val, 4 test, exactly as listed."""
    project = make_project(tmp_path, {"split": {"method": "fault_filtered"}})
    track_ids = sorted(p.stem for p in gtzan_mini.rglob("*.wav"))
    write_converted(project, track_ids, [t.split(".")[0] for t in track_ids])

    result = run_stage(project, "split")

    assert result.returncode == 0, result.stderr
    manifest, labels = read_outputs(project)
    listed = read_fault_filtered_lists()
    assert manifest["split"].value_counts().to_dict() == {"val": 49, "train": 40, "test": 4}
    assert dict(zip(manifest["track_id"], manifest["split"])) == {t: listed[t] for t in track_ids if t in listed}
    assert labels == GENRES
    left_out = pd.read_csv(project / "data" / "split" / "left_out.csv", dtype=str)
    expected = ["country.00008", "hiphop.00001", "metal.00004", "reggae.00003", "reggae.00005", "reggae.00007"]
    assert list(left_out["track_id"]) == [*expected, "reggae.00008"]
    assert set(left_out["reason"]) == {"not in GTZAN's fault-filtered lists"}
    assert "left out 7 of 100 clips" in result.stderr
    assert "403 train entries of the fault-filtered lists have no clip in the data" in result.stderr


def test_stage_fault_filtered_refuses_data_that_is_not_gtzan(tmp_path):
    project = make_project(tmp_path, {"split": {"method": "fault_filtered"}})
    write_converted(project, ["000002", "000005", "000010"], ["Hip-Hop", "Hip-Hop", "Pop"])
    result = run_stage(project, "split", check=False)
    assert result.returncode == 1
    assert "split.method = 'fault_filtered' is GTZAN's split, but none of the 3 clips" in result.stderr
    assert "set split.method: stratified (or official for FMA)" in result.stderr
    assert not (project / "data" / "split").exists()


def test_stage_seed_changes_the_split(tmp_path):
    project = make_project(tmp_path, {"split": {"seed": 7}})
    track_ids, genres = gtzan_like()
    write_converted(project, track_ids, genres)
    assert run_stage(project, "split").returncode == 0
    manifest, _ = read_outputs(project)
    assert list(manifest["split"]) != stratified_split(sorted(track_ids), sorted(genres), FRACTIONS, 0)
    assert list(manifest["split"]) == stratified_split(sorted(track_ids), sorted(genres), FRACTIONS, 7)


def test_stage_official(tmp_path):
    project = make_project(tmp_path, {"split": {"method": "official"}})
    track_ids = ["000002", "000005", "000010", "000140", "000141", "000190"]
    official = ["training", "training", "validation", "test", "training", "test"]
    write_converted(project, track_ids, ["Hip-Hop", "Hip-Hop", "Pop", "Folk", "Folk", "Folk"], official)

    result = run_stage(project, "split")

    assert result.returncode == 0, result.stderr
    manifest, labels = read_outputs(project)
    assert labels == ["Folk", "Hip-Hop", "Pop"]
    assert list(manifest["split"]) == ["train", "train", "val", "test", "train", "test"]
    assert list(manifest["label"]) == [1, 1, 2, 0, 0, 0]


@pytest.mark.parametrize(
    "split_params, clips_per_genre, message",
    [
        ({"method": "official"}, 10, "the dataset has no official split"),
        (
            {"method": "random"},
            10,
            "params.yaml: split.method = \"random\": Input should be 'stratified', 'official' or 'fault_filtered'",
        ),
        (
            {"fractions": {"train": 0.7, "val": 0.2, "test": 0.2}},
            10,
            'params.yaml: split.fractions = {"train": 0.7, "val": 0.2, "test": 0.2}: the fractions sum to 1.1; '
            "they must sum to 1",
        ),
        ({"fractions": {"train": 0.8, "test": 0.2}}, 10, "params.yaml: split.fractions.val: missing; add it"),
        ({"seed": -1}, 10, "params.yaml: split.seed = -1: Input should be greater than or equal to 0"),
        ({}, 0, "data/converted.csv lists no clips; run `dvc repro convert`"),
    ],
)
def test_stage_bad_input_is_a_clear_error(tmp_path, split_params, clips_per_genre, message):
    project = make_project(tmp_path, {"split": split_params})
    write_converted(project, *gtzan_like(clips_per_genre))

    result = run_stage(project, "split", check=False)

    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "data" / "split").exists()


def test_stage_refuses_an_empty_split(tmp_path):
    project = make_project(tmp_path)
    write_converted(project, ["a", "b", "c"], ["rock"] * 3)  # 3 clips: 0.48 val clips round to 0
    result = run_stage(project, "split", check=False)
    assert result.returncode == 1
    assert "the split(s) ['val'] would be empty" in result.stderr


def test_stage_needs_converted_csv(tmp_path):
    project = make_project(tmp_path)
    result = run_stage(project, "split", check=False)
    assert result.returncode == 1
    assert "data/converted.csv does not exist; run `dvc repro convert`" in result.stderr


# ---- the split artifact's reader (library level: it names the file at fault, never a stage)


def test_read_split_checks_the_manifest_against_labels_and_wavs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    split_dir = "data/split"
    manifest = pd.DataFrame(
        {
            "track_id": ["b", "a", "c"],
            "path": [f"data/wav/{t}.wav" for t in "bac"],
            "genre": ["pop", "rock", "rock"],
            "label": [0, 1, 1],
            "split": ["val", "train", "test"],
        }
    )
    write_split(split_dir, manifest, ["pop", "rock"])
    with pytest.raises(DataError, match=r"split_manifest.csv lists 3 WAV files that do not exist") as caught:
        read_split(split_dir)
    assert caught.value.path == "data/wav/a.wav" and "dvc repro" not in str(caught.value)
    got, labels = read_split(split_dir, check_wavs=False)
    assert labels == ["pop", "rock"] and got["track_id"].tolist() == ["a", "b", "c"]  # sorted by track id
    assert got["label"].tolist() == [1, 0, 1] and got["label"].dtype == np.int64

    def refused(changed: pd.DataFrame, message: str, labels=("pop", "rock"), at="split_manifest.csv"):
        write_split(split_dir, changed, list(labels))
        with pytest.raises(DataError, match=message) as caught:
            read_split(split_dir, check_wavs=False)
        assert caught.value.path == f"{split_dir}/{at}" and "dvc repro" not in str(caught.value)

    refused(
        manifest.assign(label=[0, 0, 1]),
        r"labels do not match the genres of data/split/labels.json "
        r"\(\(track_id, genre, label\): \[\('a', 'rock', 0\)\]\)",
    )
    refused(manifest.assign(label=[0, 1, 2]), r"\('c', 'rock', 2\)")
    refused(
        manifest.assign(label=["0", "x", "1"]),
        r"label must be a non-negative integer; it is not for the "
        r"clips \['a'\]",
    )
    refused(manifest.assign(split=["train", "train", "test"]), r"the split\(s\) \['val'\] have no clips")
    refused(manifest.assign(split=["val", "training", "test"]), r"split values \['training'\] are none of")
    refused(manifest.assign(track_id=["b", "b", "c"]), r"track ids listed more than once: \['b'\]")
    refused(manifest.assign(genre=["pop", "", "rock"]), r"\('a', '', 1\)")
    refused(manifest, "expected a non-empty list of genre names", labels=(), at="labels.json")
    refused(manifest, r"genres listed more than once", labels=("pop", "rock", "pop"), at="labels.json")
    (tmp_path / split_dir / "split_manifest.csv").write_text("track_id,path,label,split\na,data/wav/a.wav,1,train\n")
    with pytest.raises(DataError, match=r"missing columns \['genre'\]"):
        read_split(split_dir, check_wavs=False)


def test_the_split_reader_parses_csv_as_pandas_does_and_refuses_ragged_rows(tmp_path):
    """read_split_clips reads the manifest with the csv module: quoted cells, a byte-order mark and
    blank lines read as pandas reads them; a row with another number of fields is refused."""
    split_dir = tmp_path / "split"
    split_dir.mkdir()
    (split_dir / "labels.json").write_text('["pop", "rock, live"]')
    manifest = (
        "\ufefftrack_id,path,genre,label,split\n"
        'b,"data/wav/b,1.wav","rock, live",1,val\n'
        "\n"
        "a,data/wav/a.wav,pop,0,train\n"
        "c,data/wav/c.wav,pop,0,test\n"
    )
    (split_dir / "split_manifest.csv").write_text(manifest, encoding="utf-8")
    clips, labels = read_split_clips(split_dir, check_wavs=False)
    assert labels == ["pop", "rock, live"]
    assert [(c.track_id, c.path, c.genre, c.label, c.split) for c in clips] == [
        ("a", "data/wav/a.wav", "pop", 0, "train"),
        ("b", "data/wav/b,1.wav", "rock, live", 1, "val"),
        ("c", "data/wav/c.wav", "pop", 0, "test"),
    ]
    table, _ = read_split(split_dir, check_wavs=False)
    expected = pd.read_csv(split_dir / "split_manifest.csv", dtype=str, keep_default_na=False)
    expected = expected.sort_values("track_id").reset_index(drop=True).astype({"label": np.int64})
    pd.testing.assert_frame_equal(table, expected)

    (split_dir / "split_manifest.csv").write_text(manifest + "d,data/wav/d.wav,pop,0\n", encoding="utf-8")
    ragged = r"split_manifest.csv: not a readable CSV \(line 6 has 4 fields, the header 5\)"
    with pytest.raises(DataError, match=ragged):
        read_split_clips(split_dir, check_wavs=False)


def test_the_shard_stage_does_not_import_pandas():
    """shard reads its manifest with read_split_clips: a whole run at 1000 clips takes a few seconds,
    and importing pandas would be a large part of a resumed run's (benchmarks/bench_resume.py)."""
    code = "import sys, stages.shard; print(sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'pyarrow')))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
