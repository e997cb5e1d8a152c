"""Stage fetch: get the dataset's archives, verify them, and pick the clips into data/raw.

Reads params data.{dataset, source, checksums, clips_per_genre, seed}.
Writes data/raw/{clips.csv, fetch_report.json, audio/}; whole downloads (and .part files
being resumed) go to data/downloads/, which DVC keeps between runs.
"""

from __future__ import annotations

import re
from pathlib import Path

from genreclf.data.fetch import is_url, public_source
from genreclf.data.fma import DATASETS as FMA_DATASETS
from genreclf.data.fma import METADATA, fetch_fma
from genreclf.data.gtzan import CHECKSUM_KEY as GTZAN_KEY
from genreclf.data.gtzan import fetch_gtzan
from genreclf.errors import ParamError
from stages.common import run_stage, stage_logger
from stages.config import get, load_params, section

RAW_DIR = Path("data/raw")
DOWNLOADS_DIR = Path("data/downloads")
DATASETS = (*FMA_DATASETS, "gtzan")
CHECKSUM_KEYS = (METADATA, *FMA_DATASETS, GTZAN_KEY)
SHA1_RE = re.compile(r"^[0-9a-fA-F]{40}$")
WHERE = "params.yaml: data"

log = stage_logger("fetch")


def read_data_params(params: dict) -> dict:
    """Check params.yaml's data section; return dataset, source, checksums, clips_per_genre, seed."""
    data = section(params, "data")
    dataset = get(data, "dataset", WHERE, types=str, choices=DATASETS)
    source = get(data, "source", WHERE, types=str)
    if not is_url(source):
        path = Path(source)
        usable = path.is_dir() or (dataset == "gtzan" and path.is_file())
        if not usable:
            what = "an http(s) URL prefix or an existing folder" + (" or archive file" if dataset == "gtzan" else "")
            raise ParamError(f"{WHERE}.source = {source!r} is neither {what}; fix the path, or use the "
                             "official URL https://os.unil.cloud.switch.ch/fma/ (or a mirror)")
    checksums = get(data, "checksums", WHERE, types=dict)
    unknown = sorted(set(map(str, checksums)) - set(CHECKSUM_KEYS))
    if unknown:
        raise ParamError(f"{WHERE}.checksums has unknown keys {unknown}; expected keys {list(CHECKSUM_KEYS)}")
    needed = (GTZAN_KEY,) if dataset == "gtzan" else (METADATA, dataset)
    for key in CHECKSUM_KEYS:
        if key not in checksums:
            if key in needed:
                raise ParamError(f"{WHERE}.checksums.{key} is missing; set it to the archive's SHA-1 or to null")
            continue
        value = checksums[key]
        if value is not None and not (isinstance(value, str) and SHA1_RE.match(value)):
            raise ParamError(f"{WHERE}.checksums.{key} = {value!r}; expected a SHA-1 (40 hexadecimal digits) "
                             "or null (not checked)")
    clips_per_genre = get(data, "clips_per_genre", WHERE, types=int, minimum=1, allow_none=True)
    seed = get(data, "seed", WHERE, types=int, minimum=0)
    return {
        "dataset": dataset,
        "source": source,
        "checksums": {key: (value.lower() if value else None) for key, value in checksums.items()},
        "clips_per_genre": clips_per_genre,
        "seed": seed,
    }


def main() -> None:
    data = read_data_params(load_params())
    log.info("read params: dataset=%s source=%s clips_per_genre=%s seed=%d", data["dataset"],
             public_source(data["source"]), data["clips_per_genre"], data["seed"])
    DOWNLOADS_DIR.mkdir(parents=True, exist_ok=True)  # a DVC output, even when nothing is downloaded
    if data["dataset"] == "gtzan":
        report = fetch_gtzan(data["source"], data["checksums"].get(GTZAN_KEY), data["clips_per_genre"],
                             data["seed"], RAW_DIR, DOWNLOADS_DIR)
    else:
        report = fetch_fma(data["dataset"], data["source"], data["checksums"], data["clips_per_genre"],
                           data["seed"], RAW_DIR, DOWNLOADS_DIR)
    for name, archive in report["archives"].items():
        log.info("archive %s (%s): sha1 %s, verified: %s", name, archive["file"], archive["sha1"], archive["verified"])
    for what, value in report["skipped"].items():
        log.info("skipped %s: %s", what, value)
    log.info("wrote %s/clips.csv (%d clips: %s), %s/fetch_report.json and %d files under %s/audio",
             RAW_DIR, report["clips"], report["clips_per_genre"], RAW_DIR, report["clips"], RAW_DIR)


if __name__ == "__main__":
    run_stage("fetch", main)
