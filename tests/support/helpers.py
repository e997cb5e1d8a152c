"""What the tests share: scratch projects, running a stage as DVC would, and test signals.

A *project* is a throw-away folder holding a copy of this repository's stage code
(``genreclf/``, ``stages/``) and ``params.yaml`` (or, for the DVC tests, every file of the
repository), with some params changed. The stages run in it as ``python -m stages.<name>``
from the project folder, which is what ``dvc repro`` does.
"""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

ROOT = Path(__file__).resolve().parents[2]
CODE_FOLDERS = ("genreclf", "stages")
PROJECT_CONTENTS = ("params", "code", "repository")
STAGE_TIMEOUT_S = 900
OUTPUT_TAIL_CHARS = 4000
AUDIO_FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".au": ("AU", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}


# ---- the environment of a stage, DVC and git


def subprocess_env() -> dict[str, str]:
    """The environment of the stages, DVC and git: this interpreter's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"  # gcsfs otherwise waits 60 s per call
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONUNBUFFERED"] = "1"
    for name in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        env.setdefault(name, "test")
    for name in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        env.setdefault(name, "test@example.invalid")
    return env


def run_stage(
    project: Path, module: str, *args: str, check: bool = True, timeout: float = STAGE_TIMEOUT_S
) -> subprocess.CompletedProcess:
    """Run ``python -m stages.<module> args`` in ``project`` as dvc would; stdout and stderr as text.

    A project without its own copy of the code (a folder of data and params.yaml) runs this
    repository's: it is on PYTHONPATH, after the project folder. With ``check``, a non-zero
    exit raises with the end of both outputs.
    """
    env = dict(subprocess_env(), PYTHONPATH=str(ROOT))
    return run_command(
        [sys.executable, "-m", f"stages.{module}", *args], project, env=env, timeout=timeout, check=check
    )


def run_genreclf(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the ``genreclf`` command (``python -m genreclf args``) in ``project``, as run_stage runs a stage."""
    env = dict(subprocess_env(), PYTHONPATH=str(ROOT))
    return run_command([sys.executable, "-m", "genreclf", *args], project, env=env, check=check)


def run_command(
    args: list[str], cwd: Path, *, env: dict | None = None, timeout: float = 900, check: bool = True
) -> subprocess.CompletedProcess:
    """Run ``args`` in ``cwd``, stdout and stderr captured as text, within ``timeout`` seconds.

    With ``check``, a non-zero exit raises AssertionError with the end of both outputs.
    """
    proc = subprocess.run(args, cwd=cwd, env=env or subprocess_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} failed ({proc.returncode}) in {cwd}:\n"
            f"{proc.stdout[-OUTPUT_TAIL_CHARS:]}\n{proc.stderr[-OUTPUT_TAIL_CHARS:]}"
        )
    return proc


def call_stage(project: Path, module: str, *args: str) -> None:
    """Call ``stages.<module>.main`` in this process, in ``project``, with ``args`` as its command line.

    For the tests of a stage's outputs: the libraries are imported once, not per run. Errors
    propagate as exceptions (no exit status, no log handler); a test of the process itself
    (exit status, stderr, the bytes of another process) uses run_stage.
    """
    main = importlib.import_module(f"stages.{module}").main
    with_cwd, with_argv = os.getcwd(), sys.argv
    os.chdir(project)
    sys.argv = [f"stages/{module}.py", *args]
    try:
        if inspect.signature(main).parameters:
            main(list(args))
        else:
            main()
    finally:
        os.chdir(with_cwd)
        sys.argv = with_argv


# ---- projects


def repository_files(root: Path = ROOT) -> list[str]:
    """Files of the repository as git sees them: tracked, plus untracked files not ignored."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root,
        stdout=subprocess.PIPE,
        check=True,
    ).stdout.decode()
    return [f for f in out.split("\0") if f and (root / f).is_file()]


def set_params(project: Path, update: dict) -> None:
    """Change params.yaml: each section of ``update`` replaces the keys it names (a new section is added)."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for name, values in update.items():
        params.setdefault(name, {}).update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def make_project(dest: Path, params: dict | None = None, *, contents: str = "code") -> Path:
    """A project in ``dest`` (created, or empty); returns ``dest``.

    ``contents``: "code" copies genreclf/, stages/ and params.yaml; "repository" every file of
    the repository (for DVC); "params" params.yaml alone (the stages then run from this
    repository). ``params`` changes params.yaml (see set_params).
    """
    if contents not in PROJECT_CONTENTS:
        raise ValueError(f"contents = {contents!r}; expected one of {PROJECT_CONTENTS}")
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ValueError(f"{dest} is not empty: a project is made in a new folder")
    if contents == "repository":
        for rel in repository_files():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    else:
        shutil.copy(ROOT / "params.yaml", dest / "params.yaml")
    if contents == "code":
        for name in CODE_FOLDERS:
            shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if params:
        set_params(dest, params)
    return dest


def directory_bytes(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (relative name -> content), to compare two runs."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ---- signals and audio files


def tone(
    seconds: float,
    sample_rate: int,
    frequency: float = 440.0,
    amplitude: float = 0.5,
    phase: float = 0.0,
    dtype=np.float64,
) -> np.ndarray:
    """``amplitude * sin(2 pi frequency t + phase)`` for ``round(seconds * sample_rate)`` samples."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t + phase)).astype(dtype)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as 16-bit PCM (rounded, clipped)."""
    return np.clip(np.round(np.asarray(samples) * 32767), -32768, 32767).astype(np.int16)


def write_audio(path: Path, samples: np.ndarray, sample_rate: int, subtype: str | None = None) -> Path:
    """Write float or int16 samples ([n] or [n, channels]) in the format named by the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    file_format, default_subtype = AUDIO_FORMATS[path.suffix]
    sf.write(path, samples, sample_rate, format=file_format, subtype=subtype or default_subtype)
    return path
