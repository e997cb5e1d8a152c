"""Helpers for the convert / split / shard tests: a throw-away project and synthetic audio."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGE_TIMEOUT_S = 300


def make_project(tmp_path: Path, **param_sections) -> Path:
    """A copy of stages/, genreclf/ and params.yaml in ``tmp_path/project``.

    ``param_sections`` replace keys of params.yaml, e.g. ``split={"seed": 1}``.
    """
    project = tmp_path / "project"
    project.mkdir()
    for name in ("stages", "genreclf"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "params.yaml", project / "params.yaml")
    if param_sections:
        set_params(project, **param_sections)
    return project


def set_params(project: Path, **param_sections) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    for name, values in param_sections.items():
        params[name].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_stage(project: Path, name: str) -> subprocess.CompletedProcess:
    """Run ``python -m stages.<name>`` in ``project`` as dvc would; output captured as text."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=STAGE_TIMEOUT_S)


def tone(seconds: float, sample_rate: int, frequency: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    """A float sine wave of ``seconds`` at ``sample_rate``."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return amplitude * np.sin(2 * np.pi * frequency * t)


def write_audio(path: Path, samples: np.ndarray, sample_rate: int, subtype: str | None = None) -> Path:
    """Write float or int16 samples ([n] or [n, channels]) in the format named by the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    formats = {".wav": ("WAV", "PCM_16"), ".au": ("AU", "PCM_16"), ".flac": ("FLAC", "PCM_16"),
               ".mp3": ("MP3", "MPEG_LAYER_III")}
    file_format, default_subtype = formats[path.suffix]
    sf.write(path, samples, sample_rate, format=file_format, subtype=subtype or default_subtype)
    return path


def directory_bytes(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (relative name -> content), to compare two runs."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
