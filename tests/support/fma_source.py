"""An FMA-format copy of fma_small with N clips made from the real audio in ../shared/data.

The source of benchmarks/rehearsal.py (the scale rehearsal), kept here because
tests/test_rehearsal.py checks it on a handful of clips: ``build_source(n, seed, shared,
workdir)`` lays out an unpacked local FMA copy that the fetch stage reads with
``data.source=<dir>``: ``fma_metadata/{tracks.csv,genres.csv}`` (tracks.csv in FMA's real
format: two header rows, a real row per genre copied with the id, subset ``small``, split and
genre_top changed) and ``fma_small/NNN/NNNNNN.mp3``. The genres are fma_small's 8, balanced
(clip i has genre i mod 8); FMA's official split is 80/10/10 within each genre.

Nine clips in ten are the real 44.1 kHz stereo FMA mp3s, so convert decodes what fma_small
holds (MPEG-1 layer III at 128-320 kbit/s, ~1 MB per 30 s); one in ten is a GTZAN clip
resampled to 44.1 kHz stereo and encoded once to a 256 kbit/s mp3 (libsndfile's LAME). Each
copy is made distinct by a change drawn from (seed, i) only, so the first 1000 clips of the
8000-clip source are those of the 1000-clip source: a gain of the whole clip (1 to 4 steps of
1.5 dB down) and 1.5 dB less on GRANULE_DIPS granules (of ~2300, 13 ms each). Both are made
in the bit stream, the way mp3gain does it: each granule's ``global_gain`` field is lowered,
so the decoded audio is exactly the original times 2^(-steps/4) per granule, the frames, bit
rate and LAME tag stay FMA's own, and no lossy re-encode is needed (~40 ms per clip instead
of ~2 CPU-s for LAME). No two files are byte-identical (checked). The source is built by a
process pool with a progress bar and cached in ``workdir`` by (N, seed, BUILD_VERSION).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
