"""Scale rehearsal: the real pipeline on N clips built from ../shared/data, measured stage by stage.

    python benchmarks/rehearsal.py --clips 1000 [--seed 0] [--workdir DIR] [--json PATH]
                                   [--keras-steps 20] [--skip-keras] [--workers N]

1. **The source.** N clips made from the real audio in ``../shared/data``, laid out as an
   unpacked local FMA copy that the fetch stage reads with ``data.source=<dir>``:
   ``fma_metadata/{tracks.csv,genres.csv}`` (tracks.csv in FMA's real format: two header
   rows, a real row per genre copied with the id, subset ``small``, split and genre_top
   changed) and ``fma_small/NNN/NNNNNN.mp3``. The genres are fma_small's 8, balanced
   (clip i has genre i mod 8); FMA's official split is 80/10/10 within each genre.
   Nine clips in ten are the real 44.1 kHz stereo FMA mp3s, so convert decodes what
   fma_small holds (MPEG-1 layer III at 128-320 kbit/s, ~1 MB per 30 s); one in ten is a
   GTZAN clip resampled to 44.1 kHz stereo and encoded once to a 256 kbit/s mp3 (libsndfile's
   LAME). Each copy is made distinct by a change drawn from (seed, i) only, so the first
   1000 clips of the 8000-clip source are those of the 1000-clip source: a gain of the whole
   clip (1 to 4 steps of 1.5 dB down) and 1.5 dB less on GRANULE_DIPS granules (of ~2300,
   13 ms each). Both are made in the bit stream, the way mp3gain does it: each granule's
   ``global_gain`` field is lowered, so the decoded audio is exactly the original times
   2^(-steps/4) per granule, the frames, bit rate and LAME tag stay FMA's own, and no lossy
   re-encode is needed (~40 ms per clip instead of ~2 CPU-s for LAME). No two files are
   byte-identical (checked). The source is built by a process pool with a progress bar and
   cached in --workdir by (N, seed, BUILD_VERSION); a rerun reuses it.
2. **What runs.** A ``git clone`` of this repository's HEAD into --workdir (a fresh one at
   every run; uncommitted changes are not in it: a warning says so), with params.yaml
   changed by the yaml library only in ``data.source`` (the built source), ``data.dataset``
   (fma_small), ``data.clips_per_genre`` (null) and ``mobilenet.weights`` (null: ImageNet
   weights cannot be downloaded offline). Then ``dvc repro --single-item`` of fetch,
   convert, split, shard, features, ``train_sklearn@<m>`` for every sklearn model (the SVM
   with its CV search as in params.yaml) and ``train_keras@<m>`` for every Keras model at
   its default size, with the environment variable GENRECLF_MAX_TRAIN_STEPS=--keras-steps:
   the stage then stops training after that many batches (over as many epochs as that
   takes, each validated on at most as many batches; early stopping may end it sooner) and
   logs the step times (stages/train_keras.py: a Keras callback, a benchmark-only switch,
   unset in normal runs). N must be at least MIN_CLIPS. The Keras stage's time also covers
   starting TensorFlow, building the model, its prediction of the whole val split and saving
   it; from its log come the fit's time, the number of steps, the first step (which traces
   the model and starts the input pipeline) and the mean of the others (examples/s = batch
   / that mean).
3. **What it prints.** Per stage: wall time, clips/s, peak RSS of the whole process tree
   (psutil, every 0.2 s: the RSS of dvc and all its descendants summed at each
   sample, the maximum kept; pages shared between processes count once per process) and
   the bytes the stage wrote (its outs in dvc.lock, apparent size). Then the disk use of
   the workspace (the clone without .git and .dvc/cache) and of the DVC cache, each inode
   counted once, the time of a no-op ``dvc repro`` of the stages above and of ``dvc
   status``, and a projection for fma_large (``project_large``: assumptions in its docstring).
   A Markdown table for the README, and every figure as JSON (--json).

Other work on the machine slows every wall-clock figure: the load average is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.process_tree import TreePeak, peak_rss  # noqa: E402

DEFAULT_SHARED = ROOT.parent / "shared" / "data"
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "genreclf-rehearsal"
BUILD_VERSION = 1  # part of the source's cache key: bump when the built files change

# ---- the source
GENRES = ("Hip-Hop", "Pop", "Folk", "Experimental", "Rock", "International", "Electronic", "Instrumental")
SPLIT_CYCLE = ("training",) * 8 + ("validation", "test")  # FMA's 80/10/10, by position within a genre
GTZAN_EVERY = 10  # clip i is made from GTZAN when i % GTZAN_EVERY == GTZAN_EVERY - 1
ID_SPAN = 155_000  # fma_small's track ids run from 2 to ~155,000 (~51 clips per folder)
FIRST_ID = 2
MAX_ID = 999_999  # 6 digits
CLIP_GAIN_STEPS = (1, 2, 3, 4)  # whole-clip attenuation, in global_gain steps of 1.5 dB
GRANULE_DIPS = 24  # granules made one step quieter, chosen from the seed
GTZAN_RATE = 44_100
GTZAN_MP3_LEVEL = (320 - 256) / (320 - 32)  # libsndfile's MP3 compression level for 256 kbit/s CBR
DATASET = "fma_small"
METADATA_DIR = "fma_metadata"
SOURCE_INFO = "rehearsal_source.json"

# ---- MPEG-1 layer III frames (ISO/IEC 11172-3)
MP3_BITRATES = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0)  # kbit/s, index 1..14
MP3_SAMPLE_RATES = (44_100, 48_000, 32_000, 0)
SIDE_INFO_GRANULE_BITS = 59  # per granule and channel
SIDE_INFO_HEAD_BITS = {1: 18, 2: 20}  # main_data_begin, private bits, scfsi: mono, stereo
GLOBAL_GAIN_AT = 21  # part2_3_length (12) + big_values (9), then global_gain (8)
SIDE_INFO_BYTES = {1: 17, 2: 32}
VBR_TAGS = (b"Info", b"Xing")  # the LAME/Xing tag frame that leads a file: no audio

# ---- the run
FMA_LARGE_CLIPS = 106_574
DATA_STAGES = ("fetch", "convert", "split", "shard", "features")
POOL_STAGES = ("convert", "features")  # one worker process per core
QUADRATIC_STAGES = ("train_sklearn@svm",)  # kernel SVM training grows at least as clips squared
DEFAULT_KERAS_STEPS = 20
MIN_CLIPS = 10 * len(GENRES)  # the SVM's 5 CV folds need 5 training clips per genre (0.64 x 8 > 5)
STEPS_ENV = "GENRECLF_MAX_TRAIN_STEPS"

REFERENCE_CORES = 32
# What a stage's log says its own work took (without starting Python, reading params, DVC's hashing):
WORK_SECONDS_RE = {
    "convert": re.compile(r"decoded \d+ clips in ([0-9.]+) s"),
    "shard": re.compile(r"wrote \d+ files to \S+ in ([0-9.]+) s"),
    "features": re.compile(r"computed \d+ clips in ([0-9.]+) s"),
    "train_sklearn": re.compile(r"trained \S+ in ([0-9.]+) s"),  # the CV search and the fit
    "train_keras": re.compile(r"training time: ([0-9.]+) s"),  # the fit
}
STEP_COUNT_RE = re.compile(r"step times: (\d+) training step")
FIRST_STEP_RE = re.compile(r"step times: \d+ training step\(s\): the first ([0-9.]+) s")
STEADY_STEP_RE = re.compile(r"then ([0-9.]+) s/step over \d+ step")
LOG_TAIL_CHARS = 4000
GIB = 2**30
MIB = 2**20


# ===================================================================== MP3 bit stream


def id3v2_size(data: bytes) -> int:
    """Bytes of the ID3v2 tag that leads ``data`` (0 if none)."""
    if data[:3] != b"ID3" or len(data) < 10:
        return 0
    size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
    footer = 10 if data[5] & 0x10 else 0
    return 10 + size + footer


def mp3_frames(data: bytes, label: str = "mp3") -> list[tuple[int, int, int]]:
    """(offset, length, channels) of each MPEG-1 layer III frame, from the ID3v2 tag to the first non-frame.

    Raises ValueError for what ``with_gain_changes`` cannot edit: another MPEG version or
    layer, CRC-protected frames (the CRC covers the side info), free-format bit rate.
    """
    frames, pos = [], id3v2_size(data)
    while pos + 4 <= len(data):
        header = int.from_bytes(data[pos : pos + 4], "big")
        if header >> 21 != 0x7FF:
            break
        version, layer, no_crc = (header >> 19) & 3, (header >> 17) & 3, (header >> 16) & 1
        bitrate, rate = MP3_BITRATES[(header >> 12) & 15], MP3_SAMPLE_RATES[(header >> 10) & 3]
        if version != 3 or layer != 1 or not no_crc or not bitrate or not rate:
            raise ValueError(
                f"{label}: frame at byte {pos} is not an unprotected MPEG-1 layer III frame "
                f"(version {version}, layer {layer}, crc {not no_crc}, bit rate {bitrate}, "
                f"rate {rate})"
            )
        length = 144_000 * bitrate // rate + ((header >> 9) & 1)
        channels = 1 if (header >> 6) & 3 == 3 else 2
        frames.append((pos, length, channels))
        pos += length
    if not frames:
        raise ValueError(f"{label}: no MPEG audio frame after the ID3v2 tag")
    return frames


def global_gain_bits(offset: int, channels: int) -> list[list[int]]:
    """Bit positions (from the start of the file) of global_gain, per granule then per channel."""
    side_info = (offset + 4) * 8
    head = SIDE_INFO_HEAD_BITS[channels]
    return [
        [
            side_info + head + (granule * channels + channel) * SIDE_INFO_GRANULE_BITS + GLOBAL_GAIN_AT
            for channel in range(channels)
        ]
        for granule in range(2)
    ]


def _add_to_byte_at_bit(buffer: bytearray, bit: int, delta: int) -> None:
    """Add ``delta`` to the 8-bit unsigned field that starts at ``bit``, clamped to 0..255."""
    start, shift = bit // 8, 8 - bit % 8
    word = int.from_bytes(buffer[start : start + 2], "big")
    value = min(255, max(0, ((word >> shift) & 0xFF) + delta))
    word = (word & ~(0xFF << shift) & 0xFFFF) | (value << shift)
    buffer[start : start + 2] = word.to_bytes(2, "big")


def audio_granules(data: bytes, label: str = "mp3") -> list[list[int]]:
    """global_gain bit positions of every audio granule (the leading LAME/Xing tag frame excluded)."""
    granules = []
    for offset, _length, channels in mp3_frames(data, label):
        tag_at = offset + 4 + SIDE_INFO_BYTES[channels]
        if data[tag_at : tag_at + 4] in VBR_TAGS:
            continue
        granules.extend(global_gain_bits(offset, channels))
    return granules


def with_gain_changes(data: bytes, clip_steps: int, dipped: list[int], label: str = "mp3") -> bytes:
    """``data`` with every granule ``clip_steps`` global_gain steps quieter (1.5 dB each), and the
    granules numbered in ``dipped`` one step more. Decoded, each granule is the original times
    2^(-steps/4); nothing else in the file changes."""
    buffer = bytearray(data)
    granules = audio_granules(data, label)
    extra = np.zeros(len(granules), dtype=np.int64)
    extra[np.asarray(dipped, dtype=np.int64) % len(granules)] = 1
    for bits, more in zip(granules, extra):
        for bit in bits:
            _add_to_byte_at_bit(buffer, bit, -(clip_steps + int(more)))
    return bytes(buffer)


# ===================================================================== the source


@dataclass(frozen=True)
class ClipPlan:
    index: int
    track_id: str  # 6 digits
    genre: str
    split: str  # FMA's official split: training | validation | test
    base: str  # "fma/<file>.mp3" or "gtzan/<genre>/<file>.wav", relative to the shared data
    clip_steps: int  # whole-clip attenuation in global_gain steps
    dipped: tuple[int, ...]  # granule numbers (modulo the clip's granule count) one step quieter


def track_ids(n: int) -> list[str]:
    """N track ids spread like fma_small's (2 .. ~155,000; about 51 per NNN folder), 6 digits each."""
    stride = max(1, ID_SPAN // max(n, 1))
    last = FIRST_ID + (n - 1) * stride
    if last > MAX_ID:
        raise ValueError(f"{n} clips do not fit in 6-digit track ids")
    return [f"{FIRST_ID + i * stride:06d}" for i in range(n)]


def base_files(shared: Path) -> tuple[list[str], list[str]]:
    """(FMA mp3s, GTZAN wavs) under ``shared``, relative to it, sorted."""
    fma = sorted(p.relative_to(shared).as_posix() for p in (shared / "fma" / "fma_audio").glob("*/*.mp3"))
    gtzan = sorted(p.relative_to(shared).as_posix() for p in (shared / "gtzan_mini").glob("*/*.wav"))
    if not fma:
        raise FileNotFoundError(
            f"{shared / 'fma' / 'fma_audio'}: no FMA mp3 (NNN/NNNNNN.mp3); the rehearsal "
            "needs ../shared/data beside the repository (see ../shared/README.md)"
        )
    return fma, gtzan


def plan_clips(n: int, seed: int, fma: list[str], gtzan: list[str]) -> list[ClipPlan]:
    """What each of the N clips is made of. Clip i's genre, base and change depend on (seed, i) only."""
    plans = []
    for index, track_id in enumerate(track_ids(n)):
        rng = np.random.default_rng([seed, index])
        from_gtzan = bool(gtzan) and index % GTZAN_EVERY == GTZAN_EVERY - 1
        base = gtzan[(index // GTZAN_EVERY) % len(gtzan)] if from_gtzan else fma[index % len(fma)]
        genre = GENRES[index % len(GENRES)]
        split = SPLIT_CYCLE[(index // len(GENRES)) % len(SPLIT_CYCLE)]
        clip_steps = int(rng.choice(CLIP_GAIN_STEPS))
        dipped = tuple(int(g) for g in np.sort(rng.choice(2**20, size=GRANULE_DIPS, replace=False)))
        plans.append(ClipPlan(index, track_id, genre, split, base, clip_steps, dipped))
    return plans


def audio_member(track_id: str) -> str:
    """The clip's path in the source: fma_small/NNN/NNNNNN.mp3, as in FMA's archive."""
    return f"{DATASET}/{track_id[:3]}/{track_id}.mp3"


def encoded_base_path(workdir: Path, base: str) -> Path:
    """Where the 44.1 kHz stereo mp3 of a GTZAN base is cached."""
    return workdir / "bases" / f"v{BUILD_VERSION}" / (base.removesuffix(".wav") + ".mp3")


def encode_gtzan_base(wav: Path, dest: Path) -> str:
    """Resample a 22,050 Hz mono GTZAN clip to 44.1 kHz stereo and encode it to a 256 kbit/s mp3 (once)."""
    import soundfile as sf
    import soxr

    if not dest.exists():
        samples, rate = sf.read(wav, dtype="float32", always_2d=True)
        mono = samples.mean(axis=1)
        resampled = soxr.resample(mono, rate, GTZAN_RATE, quality="HQ").astype(np.float32)
        stereo = np.repeat(resampled[:, np.newaxis], 2, axis=1)
        dest.parent.mkdir(parents=True, exist_ok=True)
        temporary = dest.with_name(dest.name + f".tmp{os.getpid()}")
        sf.write(
            temporary, stereo, GTZAN_RATE, format="MP3", bitrate_mode="CONSTANT", compression_level=GTZAN_MP3_LEVEL
        )
        os.replace(temporary, dest)
    return str(dest)


def build_clip(plan: ClipPlan, base_path: str, dest: str) -> tuple[str, int]:
    """Write one clip; return (its SHA-1, its bytes)."""
    data = with_gain_changes(Path(base_path).read_bytes(), plan.clip_steps, list(plan.dipped), base_path)
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    Path(dest).write_bytes(data)
    return hashlib.sha1(data).hexdigest(), len(data)


def genre_ids(genres_csv: Path) -> dict[str, int]:
    """Top-level genre title -> genre_id, from FMA's genres.csv."""
    import pandas as pd

    genres = pd.read_csv(genres_csv)
    top = genres[genres["parent"] == 0]
    return {str(title): int(gid) for title, gid in zip(top["title"], top["genre_id"])}


def tracks_table(plans: list[ClipPlan], tracks_head: Path, genres_csv: Path):
    """tracks.csv's frame (two-level columns, index track_id) for the planned clips.

    Each row is a real row of tracks_head.csv (a small-subset track of the same genre
    where there is one, else the first small-subset track) with the id, subset, split,
    genre_top and the genre lists changed.
    """
    import pandas as pd

    real = pd.read_csv(tracks_head, index_col=0, header=[0, 1], low_memory=False)
    small = real[real[("set", "subset")] == "small"]
    ids = genre_ids(genres_csv)
    templates = {}
    for genre in GENRES:
        same = small[small[("track", "genre_top")] == genre]
        templates[genre] = (same if len(same) else small).iloc[0]
    rows = []
    for plan in plans:
        row = templates[plan.genre].copy()
        row[("set", "subset")] = "small"
        row[("set", "split")] = plan.split
        row[("track", "genre_top")] = plan.genre
        row[("track", "genres")] = row[("track", "genres_all")] = f"[{ids[plan.genre]}]"
        rows.append(row)
    table = pd.DataFrame(rows, columns=real.columns)
    table.index = pd.Index([int(plan.track_id) for plan in plans], name=real.index.name or "track_id")
    return table


def write_metadata(source: Path, plans: list[ClipPlan], shared: Path) -> None:
    """fma_metadata/tracks.csv (FMA's format: two header rows, then the track_id row) and genres.csv."""
    metadata = shared / "fma" / "fma_metadata"
    out = source / METADATA_DIR
    out.mkdir(parents=True, exist_ok=True)
    tracks_table(plans, metadata / "tracks_head.csv", metadata / "genres.csv").to_csv(out / "tracks.csv")
    shutil.copyfile(metadata / "genres.csv", out / "genres.csv")


def source_dir(workdir: Path, n: int, seed: int) -> Path:
    return workdir / f"source-n{n}-seed{seed}-v{BUILD_VERSION}"


def _starmap(pool, function, argument_lists, desc: str, unit: str) -> list:
    from tqdm import tqdm

    futures = [pool.submit(function, *arguments) for arguments in argument_lists]
    return [future.result() for future in tqdm(futures, desc=desc, unit=unit, file=sys.stderr)]


def build_source(n: int, seed: int, shared: Path, workdir: Path, workers: int | None = None, log=print) -> Path:
    """The N-clip FMA-format source for ``seed`` in ``workdir``, built unless already there."""
    final = source_dir(workdir, n, seed)
    if (final / SOURCE_INFO).is_file():
        log(f"source: reusing {final} (built earlier for --clips {n} --seed {seed})")
        return final
    fma, gtzan = base_files(shared)
    plans = plan_clips(n, seed, fma, gtzan)
    workers = workers or os.cpu_count() or 1
    started = time.perf_counter()
    building = final.with_name(final.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        gtzan_bases = sorted({plan.base for plan in plans if plan.base.startswith("gtzan_mini/")})
        encoded = dict(
            zip(
                gtzan_bases,
                _starmap(
                    pool,
                    encode_gtzan_base,
                    [(shared / b, encoded_base_path(workdir, b)) for b in gtzan_bases],
                    desc="encode GTZAN bases (once)",
                    unit="clip",
                ),
            )
        )
        jobs = [
            (plan, encoded.get(plan.base, str(shared / plan.base)), str(building / audio_member(plan.track_id)))
            for plan in plans
        ]
        results = _starmap(pool, build_clip, jobs, desc=f"build {n} clips", unit="clip")
    digests = [digest for digest, _size in results]
    if len(set(digests)) != len(digests):
        raise RuntimeError(f"{building}: {len(digests) - len(set(digests))} clips are byte-identical to another")
    write_metadata(building, plans, shared)
    info = {
        "clips": n,
        "seed": seed,
        "build_version": BUILD_VERSION,
        "dataset": DATASET,
        "from_gtzan": sum(plan.base.startswith("gtzan_mini/") for plan in plans),
        "audio_bytes": sum(size for _digest, size in results),
        "genres": {genre: sum(plan.genre == genre for plan in plans) for genre in GENRES},
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    (building / SOURCE_INFO).write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(building, final)
    log(
        f"source: built {n} clips in {info['build_seconds']} s ({info['from_gtzan']} from GTZAN, "
        f"{info['audio_bytes'] / n / 1e6:.2f} MB per clip) in {final}"
    )
    return final


# ===================================================================== measuring


def run_measured(args: list[str], cwd: Path, env: dict, log_path: Path) -> tuple[int, float, TreePeak]:
    """Run a command (output to ``log_path``), sampling its process tree; return (status, seconds, peak)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log_file:
        started = time.perf_counter()
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        with peak_rss(process.pid) as peak:
            status = process.wait()
        seconds = time.perf_counter() - started
    return status, seconds, peak


def disk_usage(path: Path, exclude: tuple[Path, ...] = ()) -> int:
    """Bytes on disk (allocated blocks) under ``path``, each inode counted once, ``exclude`` left out."""
    seen, total = set(), 0
    excluded = {p.resolve() for p in exclude}
    for folder, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if (Path(folder) / d).resolve() not in excluded]
        for name in files:
            try:
                stat = os.lstat(Path(folder) / name)
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_blocks * 512
    return total


AUDIO_OUTS = ("data/wav", "data/shards")  # the stage outputs that hold the decoded int16 audio


def audio_copies(project: Path) -> float:
    """How many copies of the decoded audio the workspace and the DVC cache hold together.

    The bytes of every distinct inode among the files of AUDIO_OUTS and their cache objects
    (from the directory manifests that dvc.lock names), over the bytes of the WAVs: 2.0 when
    the workspace files are links to the cache, 4.0 when they are copies.
    """
    lock = yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8"))
    cache = project / ".dvc" / "cache" / "files" / "md5"
    sizes, wav_bytes = {}, 0
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] not in AUDIO_OUTS:
                continue
            manifest = json.loads((cache / out["md5"][:2] / out["md5"][2:]).read_text(encoding="utf-8"))
            for entry in manifest:
                for file in (project / out["path"] / entry["relpath"], cache / entry["md5"][:2] / entry["md5"][2:]):
                    if file.is_file():
                        stat = file.stat()
                        sizes[(stat.st_dev, stat.st_ino)] = stat.st_size
                        if out["path"] == "data/wav" and file.parent.parent != cache:
                            wav_bytes += stat.st_size
    return sum(sizes.values()) / wav_bytes if wav_bytes else float("nan")


def apparent_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (what was written)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def stage_outs(project: Path, stage: str) -> list[str]:
    """The paths of a stage's outs (with metrics and plots DVC caches) as dvc.lock records them."""
    lock = yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8")) or {}
    return [out["path"] for out in lock.get("stages", {}).get(stage, {}).get("outs", [])]


# ===================================================================== the run


@dataclass
class StageResult:
    stage: str
    seconds: float
    clips: int
    peak_tree_rss: int
    peak_leaf_rss: int
    processes_at_peak: int
    bytes_written: int
    status: int
    work_seconds: float | None = None  # the stage's own timing of its work, from its log (Keras: the fit)
    steps: int | None = None  # Keras: the training steps it ran (the limit if its log does not say)
    batch_size: int | None = None
    first_step_seconds: float | None = None  # Keras: the first step (tracing, input start-up)
    seconds_per_step: float | None = None  # Keras: the mean of the other steps

    @property
    def clips_per_second(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else math.nan


def dvc_env(extra: dict | None = None) -> dict:
    """The environment of dvc and the stages: this interpreter's folder first on PATH."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop(STEPS_ENV, None)
    env.update(extra or {})
    return env


def git_output(args: list[str], cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, stdout=subprocess.PIPE, text=True).stdout.strip()


def clone_project(dest: Path, log=print) -> str:
    """A fresh ``git clone`` of this repository's HEAD at ``dest``; returns the commit."""
    commit = git_output(["rev-parse", "HEAD"], ROOT)
    if git_output(["status", "--porcelain"], ROOT):
        log(f"warning: {ROOT} has uncommitted changes; the rehearsal runs the committed HEAD {commit[:10]}")
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(dest)], check=True)
    return commit


def rehearsal_params(params: dict, source: Path) -> dict:
    """params.yaml with the rehearsal's source; every other key as committed except mobilenet.weights."""
    params = json.loads(json.dumps(params))
    params["data"].update({"dataset": DATASET, "source": str(source), "clips_per_genre": None})
    params["mobilenet"]["weights"] = None  # ImageNet weights cannot be downloaded offline
    return params


def set_params(project: Path, source: Path) -> dict:
    import yaml

    path = project / "params.yaml"
    params = rehearsal_params(yaml.safe_load(path.read_text(encoding="utf-8")), source)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return params


def log_tail(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]


def run_stage(
    project: Path, stage: str, clips: int, logs: Path, steps: int | None = None, batch_size: int | None = None
) -> StageResult:
    extra = {STEPS_ENV: str(steps)} if steps is not None else {}
    log_path = logs / f"{stage.replace('@', '-')}.log"
    status, seconds, peak = run_measured(
        [sys.executable, "-m", "dvc", "repro", "--single-item", stage], project, dvc_env(extra), log_path
    )
    written = (
        sum(apparent_size(project / out) for out in stage_outs(project, stage) if (project / out).exists())
        if status == 0
        else 0
    )
    text = log_path.read_text(encoding="utf-8", errors="replace")
    pattern = WORK_SECONDS_RE.get(stage.split("@", 1)[0])
    work, first, steady = (
        (pattern.search(text) if pattern else None),
        FIRST_STEP_RE.search(text),
        STEADY_STEP_RE.search(text),
    )
    count = STEP_COUNT_RE.search(text) if steps is not None else None
    return StageResult(
        stage,
        seconds,
        clips,
        peak.tree_rss,
        peak.leaf_rss,
        peak.processes,
        written,
        status,
        _number(work),
        int(count.group(1)) if count else steps,
        batch_size,
        _number(first),
        _number(steady),
    )


def _number(match: re.Match | None) -> float | None:
    return float(match.group(1)) if match else None


def time_command(project: Path, args: list[str], logs: Path, name: str) -> float:
    started = time.perf_counter()
    with open(logs / f"{name}.log", "w", encoding="utf-8") as log_file:
        subprocess.run(
            [sys.executable, "-m", "dvc", *args],
            cwd=project,
            env=dvc_env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            check=False,
        )
    return time.perf_counter() - started


def pipeline_stages(params: dict, skip_keras: bool) -> list[str]:
    keras = [] if skip_keras else [f"train_keras@{m}" for m in params["models"]["keras"]]
    return [*DATA_STAGES, *(f"train_sklearn@{m}" for m in params["models"]["sklearn"]), *keras]


# ===================================================================== the projection


def scaled_hours(seconds: float, clips: int, target: int, exponent: int = 1) -> float:
    """Hours for ``target`` clips from ``seconds`` for ``clips``, growing as clips**exponent."""
    return seconds * (target / clips) ** exponent / 3600


def keras_epoch_steps(clips: int, train_fraction: float, units_per_clip: int, batch_size: int) -> int:
    """Training batches in one epoch over ``clips`` clips (the last batch may be short)."""
    return math.ceil(round(clips * train_fraction) * units_per_clip / batch_size)


def project_large(
    stages: list[dict],
    clips: int,
    cores: int,
    disk: dict[str, float],
    train_fraction: float,
    target: int = FMA_LARGE_CLIPS,
    reference_cores: int = REFERENCE_CORES,
) -> dict:
    """fma_large figures from the measured per-clip costs. The assumptions:

    - a stage's work (``work_seconds``, what its log times; else its whole ``seconds``) grows
      linearly with clips, except in QUADRATIC_STAGES (kernel SVM: as clips squared, a lower
      bound); the rest of its wall time (starting Python, reading params, DVC's hashing at
      this size) is counted once; a Keras epoch is its batches times the measured seconds per step:
      the mean step after the first (``seconds_per_step``), else, when only one step ran,
      the fit's seconds over its steps (``work_seconds``, else the stage's ``seconds``): an
      upper bound, as it includes tracing the model and the validation batches;
    - on ``reference_cores`` cores the POOL_STAGES (one process per core) run
      ``reference_cores / cores`` times faster and the Keras steps too (TensorFlow's
      threads: ideal scaling, an optimistic bound); the other stages run on one core
      and do not speed up;
    - disk (``disk``: bytes of the "workspace", of its "data" folder and of the DVC "cache"):
      what the workspace holds under data/ grows linearly with clips,
      the rest of it (models, metrics) does not; the DVC cache holds that rest once too
      and its other bytes grow linearly;
    - memory is flat in clips (what issue 8 asks; compare two runs to check it); with
      more cores a POOL_STAGE adds one worker per extra core, each as large as the
      largest leaf process measured.

    ``stages``: dicts with stage, seconds, peak_tree_rss, peak_leaf_rss, and for Keras
    stages steps, batch_size, units_per_clip, seconds_per_step and work_seconds (either may be None).
    """
    speedup = reference_cores / cores
    workspace_bytes, data_bytes, cache_bytes = disk["workspace"], disk["data"], disk["cache"]
    fixed_bytes = max(0, workspace_bytes - data_bytes)
    rows, keras = {}, {}
    for stage in stages:
        name = stage["stage"]
        pool = name in POOL_STAGES
        leaf_more = (reference_cores - cores) * stage["peak_leaf_rss"] if pool else 0
        memory = {"measured_cores": stage["peak_tree_rss"], "reference_cores": stage["peak_tree_rss"] + leaf_more}
        if stage.get("steps"):
            per_step = stage.get("seconds_per_step") or (stage.get("work_seconds") or stage["seconds"]) / stage["steps"]
            epoch_steps = keras_epoch_steps(target, train_fraction, stage["units_per_clip"], stage["batch_size"])
            hours = epoch_steps * per_step / 3600
            keras[name] = {
                "seconds_per_step": per_step,
                "upper_bound": not stage.get("seconds_per_step"),
                "steps_per_epoch": epoch_steps,
                "hours_per_epoch": {"measured_cores": hours, "reference_cores": hours / speedup},
                "peak_rss": memory,
            }
            continue
        work = stage.get("work_seconds") or stage["seconds"]
        fixed = (stage["seconds"] - work) / 3600
        hours = scaled_hours(work, clips, target, 2 if name in QUADRATIC_STAGES else 1)
        rows[name] = {
            "hours": {"measured_cores": fixed + hours, "reference_cores": fixed + (hours / speedup if pool else hours)},
            "peak_rss": memory,
        }

    def total(names, cores_key):
        return sum(rows[n]["hours"][cores_key] for n in names)

    data = [n for n in rows if n in DATA_STAGES]
    sklearn = [n for n in rows if n.startswith("train_sklearn@")]
    every = [*rows.values(), *keras.values()]
    return {
        "clips": target,
        "measured_clips": clips,
        "measured_cores": cores,
        "reference_cores": reference_cores,
        "stages": rows,
        "keras": keras,
        "data_half_hours": {k: total(data, k) for k in ("measured_cores", "reference_cores")},
        "sklearn_hours": {k: total(sklearn, k) for k in ("measured_cores", "reference_cores")},
        "workspace_bytes": fixed_bytes + data_bytes * target / clips,
        "cache_bytes": min(fixed_bytes, cache_bytes) + max(0, cache_bytes - fixed_bytes) * target / clips,
        # workspace and cache together, each file once (outputs are links to the cache): only data/ grows
        "combined_bytes": disk.get("combined", workspace_bytes + cache_bytes) + data_bytes * (target / clips - 1),
        "peak_rss": {
            k: max((r["peak_rss"][k] for r in every), default=0) for k in ("measured_cores", "reference_cores")
        },
    }


# ===================================================================== the report


def _mib(value: float) -> str:
    return f"{value / MIB:,.0f}"


def _hours(value: float) -> str:
    return f"{value:.2f}" if value < 1 else f"{value:,.1f}"


def _copies(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _gb(value: float) -> str:
    return f"{value / 1e9:,.2f}"


def _name(r: StageResult) -> str:
    return f"`{r.stage}`" + (f" **failed** (exit {r.status})" if r.status else "")


def _work(r: StageResult) -> str:
    return "" if r.work_seconds is None else f"{r.work_seconds:.1f}"


def stage_table(results: list[StageResult]) -> str:
    lines = [
        "| stage | wall (s) | of which its work (s) | clips/s | peak RSS, process tree (MiB) | written (MB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        if r.steps is None:
            lines.append(
                f"| {_name(r)} | {r.seconds:.1f} | {_work(r)} | {r.clips_per_second:.1f} "
                f"| {_mib(r.peak_tree_rss)} | {r.bytes_written / 1e6:,.1f} |"
            )
    return "\n".join(lines)


def keras_table(results: list[StageResult]) -> str:
    lines = [
        (
            "| stage, bounded | steps × batch | wall (s) | of which the fit (s) | first step (s) "
            "| then s/step | examples/s | peak RSS, process tree (MiB) | written (MB) |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        if r.steps is not None:
            first = "" if r.first_step_seconds is None else f"{r.first_step_seconds:.1f}"
            steady = "" if r.seconds_per_step is None else f"{r.seconds_per_step:.2f}"
            rate = "" if not r.seconds_per_step else f"{r.batch_size / r.seconds_per_step:.0f}"
            lines.append(
                f"| {_name(r)} | {r.steps} × {r.batch_size} | {r.seconds:.1f} | {_work(r)} | {first} "
                f"| {steady} | {rate} | {_mib(r.peak_tree_rss)} | {r.bytes_written / 1e6:,.1f} |"
            )
    return "\n".join(lines) if len(lines) > 2 else ""


def projection_table(p: dict) -> str:
    cores, ref = p["measured_cores"], p["reference_cores"]
    lines = [
        f"| fma_large, {p['clips']:,} clips | {cores} cores | {ref} cores |",
        "| --- | ---: | ---: |",
        (
            f"| fetch … features (h) | {_hours(p['data_half_hours']['measured_cores'])} "
            f"| {_hours(p['data_half_hours']['reference_cores'])} |"
        ),
        (
            f"| sklearn models (h) | {_hours(p['sklearn_hours']['measured_cores'])} "
            f"| {_hours(p['sklearn_hours']['reference_cores'])} |"
        ),
    ]
    for stage, k in p["keras"].items():
        bound = " (upper bound: one step measured)" if k["upper_bound"] else ""
        hours = k["hours_per_epoch"]
        lines.append(
            f"| `{stage}`, one epoch of {k['steps_per_epoch']:,} steps (h){bound} "
            f"| {_hours(hours['measured_cores'])} | {_hours(hours['reference_cores'])} |"
        )
    lines += [
        f"| workspace (GB) | {_gb(p['workspace_bytes'])} | {_gb(p['workspace_bytes'])} |",
        f"| DVC cache (GB) | {_gb(p['cache_bytes'])} | {_gb(p['cache_bytes'])} |",
        f"| both, each file once (GB) | {_gb(p['combined_bytes'])} | {_gb(p['combined_bytes'])} |",
        (
            f"| peak RSS of a stage (GiB) | {p['peak_rss']['measured_cores'] / GIB:.1f} "
            f"| {p['peak_rss']['reference_cores'] / GIB:.1f} |"
        ),
    ]
    return "\n".join(lines)


PROJECTION_NOTE = (
    "Projection: each stage's work (as its log times it, else its wall time) linear in clips "
    "(kernel SVM: clips squared), the rest of its wall time once; on more cores only convert, "
    "features and the Keras steps speed up, ideally; disk under data/ linear in clips, models once; "
    "memory flat in clips, plus one worker per extra core in convert and features. Keras: the mean "
    "step after the first of a bounded run, times the steps of one fma_large epoch."
)


def report_markdown(summary: dict, results: list[StageResult]) -> str:
    disk, book, p = summary["disk"], summary["bookkeeping"], summary["projection"]
    parts = [
        (
            f"Rehearsal: {summary['clips']:,} clips (seed {summary['seed']}), commit {summary['commit'][:10]}, "
            f"{summary['cores']} cores, load average {summary['load_average']}"
        ),
        "",
        stage_table(results),
    ]
    keras = keras_table(results)
    if keras:
        parts += ["", keras]
    parts += [
        "",
        "| workspace (GB) | DVC cache (GB) | both, each file once (GB) | copies of the audio "
        "| source mp3s (GB) | no-op `dvc repro` (s) | `dvc status` (s) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        (
            f"| {_gb(disk['workspace_bytes'])} | {_gb(disk['cache_bytes'])} "
            f"| {_gb(disk['workspace_and_cache_bytes'])} | {_copies(disk['audio_copies'])} "
            f"| {_gb(disk['source_bytes'])} "
            f"| {book['noop_repro_seconds']:.1f} | {book['status_seconds']:.1f} |"
        ),
    ]
    if p:
        parts += ["", projection_table(p), "", PROJECTION_NOTE]
    return "\n".join(parts)


# ===================================================================== main


def keras_units_per_clip(params: dict, model: str) -> int:
    """Training units per clip: cnn2d trains on every segment, the others on one unit per clip."""
    return int(params[model]["segments_per_clip"]) if model == "cnn2d" else 1


def run_pipeline(
    project: Path, params: dict, clips: int, logs: Path, keras_limit: int | None, log=print
) -> tuple[list[StageResult], list[str]]:
    """Every stage in order, stopping at the first that fails; returns the results and the stages that ran."""
    results, ran = [], []
    for stage in pipeline_stages(params, keras_limit is None):
        steps = batch = None
        if stage.startswith("train_keras@"):
            model = stage.split("@", 1)[1]
            steps, batch = keras_limit, params[model]["batch_size"]
        log(f"running {stage}" + (f" ({STEPS_ENV}={steps})" if steps else "") + " ...")
        result = run_stage(project, stage, clips, logs, steps, batch)
        results.append(result)
        if result.status != 0:
            log(
                f"{stage} FAILED (exit {result.status}); the end of {logs}/{stage.replace('@', '-')}.log:\n"
                + log_tail(logs / f"{stage.replace('@', '-')}.log")
            )
            break
        ran.append(stage)
        rate = (
            f"{result.clips_per_second:.1f} clips/s"
            if steps is None
            else f"first step {result.first_step_seconds} s, then "
            + (f"{result.seconds_per_step} s/step" if result.seconds_per_step else "none (one step ran)")
        )
        log(
            f"  {result.seconds:.1f} s, {rate}, peak RSS {_mib(result.peak_tree_rss)} MiB "
            f"({result.processes_at_peak} processes), wrote {result.bytes_written / 1e6:,.1f} MB"
        )
    return results, ran


def noop_targets(ran: list[str], planned: list[str]) -> list[str]:
    """``dvc repro`` arguments naming the stages that ran (and so every stage before them).

    When every planned stage ran, one ``--glob`` pattern that matches all the training
    stages of dvc.yaml (or all the scikit-learn ones, without Keras): DVC reads dvc.yaml and
    dvc.lock again for each target, so naming nine stages costs seconds that a user's plain
    ``dvc repro`` does not pay. Otherwise the stages themselves.
    """
    if ran != planned:
        return ran
    return ["--glob", "train_*" if any(s.startswith("train_keras@") for s in ran) else "train_sklearn@*"]


def bookkeeping(project: Path, ran: list[str], planned: list[str], logs: Path) -> dict:
    """The time of a no-op ``dvc repro`` of the stages that ran, and of ``dvc status``."""
    noop = time_command(project, ["repro", *noop_targets(ran, planned)], logs, "noop-repro")
    reran = re.findall(r"Running stage '([^']+)'", (logs / "noop-repro.log").read_text(encoding="utf-8"))
    status = time_command(project, ["status"], logs, "status")
    return {"noop_repro_seconds": noop, "status_seconds": status, "noop_repro_reran": reran}


def summarize(
    args, commit: str, project: Path, source: Path, params: dict, results: list[StageResult], book: dict
) -> dict:
    cores = os.cpu_count() or 1
    workspace = disk_usage(project, exclude=(project / ".git", project / ".dvc" / "cache"))
    cache = disk_usage(project / ".dvc" / "cache")
    data = disk_usage(project / "data")
    combined = disk_usage(project, exclude=(project / ".git",))  # workspace + cache, each inode once
    stages = []
    for r in results:
        row = dataclasses.asdict(r) | {"clips_per_second": r.clips_per_second}
        if r.steps is not None:
            row["units_per_clip"] = keras_units_per_clip(params, r.stage.split("@", 1)[1])
        stages.append(row)
    complete = all(r.status == 0 for r in results)
    projection = (
        project_large(
            stages,
            args.clips,
            cores,
            {"workspace": workspace, "data": data, "cache": cache, "combined": combined},
            float(params["split"]["fractions"]["train"]),
        )
        if complete
        else None
    )
    return {
        "clips": args.clips,
        "seed": args.seed,
        "commit": commit,
        "cores": cores,
        "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "keras_step_limit": args.keras_steps,
        "project": str(project),
        "source": str(source),
        "stages": stages,
        "complete": complete,
        "disk": {
            "workspace_bytes": workspace,
            "workspace_data_bytes": data,
            "cache_bytes": cache,
            "workspace_and_cache_bytes": combined,
            "audio_copies": audio_copies(project) if complete else None,
            "source_bytes": disk_usage(source),
        },
        "bookkeeping": book,
        "projection": projection,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, required=True, help="N: clips in the source")
    parser.add_argument("--seed", type=int, default=0, help="the source's changes (default 0)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"source cache, scratch clone, logs (default {DEFAULT_WORKDIR})",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="write the figures here (default <workdir>/rehearsal-n<N>-seed<seed>.json)",
    )
    parser.add_argument(
        "--keras-steps",
        type=int,
        default=DEFAULT_KERAS_STEPS,
        help=f"training steps of each Keras model (default {DEFAULT_KERAS_STEPS})",
    )
    parser.add_argument("--skip-keras", action="store_true", help="do not run the Keras stages")
    parser.add_argument(
        "--shared", type=Path, default=DEFAULT_SHARED, help=f"the real audio (default {DEFAULT_SHARED})"
    )
    parser.add_argument("--workers", type=int, default=None, help="processes building the source (default: every core)")
    args = parser.parse_args(argv)
    if args.clips < MIN_CLIPS:
        parser.error(
            f"--clips must be at least {MIN_CLIPS} ({MIN_CLIPS // len(GENRES)} per genre: the SVM's "
            "cross-validation needs 5 training clips per genre)"
        )
    if args.keras_steps < 1:
        parser.error("--keras-steps must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir.resolve()
    tag = f"n{args.clips}-seed{args.seed}"
    json_path = args.json or workdir / f"rehearsal-{tag}.json"
    print(
        f"rehearsal of {args.clips} clips in {workdir} ({os.cpu_count()} cores, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())})",
        flush=True,
    )
    source = build_source(args.clips, args.seed, args.shared.resolve(), workdir, args.workers)
    project = workdir / f"project-{tag}"
    commit = clone_project(project)
    params = set_params(project, source)
    print(
        f"project: {project} (a clone of {commit[:10]}; params.yaml: data.source={source}, mobilenet.weights=null)",
        flush=True,
    )
    logs = workdir / f"logs-{tag}"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    results, ran = run_pipeline(project, params, args.clips, logs, None if args.skip_keras else args.keras_steps)
    book = bookkeeping(project, ran, pipeline_stages(params, args.skip_keras), logs)
    if book["noop_repro_reran"]:
        print(f"warning: the no-op dvc repro ran {book['noop_repro_reran']} again", flush=True)
    summary = summarize(args, commit, project, source, params, results, book)
    print("\n" + report_markdown(summary, results), flush=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {json_path}; logs in {logs}; the project (delete when done) in {project}")
    return 0 if summary["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
