"""features.source: FMA's own features.csv and echonest.csv as data/features, and features.families.

The FMA fixture (tests/support/fma_fixture.py) holds a features.csv in the real layout (features_head.csv's
rows and rows of the same layout for its clips, but one) and an echonest.csv of its layout. The
stages run as dvc runs them: fetch keeps the chosen clips' rows of both tables, convert and split
run as ever, then features takes each clip's row of the table, and every scikit-learn model on the
features table trains and is scored on it.
"""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
import yaml

from genreclf import catalog
from genreclf.data.audio import read_wav
from genreclf.errors import DataError, ParamError
from genreclf.features import fma_features, fma_tables
from stages.config import load_config
from tests.support.fma_fixture import ECHONEST_IDS, TABLE_LACKS_ID, build_fma_fixture
from tests.support.helpers import ROOT, make_project, run_command, run_genreclf, run_stage, set_params, subprocess_env
from tests.support.pipeline_project import STAGE_READS_HOOK

SKLEARN_ON_FEATURES = ("logreg", "knn", "gnb", "svm")
# The fixture has one Rock, one Experimental, two Pop and six Folk clips with audio; the svm calibrates
# its probabilities on 5 folds of the training clips: copies (new ids) make 8 clips of each genre.
COPIES = {
    f"{2000 + i:06d}": source
    for i, source in enumerate(["000182"] * 7 + ["000148"] * 7 + ["007527"] * 6 + ["000141"] * 2)
}
HEAD = "fma/fma_metadata/features_head.csv"


def test_features_head_reads_as_the_computed_columns(shared_data):
    table = fma_tables.read_table(shared_data / HEAD, catalog.FEATURES_FMA)
    assert list(table.columns) == list(fma_features.FEATURE_COLUMNS)
    assert list(table.index) == ["000002", "000003", "000005", "000010", "000020"]
    assert table.loc["000003", "rmse_mean_01"] == pytest.approx(3.61)  # as the notebook printed it


def test_families_select_the_mfcc_columns():
    columns = list(fma_features.FEATURE_COLUMNS)
    kept = fma_tables.select_families(columns, ["mfcc"], catalog.FEATURES_FMA)
    assert len(kept) == 140 and all(columns[i].startswith("mfcc_") for i in kept)
    assert fma_tables.select_families(columns, "all", catalog.FEATURES_FMA) == list(range(518))
    # spectral_contrast does not swallow a family whose name it starts with
    chosen = fma_tables.select_families(columns, ["spectral_centroid"], catalog.FEATURES_COMPUTED)
    assert {columns[i].rsplit("_", 2)[0] for i in chosen} == {"spectral_centroid"}


def test_a_table_in_another_layout_is_refused_in_one_line(tmp_path, shared_data):
    bad = tmp_path / "features.csv"
    bad.write_text("track_id,mfcc_mean_01\n3,1.0\n")
    with pytest.raises(DataError, match=r"features.csv: .*three header rows") as e:
        fma_tables.read_table(bad, catalog.FEATURES_FMA)
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="audio_features"):
        fma_tables.read_table(shared_data / HEAD, catalog.FEATURES_ECHONEST)


def test_clips_the_table_lacks_or_holds_empty_values_for_are_left_out_with_the_reason():
    table = pd.DataFrame({"a_mean_01": [1.0, float("nan"), 3.0]}, index=["000001", "000002", "000003"])
    clips = pd.DataFrame({"track_id": ["000003", "000002", "000009", "000001"], "genre": ["g", "h", "g", "h"]})
    rows, left_out = fma_tables.table_rows(table, clips, "t.csv")
    assert list(rows.index) == ["000003", "000001"] and rows["a_mean_01"].tolist() == [3.0, 1.0]
    assert left_out.values.tolist() == [["000002", "h", "1 empty values in t.csv"], ["000009", "g", "not in t.csv"]]


def test_too_many_missing_clips_is_an_error_with_the_counts():
    with pytest.raises(DataError, match=r"lacks 3 of the 4 clips \(75.0 %\).*features.max_missing = 0.5"):
        fma_tables.check_missing(3, 4, 0.5, "echonest.csv", "features.max_missing")
    fma_tables.check_missing(2, 4, 0.5, "echonest.csv", "features.max_missing")


@pytest.mark.parametrize("source", ["fma", "fma_echonest"])
def test_the_fma_sources_are_refused_for_gtzan_at_the_params_check(tmp_path, source):
    project = make_project(tmp_path / "p", {"data": {"dataset": "gtzan"}, "features": {"source": source}})
    result = run_stage(project, "split", check=False)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "features.source" in line]
    assert len(lines) == 1 and 'data.dataset = "gtzan"' in lines[0] and "FMA" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "features, message",
    [
        ({"families": "mfcc"}, 'features.families = "mfcc": expected all, or a non-empty list of feature families'),
        ({"families": []}, "features.families = []: expected all, or a non-empty list"),
        ({"families": ["mfcc", "mfcc"]}, 'features.families = ["mfcc", "mfcc"]: names a family more than once'),
        ({"families": ["mfccs"]}, '["mfccs"] are not families of source computed; its families are chroma_cens,'),
        (
            {"source": "librosa"},
            "features.source = \"librosa\": Input should be 'computed', 'fma' or 'fma_echonest'",
        ),
        ({"max_missing": 1.5}, "features.max_missing = 1.5: Input should be less than or equal to 1"),
    ],
)
def test_the_features_keys_are_checked_in_one_line(tmp_path, features, message):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["features"].update(features)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamError) as e:
        load_config(tmp_path / "params.yaml")
    assert str(e.value).startswith(f"{tmp_path / 'params.yaml'}: ") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_families_of_another_source_are_refused(tmp_path):
    project = make_project(tmp_path / "p", {"features": {"source": "fma_echonest", "families": ["mfcc"]}})
    result = run_stage(project, "split", check=False)
    assert result.returncode == 1 and "features.families" in result.stderr and "audio_features" in result.stderr


# ---------------------------------------------------------------- the stages on the FMA fixture


def run_traced(project, stage: str, log_dir) -> set[str]:
    """Run a stage with tests/support/stage_reads recording what it opens; the paths, relative."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(
        subprocess_env(),
        PYTHONPATH=f"{STAGE_READS_HOOK}:{ROOT}",
        GENRECLF_TEST_READS_LOG=str(log_dir),
    )
    run_command([sys.executable, "-m", f"stages.{stage}"], project, env=env)
    paths = set()
    for log in log_dir.glob("*.txt"):
        paths.update(log.read_text().splitlines()[1:])
    return paths


def data_deps(stage: str) -> list[str]:
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    return [d for d in deps if d.split("/")[0] not in ("genreclf", "stages")]


@pytest.fixture(scope="module")
def fma_project(shared_data, tmp_path_factory):
    base = tmp_path_factory.mktemp("feature_sources")
    fixture = build_fma_fixture(shared_data, base / "mirror", copies=COPIES)
    checksums = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]["checksums"]
    project = make_project(
        base / "project",
        {
            "data": {
                "source": str(fixture.directory),
                "clips_per_genre": None,
                "checksums": dict(checksums, **fixture.sha1),
            },
            "split": {"method": "stratified", "fractions": {"train": 0.75, "val": 0.125, "test": 0.125}},
            "features": {"source": "fma", "max_missing": 0.2},
            "knn": {"n_neighbors": 2},
            "svm": {"C": 1, "gamma": "scale", "cv_folds": 2},
        },
    )
    for stage in ("fetch", "convert", "split"):
        run_stage(project, stage)
    return fixture, project, base


@pytest.mark.slow  # stages run in their own processes
def test_fetch_keeps_the_chosen_clips_rows_of_both_tables(fma_project):
    fixture, project, _ = fma_project
    clips = set(pd.read_csv(project / "data/raw/clips.csv", dtype=str)["track_id"])
    features = fma_tables.read_table(project / "data/raw/fma_metadata/features.csv", "fma")
    assert set(features.index) == clips - {TABLE_LACKS_ID}
    echonest = fma_tables.read_table(project / "data/raw/fma_metadata/echonest.csv", "fma_echonest")
    assert set(echonest.index) == clips & set(ECHONEST_IDS)
    report = json.loads((project / "data/raw/fetch_report.json").read_text())
    assert report["feature_tables"] == {"features.csv": len(features), "echonest.csv": len(echonest)}


@pytest.mark.slow  # stages run in their own processes
def test_fma_source_takes_the_table_rows_and_every_sklearn_model_runs_on_them(fma_project):
    _, project, base = fma_project
    opened = run_traced(project, "features", base / "reads_fma")
    manifest = pd.read_csv(project / "data/split/split_manifest.csv", dtype={"track_id": str})
    table = fma_tables.read_table(project / "data/raw/fma_metadata/features.csv", "fma")
    info = json.loads((project / "data/features/feature_info.json").read_text())
    assert info["columns"] == list(fma_features.FEATURE_COLUMNS)
    assert info["params"] == {"source": "fma", "table": "fma_metadata/features.csv", "families": "all"}
    written = []
    for split in ("train", "val", "test"):
        rows = pd.read_csv(project / f"data/features/{split}.csv", dtype={"track_id": str}).set_index("track_id")
        expected = manifest.loc[(manifest["split"] == split) & (manifest["track_id"] != TABLE_LACKS_ID)]
        assert list(rows.index) == list(expected["track_id"])
        pd.testing.assert_frame_equal(
            rows[info["columns"]], table.loc[rows.index, info["columns"]], check_names=False, check_dtype=False
        )
        written += list(rows.index)
    left_out = pd.read_csv(project / "data/features/left_out.csv", dtype=str)
    assert left_out.values.tolist() == [
        [
            TABLE_LACKS_ID,
            manifest.set_index("track_id").loc[TABLE_LACKS_ID, "genre"],
            "not in data/raw/fma_metadata/features.csv",
        ]
    ]
    # what it opened: its data deps that this source reads, and no other data
    data = {p for p in opened if p.split("/")[0] == "data" and not p.startswith(("data/features", "data/.features"))}
    assert data and all(any(p.startswith(dep) for dep in ("data/split", "data/raw/fma_metadata")) for p in data)
    assert not any(p.startswith("data/wav") for p in data)  # read by computed only (see dvc.yaml)
    assert set(data_deps("features")) == {"data/split", "data/wav", "data/raw"}
    for model in SKLEARN_ON_FEATURES:
        run_stage(project, "train_sklearn", model)
        run_stage(project, "evaluate", model)
        metrics = json.loads((project / f"metrics/models/{model}.json").read_text())
        assert metrics["n_test"] == len(
            manifest.loc[(manifest["split"] == "test") & (manifest["track_id"] != TABLE_LACKS_ID)]
        )
    # new audio cannot get FMA's values: predict says so, in one line, and names the way out
    clip = project / "data/raw/audio/000/000141.mp3"
    result = run_genreclf(project, "predict", str(clip), "--model", "logreg", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "fma_metadata/features.csv" in result.stderr and "features.source: computed" in result.stderr


@pytest.mark.slow  # stages run in their own processes
def test_fma_echonest_source_and_the_share_it_may_lack(fma_project):
    _, project, _ = fma_project
    set_params(project, {"features": {"source": "fma_echonest", "max_missing": 0.2}})
    result = run_stage(project, "features", check=False)
    assert result.returncode == 1 and "features.max_missing = 0.2" in result.stderr
    assert "lacks" in result.stderr and "Traceback" not in result.stderr
    set_params(project, {"features": {"source": "fma_echonest", "max_missing": 1.0, "families": ["audio_features"]}})
    run_stage(project, "features")
    info = json.loads((project / "data/features/feature_info.json").read_text())
    assert info["columns"][:2] == ["audio_features_acousticness_01", "audio_features_danceability_01"]
    assert len(info["columns"]) == 8
    kept = sum(len(pd.read_csv(project / f"data/features/{s}.csv")) for s in ("train", "val", "test"))
    left = pd.read_csv(project / "data/features/left_out.csv", dtype=str)
    manifest = pd.read_csv(project / "data/split/split_manifest.csv", dtype={"track_id": str})
    assert kept + len(left) == len(manifest) and set(left["reason"]) == {"not in data/raw/fma_metadata/echonest.csv"}


# ---------------------------------------------------------------- the computed recipe against FMA's


# Track 3's chroma_cqt, computed by the stages from its 30 s clip, against FMA's published row (from the
# 237 s track, at 44.1 kHz, librosa 0.5; printed to 2 decimals). chroma_cqt is normalised per frame, so
# neither the sample rate's nor librosa's rms or frequency conventions move it; what does is the audio:
# 30 s of the track against all of it. Measured (docs/features.md), largest difference over the 12 bins:
# mean 0.059, std 0.018, median 0.086; max is 1 in both. The statistics of the clip's 10 s thirds differ
# from the clip's by up to 0.15 (mean), 0.054 (std), 0.21 (median): an excerpt moves them that much.
# The tolerances below sit between the two, far above any CPU's rounding (about 1e-6 here).
ROUNDING = 0.005  # the published values have 2 decimals
CHROMA_CQT_TOLERANCE = {"mean": 0.1, "std": 0.03, "median": 0.12, "max": 0.0}
TRACK3_SPLIT = {"000003": "train", "000141": "val", "000190": "test"}  # three splits, each non-empty


@pytest.fixture(scope="module")
def track3_project(shared_data, tmp_path_factory):
    """Track 3's features as the stages compute them: convert, then features (computed, FMA's settings);
    (the project, the train table, what features opened)."""
    from genreclf import artifacts

    project = make_project(tmp_path_factory.mktemp("track3") / "p", contents="params")
    audio = shared_data / "fma" / "fma_audio"
    clips = pd.DataFrame(
        {
            "track_id": list(TRACK3_SPLIT),
            "genre": ["Hip-Hop", "Folk", "Folk"],
            "path": [str(audio / t[:3] / f"{t}.mp3") for t in TRACK3_SPLIT],
            "official_split": "",
        }
    )
    artifacts.write_clips(project / artifacts.CLIPS_CSV, clips)
    run_stage(project, "convert")
    converted = pd.read_csv(project / artifacts.CONVERTED_CSV, dtype=str)
    labels = ["Folk", "Hip-Hop"]
    manifest = converted.assign(
        label=[labels.index(g) for g in converted["genre"]], split=converted["track_id"].map(TRACK3_SPLIT)
    )
    artifacts.write_split(project / artifacts.SPLIT_DIR, manifest, labels)
    opened = run_traced(project, "features", project.parent / "reads_computed")
    table = pd.read_csv(project / "data/features/train.csv", dtype={"track_id": str}).set_index("track_id")
    return project, table, opened


@pytest.fixture(scope="module")
def track3_features(track3_project):
    return track3_project[1].loc["000003"]


@pytest.mark.slow  # stages run in their own processes
def test_computed_opens_the_wavs_and_not_the_fma_tables(track3_project):
    """The other half of the features stage's deps (dvc.yaml): computed reads data/split and data/wav."""
    _, _, opened = track3_project
    data = {p for p in opened if p.split("/")[0] == "data" and not p.startswith(("data/features", "data/.features"))}
    assert any(p.startswith("data/wav/") for p in data) and any(p.startswith("data/split/") for p in data)
    assert all(p.startswith(("data/wav", "data/split")) for p in data), sorted(data)


@pytest.mark.slow  # stages run in their own processes
def test_computed_families_keep_those_columns_of_the_computed_table(track3_project):
    project, everything, _ = track3_project
    set_params(project, {"features": {"families": ["mfcc", "zcr"]}})
    run_stage(project, "features")
    info = json.loads((project / "data/features/feature_info.json").read_text())
    assert len(info["columns"]) == 20 * 7 + 7
    assert info["params"] == fma_features.params_to_dict(fma_features.DEFAULT_PARAMS)
    table = pd.read_csv(project / "data/features/train.csv", dtype={"track_id": str}).set_index("track_id")
    pd.testing.assert_frame_equal(table[info["columns"]], everything[info["columns"]])
    # new audio gets the same columns: the recipe computes all and keeps these
    recipe = fma_tables.AudioRecipe(info["params"], info["columns"], "feature_info.json")
    samples, rate = read_wav(project / "data/wav/000003.wav")
    row = recipe(fma_features.int16_to_float(samples), rate)
    assert row == pytest.approx(table.loc["000003", info["columns"]].to_numpy(), rel=1e-6, abs=1e-9)


@pytest.mark.slow  # stages run in their own processes
@pytest.mark.parametrize("statistic", sorted(CHROMA_CQT_TOLERANCE))
def test_track3_chroma_cqt_is_fmas_within_what_the_excerpt_explains(track3_features, shared_data, statistic):
    published = fma_tables.read_table(shared_data / HEAD, catalog.FEATURES_FMA).loc["000003"]
    columns = [f"chroma_cqt_{statistic}_{n:02d}" for n in range(1, 13)]
    difference = (track3_features[columns] - published[columns]).abs()
    assert difference.max() <= CHROMA_CQT_TOLERANCE[statistic] + ROUNDING, difference.round(3).to_dict()


@pytest.mark.slow  # stages run in their own processes
def test_track3_chroma_cqt_min_is_bounded_by_the_tracks_silence(track3_features, shared_data):
    """The whole track holds every frame of the clip and more (its silent start and end: FMA's min is 0
    in every bin), so its minimum can only be lower: one-sided."""
    published = fma_tables.read_table(shared_data / HEAD, catalog.FEATURES_FMA).loc["000003"]
    columns = [f"chroma_cqt_min_{n:02d}" for n in range(1, 13)]
    assert (published[columns] <= track3_features[columns] + ROUNDING).all()
