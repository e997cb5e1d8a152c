"""The fetch stage: downloads (resume, SHA-1), archive reading (range reads, CRC, path safety),
FMA's tracks.csv, GTZAN layouts, clip choice, and params checks. All HTTP is on 127.0.0.1."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from genreclf.artifacts import read_track_info
from genreclf.data.fetch import (
    DOWNLOAD_CHUNK_SIZE,
    VERIFIED_MEMBER_CRC32,
    VERIFIED_NONE,
    VERIFIED_SHA1,
    VERIFIED_SHA1_NOT_CHECKED,
    choose_clips,
    download,
    join_url,
    open_archive,
    public_source,
    sha1_file,
)
from genreclf.data.fma import fetch_fma, read_tracks, subset_clips
from genreclf.data.gtzan import fetch_gtzan
from genreclf.errors import ChecksumError, DataError, ParamError
from stages import fetch as fetch_stage
from stages.config import load_config
from tests.support.fma_fixture import NO_AUDIO_ID, SHORT_ID, ZIP_EPOCH, build_fma_fixture, corrupt_member
from tests.support.http_range_server import RangeServer

GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


@pytest.fixture(scope="session")
def fma(shared_data, tmp_path_factory):
    return build_fma_fixture(shared_data, tmp_path_factory.mktemp("fma_archives"), ("fma_small", "fma_medium"))


@pytest.fixture
def server(fma):
    with RangeServer(fma.directory) as running:
        yield running


def read_clips(raw_dir: Path) -> pd.DataFrame:
    return pd.read_csv(raw_dir / "clips.csv", dtype=str, keep_default_na=False)


def write_zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_BZIP2) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = compression
            archive.writestr(info, data)


def write_tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)


# ---------------------------------------------------------------- downloads


@pytest.mark.parametrize("checksum_given", [True, False])
def test_download_checks_sha1_and_renames(fma, server, tmp_path, checksum_given):
    dest = tmp_path / "downloads" / "fma_small.zip"
    expected = fma.sha1["fma_small"] if checksum_given else None
    sha1, verified = download(server.url + "fma_small.zip", dest, expected, "fma_small")
    assert sha1 == fma.sha1["fma_small"]
    assert verified == (VERIFIED_SHA1 if checksum_given else VERIFIED_SHA1_NOT_CHECKED)
    assert dest.read_bytes() == fma.archives["fma_small"].read_bytes()
    assert not dest.with_name("fma_small.zip.part").exists()
    assert server.bytes_served["fma_small.zip"] == dest.stat().st_size


@pytest.mark.parametrize("already_there", [False, True], ids=["fresh", "existing-file"])
def test_wrong_checksum_deletes_the_file(fma, server, tmp_path, already_there):
    dest = tmp_path / "fma_small.zip"
    if already_there:
        shutil.copyfile(fma.archives["fma_small"], dest)
    wrong = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(ChecksumError) as caught:
        download(server.url + "fma_small.zip", dest, wrong, "fma_small")
    message = str(caught.value)
    assert wrong in message and fma.sha1["fma_small"] in message
    assert "data.checksums.fma_small" in message and "run again to download it anew" in message
    assert "params.yaml" not in message and "stage" not in message
    assert not dest.exists() and not dest.with_name("fma_small.zip.part").exists()
    # The next run starts clean and succeeds with the right checksum.
    server.reset_counts()
    download(server.url + "fma_small.zip", dest, fma.sha1["fma_small"], "fma_small")
    assert server.bytes_served["fma_small.zip"] == dest.stat().st_size
    assert sha1_file(dest) == fma.sha1["fma_small"]


@pytest.mark.parametrize(
    "fraction, honour_ranges, expect_served",
    [
        (0.4, True, "rest"),  # 206: only the remainder travels
        (1.0, True, "nothing"),  # 416: the .part is already whole
        (0.4, False, "all"),  # the server ignores Range: start over
    ],
)
def test_download_resumes_a_partial_file(fma, server, tmp_path, fraction, honour_ranges, expect_served):
    data = fma.archives["fma_small"].read_bytes()
    offset = int(len(data) * fraction)
    dest = tmp_path / "fma_small.zip"
    dest.with_name("fma_small.zip.part").write_bytes(data[:offset])
    server.honour_ranges = honour_ranges
    sha1, verified = download(server.url + "fma_small.zip", dest, fma.sha1["fma_small"], "fma_small")
    assert (sha1, verified) == (fma.sha1["fma_small"], VERIFIED_SHA1)
    assert dest.read_bytes() == data
    assert server.requests[0] == ("fma_small.zip", f"bytes={offset}-")
    served = {"rest": len(data) - offset, "nothing": 0, "all": len(data)}[expect_served]
    assert server.bytes_served["fma_small.zip"] == served


def test_broken_download_keeps_part_and_next_run_resumes(fma, server, tmp_path):
    size = fma.archives["fma_small"].stat().st_size
    dest, cut = tmp_path / "fma_small.zip", 1_000_000
    server.cut_after["fma_small.zip"] = cut
    with pytest.raises(DataError, match="run again to resume"):
        download(server.url + "fma_small.zip", dest, fma.sha1["fma_small"], "fma_small")
    assert not dest.exists()
    kept = dest.with_name("fma_small.zip.part").stat().st_size
    assert cut - DOWNLOAD_CHUNK_SIZE < kept <= cut  # what arrived, but for the last unfinished read
    del server.cut_after["fma_small.zip"]
    server.reset_counts()
    download(server.url + "fma_small.zip", dest, fma.sha1["fma_small"], "fma_small")
    assert server.bytes_served["fma_small.zip"] == size - kept
    assert sha1_file(dest) == fma.sha1["fma_small"]


def test_missing_file_on_server_is_a_clear_error(server, tmp_path):
    with pytest.raises(DataError, match=r"fma_large.zip: HTTP 404"):
        download(server.url + "fma_large.zip", tmp_path / "fma_large.zip", None, "fma_large")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- FMA end to end through the library


def fma_source(kind: str, fma, server, tmp_path: Path) -> str:
    """The fixture as each kind of data.source: URL, folder of archives, folder of unpacked files."""
    if kind == "url":
        return server.url
    if kind == "archives":
        return str(fma.directory)
    unpacked = tmp_path / "unpacked"
    for name in ("fma_metadata", "fma_small"):
        with zipfile.ZipFile(fma.archives[name]) as archive:
            archive.extractall(unpacked)
    (unpacked / "fma_small" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (unpacked / "fma_small" / "000" / "._000182.mp3").write_bytes(b"\0\5\26\7")
    return str(unpacked)


@pytest.mark.parametrize(
    "kind, dataset",
    [("url", "fma_small"), ("archives", "fma_small"), ("archives", "fma_medium"), ("unpacked", "fma_small")],
)
def test_fetch_fma_whole_subset(fma, server, tmp_path, kind, dataset):
    source = fma_source(kind, fma, server, tmp_path)
    raw, downloads = tmp_path / "data" / "raw", tmp_path / "data" / "downloads"
    report = fetch_fma(dataset, source, fma.sha1, None, 0, raw, downloads)

    clips = read_clips(raw)
    expected_ids = fma.clip_ids(dataset)
    assert list(clips["track_id"]) == expected_ids
    assert ("000003" in expected_ids) == (dataset == "fma_medium")  # medium includes small, not vice versa
    assert {NO_AUDIO_ID, SHORT_ID} <= set(expected_ids)
    for row in clips.itertuples():
        assert row.genre == fma.tracks[row.track_id]["genre"]
        assert row.official_split == fma.tracks[row.track_id]["split"]
        assert row.path == (raw / "audio" / row.track_id[:3] / f"{row.track_id}.mp3").as_posix()
        assert Path(row.path).read_bytes() == fma.audio[row.track_id]
    assert sorted(p.name for p in raw.iterdir()) == [
        "audio",
        "clips.csv",
        "fetch_report.json",
        "fma_metadata",
        "track_info.csv",
    ]
    names = read_track_info(raw / "track_info.csv")
    assert names.values.tolist() == [[t, fma.tracks[t]["artist"], fma.tracks[t]["title"]] for t in expected_ids]
    assert names.set_index("track_id").loc["000182"].tolist() == [
        "Ariel Pink's Haunted Graffiti",
        "Jules Lost His Jewels",
    ]
    assert json.loads((raw / "fetch_report.json").read_text()) == report
    assert report["clips"] == len(expected_ids)
    assert report["clips_per_genre"] == clips.groupby("genre").size().to_dict()
    expected_verified = VERIFIED_NONE if kind == "unpacked" else VERIFIED_SHA1
    assert {a["verified"] for a in report["archives"].values()} == {expected_verified}
    assert set(report["archives"]) == {"fma_metadata", dataset}
    ignored = report["skipped"]["ignored_files"]
    assert f"{dataset}/README.txt" in ignored["examples"]
    assert ignored["count"] == (4 if kind == "unpacked" else 2)  # + .DS_Store and ._000182.mp3
    downloaded = sorted(p.name for p in downloads.iterdir()) if downloads.exists() else []
    assert downloaded == (["fma_metadata.zip", f"{dataset}.zip"] if kind == "url" else [])


def test_clips_per_genre_over_http_reads_only_the_chosen_members(fma, server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw, downloads = Path("data/raw"), Path("data/downloads")
    report = fetch_fma("fma_small", server.url, fma.sha1, 1, 0, raw, downloads)
    archive_size = fma.archives["fma_small"].stat().st_size
    chosen = read_clips(raw)
    chosen_bytes = sum(len(fma.audio[t]) for t in chosen["track_id"])
    assert report["clips_per_genre"] == {"Experimental": 1, "Folk": 1, "Pop": 1, "Rock": 1}
    assert all(r.startswith("bytes=") for _, r in server.requests)  # no whole-file request
    served = server.bytes_served["fma_small.zip"]
    assert served < archive_size / 2
    assert served < chosen_bytes + 200_000  # the members, plus the central directory and headers
    assert report["archives"] == {
        "fma_metadata": {"file": "fma_metadata.zip", "sha1": None, "verified": VERIFIED_MEMBER_CRC32},
        "fma_small": {"file": "fma_small.zip", "sha1": None, "verified": VERIFIED_MEMBER_CRC32},
    }
    assert not downloads.exists() or list(downloads.iterdir()) == []
    for row in chosen.itertuples():
        assert row.path.startswith("data/raw/audio/")
        assert Path(row.path).read_bytes() == fma.audio[row.track_id]
    # Same params, same bytes (in another working copy).
    (tmp_path / "again").mkdir()
    monkeypatch.chdir(tmp_path / "again")
    fetch_fma("fma_small", server.url, fma.sha1, 1, 0, raw, downloads)
    for name in ("clips.csv", "track_info.csv", "fetch_report.json"):
        assert (raw / name).read_bytes() == (tmp_path / raw / name).read_bytes()


def test_clips_per_genre_from_local_archives_checks_sha1(fma, tmp_path):
    report = fetch_fma("fma_small", str(fma.directory), fma.sha1, 2, 0, tmp_path / "raw", tmp_path / "dl")
    assert report["clips_per_genre"] == {"Experimental": 2, "Folk": 2, "Pop": 2, "Rock": 2}
    assert {a["verified"] for a in report["archives"].values()} == {VERIFIED_SHA1}
    assert {a["sha1"] for a in report["archives"].values()} == {fma.sha1["fma_metadata"], fma.sha1["fma_small"]}


def test_local_archive_with_wrong_checksum_is_kept_and_reported(fma, tmp_path):
    checksums = dict(fma.sha1, fma_small="f" * 40)
    with pytest.raises(ChecksumError) as caught:
        fetch_fma("fma_small", str(fma.directory), checksums, None, 0, tmp_path / "raw", tmp_path / "dl")
    assert "f" * 40 in str(caught.value) and fma.sha1["fma_small"] in str(caught.value)
    assert fma.archives["fma_small"].exists()  # the user's own file is not deleted
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_BZIP2], ids=["stored", "bzip2"])
@pytest.mark.parametrize("kind", ["archives", "url"])
def test_corrupt_member_fails_clearly_and_leaves_old_output(fma, tmp_path, compression, kind):
    source = tmp_path / "source"
    source.mkdir()
    shutil.copyfile(fma.archives["fma_metadata"], source / "fma_metadata.zip")
    good = fma.archives["fma_small"]  # bzip2 members
    if compression == zipfile.ZIP_STORED:
        with zipfile.ZipFile(fma.archives["fma_small"]) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        good = tmp_path / "stored.zip"
        write_zip(good, members, compression)
    member = "fma_small/000/000182.mp3"  # Rock: chosen whenever 2 clips per genre are
    corrupt_member(good, member, source / "fma_small.zip")
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "clips.csv").write_text("from an earlier run\n")
    checksums = dict(fma.sha1, fma_small=None)
    with RangeServer(source) as running:
        where = running.url if kind == "url" else str(source)
        with pytest.raises(ChecksumError) as caught:
            fetch_fma("fma_small", where, checksums, 2 if kind == "url" else None, 0, raw, tmp_path / "dl")
    message = str(caught.value)
    assert member in message and "corrupt" in message
    if compression == zipfile.ZIP_STORED:
        assert "Bad CRC-32" in message
    assert (raw / "clips.csv").read_text() == "from an earlier run\n"
    assert sorted(p.name for p in raw.iterdir()) == ["clips.csv"]


@pytest.mark.parametrize("evil", ["../evil.mp3", "/tmp/evil.mp3", "fma_small/../../evil.mp3", "C:/evil.mp3"])
def test_zip_member_escaping_the_output_is_refused(fma, tmp_path, evil):
    source = tmp_path / "source"
    source.mkdir()
    shutil.copyfile(fma.archives["fma_metadata"], source / "fma_metadata.zip")
    write_zip(source / "fma_small.zip", {"fma_small/000/000182.mp3": fma.audio["000182"], evil: b"x"})
    raw = tmp_path / "work" / "data" / "raw"
    with pytest.raises(DataError, match=r"escape the output folder") as caught:
        fetch_fma("fma_small", str(source), {}, None, 0, raw, tmp_path / "dl")
    assert evil in str(caught.value)
    assert not raw.exists()
    assert not (tmp_path / "evil.mp3").exists() and not (tmp_path / "work" / "evil.mp3").exists()


@pytest.mark.parametrize(
    "evil, link",
    [
        ("../evil.wav", None),
        ("/tmp/evil.wav", None),
        ("genres/blues/../../../evil.wav", None),
        ("genres/blues/blues.00001.wav", "../../../../etc/passwd"),  # a symlink pointing out
    ],
)
def test_tar_member_escaping_the_output_is_refused(gtzan_mini, tmp_path, evil, link):
    clip = (gtzan_mini / "blues" / "blues.00000.wav").read_bytes()
    members = {"genres/blues/blues.00000.wav": clip}
    if link is None:
        members[evil] = b"x"
    write_tar(tmp_path / "genres.tar.gz", members, {evil: link} if link else None)
    raw = tmp_path / "work" / "raw"
    with pytest.raises(DataError) as caught:
        fetch_gtzan(str(tmp_path / "genres.tar.gz"), None, None, 0, raw, tmp_path / "dl")
    assert evil in str(caught.value) and "nothing was extracted" in str(caught.value)
    assert not raw.exists() and not (tmp_path / "evil.wav").exists()


def test_ranged_read_needs_a_server_that_honours_ranges(fma, server, tmp_path):
    server.honour_ranges = False
    with pytest.raises(DataError, match="does not answer HTTP Range requests.*clips_per_genre to null"):
        fetch_fma("fma_small", server.url, fma.sha1, 2, 0, tmp_path / "raw", tmp_path / "dl")
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize(
    "source, public",
    [
        ("https://os.unil.cloud.switch.ch/fma/", "https://os.unil.cloud.switch.ch/fma/"),
        ("https://user:secret@mirror.example:8443/fma/?token=abc", "https://mirror.example:8443/fma/"),
        ("../shared/data/gtzan_mini", "../shared/data/gtzan_mini"),
    ],
)
def test_public_source_drops_credentials(source, public):
    assert public_source(source) == public


@pytest.mark.parametrize("prefix", ["http://h/fma/", "http://h/fma", "http://h/fma/fma_small.zip"])
def test_join_url(prefix):
    assert join_url(prefix, "fma_small.zip") == "http://h/fma/fma_small.zip"


def test_open_archive_lists_bzip2_members(fma):
    archive, record = open_archive(
        str(fma.directory), "fma_metadata.zip", "fma_metadata", fma.sha1["fma_metadata"], Path("unused"), ranged=False
    )
    with archive:
        assert archive.names() == [
            "fma_metadata/echonest.csv",
            "fma_metadata/features.csv",
            "fma_metadata/genres.csv",
            "fma_metadata/tracks.csv",
        ]
        assert {i.compress_type for i in archive.zip_file.infolist()} == {zipfile.ZIP_BZIP2}
    assert record == {"file": "fma_metadata.zip", "sha1": fma.sha1["fma_metadata"], "verified": VERIFIED_SHA1}


# ---------------------------------------------------------------- tracks.csv and clip choice


@pytest.mark.parametrize(
    "dataset, clips, without_genre", [("fma_small", 58, 0), ("fma_medium", 58 + 136, 0), ("fma_large", 682 - 51, 51)]
)
def test_tracks_head_subsets(shared_data, dataset, clips, without_genre):
    tracks = read_tracks(shared_data / "fma" / "fma_metadata" / "tracks_head.csv")
    assert len(tracks) == 682
    assert tracks["subset"].value_counts().to_dict() == {"large": 488, "medium": 136, "small": 58}
    chosen, skipped = subset_clips(tracks, dataset)
    assert (len(chosen), skipped) == (clips, without_genre)
    assert chosen["track_id"].is_monotonic_increasing and chosen["track_id"].str.fullmatch(r"\d{6}").all()
    assert set(chosen["official_split"]) == {"training", "validation", "test"}
    genre = dict(zip(chosen["track_id"], chosen["genre"]))
    assert (genre["000141"], genre["000148"], genre["000182"]) == ("Folk", "Experimental", "Rock")
    assert ("000003" in genre) == (dataset != "fma_small")  # a Hip-Hop track of the medium subset


def test_tracks_artist_and_title_are_blank_where_tracks_csv_lacks_them(shared_data, tmp_path):
    raw = pd.read_csv(shared_data / "fma" / "fma_metadata" / "tracks_head.csv", index_col=0, header=[0, 1])
    raw.loc[141, ("track", "title")] = None  # an empty cell
    raw.to_csv(tmp_path / "with_names.csv")
    raw.drop(columns=[("artist", "name"), ("track", "title")]).to_csv(tmp_path / "without_names.csv")
    tracks = read_tracks(tmp_path / "with_names.csv").set_index("track_id")
    assert tracks.loc["000141", ["artist", "title"]].tolist() == ["Alec K. Redfearn & the Eyesores", ""]
    assert tracks.loc["000182", ["artist", "title"]].tolist() == [
        "Ariel Pink's Haunted Graffiti",
        "Jules Lost His Jewels",
    ]
    tracks = read_tracks(tmp_path / "without_names.csv")
    assert len(tracks) == 682 and (tracks[["artist", "title"]] == "").all().all()


@pytest.mark.parametrize("text", ["genre_id,title\n1,Rock\n", "a,b\nc,d\ne,f\n1,2\n"])
def test_read_tracks_rejects_other_tables(tmp_path, text):
    path = tmp_path / "tracks.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=str(path).replace("\\", "\\\\")):
        read_tracks(path)


@pytest.mark.parametrize("clips_per_genre", [None, 1, 3, 50])
def test_choose_clips(clips_per_genre):
    sizes = {"rock": 7, "jazz": 2, "folk": 12}
    clips = pd.DataFrame(
        [{"track_id": f"{genre}.{i:05d}", "genre": genre} for genre, n in sizes.items() for i in range(n)]
    ).sample(frac=1, random_state=1)
    chosen = choose_clips(clips, clips_per_genre, seed=0)
    assert chosen["track_id"].is_monotonic_increasing and set(chosen["track_id"]) <= set(clips["track_id"])
    cap = clips_per_genre or 10**9
    assert chosen.groupby("genre").size().to_dict() == {g: min(n, cap) for g, n in sizes.items()}
    pd.testing.assert_frame_equal(chosen, choose_clips(clips.sort_values("track_id"), clips_per_genre, seed=0))
    if clips_per_genre == 3:
        picks = {tuple(choose_clips(clips, 3, seed)["track_id"]) for seed in range(10)}
        assert len(picks) > 1  # the seed matters


def test_choose_clips_follows_the_documented_recipe():
    clips = pd.DataFrame({"track_id": [f"{i:06d}" for i in range(20)], "genre": ["b"] * 8 + ["a"] * 12})
    rng = np.random.default_rng(5)
    expected = sorted(rng.choice([f"{i:06d}" for i in range(8, 20)], 4, replace=False)) + sorted(
        rng.choice([f"{i:06d}" for i in range(8)], 4, replace=False)
    )
    assert list(choose_clips(clips, 4, seed=5)["track_id"]) == sorted(expected)


# ---------------------------------------------------------------- GTZAN


def gtzan_copy(gtzan_mini: Path, root: Path, genres=("blues", "rock"), per_genre=3) -> list[str]:
    ids = []
    for genre in genres:
        (root / genre).mkdir(parents=True)
        for path in sorted((gtzan_mini / genre).glob("*.wav"))[:per_genre]:
            shutil.copyfile(path, root / genre / path.name)
            ids.append(path.stem)
    return sorted(ids)


@pytest.mark.parametrize("nesting", ["", "genres/"])
def test_gtzan_from_a_folder_ignores_stray_files(gtzan_mini, tmp_path, nesting):
    source = tmp_path / "gtzan"
    ids = gtzan_copy(gtzan_mini, source / nesting)
    (source / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (source / nesting / "blues" / "._blues.00000.wav").write_bytes(b"\0\5\26\7")
    (source / nesting / "bextract_single.mf").write_text("blues/blues.00000.wav\tblues\n")
    raw = tmp_path / "raw"
    report = fetch_gtzan(str(source), None, None, 0, raw, tmp_path / "dl")
    clips = read_clips(raw)
    assert list(clips["track_id"]) == ids
    assert set(clips["official_split"]) == {""}
    for row in clips.itertuples():
        assert row.genre == row.track_id.split(".")[0]
        assert row.path == (raw / "audio" / row.genre / f"{row.track_id}.wav").as_posix()
        assert Path(row.path).read_bytes() == (gtzan_mini / row.genre / f"{row.track_id}.wav").read_bytes()
    assert report["skipped"]["ignored_files"]["count"] == 3
    assert report["archives"]["gtzan"]["verified"] == VERIFIED_NONE
    assert not (raw / "audio" / "blues" / "._blues.00000.wav").exists()


def test_gtzan_mini_with_clips_per_genre(gtzan_mini, tmp_path):
    report = fetch_gtzan(str(gtzan_mini), None, 2, 0, tmp_path / "raw", tmp_path / "dl")
    assert report["clips_per_genre"] == {genre: 2 for genre in GTZAN_GENRES}
    assert len(list((tmp_path / "raw" / "audio").glob("*/*.wav"))) == 20
    names = read_track_info(tmp_path / "raw" / "track_info.csv")  # GTZAN names no artist nor title
    assert len(names) == 20 and (names[["artist", "title"]] == "").all().all()


@pytest.mark.parametrize("form", ["file", "folder", "url", "url-prefix"])
@pytest.mark.parametrize("checksum_given", [True, False])
def test_gtzan_from_genres_tar_gz(gtzan_mini, tmp_path, form, checksum_given):
    staging = tmp_path / "staging"
    ids = gtzan_copy(gtzan_mini, staging / "genres", genres=("jazz", "metal"), per_genre=2)
    served = tmp_path / "served"
    served.mkdir()
    archive = served / "genres.tar.gz"
    members = {
        f"genres/{i.split('.')[0]}/{i}.wav": (staging / "genres" / i.split(".")[0] / f"{i}.wav").read_bytes()
        for i in ids
    }
    members["genres/bextract_single.mf"] = b"jazz/jazz.00000.wav\tjazz\n"
    write_tar(archive, members)
    sha1 = sha1_file(archive)
    raw, downloads = tmp_path / "raw", tmp_path / "dl"
    with RangeServer(served) as running:
        source = {
            "file": str(archive),
            "folder": str(served),
            "url": running.url + "genres.tar.gz",
            "url-prefix": running.url,
        }[form]
        report = fetch_gtzan(source, sha1 if checksum_given else None, None, 0, raw, downloads)
    assert list(read_clips(raw)["track_id"]) == ids
    assert report["archives"]["gtzan"] == {
        "file": "genres.tar.gz",
        "sha1": sha1,
        "verified": VERIFIED_SHA1 if checksum_given else VERIFIED_SHA1_NOT_CHECKED,
    }
    assert report["skipped"]["ignored_files"] == {"count": 1, "examples": ["genres/bextract_single.mf"]}
    assert (downloads / "genres.tar.gz").exists() == form.startswith("url")


@pytest.mark.parametrize("bad_name", ["blues/rock.00001.wav", "blues/blues1.wav", "blues.00000.wav"])
def test_gtzan_audio_out_of_layout_is_an_error(gtzan_mini, tmp_path, bad_name):
    source = tmp_path / "gtzan"
    gtzan_copy(gtzan_mini, source, genres=("blues",), per_genre=1)
    (source / bad_name).write_bytes(b"RIFF")
    with pytest.raises(DataError, match="out of GTZAN's layout"):
        fetch_gtzan(str(source), None, None, 0, tmp_path / "raw", tmp_path / "dl")
    assert not (tmp_path / "raw").exists()


# ---------------------------------------------------------------- params

GOOD_DATA = {
    "dataset": "fma_small",
    "source": "https://os.unil.cloud.switch.ch/fma/",
    "checksums": {
        "fma_metadata": "f0df49ffe5f2a6008d7dc83c6915b31835dfe733",
        "fma_small": "ade154f733639d52e35e32f5593efe5be76c6d70",
        "fma_medium": None,
        "fma_large": None,
        "gtzan": None,
    },
    "clips_per_genre": None,
    "seed": 0,
    "root": None,
}


def read_data_params(tmp_path: Path, data: dict):
    """The data section as the fetch stage reads it: params.yaml validated, then the source checked."""
    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    params["data"] = data
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    section = load_config(tmp_path / "params.yaml").data
    fetch_stage.check_source(section)
    return section


@pytest.mark.parametrize(
    "change, message",
    [
        ({"dataset": "fma_tiny"}, 'data.dataset = "fma_tiny": Input should be '),
        (
            {"source": "ftp://example.org/fma/"},
            "data.source = 'ftp://example.org/fma/' is not an http(s) URL prefix or an existing folder",
        ),
        ({"source": "/no/such/folder"}, "data.source = '/no/such/folder' is not"),
        (
            {"dataset": "gtzan", "source": "/no/such/genres.tar.gz"},
            "is not an http(s) URL prefix or an existing folder or archive file",
        ),
        ({"clips_per_genre": 0}, "data.clips_per_genre = 0: Input should be greater than 0"),
        ({"clips_per_genre": -3}, "data.clips_per_genre = -3"),
        ({"clips_per_genre": 2.5}, "data.clips_per_genre = 2.5"),
        ({"clips_per_genre": "20"}, 'data.clips_per_genre = "20"'),
        ({"clips_per_genre": True}, "data.clips_per_genre = true"),
        ({"seed": -1}, "data.seed = -1: Input should be greater than or equal to 0"),
        (
            {"checksums": dict(GOOD_DATA["checksums"], fma_small="abc")},
            'data.checksums.fma_small = "abc": String should match pattern',
        ),
        ({"checksums": dict(GOOD_DATA["checksums"], fma_small="g" * 40)}, 'data.checksums.fma_small = "ggg'),
        ({"checksums": dict(GOOD_DATA["checksums"], fma_metadata=1234)}, "data.checksums.fma_metadata = 1234"),
        ({"checksums": dict(GOOD_DATA["checksums"], fma_smal=None)}, "data.checksums.fma_smal = null: unknown key"),
        ({"checksums": {"fma_small": None}}, "data.checksums.fma_metadata: missing; dataset fma_small needs it"),
        ({"checksums": None}, "data.checksums = null: Input should be a valid dictionary or instance of Checksums"),
    ],
)
def test_bad_data_params(tmp_path, change, message):
    with pytest.raises(ParamError) as error:
        read_data_params(tmp_path, dict(GOOD_DATA, **change))
    assert message in str(error.value)


def test_good_data_params(tmp_path):
    data = read_data_params(
        tmp_path,
        dict(
            GOOD_DATA,
            checksums=dict(GOOD_DATA["checksums"], fma_small=GOOD_DATA["checksums"]["fma_small"].upper()),
            clips_per_genre=20,
        ),
    )
    assert fetch_stage.checksums(data)["fma_small"] == "ade154f733639d52e35e32f5593efe5be76c6d70"
    assert data.clips_per_genre == 20
    # the archives a dataset does not use may be left out; only those listed are passed on
    data = read_data_params(tmp_path, dict(GOOD_DATA, checksums={"fma_metadata": None, "fma_small": None}))
    assert fetch_stage.checksums(data) == {"fma_metadata": None, "fma_small": None}


def test_stage_checks_params_before_any_download(fma, server, tmp_path, monkeypatch):
    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    params["data"].update(source=server.url, clips_per_genre=0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamError, match="clips_per_genre"):
        fetch_stage.main()
    assert server.requests == [] and not (tmp_path / "data").exists()
