"""Query time of the similar-song index at library sizes a user may have.

    python benchmarks/bench_recommend.py [--clips 100000] [--dims 518 200] [--queries 200]

For each --dims, a library of --clips seeded random vectors is indexed
(genreclf.models.neighbours.build_index) and --queries other vectors query it for their 10
nearest neighbours, one at a time (as `python -m stages.recommend` does) and in one batch
(as the recommend_index stage does). Printed: build seconds, index MB, and the median and
mean milliseconds per query. One BLAS thread, so that the figure is per core.

The JSON (--json, default benchmarks/results/bench_recommend.json; benchmarks/record.py's
document) holds in ``figures``: ``clips``, ``queries``, ``top``, and ``dims``: one object per
--dims value, in order: ``dims``, ``build_seconds``, ``index_mb``, ``median_ms_per_query``,
``mean_ms_per_query`` (one query at a time), ``batch_ms_per_query`` (all in one batch).
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

from benchmarks import record  # noqa: E402
from genreclf.models import neighbours  # noqa: E402

TOP = 10
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--dims", type=int, nargs="+", default=[518, 200])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="the figures' JSON (default %(default)s)")
    args = parser.parse_args()
    run = record.start("bench_recommend")
    print(f"{args.clips} library clips, {args.queries} queries, top {TOP}, 1 BLAS thread")
    print("| dims | build s | index MB | one query: median ms | mean ms | in one batch: ms per query |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    with threadpool_limits(1):
        for dims in args.dims:
            r = measure(args.clips, dims, args.queries)
            rows.append(r)
            print(
                f"| {dims} | {r['build_seconds']:.2f} | {r['index_mb']:.0f} | {r['median_ms_per_query']:.1f} "
                f"| {r['mean_ms_per_query']:.1f} | {r['batch_ms_per_query']:.1f} |"
            )
    record.write(args.json, run, {"clips": args.clips, "queries": args.queries, "top": TOP, "dims": rows})


if __name__ == "__main__":
    main()
