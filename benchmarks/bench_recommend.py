"""Similar songs at a user's scale: embedding full-length songs, and query time at large libraries.

    python benchmarks/bench_recommend.py [--clips 100000] [--dims 518 200] [--queries 200]
        [--songs 8] [--song-seconds 240] [--library-songs 10000]

Queries: for each --dims, a library of --clips seeded random vectors is indexed
(genreclf.models.neighbours.build_index) and --queries other vectors query it for their 10
nearest neighbours, one at a time (as `genreclf recommend` does) and in one batch (as the
recommend_index stage does); then the same for a library of --library-songs songs of musicnn's
200 dimensions. Printed: build seconds, index MB, and the median and mean milliseconds per query.
One BLAS thread, so that the figure is per core.

Embedding: --songs synthetic songs of --song-seconds (seeded noise shaped by tones, 44.1 kHz
stereo mp3, as a library holds) are indexed by genreclf.recommend.build_library with musicnn
(the network's architecture with seeded weights: its speed is the pretrained one's), from an
empty cache: songs/s and patches/s, decoding, hashing and tags included. Then, in the same run,
the model alone embeds the same patches, already computed, in the same batches
(genreclf.models.musicnn.patches_embedding): ``efficiency`` is the model alone's time over the
library build's, the share of the build during which the model would be busy.

The JSON (--json, default benchmarks/results/bench_recommend.json; benchmarks/record.py's
document) holds in ``figures``: ``clips``, ``queries``, ``top``, and ``dims``: one object per
--dims value, in order: ``dims``, ``build_seconds``, ``index_mb``, ``median_ms_per_query``,
``mean_ms_per_query`` (one query at a time), ``batch_ms_per_query`` (all in one batch);
``library``: the same object for --library-songs songs of 200 dimensions, with ``songs``; and
``embedding``: ``songs``, ``song_seconds``, ``patches``, ``build_seconds``, ``songs_per_s``,
``patches_per_s``, ``model_alone_seconds``, ``model_alone_patches_per_s``, ``efficiency``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402
from genreclf.models import neighbours  # noqa: E402

TOP = 10
MUSICNN_DIMS = 200  # the penultimate embedding
SONG_RATE = 44100
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "bench_recommend.json"


def measure(clips: int, dims: int, queries: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    library = rng.standard_normal((clips, dims), dtype=np.float32)
    started = time.perf_counter()
    index = neighbours.build_index(library)
    build = time.perf_counter() - started
    asked = neighbours.query_vectors(index, rng.standard_normal((queries, dims)))
    one_at_a_time = []
    for row in asked:
        started = time.perf_counter()
        neighbours.nearest(index, row[None, :], TOP)
        one_at_a_time.append(time.perf_counter() - started)
    started = time.perf_counter()
    neighbours.nearest(index, asked, TOP)
    batch = time.perf_counter() - started
    return {
        "dims": dims,
        "build_seconds": round(build, 4),
        "index_mb": round(index.vectors.nbytes / 1e6, 3),
        "median_ms_per_query": round(1000 * statistics.median(one_at_a_time), 4),
        "mean_ms_per_query": round(1000 * statistics.fmean(one_at_a_time), 4),
        "batch_ms_per_query": round(1000 * batch / queries, 4),
    }


def write_songs(folder: Path, songs: int, seconds: float, seed: int = 0) -> None:
    """Seeded synthetic songs: noise under a few tones that change every second, stereo mp3."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SONG_RATE)) / SONG_RATE
    for i in range(songs):
        pitches = np.repeat(rng.uniform(110, 880, int(np.ceil(seconds))), SONG_RATE)[: len(t)]
        mono = 0.3 * np.sin(2 * np.pi * pitches * t) + 0.05 * rng.standard_normal(len(t))
        sf.write(folder / f"song{i:03d}.mp3", np.stack([mono, mono[::-1]], axis=1).astype(np.float32), SONG_RATE)


def measure_embedding(songs: int, seconds: float) -> dict:
    """songs/s of a library build with musicnn from an empty cache; the model alone on the same patches."""
    import keras

    from genreclf.data.audio import decode_clip
    from genreclf.features.fma_features import int16_to_float
    from genreclf.models import musicnn
    from genreclf.recommend import Embedder, build_library

    keras.utils.set_random_seed(0)
    info = {"embedding": "musicnn", "sample_rate": musicnn.SAMPLE_RATE, "params": {"embedding": "penultimate"}}
    embedder = Embedder(info, model=musicnn.build_model())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "library"
        folder.mkdir()
        write_songs(folder, songs, seconds)
        batches = [
            musicnn.clip_patches(int16_to_float(decode_clip(folder / f"song{i:03d}.mp3", musicnn.SAMPLE_RATE)))
            for i in range(songs)
        ]
        model = embedder.musicnn_model()
        musicnn.patches_embedding(model, batches[0], "penultimate")  # the batch shapes traced before either timing
        started = time.perf_counter()
        build = build_library(folder, info, Path(tmp) / "cache", embedder=embedder)
        build_seconds = time.perf_counter() - started
    assert build.embedded == songs, build.failed
    started = time.perf_counter()
    for batch in batches:
        musicnn.patches_embedding(model, batch, "penultimate")
    alone = time.perf_counter() - started
    patches = sum(len(b) for b in batches)
    return {
        "songs": songs,
        "song_seconds": seconds,
        "patches": patches,
        "build_seconds": round(build_seconds, 3),
        "songs_per_s": round(songs / build_seconds, 4),
        "patches_per_s": round(patches / build_seconds, 2),
        "model_alone_seconds": round(alone, 3),
        "model_alone_patches_per_s": round(patches / alone, 2),
        "efficiency": round(alone / build_seconds, 3),
    }


def print_query_row(label, r: dict) -> None:
    print(
        f"| {label} | {r['build_seconds']:.2f} | {r['index_mb']:.0f} | {r['median_ms_per_query']:.1f} "
        f"| {r['mean_ms_per_query']:.1f} | {r['batch_ms_per_query']:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--dims", type=int, nargs="+", default=[518, 200])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--songs", type=int, default=8, help="full-length songs embedded (%(default)s)")
    parser.add_argument("--song-seconds", type=float, default=240.0, help="their length (%(default)s)")
    parser.add_argument("--library-songs", type=int, default=10_000, help="the library queried (%(default)s)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="the figures' JSON (default %(default)s)")
    args = parser.parse_args()
    run = record.start("bench_recommend")
    print(f"{args.queries} queries, top {TOP}, 1 BLAS thread")
    print("| library, dims | build s | index MB | one query: median ms | mean ms | in one batch: ms per query |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    with threadpool_limits(1):
        for dims in args.dims:
            rows.append(measure(args.clips, dims, args.queries))
            print_query_row(f"{args.clips} clips, {dims}", rows[-1])
        library = {"songs": args.library_songs, **measure(args.library_songs, MUSICNN_DIMS, args.queries)}
        print_query_row(f"{args.library_songs} songs, {MUSICNN_DIMS}", library)
    embedding = measure_embedding(args.songs, args.song_seconds)
    print(
        f"musicnn library build: {embedding['songs']} songs of {args.song_seconds:g} s "
        f"({embedding['patches']} patches) "
        f"in {embedding['build_seconds']:.1f} s: {embedding['songs_per_s']:.3f} songs/s, "
        f"{embedding['patches_per_s']:.1f} patches/s; the model alone on the same patches: "
        f"{embedding['model_alone_patches_per_s']:.1f} patches/s; efficiency {embedding['efficiency']:.0%}"
    )
    figures = {"clips": args.clips, "queries": args.queries, "top": TOP, "dims": rows}
    record.write(args.json, run, {**figures, "library": library, "embedding": embedding})


if __name__ == "__main__":
    main()
