"""The end-to-end project: a copy of this repository as its own git + DVC project, and DVC run in it.

The end-to-end tests (pipeline, experiments, GCS remote) run the real `dvc repro`
of this repository on ../shared/data/gtzan_mini with small settings, in such a copy.
Building it takes minutes, so ``GENRECLF_TEST_PROJECT`` may name one that an earlier run
built; it is refused if the code has changed since (its fingerprint, written beside it).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from tests.support.helpers import ROOT, make_project, set_params, subprocess_env

# Small settings: every model trains for real, on 100 clips, in a few minutes on 2 cores. The Keras
# models train for a few epochs, patience as long (no early stop): the end-to-end tests check that the
# training loss falls and that the best val epoch is kept (tests/e2e/test_pipeline.py), not the scores.
SMALL_PARAMS = {
    "shard": {"num_shards": {"train": 4, "val": 2, "test": 2}},
    "embed": {"patches_per_clip": 3},  # 3 evenly spaced 3 s patches per clip instead of 10
    "cnn1d": {"epochs": 10, "patience": 10},
    "mobilenet": {
        "weights": None,
        "image_size": 64,
        "alpha": 0.35,
        "n_mels": 64,
        "epochs": 8,
        "patience": 8,
        "batch_size": 16,
    },
    "cnn2d": {
        "image_size": 64,
        "segments_per_clip": 4,
        "hop_length": 512,
        "epochs": 6,
        "patience": 6,
        "batch_size": 32,
    },
}
REPRO_TIMEOUT_S = 2400
STAGE_RAN = re.compile(r"Running stage '([^']+)'")

READS_LOG_NAME = "stage_reads"  # beside the project: what each stage's processes opened or listed
STAGE_READS_HOOK = ROOT / "tests" / "support" / "stage_reads"  # its sitecustomize records them

REUSE_VARIABLE = "GENRECLF_TEST_PROJECT"
# What decides the built project's outputs: the code, the pipeline, the params and how the project is made.
FINGERPRINTED = (
    "genreclf",
    "stages",
    "dvc.yaml",
    "params.yaml",
    ".dvc/config",
    "tests/support/helpers.py",
    "tests/support/pipeline_project.py",
    "tests/support/stage_reads",
)
FINGERPRINT_NAME = "code_fingerprint.json"  # beside the project folder, with first_repro.log
NAMED_CHANGES = 10


def run(
    args: list[str], cwd: Path, timeout: float = 1800, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a command, capturing stdout+stderr together; raise with the output if it fails.
    ``env``: variables to set on top of the stages' environment."""
    proc = subprocess.run(
        args,
        cwd=cwd,
        env={**subprocess_env(), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}) in {cwd}:\n{proc.stdout[-6000:]}")
    return proc


def dvc(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], cwd, **kw)


def git(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return run(["git", *args], cwd, **kw)


def stages_ran(output: str) -> set[str]:
    return set(STAGE_RAN.findall(output))


def make_dvc_project(dest: Path, gtzan_dir: Path, params: dict | None = None) -> Path:
    """Copy the repository into ``dest`` with SMALL_PARAMS, pointed at ``gtzan_dir``; git init and commit."""
    make_project(
        dest, {"data": {"dataset": "gtzan", "source": str(gtzan_dir), "clips_per_genre": None}}, contents="repository"
    )
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


# ---- the project the end-to-end tests share


def reads_log(project: Path) -> Path:
    """Where the first `dvc repro` recorded what each stage's processes opened (tests/support/stage_reads)."""
    return project.parent / READS_LOG_NAME


def build_pipeline_project(dest: Path, gtzan_dir: Path) -> Path:
    """make_dvc_project, `dvc repro` once, then commit dvc.lock; the log, what each stage read
    (reads_log) and the code fingerprint beside it."""
    project = make_dvc_project(dest, gtzan_dir)
    reads = reads_log(project)
    reads.mkdir()
    recording = {"GENRECLF_TEST_READS_LOG": str(reads), "PYTHONPATH": str(STAGE_READS_HOOK)}
    result = dvc(["repro"], project, timeout=REPRO_TIMEOUT_S, env=recording)
    (project.parent / "first_repro.log").write_text(result.stdout)
    (project.parent / "first_repro_git_status.txt").write_text(
        git(["status", "--porcelain", "--untracked-files=all"], project).stdout
    )
    git(["add", "-A"], project)
    git(["commit", "-q", "-m", "dvc repro"], project)
    record_fingerprint(project)
    return project


BUILD_FAILED_NAME = "build_failed.txt"  # beside the project, when a shared build failed


def shared_build(folder: Path, gtzan_dir: Path) -> Path:
    """The project in ``folder``: built by the first test process that asks, under a file lock
    (the pattern pytest-xdist documents), and reused by the others.

    A failed build is recorded, so that the others fail at once with its message instead of
    building it again.
    """
    folder.mkdir(parents=True, exist_ok=True)
    failed = folder / BUILD_FAILED_NAME
    with FileLock(folder / "build.lock"):
        if failed.is_file():
            pytest.fail(f"another test process failed to build the pipeline project:\n{failed.read_text()}")
        if (folder / FINGERPRINT_NAME).is_file():
            return reused_project(folder / "project")
        try:
            return build_pipeline_project(folder / "project", gtzan_dir)
        except BaseException as error:
            failed.write_text(f"{type(error).__name__}: {error}"[-8000:])
            raise


def code_fingerprint(root: Path = ROOT) -> dict[str, str]:
    """SHA-256 of each file under FINGERPRINTED in ``root`` (relative path -> digest; no __pycache__)."""
    digests = {}
    for name in FINGERPRINTED:
        path = root / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            if "__pycache__" not in file.parts and file.suffix != ".pyc":
                digests[file.relative_to(root).as_posix()] = hashlib.sha256(file.read_bytes()).hexdigest()
    return dict(sorted(digests.items()))


def record_fingerprint(project: Path, root: Path = ROOT) -> None:
    files = code_fingerprint(root)
    total = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    (project.parent / FINGERPRINT_NAME).write_text(json.dumps({"sha256": total, "files": files}, indent=1) + "\n")


def fingerprint_changes(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """What differs between two fingerprints, one 'changed|added|removed: path' line per file."""
    changes = [f"changed: {p}" for p in sorted(set(recorded) & set(current)) if recorded[p] != current[p]]
    changes += [f"added: {p}" for p in sorted(set(current) - set(recorded))]
    changes += [f"removed: {p}" for p in sorted(set(recorded) - set(current))]
    return changes


def reused_project(project: Path, root: Path = ROOT) -> Path:
    """``project`` (from GENRECLF_TEST_PROJECT) if it was built from the code in ``root``; else pytest.fail."""
    rebuild = (
        f"build a new one from this code: without {REUSE_VARIABLE}, run `python -m pytest "
        f"-m slow tests/e2e/test_pipeline.py --basetemp=DIR`, then set {REUSE_VARIABLE}=DIR/pipeline/project "
        f"(and give later runs another --basetemp, or none: pytest empties it)"
    )
    if not (project / "dvc.lock").is_file():
        pytest.fail(f"{REUSE_VARIABLE}={project}: not a built pipeline project (no dvc.lock); {rebuild}")
    fingerprint_file = project.parent / FINGERPRINT_NAME
    if not fingerprint_file.is_file():
        pytest.fail(
            f"{REUSE_VARIABLE}={project}: {fingerprint_file} is missing, so nothing tells which code "
            f"built it; {rebuild}"
        )
    recorded = json.loads(fingerprint_file.read_text())["files"]
    changes = fingerprint_changes(recorded, code_fingerprint(root))
    if changes:
        shown = "; ".join(changes[:NAMED_CHANGES]) + (
            f"; and {len(changes) - NAMED_CHANGES} more" if len(changes) > NAMED_CHANGES else ""
        )
        pytest.fail(
            f"{REUSE_VARIABLE}={project} was built from other code than this checkout "
            f"({len(changes)} file(s) differ: {shown}); {rebuild}"
        )
    return project
