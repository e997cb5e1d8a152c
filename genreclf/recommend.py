"""Similar songs: embedding new audio as an index was built, and the index of a folder of music.

A *library* is a folder of the user's own audio files (any layout, unlabelled, possibly outside
the project). ``build_library`` embeds each file with the embedding the index uses (musicnn or
the FMA features), keeps the artist and title of its tags, and returns the rows of the index
in the order of the files' relative paths (so the index depends on the folder's content only).

The per-song work is kept in a cache outside the stage's outputs,
``.genreclf-scratch/recommend_library/<key>/<sha256 of the file>.json`` (the embedding as exact
float64 JSON numbers, artist, title): ``key`` hashes the embedding's params and the code that
computes it, the file name is the SHA-256 of the song's bytes. A rerun therefore embeds only
new or changed songs; a renamed or moved song is found by its content and is not embedded
again; a removed song is simply not listed. A cached song gives the same float64 vector that a
fresh embedding gives (each song is embedded alone, in the same batches), so the index is the
one a build from scratch writes. The SHA-256 of each file is itself remembered by path, size and
mtime (``hashes.json``), so an unchanged library is not read again in full.

cnn2d is not offered for a library: its layer "dense" is trained to separate the dataset's
own genres, on clips of the dataset's length, so it describes a user's songs only through
those labels, and every retraining would invalidate the whole library's cache.

Knows nothing of DVC or params.yaml: it takes paths and the index's ``info``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from genreclf.errors import DataError, GenreError
from genreclf.io import write_json, write_text

CACHE_ROOT = Path(".genreclf-scratch") / "recommend_library"
HASHES_FILE = "hashes.json"
LIBRARY_EMBEDDINGS = ("musicnn", "features")  # cnn2d: see the module's docstring
LIBRARY_SPLIT = "library"  # the split column of a library's rows (the dataset's: train, val)
READ_BLOCK = 1 << 20
CODE_FILES = ("recommend.py", "models/musicnn.py", "features/fma_features.py", "data/audio.py")


def track_name(artist: str, title: str) -> str:
    """'artist - title', or whichever of them is known ('' for none)."""
    return " - ".join(part for part in (artist, title) if part)


# ---- embedding audio as an index was built ------------------------------------------------------


class Embedder:
    """The embedding of one int16 clip, as the index has it (``info['embedding']``, ``info['params']``)."""

    def __init__(self, info: dict, where: str = "the index", model=None):
        """``model``: the network or predictor to embed with (None: the one ``info`` names, loaded when needed)."""
        from genreclf.artifacts import RECOMMEND_EMBEDDINGS

        self.info, self._model = info, model
        if info.get("embedding") not in RECOMMEND_EMBEDDINGS:
            raise DataError(f"{where}: unknown embedding {info.get('embedding')!r}; run `dvc repro recommend_index`")

    def __call__(self, clip: np.ndarray) -> np.ndarray:
        from genreclf.features import fma_features

        params = self.info["params"]
        if self.info["embedding"] == "cnn2d":
            return self._cnn2d(params).embed_audio(clip, params["layer"])  # int16, as the stage embeds its WAVs
        samples = fma_features.int16_to_float(clip)  # as the features and embed stages read their WAVs
        if self.info["embedding"] == "features":  # computed (some families), or FMA's table: refused
            from genreclf.features import fma_tables

            recipe = fma_tables.AudioRecipe(params, self.info["columns"], "the index's params")
            return recipe(samples, self.info["sample_rate"])
        from genreclf.models import musicnn

        return musicnn.clip_embedding(
            self.musicnn_model(), samples, params["embedding"], params.get("patches_per_clip")
        )

    def musicnn_model(self):
        """The pretrained network the musicnn embeddings were made with, loaded once."""
        if self._model is None:
            import keras

            from genreclf.artifacts import read_pretrained

            model_file, _ = read_pretrained(self.info["params"]["model"])
            self._model = keras.models.load_model(model_file, compile=False)
        return self._model

    def _cnn2d(self, params: dict):
        """The trained cnn2d the index was built with (its predictor), loaded once."""
        if self._model is None:
            from genreclf.models.predictors import load_predictor

            self._model = load_predictor(params["model"])
        return self._model

    def embed_files(self, paths: list[Path]) -> Iterator[np.ndarray | GenreError]:
        """The embedding of each file in turn, or the error that stopped it. For musicnn, the next
        songs are decoded and turned into log-mel patches in a thread while the model runs."""
        from genreclf.data.audio import decode_clip

        rate = self.info["sample_rate"]
        if self.info["embedding"] != "musicnn":
            for path in paths:
                try:
                    yield self(decode_clip(path, rate))
                except GenreError as e:
                    yield e
            return
        from genreclf.models import musicnn

        params, model = self.info["params"], self.musicnn_model()

        def patches_of(path: Path) -> np.ndarray:
            return musicnn.clip_patches(musicnn.clip_audio(path, rate), params.get("patches_per_clip"))

        for batch in musicnn.prefetched(paths, patches_of):
            yield (
                batch if isinstance(batch, GenreError) else musicnn.patches_embedding(model, batch, params["embedding"])
            )


# ---- the files of a library and their content --------------------------------------------------


def library_files(folder: str | Path) -> tuple[list[str], int]:
    """(relative POSIX paths of the audio files under ``folder``, sorted; the number of other files).
    Hidden files and folders (a leading dot) are left out."""
    from genreclf.data.audio import is_audio_file

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: the library folder does not exist; set recommend.library to a folder of audio")
    audio, others = [], 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            relative = (Path(root) / name).relative_to(folder).as_posix()
            if is_audio_file(name):
                audio.append(relative)
            else:
                others += 1
    if not audio:
        raise DataError(f"{folder}: no audio files (wav, au, mp3, flac, ogg) in the library folder", path=folder)
    return sorted(audio), others


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class HashMemo:
    """The SHA-256 of each library file, remembered by relative path, size and mtime (ns)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.known = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.known = {}
        self.fresh: dict[str, list] = {}

    def sha256(self, folder: Path, relative: str) -> str:
        stat = os.stat(folder / relative)
        record = self.known.get(relative)
        if not (isinstance(record, list) and record[:2] == [stat.st_size, stat.st_mtime_ns]):
            record = [stat.st_size, stat.st_mtime_ns, file_sha256(folder / relative)]
        self.fresh[relative] = record
        return record[2]

    def save(self) -> None:
        """Keep the records of the files seen in this run only."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text(self.path, json.dumps(self.fresh, sort_keys=True))


def read_tags(path: str | Path) -> tuple[str, str]:
    """(artist, title) from the file's ID3, Vorbis or FLAC tags; '' for what they do not name."""
    import mutagen

    try:
        tags = mutagen.File(path, easy=True)
    except (mutagen.MutagenError, OSError, ValueError):
        return "", ""
    if tags is None or tags.tags is None:
        return "", ""

    def first(key: str) -> str:
        values = tags.tags.get(key) or [""]
        return str(values[0]).strip()

    return first("artist"), first("title")


# ---- the per-song cache -----------------------------------------------------------------------


def cache_key(info: dict) -> str:
    """What a cached song's embedding depends on: the index's embedding, sample rate and params,
    the network's bytes (musicnn: the model file its params name) and the code that decodes and
    embeds it."""
    digest = hashlib.sha256(
        json.dumps({k: info[k] for k in ("embedding", "sample_rate", "params")}, sort_keys=True).encode()
    )
    if info["embedding"] == "musicnn" and "model" in info["params"]:
        from genreclf.artifacts import read_pretrained

        digest.update(file_sha256(read_pretrained(info["params"]["model"])[0]).encode())
    package = Path(__file__).resolve().parent
    for name in CODE_FILES:
        digest.update((package / name).read_bytes())
    return digest.hexdigest()[:24]


@dataclass
class SongCache:
    """``root/<key>/<sha256>.json``: one finished song each; opening it removes the other keys."""

    folder: Path

    @classmethod
    def open(cls, root: str | Path, key: str) -> SongCache:
        import shutil

        root = Path(root)
        if root.is_dir():
            for stale in root.iterdir():
                if stale.is_dir() and stale.name != key:
                    shutil.rmtree(stale, ignore_errors=True)
        (root / key).mkdir(parents=True, exist_ok=True)
        return cls(root / key)

    def load(self, sha: str) -> dict | None:
        try:
            song = json.loads((self.folder / f"{sha}.json").read_text(encoding="utf-8"))
            song["vector"] = np.array(song["vector"], dtype=np.float64)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # not there, or damaged: embedded again
        return song

    def store(self, sha: str, vector: np.ndarray, artist: str, title: str) -> None:
        write_json(self.folder / f"{sha}.json", {"artist": artist, "title": title, "vector": vector.tolist()})


# ---- the library's index rows ---------------------------------------------------------------------


@dataclass
class LibraryBuild:
    """The rows of a library's index, in the order of their paths."""

    table: pd.DataFrame  # the index's library table: track_id (the relative path), genre, split, artist, title
    vectors: np.ndarray  # float64 [songs, dims]
    embedded: int = 0
    reused: int = 0
    failed: list[str] = field(default_factory=list)  # 'path: why' of the files that could not be embedded
    other_files: int = 0


def build_library(
    folder: str | Path,
    info: dict,
    cache_root: str | Path = CACHE_ROOT,
    progress=None,
    embedder: Embedder | None = None,
) -> LibraryBuild:
    """Embed every audio file of ``folder`` as ``info`` says (reusing the cached songs); a file that
    cannot be decoded is left out and reported in ``failed``. ``progress``: a tqdm bar (its total
    is set here), updated after each song; ``embedder``: ``Embedder(info)`` unless given."""
    if info["embedding"] not in LIBRARY_EMBEDDINGS:
        raise DataError(f"a library index is built on {' or '.join(LIBRARY_EMBEDDINGS)}, not {info['embedding']}")
    folder = Path(folder)
    files, others = library_files(folder)
    cache_root = Path(cache_root)
    memo, cache = HashMemo(cache_root / HASHES_FILE), SongCache.open(cache_root, cache_key(info))
    shas = [memo.sha256(folder, f) for f in files]
    memo.save()
    songs = {sha: cache.load(sha) for sha in set(shas)}
    cached = {sha for sha, song in songs.items() if song is not None}
    todo = sorted({sha: f for f, sha in zip(files, shas) if sha not in cached}.items(), key=lambda kv: kv[1])
    build = LibraryBuild(pd.DataFrame(), np.empty((0, 0)), other_files=others)
    build.reused = sum(sha in cached for sha in shas)
    if progress is not None:
        progress.total = build.reused + len(todo)
        progress.update(build.reused)
    embedder = embedder or Embedder(info)
    for (sha, relative), result in zip(todo, embedder.embed_files([folder / f for _, f in todo])):
        if isinstance(result, GenreError):
            message = str(result)
            build.failed.append(message if message.startswith(str(folder)) else f"{folder / relative}: {message}")
        else:
            artist, title = read_tags(folder / relative)
            cache.store(sha, result, artist, title)
            songs[sha] = cache.load(sha)  # the stored bytes, read back: a reused song gives the same
            build.embedded += 1
        if progress is not None:
            progress.update()
    kept = [(f, sha) for f, sha in zip(files, shas) if songs[sha] is not None]
    if not kept:
        raise DataError(f"{folder}: none of its {len(files)} audio files could be embedded: {build.failed[:3]}")
    build.table = pd.DataFrame(
        {
            "track_id": [f for f, _ in kept],
            "genre": "",
            "split": LIBRARY_SPLIT,
            "artist": [songs[sha]["artist"] for _, sha in kept],
            "title": [songs[sha]["title"] for _, sha in kept],
        }
    )
    build.vectors = np.stack([songs[sha]["vector"] for _, sha in kept])
    return build
