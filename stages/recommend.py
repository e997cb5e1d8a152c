"""Songs that sound like yours: python -m stages.recommend FILE... [--top N].

Each file is decoded exactly as the library's clips were (genreclf.data.audio.decode_clip at
the index's sample rate), gets the embedding the index was built on (models/recommend/, made
by the recommend_index stage), and the N most similar library clips (train and val) are
printed with their cosine similarity, track id, genre, and artist and title where the dataset
names them (FMA's tracks.csv; GTZAN names none). A file that cannot be read gets an
error line and the others are still answered; the exit status is 1 if any file failed.
"""

from __future__ import annotations

import argparse
import sys

from genreclf.artifacts import RECOMMEND_DIR, RECOMMEND_EMBEDDINGS
from genreclf.errors import DataError, GenreError
from stages.common import run_stage, stage_logger
from stages.predict import positive_int

DEFAULT_TOP = 10

log = stage_logger("recommend")


def track_name(artist: str, title: str) -> str:
    """'artist - title', or whichever of them is known ('' for none, as for a GTZAN clip)."""
    return " - ".join(part for part in (artist, title) if part)


def format_neighbours(path: str, rows: list[tuple[float, str, str, str]]) -> str:
    """The file, then one line per neighbour: rank, similarity, track id, genre, artist - title."""
    width = max((len(row[1]) for row in rows), default=0)
    genre_width = max((len(row[2]) for row in rows), default=0)
    lines = [path] + [
        f"  {rank:2d}. {similarity:6.3f}  {track_id:<{width}}  {genre:<{genre_width}}  {name}".rstrip()
        for rank, (similarity, track_id, genre, name) in enumerate(rows, 1)
    ]
    return "\n".join(lines)


class Embedder:
    """The embedding of one int16 clip, as the index has it (``info['embedding']``)."""

    def __init__(self, info: dict):
        self.info, self._model = info, None
        if info.get("embedding") not in RECOMMEND_EMBEDDINGS:
            raise DataError(
                f"{RECOMMEND_DIR}: unknown embedding {info.get('embedding')!r}; run `dvc repro recommend_index`"
            )

    def __call__(self, clip):
        from genreclf.features import fma_features, fma_tables

        params = self.info["params"]
        if self.info["embedding"] == "cnn2d":
            return self._cnn2d(params).embed_audio(clip, params["layer"])  # int16, as the stage embeds its WAVs
        samples = fma_features.int16_to_float(clip)  # as the features and embed stages read their WAVs
        if self.info["embedding"] == "features":  # computed (some families), or FMA's table: refused
            recipe = fma_tables.AudioRecipe(params, self.info["columns"], f"{RECOMMEND_DIR}: params")
            return recipe(samples, self.info["sample_rate"])
        from genreclf.models import musicnn

        if self._model is None:  # the pretrained network the embeddings were made with, loaded once
            import keras

            from genreclf.artifacts import read_pretrained

            model_file, _ = read_pretrained(params["model"])
            self._model = keras.models.load_model(model_file, compile=False)
        return musicnn.clip_embedding(self._model, samples, params["embedding"], params.get("patches_per_clip"))

    def _cnn2d(self, params: dict):
        """The trained cnn2d the index was built with (its predictor), loaded once."""
        if self._model is None:
            from genreclf.models.predictors import load_predictor

            self._model = load_predictor(params["model"])
        return self._model


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stages.recommend", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="+", help="audio files (wav, au, mp3, flac, ogg)")
    parser.add_argument("--top", type=positive_int, default=DEFAULT_TOP, help=f"songs per file ({DEFAULT_TOP})")
    args = parser.parse_args()
    from genreclf.artifacts import read_similarity_index
    from genreclf.data.audio import decode_clip
    from genreclf.models import neighbours

    arrays, library, info = read_similarity_index(RECOMMEND_DIR)
    index, embed = neighbours.SimilarityIndex(*arrays), Embedder(info)
    log.info(
        "index %s: %d library clips, embedding %s, audio decoded at %d Hz",
        RECOMMEND_DIR,
        len(library),
        info.get("embedding"),
        info["sample_rate"],
    )
    failed = []
    for path in args.files:
        try:
            clip = decode_clip(path, info["sample_rate"])  # its errors name the file
            query = neighbours.query_vectors(index, embed(clip)[None, :])
        except GenreError as e:
            message = str(e)
            log.error("error: %s", message if message.startswith(f"{path}:") else f"{path}: {message}")
            failed.append(path)
            continue
        found, similarity = neighbours.nearest(index, query, args.top)
        rows = [
            (
                float(s),
                library["track_id"][i],
                library["genre"][i],
                track_name(library["artist"][i], library["title"][i]),
            )
            for i, s in zip(found[0], similarity[0])
            if i >= 0  # fewer library clips than --top
        ]
        print(format_neighbours(path, rows), flush=True)
    if failed:
        sys.stdout.flush()
        raise DataError(f"{len(failed)} of {len(args.files)} files could not be answered: {', '.join(failed)}")


if __name__ == "__main__":
    run_stage("recommend", main)
