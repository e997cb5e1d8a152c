"""A library of your own music (genreclf.recommend): the incremental per-song cache, tags, and
what a folder holds that is not a song. The songs are real GTZAN clips (cut short, so that the
FMA features take a second each) and an FMA mp3, embedded with the FMA feature set."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from genreclf import recommend
from genreclf.artifacts import write_similarity_index
from genreclf.features import fma_features as features
from genreclf.models import neighbours

RATE = 22050
SONG_SECONDS = 4
FMA_MP3 = "fma/fma_audio/000/000182.mp3"
INFO = {
    "embedding": "features",
    "sample_rate": RATE,
    "params": features.params_to_dict(features.DEFAULT_PARAMS),
    "columns": list(features.FEATURE_COLUMNS),
}


def write_song(gtzan_mini, folder, relative: str, genre: str, index: int, offset: float = 0.0):
    """A 4 s piece of a real GTZAN clip as ``folder/relative`` (wav or flac, by its extension)."""
    samples, rate = sf.read(gtzan_mini / genre / f"{genre}.{index:05d}.wav", dtype="int16")
    start = int(offset * rate)
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples[start : start + SONG_SECONDS * rate], rate)
    return path


def index_bytes(build: recommend.LibraryBuild, folder) -> dict[str, bytes]:
    """The files of the index the stage would write for this build."""
    index = neighbours.build_index(build.vectors)
    target = folder / "index"
    write_similarity_index(target, index.mean, index.scale, index.vectors, build.table, INFO)
    return {p.name: p.read_bytes() for p in sorted(target.iterdir())}


@pytest.fixture
def library(tmp_path, gtzan_mini):
    folder = tmp_path / "My Music"
    write_song(gtzan_mini, folder, "Jazz/Ann - One.wav", "jazz", 0)
    write_song(gtzan_mini, folder, "Rock/deep/Bob - Two.wav", "rock", 1)
    write_song(gtzan_mini, folder, "loose.wav", "blues", 2)
    (folder / "Jazz" / "cover.txt").write_text("not audio")
    return folder


def test_added_renamed_and_removed_songs_are_incremental_and_the_index_is_a_scratch_builds(
    library, tmp_path, gtzan_mini
):
    cache = tmp_path / "cache"
    first = recommend.build_library(library, INFO, cache)
    assert (first.embedded, first.reused, first.other_files, first.failed) == (3, 0, 1, [])
    assert first.table["track_id"].tolist() == ["Jazz/Ann - One.wav", "Rock/deep/Bob - Two.wav", "loose.wav"]

    write_song(gtzan_mini, library, "New/Cid - Three.wav", "metal", 3)
    write_song(gtzan_mini, library, "zz.wav", "pop", 4)
    added = recommend.build_library(library, INFO, cache)
    assert (added.embedded, added.reused) == (2, 3)
    scratch = recommend.build_library(library, INFO, tmp_path / "fresh cache")
    assert (scratch.embedded, scratch.reused) == (5, 0)
    assert index_bytes(added, tmp_path / "a") == index_bytes(scratch, tmp_path / "b")

    (library / "loose.wav").rename(library / "Jazz" / "renamed.wav")
    renamed = recommend.build_library(library, INFO, cache)
    assert (renamed.embedded, renamed.reused) == (0, 5)
    assert "Jazz/renamed.wav" in renamed.table["track_id"].tolist()
    row = renamed.table["track_id"].tolist().index("Jazz/renamed.wav")
    np.testing.assert_array_equal(renamed.vectors[row], first.vectors[2])  # the cached vector, exactly

    shutil.rmtree(library / "Rock")
    removed = recommend.build_library(library, INFO, cache)
    assert (removed.embedded, removed.reused) == (0, 4)
    assert not any(t.startswith("Rock/") for t in removed.table["track_id"])
    assert index_bytes(removed, tmp_path / "c") == index_bytes(
        recommend.build_library(library, INFO, tmp_path / "another cache"), tmp_path / "d"
    )


def test_tags_of_mp3_and_flac_name_artist_and_title_and_a_bad_file_is_left_out(tmp_path, gtzan_mini, shared_data):
    from mutagen.easyid3 import EasyID3
    from mutagen.flac import FLAC

    folder = tmp_path / "lib"
    folder.mkdir()
    mp3 = folder / "Ünïcode & Friends" / "track 1.mp3"
    mp3.parent.mkdir()
    shutil.copy(shared_data / FMA_MP3, mp3)
    tags = EasyID3()
    tags.update({"artist": "Zoë Keating", "title": "Sun Will Set"})
    tags.save(mp3)
    flac = write_song(gtzan_mini, folder, "b.flac", "classical", 5)
    flac_tags = FLAC(flac)
    flac_tags.update({"artist": "Bach", "title": "Air"})
    flac_tags.save()
    untagged = write_song(gtzan_mini, folder, "c.wav", "disco", 6)
    (folder / "broken.mp3").write_bytes(b"not audio at all" * 64)

    assert recommend.read_tags(mp3) == ("Zoë Keating", "Sun Will Set")
    assert recommend.read_tags(flac) == ("Bach", "Air")
    assert recommend.read_tags(untagged) == ("", "")
    build = recommend.build_library(folder, INFO, tmp_path / "cache")
    assert build.table["track_id"].tolist() == ["b.flac", "c.wav", "Ünïcode & Friends/track 1.mp3"]
    assert build.table["artist"].tolist() == ["Bach", "", "Zoë Keating"]
    assert build.table["title"].tolist() == ["Air", "", "Sun Will Set"]
    assert len(build.failed) == 1 and build.failed[0].startswith(f"{folder / 'broken.mp3'}: cannot decode audio")
    assert build.embedded == 3 and build.vectors.shape == (3, len(features.FEATURE_COLUMNS))


def test_a_missing_or_empty_library_folder_is_a_clear_error(tmp_path):
    with pytest.raises(recommend.DataError, match="the library folder does not exist"):
        recommend.library_files(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(recommend.DataError, match="no audio files"):
        recommend.library_files(tmp_path / "empty")


def test_a_song_is_hashed_again_only_when_its_size_or_mtime_changes(tmp_path, monkeypatch):
    (tmp_path / "a.wav").write_bytes(b"one")
    memo = recommend.HashMemo(tmp_path / "hashes.json")
    first = memo.sha256(tmp_path, "a.wav")
    memo.save()
    reads = []
    monkeypatch.setattr(recommend, "file_sha256", lambda path: reads.append(path) or "changed")
    assert recommend.HashMemo(tmp_path / "hashes.json").sha256(tmp_path, "a.wav") == first and reads == []
    (tmp_path / "a.wav").write_bytes(b"two!")
    assert recommend.HashMemo(tmp_path / "hashes.json").sha256(tmp_path, "a.wav") == "changed"


@pytest.mark.slow  # TensorFlow and the musicnn network
def test_the_musicnn_library_path_gives_each_songs_clip_embedding(tmp_path):
    """Songs embedded with decoding in a thread ahead of the model give exactly the embedding of
    musicnn.clip_embedding on each alone; a song shorter than a patch is an error of its own."""
    import keras

    from genreclf.models import musicnn
    from tests.support.helpers import to_int16, tone

    keras.utils.set_random_seed(0)
    model = musicnn.build_model()
    info = {"embedding": "musicnn", "sample_rate": 16000, "params": {"embedding": "penultimate"}}
    embedder = recommend.Embedder(info, model=model)
    paths = []
    for i, seconds in enumerate([7.0, 1.0, 4.0]):
        path = tmp_path / f"{i}.wav"
        sf.write(path, to_int16(tone(seconds, 16000, 300.0 + 100 * i)), 16000)
        paths.append(path)
    results = list(embedder.embed_files(paths))
    assert isinstance(results[1], recommend.GenreError) and "shorter than one 3 s patch" in str(results[1])
    for path, result in zip([paths[0], paths[2]], [results[0], results[2]]):
        samples = features.int16_to_float(sf.read(path, dtype="int16")[0])
        np.testing.assert_array_equal(result, musicnn.clip_embedding(model, samples, "penultimate"))
