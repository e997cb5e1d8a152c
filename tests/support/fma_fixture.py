"""Build a small FMA-format fixture from the real FMA files in ../shared/data/fma.

The archives have the real layout and compression (zip, bzip2 members):

    fma_metadata.zip   fma_metadata/tracks.csv (the real header rows and the real rows of the
                       tracks we have audio for), fma_metadata/genres.csv (the real one),
                       fma_metadata/features.csv (features_head.csv's header rows and its 5 real
                       rows, then a row in the same layout for each clip but TABLE_LACKS_ID, of
                       values drawn around track 3's, 2 decimals as the head is written), and
                       fma_metadata/echonest.csv (see ECHONEST_* below; rows for ECHONEST_IDS)
    fma_small.zip      fma_small/NNN/NNNNNN.mp3 for the small-subset tracks, plus
                       fma_small/README.txt and fma_small/checksums as in the real archive
    fma_medium.zip     (on request) the same for the small + medium subsets

Two clips are bad on purpose, like their namesakes in the real fma_small: 099134 holds no
audio (an ID3 tag and nothing else) and 098565 is a ~1 s cut of a real clip. The tracks
that tracks_head.csv lacks (001666, 007527 and those two) get a copy of a real small-subset
row of the same genre with the id changed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
NO_AUDIO_ID = "099134"
SHORT_ID = "098565"
SHORT_SECONDS = 1.0
CLIP_SECONDS = 30.0
EMPTY_ID3_TAG = b"ID3\x04\x00\x00\x00\x00\x00\x00"  # a valid ID3v2.4 header with no frames, no audio
# Tracks missing from tracks_head.csv -> the real small-subset row to copy (same genre).
COPIED_ROWS = {
    "001666": "000010",  # Pop
    "007527": "000010",  # Pop
    NO_AUDIO_ID: "000182",  # Rock
    SHORT_ID: "000148",  # Experimental
}
SHORT_SOURCE_ID = "000148"
TABLE_LACKS_ID = "000200"  # a Folk clip that features.csv has no row for: left out by features.source fma
# echonest.csv's layout, as mdeff/fma's utils.load reads it (index_col=0, header=[0, 1, 2]): three header
# rows ("echonest", group, name) then a track_id row. The groups and the numbers of their columns are
# FMA's (usage.ipynb, and the paper: 8 audio features, 5 social features, 224 temporal features); the
# metadata and rank names are those of the real file; the temporal columns are named by number.
ECHONEST_GROUPS = {
    "metadata": [
        "album_date",
        "album_name",
        "artist_latitude",
        "artist_location",
        "artist_longitude",
        "artist_name",
        "release",
    ],
    "audio_features": [
        "acousticness",
        "danceability",
        "energy",
        "instrumentalness",
        "liveness",
        "speechiness",
        "tempo",
        "valence",
    ],
    "social_features": [
        "artist_discovery",
        "artist_familiarity",
        "artist_hotttnesss",
        "song_currency",
        "song_hotttnesss",
    ],
    "ranks": [
        "artist_discovery_rank",
        "artist_familiarity_rank",
        "artist_hotttnesss_rank",
        "song_currency_rank",
        "song_hotttnesss_rank",
    ],
    "temporal_features": [f"{i:03d}" for i in range(224)],
}
ECHONEST_IDS = ("000003", "000141", "000148", "000182", "000190", "001666")  # a part, as in the real file
SUBSETS = {"fma_small": ("small",), "fma_medium": ("small", "medium")}


@dataclass
class FmaFixture:
    directory: Path
    archives: dict[str, Path]  # checksum key (fma_metadata, fma_small ...) -> zip path
    sha1: dict[str, str]  # checksum key -> SHA-1 of the zip
    tracks: dict[str, dict]  # track_id -> {"subset", "split", "genre", "artist", "title"} as in tracks.csv
    audio: dict[str, bytes]  # track_id -> mp3 bytes in the archives

    def clip_ids(self, dataset: str) -> list[str]:
        """Tracks of ``dataset``'s subset that have a clip in its archive (what a full fetch yields)."""
        return sorted(t for t, row in self.tracks.items() if row["subset"] in SUBSETS[dataset] and t in self.audio)


def sha1_bytes(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _column(header: list[list[str]], top: str, sub: str) -> int:
    return next(i for i, pair in enumerate(zip(header[0], header[1])) if pair == (top, sub))


def _write_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_BZIP2
            info.external_attr = 0o644 << 16
            archive.writestr(info, members[name])


def build_fma_fixture(
    shared_data: Path, out_dir: Path, datasets: tuple[str, ...] = ("fma_small",), copies: dict[str, str] | None = None
) -> FmaFixture:
    """``copies``: more clips, new track id (not one of tracks_head.csv's, 2 to 932) -> the clip whose
    audio and tracks.csv row it copies (for a test that needs more clips of a genre than the real ones)."""
    fma = Path(shared_data) / "fma"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    audio = {p.stem: p.read_bytes() for p in sorted((fma / "fma_audio").glob("*/*.mp3"))}
    short_source = audio[SHORT_SOURCE_ID]
    audio[SHORT_ID] = short_source[: int(len(short_source) * SHORT_SECONDS / CLIP_SECONDS)]
    audio[NO_AUDIO_ID] = EMPTY_ID3_TAG
    copied_rows = dict(COPIED_ROWS)
    for track_id, source in (copies or {}).items():
        audio[track_id] = audio[source]
        copied_rows[track_id] = COPIED_ROWS.get(source, source)

    with open(fma / "fma_metadata" / "tracks_head.csv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [next(reader) for _ in range(3)]
        real_rows = {f"{int(row[0]):06d}": row for row in reader}
    rows = {}
    for track_id in audio:
        row = list(real_rows[track_id] if track_id in real_rows else real_rows[copied_rows[track_id]])
        row[0] = str(int(track_id))
        rows[track_id] = row
    subset_at, split_at = _column(header, "set", "subset"), _column(header, "set", "split")
    genre_at = _column(header, "track", "genre_top")
    artist_at, title_at = _column(header, "artist", "name"), _column(header, "track", "title")
    tracks = {
        t: {
            "subset": r[subset_at],
            "split": r[split_at],
            "genre": r[genre_at],
            "artist": r[artist_at],
            "title": r[title_at],
        }
        for t, r in rows.items()
    }

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerows(header)
    writer.writerows(rows[t] for t in sorted(rows))
    archives = {"fma_metadata": out_dir / "fma_metadata.zip"}
    _write_zip(
        archives["fma_metadata"],
        {
            "fma_metadata/tracks.csv": text.getvalue().encode("utf-8"),
            "fma_metadata/genres.csv": (fma / "fma_metadata" / "genres.csv").read_bytes(),
            "fma_metadata/features.csv": features_csv(fma / "fma_metadata" / "features_head.csv", sorted(audio)),
            "fma_metadata/echonest.csv": echonest_csv(),
        },
    )
    for dataset in datasets:
        ids = [t for t in sorted(audio) if tracks[t]["subset"] in SUBSETS[dataset]]
        members = {f"{dataset}/{t[:3]}/{t}.mp3": audio[t] for t in ids}
        members[f"{dataset}/checksums"] = "".join(
            f"{sha1_bytes(data)}  {name.split('/', 1)[1]}\n" for name, data in sorted(members.items())
        ).encode()
        members[f"{dataset}/README.txt"] = f"A fixture in the layout of the FMA {dataset} archive.\n".encode()
        archives[dataset] = out_dir / f"{dataset}.zip"
        _write_zip(archives[dataset], members)
    sha1 = {name: sha1_bytes(path.read_bytes()) for name, path in archives.items()}
    return FmaFixture(out_dir, archives, sha1, tracks, audio)


def features_csv(head_path: Path, clip_ids: list[str]) -> bytes:
    """features_head.csv, plus a row for each clip it lacks (but TABLE_LACKS_ID), in its layout."""
    with open(head_path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, real = rows[:4], {f"{int(row[0]):06d}": row for row in rows[4:]}
    base = np.array(real["000003"][1:], dtype=float)
    for track_id in clip_ids:
        if track_id not in real and track_id != TABLE_LACKS_ID:
            spread = np.random.default_rng(int(track_id)).normal(1.0, 0.2, size=base.size)
            real[track_id] = [str(int(track_id)), *(f"{value:.2f}" for value in base * spread)]
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([*header, *(real[t] for t in sorted(real))])
    return text.getvalue().encode("utf-8")


def echonest_csv() -> bytes:
    """echonest.csv in its layout for ECHONEST_IDS: text metadata (a name with a comma, quoted),
    numbers elsewhere (one empty rank, as the real file has)."""
    columns = [(group, name) for group, names in ECHONEST_GROUPS.items() for name in names]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["", *("echonest" for _ in columns)])
    writer.writerow(["", *(group for group, _ in columns)])
    writer.writerow(["", *(name for _, name in columns)])
    writer.writerow(["track_id", *("" for _ in columns)])
    for track_id in ECHONEST_IDS:
        rng = np.random.default_rng(int(track_id))
        row = [str(int(track_id))]
        for group, name in columns:
            if group == "metadata":
                row.append("AWOL, live" if name == "artist_name" else ("2008-11-26" if name == "album_date" else "x"))
            elif group == "ranks":
                row.append("" if name == "song_currency_rank" else str(int(rng.integers(1, 9000))))
            else:
                row.append(repr(float(rng.random())))
        writer.writerow(row)
    return text.getvalue().encode("utf-8")


def corrupt_member(zip_path: Path, member: str, out_path: Path) -> None:
    """Copy ``zip_path`` to ``out_path`` with one byte in the middle of ``member``'s data flipped."""
    data = bytearray(Path(zip_path).read_bytes())
    with zipfile.ZipFile(zip_path) as archive:
        info = archive.getinfo(member)
    # Local header: 30 fixed bytes, then the name and the extra field (lengths at offsets 26, 28).
    start = info.header_offset
    name_length = int.from_bytes(data[start + 26 : start + 28], "little")
    extra_length = int.from_bytes(data[start + 28 : start + 30], "little")
    data_start = start + 30 + name_length + extra_length
    data[data_start + info.compress_size // 2] ^= 0xFF
    Path(out_path).write_bytes(bytes(data))
