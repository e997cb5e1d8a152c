"""Query time of the similar-song index at library sizes a user may have.

    python benchmarks/bench_recommend.py [--clips 100000] [--dims 518 200] [--queries 200]

For each --dims, a library of --clips seeded random vectors is indexed
(genreclf.models.neighbours.build_index) and --queries other vectors query it for their 10
nearest neighbours, one at a time (as `python -m stages.recommend` does) and in one batch
(as the recommend_index stage does). Printed: build seconds, index MB, and the median and
mean milliseconds per query. One BLAS thread, so that the figure is per core.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genreclf.models import neighbours  # noqa: E402

TOP = 10


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
        "build_s": build,
        "index_mb": index.vectors.nbytes / 1e6,
        "median_ms": 1000 * statistics.median(one_at_a_time),
        "mean_ms": 1000 * statistics.fmean(one_at_a_time),
        "batch_ms_per_query": 1000 * batch / queries,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--dims", type=int, nargs="+", default=[518, 200])
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    print(f"{args.clips} library clips, {args.queries} queries, top {TOP}, 1 BLAS thread")
    print("| dims | build s | index MB | one query: median ms | mean ms | in one batch: ms per query |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    with threadpool_limits(1):
        for dims in args.dims:
            r = measure(args.clips, dims, args.queries)
            print(
                f"| {dims} | {r['build_s']:.2f} | {r['index_mb']:.0f} | {r['median_ms']:.1f} | {r['mean_ms']:.1f} "
                f"| {r['batch_ms_per_query']:.1f} |"
            )


if __name__ == "__main__":
    main()
