"""CPU seconds per clip of the features, against the plain-librosa recipe, in one process.

    python benchmarks/bench_features.py [--source DIR] [--every N]

Every N-th audio file under --source (default: all 100 clips of ../shared/data/gtzan_mini;
22050 Hz WAVs, read as the stage reads them) is featurised by
genreclf.features.fma_features.clip_features and then by tests/support/plain_librosa.py (FMA's recipe in
librosa's own functions), clip by clip, interleaved, one BLAS thread, after one warm-up
clip each. Printed: the mean and median CPU seconds per clip of each and their ratio.
CPU time of one process is what a clip costs however busy the machine is (within the
noise of shared caches), so the ratio holds where wall-clock rates do not; it leaves out
what bench_data.py includes: the workers' start-up and the transfer of results.

The JSON (--json, default benchmarks/results/bench_features.json; benchmarks/record.py's
document) holds in ``figures``: ``clips``, ``features_cpu_seconds_per_clip`` and
``plain_cpu_seconds_per_clip`` (each ``{"mean": s, "median": s}``), and
``plain_over_features`` (the ratio of their total CPU seconds).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402
from genreclf.data.audio import read_wav  # noqa: E402
from genreclf.features import fma_features as features  # noqa: E402
from tests.support.plain_librosa import plain_features  # noqa: E402

DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "gtzan_mini"
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "bench_features.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, default=DEFAULT_SOURCE, help="folder of WAV files (searched recursively)"
    )
    parser.add_argument("--every", type=int, default=1, help="take every N-th file (sorted)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="the figures' JSON (default %(default)s)")
    args = parser.parse_args()
    run = record.start("bench_features")
    paths = sorted(args.source.rglob("*.wav"))[:: args.every]
    if not paths:
        sys.exit(f"{args.source}: no WAV files")
    params = features.DEFAULT_PARAMS
    fast, plain = [], []
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy: the warm-up clip has constant rows
        _, sample_rate = read_wav(paths[0])
        features.clip_features(features.warmup_clip(sample_rate), sample_rate, params)
        plain_features(features.warmup_clip(sample_rate), sample_rate)
        for path in paths:
            samples, sample_rate = read_wav(path)
            y = features.int16_to_float(samples)
            started = time.process_time()
            features.clip_features(y, sample_rate, params)
            fast.append(time.process_time() - started)
            started = time.process_time()
            plain_features(y, sample_rate)
            plain.append(time.process_time() - started)
    fast_s, plain_s = np.array(fast), np.array(plain)
    print(f"{len(paths)} clips from {args.source}, one process, CPU seconds per clip:")
    print(f"features {fast_s.mean():.3f} (median {np.median(fast_s):.3f})")
    print(f"plain    {plain_s.mean():.3f} (median {np.median(plain_s):.3f})")
    print(f"plain / features: {plain_s.sum() / fast_s.sum():.2f}x")
    record.write(
        args.json,
        run,
        {
            "clips": len(paths),
            "features_cpu_seconds_per_clip": {"mean": round(fast_s.mean(), 4), "median": round(np.median(fast_s), 4)},
            "plain_cpu_seconds_per_clip": {"mean": round(plain_s.mean(), 4), "median": round(np.median(plain_s), 4)},
            "plain_over_features": round(plain_s.sum() / fast_s.sum(), 3),
        },
    )


if __name__ == "__main__":
    main()
