"""data.dataset folder: your own music, laid out <label>/.../<file>, as a dataset.

The folder is built in each test from real clips (gtzan_mini and the FMA mp3s of ../shared/data):
labels renamed with spaces, '&', accents (one written decomposed, as macOS does) and non-Latin
characters, files nested at several depths, wav / mp3 / flac / ogg, one song of 150 s, a copy of
another file, stray files, an audio file beside the label folders, and unequal counts per label.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from genreclf.artifacts import TRACK_ID_RE
from genreclf.data.audio import convert_clip, excerpt, read_wav
from genreclf.data.fetch import DirectoryArchive
from genreclf.data.folder import check_labels, drop_duplicates, fetch_folder, list_folder, track_id
from genreclf.data.splits import min_clips_per_genre, stratified_split
from genreclf.errors import DataError
from stages.config import load_config
from stages.summarize import markdown_table, summarize
from tests.support.helpers import ROOT, call_stage, directory_bytes, make_project, run_genreclf, run_stage

ROCK, CLASSICAL, POP = "Rock & Roll", "Música Clásica", "日本のポップ"
SR = 22050
LONG_SECONDS = 150  # five GTZAN clips end to end: at least this long
FMA = "fma/fma_audio"


def wav_copy(source: Path, destination: Path) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)
    return destination


def recoded(source: Path, destination: Path, file_format: str) -> Path:
    """``source`` decoded and written again in ``file_format`` (FLAC, OGG) with soundfile."""
    samples, rate = sf.read(source, dtype="float32")
    destination.parent.mkdir(parents=True, exist_ok=True)
    sf.write(destination, samples, rate, format=file_format)
    return destination


def build_music(shared_data: Path, dest: Path) -> dict[str, list[str]]:
    """A folder of music in ``dest``; returns {label: the paths of its clips below ``dest``}, the
    copy of Rock & Roll's first song (a duplicate) and the stray files left out."""
    gtzan = shared_data / "gtzan_mini"
    rock = dest / ROCK
    wav_copy(gtzan / "rock/rock.00000.wav", rock / "Chuck Berry/Maybellene.wav")
    wav_copy(gtzan / "rock/rock.00001.wav", rock / "Chuck Berry/Live 1958/Johnny B. Goode.wav")
    wav_copy(gtzan / "rock/rock.00002.wav", rock / "Little Richard/Tutti Frutti (1955).wav")
    wav_copy(gtzan / "rock/rock.00003.wav", rock / "Elvis/Hound Dog.wav")
    wav_copy(shared_data / FMA / "000/000182.mp3", rock / "FMA/000182.mp3")
    wav_copy(gtzan / "rock/rock.00000.wav", rock / "copies/Maybellene (copy).wav")  # the same bytes
    classical = dest / unicodedata.normalize("NFD", CLASSICAL)  # decomposed, as macOS writes names
    recoded(gtzan / "classical/classical.00000.wav", classical / "Bach/Suite Nº 1.flac", "FLAC")
    recoded(gtzan / "classical/classical.00001.wav", classical / "Bach/Suite Nº 2.ogg", "OGG")
    wav_copy(gtzan / "classical/classical.00002.wav", classical / "Chopin/Nocturne.wav")
    wav_copy(gtzan / "classical/classical.00003.wav", classical / "Chopin/Étude/Op. 10.wav")
    long_song = np.concatenate([sf.read(gtzan / f"classical/classical.0000{i}.wav")[0] for i in range(4, 9)])
    (classical / "Mahler").mkdir()
    sf.write(classical / "Mahler/Symphony 5 (long).flac", long_song, SR, format="FLAC")
    pop = dest / POP
    for i in range(6):
        wav_copy(gtzan / f"pop/pop.0000{i}.wav", pop / f"アルバム/{i + 1:02d} 曲.wav")
    wav_copy(shared_data / FMA / "001/001666.mp3", pop / "FMA" / "deep" / "er" / "001666.mp3")
    (rock / "notes.txt").write_text("liner notes\n")
    (dest / ".DS_Store").write_bytes(b"\0\1")
    (pop / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    wav_copy(gtzan / "jazz/jazz.00000.wav", dest / "loose song.wav")  # beside the labels: no label
    return dest


EXPECTED_COUNTS = {ROCK: 5, CLASSICAL: 5, POP: 7}


@pytest.fixture(scope="module")
def music(shared_data, tmp_path_factory) -> Path:
    return build_music(shared_data, tmp_path_factory.mktemp("music") / "My Music")


# ---- track ids ---------------------------------------------------------------------------------


def test_track_ids_are_readable_safe_and_stable():
    relative = "Rock & Roll/Chuck Berry/Maybellene.mp3"
    assert track_id(relative).startswith("rock-roll-chuck-berry-maybellene-")
    assert track_id(relative) == track_id(relative)
    assert track_id(unicodedata.normalize("NFD", f"{CLASSICAL}/Étude.wav")) == track_id(f"{CLASSICAL}/Étude.wav")
    assert track_id(f"{CLASSICAL}/Étude.wav").startswith("musica-clasica-etude-")
    only_japanese = track_id(f"{POP}/曲.wav")
    assert len(only_japanese) == 12 and int(only_japanese, 16) >= 0  # no readable part: the hash alone
    cases = ["A/Song.wav", "A/song.wav", "A/Song.mp3", "A/Song .wav", "a/Song.wav", "A/" + "x" * 300 + ".wav"]
    ids = [track_id(p) for p in cases]
    assert len(set(ids)) == len(ids)  # unique, also on a file system that ignores case
    assert {i.lower() for i in ids} == set(ids)
    for i in [*ids, only_japanese, track_id("CON/NUL.wav"), track_id("-/ . /..wav")]:
        assert TRACK_ID_RE.match(i) and len(i) <= 61, i


def test_listing_order_does_not_change_the_clips():
    names = [f"{ROCK}/b/{i}.mp3" for i in range(5)] + [f"{POP}/{i}.wav" for i in range(3)] + ["x.txt"]
    first = list_folder(names, "music", archive=False).clips
    again = list_folder(list(reversed(names)), "music", archive=False).clips
    pd.testing.assert_frame_equal(first, again)


def test_listing_names_labels_and_counts_what_it_leaves_out():
    names = [
        f"{ROCK}/Artist/Album/01.mp3",
        f"{ROCK}/02.FLAC",
        f"{POP}/a.ogg",
        f"{POP}/a.m4a",  # not a format the decoder reads
        "loose.wav",
        ".DS_Store",
        f"{ROCK}/._01.mp3",
        f"{POP}/.hidden/x.wav",
        "__MACOSX/Rock & Roll/._02.FLAC",
    ]
    listing = list_folder(names, "music", archive=False)
    assert sorted(listing.clips["genre"].unique()) == sorted([ROCK, POP])
    assert sorted(listing.clips["relative"]) == sorted(names[:3])
    assert listing.unlabelled == ["loose.wav"]
    assert sorted(listing.ignored) == sorted(names[3:4] + names[5:])


def test_an_archive_may_hold_the_label_folders_inside_one_folder():
    names = [f"My Music/{ROCK}/a.mp3", f"My Music/{POP}/b.wav", "My Music/readme.txt"]
    listing = list_folder(names, "music.zip", archive=True)
    assert sorted(listing.clips["relative"]) == [f"{ROCK}/a.mp3", f"{POP}/b.wav"]
    at_the_top = list_folder([n.removeprefix("My Music/") for n in names], "x", archive=True).clips
    pd.testing.assert_frame_equal(at_the_top.drop(columns="member"), listing.clips.drop(columns="member"))


@pytest.mark.parametrize(
    "names",
    [[f"{ROCK}/a.mp3", f"{ROCK}/b/c.wav"], ["a.mp3", "b.wav"], ["notes.txt"], [f"{ROCK}/a.txt", f"{POP}/b.wav"]],
)
def test_fewer_than_two_labels_is_an_error(names):
    with pytest.raises(DataError, match=r"^music: [01] label folder\(s\) .* needs at least two, laid out <label>/"):
        list_folder(names, "music", archive=False)


# ---- duplicates and label sizes ----------------------------------------------------------------


def test_files_with_the_same_bytes_are_one_song(tmp_path):
    files = {
        f"{ROCK}/z/song.mp3": b"song one",
        f"{ROCK}/a/song copy.mp3": b"song one",  # the smallest path of the two: kept
        f"{POP}/song.mp3": b"song one",
        f"{POP}/other.mp3": b"song two",  # the same size, other bytes
        f"{POP}/empty.mp3": b"",
        f"{ROCK}/empty.mp3": b"",  # empty files are left for convert to report
    }
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    listing = list_folder(DirectoryArchive(tmp_path, "music").names(), "music", archive=False)
    clips, duplicates = drop_duplicates(listing.clips, DirectoryArchive(tmp_path, "music"))
    assert sorted(clips["relative"]) == sorted([f"{ROCK}/a/song copy.mp3", f"{POP}/other.mp3", *list(files)[4:]])
    kept_id = track_id(f"{ROCK}/a/song copy.mp3")
    assert sorted(duplicates["source_path"]) == sorted([f"{POP}/song.mp3", f"{ROCK}/z/song.mp3"])
    assert set(duplicates["kept_path"]) == {f"{ROCK}/a/song copy.mp3"} and set(duplicates["kept_track_id"]) == {kept_id}


def test_a_label_too_small_for_the_split_is_named_with_the_minimum():
    check_labels({ROCK: 7, POP: 9}, 7, "music")
    with pytest.raises(DataError) as error:
        check_labels({ROCK: 7, POP: 3, CLASSICAL: 6}, 7, "music")
    message = str(error.value)
    assert f"'{POP}' (3)" in message and f"'{CLASSICAL}' (6)" in message and ROCK not in message
    assert "fewer than the 7 clips" in message and "\n" not in message


@pytest.mark.parametrize(
    "fractions, expected",
    [({"train": 0.64, "val": 0.16, "test": 0.20}, 7), ({"train": 0.5, "val": 0.25, "test": 0.25}, 4)],
)
def test_min_clips_per_genre(fractions, expected):
    assert min_clips_per_genre(fractions) == expected


def test_a_genre_of_the_minimum_size_is_in_every_split():
    """Also where moving clips between splits to make their sizes exact would empty one of its splits."""
    rng = np.random.default_rng(0)
    cases = [([8, 7, 11, 11, 8], {"train": 0.7716, "val": 0.0933, "test": 0.1351})]
    for _ in range(300):
        fractions = rng.dirichlet([4, 1, 1]).clip(0.05)
        cases.append(
            (
                list(rng.integers(1, 25, rng.integers(2, 8))),
                dict(zip(("train", "val", "test"), fractions / fractions.sum())),
            )
        )
    for sizes, fractions in cases:
        genres = [f"g{g}" for g, n in enumerate(sizes) for _ in range(n)]
        split = stratified_split([f"t{i:04d}" for i in range(len(genres))], genres, fractions, seed=1)
        fewest = min_clips_per_genre(fractions)
        for g, n in enumerate(sizes):
            if n >= fewest:
                assert {s for genre, s in zip(genres, split) if genre == f"g{g}"} == {"train", "val", "test"}


# ---- excerpts ----------------------------------------------------------------------------------


def test_excerpt_takes_exact_sample_counts():
    ramp = np.arange(1000, dtype=np.int16)
    assert excerpt(ramp, 100, None) is ramp
    np.testing.assert_array_equal(excerpt(ramp, 100, 2.5), ramp[:250])
    np.testing.assert_array_equal(excerpt(ramp, 100, 2.5, "middle"), ramp[375:625])
    np.testing.assert_array_equal(excerpt(ramp[:999], 100, 2.5, "middle"), ramp[374:624])  # one fewer before
    np.testing.assert_array_equal(excerpt(ramp, 100, 20.0, "middle"), ramp)  # shorter than the excerpt
    assert excerpt(ramp, 22050, 0.01).size == 220
    with pytest.raises(ValueError, match="where must be one of"):
        excerpt(ramp, 100, 1.0, "end")


@pytest.mark.parametrize("where, first", [("start", 0), ("middle", (40 * SR - 12 * SR) // 2)])
def test_convert_cuts_a_long_clip_to_its_excerpt(tmp_path, where, first):
    song = (np.arange(40 * SR) % 20001 - 10000).astype(np.int16)  # 40 s, each sample known
    sf.write(tmp_path / "song.flac", song, SR, format="FLAC", subtype="PCM_16")
    result = convert_clip(tmp_path / "song.flac", tmp_path / "out.wav", SR, 10.0, 12.0, where)
    samples, rate = read_wav(tmp_path / "out.wav")
    assert (result.ok, result.num_samples, rate) == (True, 12 * SR, SR)
    np.testing.assert_array_equal(samples, song[first : first + 12 * SR])
    whole = convert_clip(tmp_path / "song.flac", tmp_path / "whole.wav", SR, 10.0)
    assert whole.num_samples == 40 * SR


def test_the_excerpt_params_are_checked(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert (params["convert"]["excerpt_seconds"], params["convert"]["excerpt_from"]) == (None, "start")
    for changes, message in [
        ({"excerpt_seconds": 0}, "convert.excerpt_seconds = 0: Input should be greater than 0"),
        ({"excerpt_seconds": 5.0}, "convert.excerpt_seconds = 5.0, convert.min_seconds = 10.0: the excerpt is"),
        ({"excerpt_from": "end"}, "convert.excerpt_from = \"end\": Input should be 'start' or 'middle'"),
    ]:
        changed = dict(params, convert=dict(params["convert"], **changes))
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(changed))
        with pytest.raises(Exception, match=message.replace("(", r"\(").replace("[", r"\[")):
            load_config(tmp_path / "params.yaml")


def test_a_folder_is_split_stratified_only(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["dataset"], params["split"]["method"] = "folder", "official"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(Exception, match="a folder of your own music has no official or fault-filtered split"):
        load_config(tmp_path / "params.yaml")


# ---- fetch -------------------------------------------------------------------------------------


def fetched(raw: Path) -> dict:
    return {
        "clips": pd.read_csv(raw / "clips.csv", dtype=str, keep_default_na=False),
        "files": pd.read_csv(raw / "files.csv", dtype=str, keep_default_na=False),
        "duplicates": pd.read_csv(raw / "duplicates.csv", dtype=str, keep_default_na=False),
        "info": pd.read_csv(raw / "track_info.csv", dtype=str, keep_default_na=False),
        "report": json.loads((raw / "fetch_report.json").read_text()),
    }


def test_fetch_a_folder(music, tmp_path):
    report = fetch_folder(str(music), None, None, 0, 4, tmp_path / "raw", tmp_path / "downloads")
    out = fetched(tmp_path / "raw")
    assert report["clips_per_genre"] == EXPECTED_COUNTS == out["report"]["clips_per_genre"]
    clips = out["clips"]
    assert len(clips) == 17 and clips["track_id"].is_unique and all(TRACK_ID_RE.match(t) for t in clips["track_id"])
    assert set(clips["genre"]) == {ROCK, CLASSICAL, POP}  # the names as they are, accents composed
    by_path = dict(zip(out["files"]["source_path"], out["files"]["track_id"]))
    assert by_path[f"{ROCK}/Chuck Berry/Maybellene.wav"] == track_id(f"{ROCK}/Chuck Berry/Maybellene.wav")
    for row in clips.itertuples():
        audio = Path(row.path)
        assert audio.parent == tmp_path / "raw/audio" and audio.stem == row.track_id and audio.is_file()
    assert sorted(Path(p).suffix for p in clips["path"]) == sorted(
        [".wav"] * 12 + [".mp3"] * 2 + [".flac"] * 2 + [".ogg"]
    )
    assert out["duplicates"].to_dict("records") == [
        {
            "source_path": f"{ROCK}/copies/Maybellene (copy).wav",
            "genre": ROCK,
            "kept_path": f"{ROCK}/Chuck Berry/Maybellene.wav",
            "kept_track_id": by_path[f"{ROCK}/Chuck Berry/Maybellene.wav"],
        }
    ]
    skipped = out["report"]["skipped"]
    assert skipped["ignored_files"]["count"] == 3 and skipped["unlabelled_files"]["examples"] == ["loose song.wav"]
    assert skipped["duplicates"]["count"] == 1
    titles = dict(zip(out["info"]["track_id"], out["info"]["title"]))
    assert titles[by_path[f"{ROCK}/Chuck Berry/Live 1958/Johnny B. Goode.wav"]] == "Johnny B. Goode"


def test_fetch_gives_the_same_clips_from_a_zip_or_a_tar_gz(music, tmp_path):
    fetch_folder(str(music), None, None, 0, 4, tmp_path / "folder", tmp_path / "downloads")
    with zipfile.ZipFile(tmp_path / "music.zip", "w") as archive:
        for path in sorted(music.rglob("*")):
            archive.write(path, Path("My Music") / path.relative_to(music))  # the folder itself zipped
    with tarfile.open(tmp_path / "music.tar.gz", "w:gz") as archive:
        for path in sorted(music.iterdir(), reverse=True):  # the label folders at the top
            archive.add(path, path.name)
    expected = fetched(tmp_path / "folder")
    for name in ("music.zip", "music.tar.gz"):
        fetch_folder(str(tmp_path / name), None, None, 0, 4, tmp_path / name.replace(".", "_"), tmp_path / "downloads")
        out = fetched(tmp_path / name.replace(".", "_"))
        for table in ("files", "duplicates", "info"):
            pd.testing.assert_frame_equal(out[table], expected[table])
        assert out["report"]["archives"]["folder"]["verified"] == "sha1-not-checked"


def test_fetch_refuses_a_small_label_before_copying_anything(music, tmp_path):
    named = rf"My Music: label\(s\) '{CLASSICAL}' \(5\), '{ROCK}' \(5\) have fewer than the 7 clips"
    with pytest.raises(DataError, match=named):
        fetch_folder(str(music), None, None, 0, 7, tmp_path / "raw", tmp_path / "downloads")
    with pytest.raises(DataError, match=r"fewer than the 4 clips"):
        fetch_folder(str(music), None, 3, 0, 4, tmp_path / "raw", tmp_path / "downloads")  # clips_per_genre 3
    assert not (tmp_path / "raw").exists()


def test_the_fetch_stage_refuses_a_url_and_a_missing_folder(tmp_path):
    for number, source in enumerate(["https://example.org/music.zip", str(tmp_path / "none")]):
        params = {"data": {"dataset": "folder", "source": source}}
        project = make_project(tmp_path / f"project{number}", params, contents="params")
        proc = run_stage(project, "fetch", check=False)
        line = f"data.source = {source!r} is not an existing folder or archive file; point it at the folder"
        assert proc.returncode == 1 and line in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


# ---- the pipeline on a folder ------------------------------------------------------------------

PIPELINE = ("fetch", "convert", "split", "shard", "features", ("train_sklearn", "gnb"), ("evaluate", "gnb"))
EXCERPT_SECONDS = 20.0


@pytest.fixture(scope="module")
def folder_run(music, tmp_path_factory):
    """A copy of the code where the stages from fetch to evaluate ran, as dvc runs them, on the folder."""
    project = make_project(
        tmp_path_factory.mktemp("folder_pipeline") / "project",
        {
            "data": {"dataset": "folder", "source": str(music)},
            "convert": {"excerpt_seconds": EXCERPT_SECONDS, "excerpt_from": "middle"},
            "split": {"method": "stratified", "fractions": {"train": 0.5, "val": 0.25, "test": 0.25}},
            "shard": {"num_shards": {"train": 1, "val": 1, "test": 1}},
            "models": {"sklearn": {"gnb": "features"}},
        },
    )
    logs = {}
    for stage in PIPELINE:
        name, *args = (stage,) if isinstance(stage, str) else stage
        logs[name] = run_stage(project, name, *args).stderr
    return project, logs


@pytest.mark.slow  # seven stages in their own processes: decoding, TFRecords, librosa features, a model
def test_the_pipeline_runs_on_a_folder_and_names_its_labels(folder_run):
    project, logs = folder_run
    labels = sorted(EXPECTED_COUNTS)
    assert json.loads((project / "data/split/labels.json").read_text(encoding="utf-8")) == labels
    manifest = pd.read_csv(project / "data/split/split_manifest.csv", dtype=str, keep_default_na=False)
    assert manifest.groupby("genre").size().to_dict() == EXPECTED_COUNTS
    assert (pd.crosstab(manifest["genre"], manifest["split"]) > 0).all().all()  # every label in every split
    converted = pd.read_csv(project / "data/converted.csv", dtype=str, keep_default_na=False)
    assert set(converted["num_samples"].astype(int)) == {round(EXCERPT_SECONDS * SR)}  # every clip cut to 20 s
    for split in ("train", "val", "test"):
        table = pd.read_csv(project / f"data/features/{split}.csv", dtype={"genre": str}, keep_default_na=False)
        assert set(table["genre"]) == set(labels)
    assert json.loads((project / "models/gnb/labels.json").read_text(encoding="utf-8")) == labels
    metrics = json.loads((project / "metrics/models/gnb.json").read_text(encoding="utf-8"))
    assert sorted(metrics["per_class"]) == labels and metrics["n_test"] == len(manifest.query("split == 'test'"))
    predictions = pd.read_csv(project / "evaluation/gnb/test_predictions.csv", dtype=str, keep_default_na=False)
    assert [c for c in predictions.columns if c.startswith("prob_")] == [f"prob_{label}" for label in labels]
    assert set(predictions["actual"]) == set(labels)
    assert "duplicate left out: Rock & Roll/copies/Maybellene (copy).wav" in logs["fetch"]
    assert "ignored 1 audio files beside the label folders" in logs["fetch"]


@pytest.mark.slow
def test_the_long_song_is_cut_from_its_middle(folder_run, music):
    project, _ = folder_run
    long_song = track_id(f"{CLASSICAL}/Mahler/Symphony 5 (long).flac")
    samples, _ = read_wav(project / f"data/wav/{long_song}.wav")
    whole, _ = sf.read(music / unicodedata.normalize("NFD", CLASSICAL) / "Mahler/Symphony 5 (long).flac", dtype="int16")
    length = round(EXCERPT_SECONDS * SR)
    first = (whole.size - length) // 2
    assert whole.size >= LONG_SECONDS * SR  # five clips of a little over 30 s
    np.testing.assert_array_equal(samples, whole[first : first + length])


@pytest.mark.slow
def test_fetch_again_writes_the_same_bytes(folder_run):
    project, _ = folder_run
    before = directory_bytes(project / "data/raw")
    run_stage(project, "fetch")
    assert directory_bytes(project / "data/raw") == before


@pytest.mark.slow
def test_predict_and_summarize_answer_with_the_folder_labels(folder_run, shared_data):
    project, _ = folder_run
    song = shared_data / FMA / "000/000003.mp3"  # a hip-hop clip: in none of the folder's labels
    printed = run_genreclf(project, "predict", "--model", "gnb", "--top", "3", str(song)).stdout
    assert str(song) in printed and all(label in printed for label in EXPECTED_COUNTS), printed
    metrics = json.loads((project / "metrics/models/gnb.json").read_text(encoding="utf-8"))
    table = markdown_table(summarize({"gnb": metrics}))
    assert "| gnb | sklearn |" in table and "among 3 genres" in table


def test_split_warns_of_a_label_that_convert_left_too_small(tmp_path, caplog):
    """Fetch checks the labels' sizes, but convert may skip clips after it: split then names the label."""
    project = make_project(tmp_path / "project", {"data": {"dataset": "folder"}}, contents="params")
    ids = [f"t{i:02d}" for i in range(17)]
    genres = [ROCK] * 10 + [POP] * 5 + [CLASSICAL] * 2
    converted = pd.DataFrame(
        {"track_id": ids, "genre": genres, "path": [f"data/wav/{t}.wav" for t in ids], "official_split": ""}
    )
    (project / "data").mkdir()
    converted.assign(num_samples=661500).to_csv(project / "data/converted.csv", index=False)
    call_stage(project, "split")
    missing = [r.getMessage() for r in caplog.records if "is missing from split" in r.getMessage()]
    assert missing == [
        f"genre {CLASSICAL} is missing from split(s) ['val', 'test'] (too few clips: 2; 7 put a genre in every split)"
    ]
    assert json.loads((project / "data/split/labels.json").read_text(encoding="utf-8")) == sorted(set(genres))


class Estimated(Exception):
    """What convert's check of the free space was asked about (raised in its place)."""


@pytest.mark.parametrize("excerpt_seconds, seconds", [(None, 60), (12.0, 12)])
def test_the_space_check_of_convert_counts_the_excerpt(tmp_path, monkeypatch, excerpt_seconds, seconds):
    project = make_project(tmp_path / "project", {"convert": {"excerpt_seconds": excerpt_seconds}}, contents="params")
    song = project / "data/raw/audio/song.wav"
    song.parent.mkdir(parents=True)
    sf.write(song, np.zeros(60 * SR, dtype=np.int16), SR, subtype="PCM_16")
    row = {"track_id": "song", "genre": ROCK, "path": "data/raw/audio/song.wav", "official_split": ""}
    pd.DataFrame([row]).to_csv(project / "data/raw/clips.csv", index=False)

    def estimated(stage, needs, *args, **kwargs):
        raise Estimated(needs[0].size)

    monkeypatch.delenv("GENRECLF_SPACE_CHECK", raising=False)  # the check on, whatever the environment
    monkeypatch.setattr("genreclf.space.check_space", estimated)
    with pytest.raises(Estimated) as caught:
        call_stage(project, "convert")
    assert caught.value.args[0] == 44 + 2 * seconds * SR  # one mono 16-bit WAV of that length


def test_a_label_that_tables_read_as_missing_is_refused():
    with pytest.raises(DataError, match=r"^music: label folder\(s\) \['None'\] would read as a missing value"):
        list_folder([f"{ROCK}/a.mp3", "None/b.wav"], "music", archive=False)
    labels = list_folder([" Rock /a.mp3", "a,b/c.wav", 'say "hi"/d.ogg'], "music", archive=False).clips["genre"]
    assert sorted(labels) == [" Rock ", "a,b", 'say "hi"']  # CSV quotes them; no name is changed


def test_a_damaged_member_of_an_archive_is_named(tmp_path):
    with zipfile.ZipFile(tmp_path / "music.zip", "w") as archive:  # stored: the bytes as they are
        for name in (f"{ROCK}/a.mp3", f"{ROCK}/b.mp3", f"{POP}/c.mp3"):
            archive.writestr(name, b"the same song" * 100)
    data = bytearray((tmp_path / "music.zip").read_bytes())
    at = data.index(b"the same song")
    data[at : at + 3] = b"XXX"  # the first member's bytes no longer match its CRC-32
    (tmp_path / "music.zip").write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"music.zip: member '{ROCK}/a.mp3' cannot be read \(Bad CRC-32"):
        fetch_folder(str(tmp_path / "music.zip"), None, None, 0, 1, tmp_path / "raw", tmp_path / "downloads")
    assert not (tmp_path / "raw").exists()
