"""Count crashes when processes compile librosa's cached gufuncs together (numba issue 10128).

Each trial starts PROCESSES processes at once on an empty NUMBA_CACHE_DIR; each imports
librosa and calls two gufuncs (pitch tracking, zero crossings), as the test processes and the
feature workers do. With ``--warm``, one process first runs
genreclf.features.librosa_cache.compile_librosa_gufuncs() alone, as tests/conftest.py does.

    python benchmarks/numba_cache_race.py --trials 12 --processes 4
    python benchmarks/numba_cache_race.py --trials 12 --processes 4 --warm

It prints, per trial, each process's exit status (-11: a segmentation fault), then the totals.

The JSON (--json, default benchmarks/results/numba_cache_race.json; benchmarks/record.py's
document) holds in ``figures``: ``trials``, ``processes`` (per trial), ``warm`` (true with
--warm), ``failed_processes``, ``total_processes``, ``exit_statuses`` (one list per trial).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "numba_cache_race.json"
CHILD = """
import numpy as np, librosa
y = np.random.default_rng(0).standard_normal(22050).astype(np.float32)
librosa.estimate_tuning(y=y, sr=22050)
librosa.feature.zero_crossing_rate(y)
"""
WARM = "from genreclf.features.librosa_cache import compile_librosa_gufuncs; compile_librosa_gufuncs()"


def trial(processes: int, warm: bool) -> list[int]:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
        if warm:
            subprocess.run([sys.executable, "-c", WARM], env=env, check=True)
        children = [
            subprocess.Popen([sys.executable, "-c", CHILD], env=env, stderr=subprocess.DEVNULL)
            for _ in range(processes)
        ]
        return [child.wait() for child in children]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--warm", action="store_true", help="compile_librosa_gufuncs() alone first")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="the figures' JSON (default %(default)s)")
    args = parser.parse_args()
    run = record.start("numba_cache_race")
    crashed, statuses = 0, []
    start = time.perf_counter()
    for number in range(1, args.trials + 1):
        codes = trial(args.processes, args.warm)
        crashed += sum(code != 0 for code in codes)
        statuses.append(codes)
        print(f"trial {number}: exit statuses {codes}", flush=True)
    total = args.trials * args.processes
    print(
        f"{'warm' if args.warm else 'cold'} cache: {crashed} of {total} processes failed "
        f"({args.trials} trials of {args.processes}), {time.perf_counter() - start:.0f} s"
    )
    figures = {
        "trials": args.trials,
        "processes": args.processes,
        "warm": args.warm,
        "failed_processes": crashed,
        "total_processes": total,
        "exit_statuses": statuses,
    }
    record.write(args.json, run, figures)


if __name__ == "__main__":
    main()
