"""Build a small FMA-format fixture from the real FMA files in ../shared/data/fma.

The archives have the real layout and compression (zip, bzip2 members):

    fma_metadata.zip   fma_metadata/tracks.csv (the real header rows and the real rows of the
                       tracks we have audio for), fma_metadata/genres.csv (the real one)
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


def build_fma_fixture(shared_data: Path, out_dir: Path, datasets: tuple[str, ...] = ("fma_small",)) -> FmaFixture:
    fma = Path(shared_data) / "fma"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    audio = {p.stem: p.read_bytes() for p in sorted((fma / "fma_audio").glob("*/*.mp3"))}
    short_source = audio[SHORT_SOURCE_ID]
    audio[SHORT_ID] = short_source[: int(len(short_source) * SHORT_SECONDS / CLIP_SECONDS)]
    audio[NO_AUDIO_ID] = EMPTY_ID3_TAG

    with open(fma / "fma_metadata" / "tracks_head.csv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [next(reader) for _ in range(3)]
        real_rows = {f"{int(row[0]):06d}": row for row in reader}
    rows = {}
    for track_id in audio:
        row = list(real_rows[track_id] if track_id in real_rows else real_rows[COPIED_ROWS[track_id]])
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
