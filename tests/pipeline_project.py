"""Build a throw-away copy of this repository as its own git + DVC project, and run DVC in it.

The end-to-end tests (pipeline, experiments, GCS remote) run the real `dvc repro`
of this repository on ../shared/data/gtzan_mini with small settings, in such a copy.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# Small settings: every model trains for real, on 100 clips, in a few minutes on 2 cores.
SMALL_PARAMS = {
    "shard": {"num_shards": {"train": 4, "val": 2, "test": 2}},
    "cnn1d": {"epochs": 15, "patience": 15},
    "mobilenet": {"weights": None, "image_size": 96, "alpha": 0.35, "n_mels": 96,
                  "epochs": 30, "patience": 30, "batch_size": 16},
    "cnn2d": {"image_size": 64, "segments_per_clip": 4, "hop_length": 512,
              "epochs": 8, "patience": 8, "batch_size": 32},
}

STAGE_RAN = re.compile(r"Running stage '([^']+)'")
STAGE_FROM_RUN_CACHE = re.compile(r"Stage '([^']+)' is cached - skipping run, checking out outputs")


def env() -> dict:
    """The environment for DVC and the stages: this interpreter's bin first on PATH."""
    e = dict(os.environ)
    e["PATH"] = str(Path(sys.executable).parent) + os.pathsep + e.get("PATH", "")
    e["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    e["TF_CPP_MIN_LOG_LEVEL"] = "2"
    e["PYTHONUNBUFFERED"] = "1"
    e.setdefault("GIT_AUTHOR_NAME", "test")
    e.setdefault("GIT_AUTHOR_EMAIL", "test@example.invalid")
    e.setdefault("GIT_COMMITTER_NAME", "test")
    e.setdefault("GIT_COMMITTER_EMAIL", "test@example.invalid")
    return e


def run(args: list[str], cwd: Path, timeout: float = 1800, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command, capturing stdout+stderr together; raise with the output if it fails."""
    proc = subprocess.run(args, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}) in {cwd}:\n{proc.stdout[-6000:]}")
    return proc


def dvc(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], cwd, **kw)


def git(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return run(["git", *args], cwd, **kw)


def stages_ran(output: str) -> set[str]:
    return set(STAGE_RAN.findall(output))


def repository_files() -> list[str]:
    """Files of this repository as git sees them: tracked, plus untracked files not ignored."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=ROOT, stdout=subprocess.PIPE, check=True).stdout.decode()
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def deep_update(base: dict, update: dict) -> dict:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def set_params(project: Path, update: dict) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump(deep_update(params, update), sort_keys=False))


def make_project(dest: Path, gtzan_dir: Path, params: dict | None = None) -> Path:
    """Copy the repository into ``dest``, point it at ``gtzan_dir``, commit. Returns ``dest``."""
    dest.mkdir(parents=True)
    for rel in repository_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    set_params(dest, {"data": {"dataset": "gtzan", "source": str(gtzan_dir), "clips_per_genre": None}})
    set_params(dest, SMALL_PARAMS)
    if params:
        set_params(dest, params)
    git(["init", "-q", "-b", "main"], dest)
    git(["add", "-A"], dest)
    git(["commit", "-q", "-m", "test project"], dest)
    return dest


def clone_with_shared_cache(project: Path, dest: Path) -> Path:
    """A git clone of ``project`` that reads DVC objects from ``project``'s cache, checked out."""
    git(["clone", "-q", str(project), str(dest)], dest.parent)
    dvc(["cache", "dir", "--local", str(project / ".dvc" / "cache")], dest)
    dvc(["checkout", "-q"], dest)
    return dest
