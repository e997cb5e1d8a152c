"""Time the data stages on N clips: convert (decode to 16-bit WAV) and features.

    python benchmarks/bench_data.py --clips 50 200 [--source DIR] [--workers N] [--plain]

For each N, N clips are taken from --source (every audio file under it, sorted, cycled
when N is larger), converted with genreclf.data.audio.convert_clip and then featurised with
genreclf.features.fma_features.iter_wav_features, each with one process per core as the stages do,
at the settings of params.yaml (convert.sample_rate, convert.min_seconds, features).
With --plain, the same WAVs are then featurised a second time the plain way
(tests/support/plain_librosa.py: FMA's recipe in librosa's own functions, one clip per call,
one process per core, FMA's default settings), and the ratio of the two rates is printed.

Printed per phase: seconds, clips/s, CPU seconds per clip (the workers' user + system
time: what the machine needs per clip, whatever else is running on it), and peak memory
sampled every SAMPLE_SECONDS with psutil: the resident set of the whole process tree
(this process + its workers; shared library pages are counted once per process) and of
the largest single worker. Flat memory shows as the same peaks for every N. Other work
on the machine slows the wall-clock figures; the load average is recorded to judge that.

The JSON (--json, default benchmarks/results/bench_data.json; benchmarks/record.py's
document) holds in ``figures``: ``workers``, ``sample_rate_hz``, ``source_files``, and
``phases``: one object per phase and N, in order: ``phase`` (convert, features, plain),
``clips``, ``seconds``, ``clips_per_s``, ``cpu_seconds_per_clip``, ``peak_tree_rss_mib``,
``peak_largest_worker_rss_mib``, ``peak_this_process_rss_mib``, and for features
``first_clip_seconds`` and ``steady_clips_per_s`` (after the first clip); with --plain,
``plain_over_features``: one object per N: ``clips``, ``speedup`` (the ratio of the clips/s).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402
from benchmarks.process_tree import TreePeak, peak_rss  # noqa: E402
from genreclf.data import audio  # noqa: E402
from genreclf.features import fma_features as features  # noqa: E402
from stages.config import load_config  # noqa: E402
from tests.support.plain_librosa import init_plain_worker, plain_wav_features  # noqa: E402

DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "gtzan_mini"
SAMPLE_SECONDS = 0.05
CONVERT_CHUNKSIZE = 4
MIB = 2**20
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "bench_data.json"


@dataclass
class Measurement:
    phase: str
    clips: int
    seconds: float
    cpu_seconds: float
    memory: TreePeak
    first_result: float | None = None  # seconds until the first clip was done (start-up + one clip)

    def line(self) -> str:
        m = self.memory
        text = (
            f"{self.phase:9s} {self.clips:6d} clips {self.seconds:7.1f} s "
            f"{self.clips / self.seconds:6.2f} clips/s "
            f"{self.cpu_seconds / max(self.clips, 1):6.3f} CPU s/clip | "
            f"peak RSS: tree {m.tree_rss / MIB:5.0f} MiB, "
            f"largest worker {m.leaf_rss / MIB:4.0f} MiB, this process {m.root_rss / MIB:4.0f} MiB"
        )
        if self.first_result is not None and self.clips > 1:
            steady = (self.clips - 1) / (self.seconds - self.first_result)
            text += f" | first clip after {self.first_result:.1f} s, then {steady:.2f} clips/s"
        return text

    def figures(self) -> dict:
        m = self.memory
        row = {
            "phase": self.phase,
            "clips": self.clips,
            "seconds": round(self.seconds, 3),
            "clips_per_s": round(self.clips / self.seconds, 3),
            "cpu_seconds_per_clip": round(self.cpu_seconds / max(self.clips, 1), 4),
            "peak_tree_rss_mib": round(m.tree_rss / MIB, 1),
            "peak_largest_worker_rss_mib": round(m.leaf_rss / MIB, 1),
            "peak_this_process_rss_mib": round(m.root_rss / MIB, 1),
        }
        if self.first_result is not None and self.clips > 1:
            row["first_clip_seconds"] = round(self.first_result, 3)
            row["steady_clips_per_s"] = round((self.clips - 1) / (self.seconds - self.first_result), 3)
        return row


def children_cpu_seconds() -> float:
    """User + system time of the ended child processes (the pools' workers, once joined)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(phase: str, clips: int, work) -> Measurement:
    cpu_before = children_cpu_seconds()
    with peak_rss(interval=SAMPLE_SECONDS) as memory:
        started = time.perf_counter()
        work()
        seconds = time.perf_counter() - started
    return Measurement(phase, clips, seconds, children_cpu_seconds() - cpu_before, memory)


def convert_clips(
    sources: list[Path], destinations: list[Path], sample_rate: int, min_seconds: float, workers: int
) -> list[audio.ConvertResult]:
    """genreclf.data.audio.convert_clip on every clip, one process per core, results in order."""
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(
            pool.map(
                audio.convert_clip,
                sources,
                destinations,
                [sample_rate] * len(sources),
                [min_seconds] * len(sources),
                chunksize=CONVERT_CHUNKSIZE,
            )
        )


def plain_featurise(wavs: list[Path], sample_rate: int, workers: int) -> None:
    """The plain-librosa baseline over the same WAVs, one process per core, one clip per task."""
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=init_plain_worker,
        initargs=(sample_rate,),
    ) as pool:
        for _ in pool.map(plain_wav_features, [str(w) for w in wavs], [sample_rate] * len(wavs)):
            pass


def run(
    n_clips: int,
    source_files: list[Path],
    sample_rate: int,
    min_seconds: float,
    params: features.FeatureParams,
    workers: int,
    plain: bool = False,
) -> list[Measurement]:
    sources = [source_files[i % len(source_files)] for i in range(n_clips)]
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        destinations = [Path(tmp) / f"{i:06d}.wav" for i in range(n_clips)]
        results: list[audio.ConvertResult] = []
        convert = measure(
            "convert",
            n_clips,
            lambda: results.extend(convert_clips(sources, destinations, sample_rate, min_seconds, workers)),
        )
        wavs = [dst for dst, result in zip(destinations, results) if result.ok]
        if len(wavs) < n_clips:
            print(f"  ({n_clips - len(wavs)} clips skipped by convert: {results[0].reason or '...'})")

        first_result: list[float] = []

        def featurise() -> None:
            started = time.perf_counter()
            for _ in features.iter_wav_features(wavs, sample_rate, params, workers=workers, progress=False):
                if not first_result:
                    first_result.append(time.perf_counter() - started)

        featurised = measure("features", len(wavs), featurise)
        featurised.first_result = first_result[0] if first_result else None
        if not plain:
            return [convert, featurised]
        baseline = measure("plain", len(wavs), lambda: plain_featurise(wavs, sample_rate, workers))
        return [convert, featurised, baseline]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, nargs="+", default=[50], help="numbers of clips to time (each run apart)")
    parser.add_argument(
        "--source", type=Path, default=DEFAULT_SOURCE, help="folder of audio files (searched recursively)"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes per phase (default: every core)")
    parser.add_argument(
        "--plain", action="store_true", help="also time the plain-librosa recipe on the same WAVs (FMA defaults)"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="the figures' JSON (default %(default)s)")
    args = parser.parse_args()
    run_record = record.start("bench_data")

    source_files = sorted(p for p in args.source.rglob("*") if p.is_file() and audio.is_audio_file(p))
    if not source_files:
        sys.exit(f"{args.source}: no audio files ({', '.join(audio.AUDIO_EXTENSIONS)}) found")
    config = load_config(ROOT / "params.yaml")
    sample_rate, min_seconds = config.convert.sample_rate, config.convert.min_seconds
    feature_params = features.recipe_params(config.features.model_dump())

    print(
        f"{len(source_files)} source files in {args.source}; {args.workers} workers; {sample_rate} Hz; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    if args.plain and feature_params != features.DEFAULT_PARAMS:
        sys.exit("--plain computes FMA's default settings; params.yaml's features differ")
    phases, ratios = [], []
    for n_clips in args.clips:
        measurements = run(n_clips, source_files, sample_rate, min_seconds, feature_params, args.workers, args.plain)
        for measurement in measurements:
            print(measurement.line(), flush=True)
            phases.append(measurement.figures())
        if args.plain:
            fast, plain = measurements[1:]
            print(f"features / plain: {plain.seconds / fast.seconds:.2f}x the clips/s", flush=True)
            ratios.append({"clips": n_clips, "speedup": round(plain.seconds / fast.seconds, 3)})
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    figures = {
        "workers": args.workers,
        "sample_rate_hz": sample_rate,
        "source_files": len(source_files),
        "phases": phases,
    }
    if args.plain:
        figures["plain_over_features"] = ratios
    record.write(args.json, run_record, figures)


if __name__ == "__main__":
    main()
