"""A full disk, or another error of the operating system, ends a stage with one clear line; and
the free space is checked before a stage writes.

Each error is made where it really happens: a small tmpfs for a full disk (ENOSPC), a read-only
bind mount (EROFS; chmod, EACCES, when not root), a tight RLIMIT_NOFILE in the worker processes
(EMFILE), a file removed (ENOENT); in the stage's own process and in its workers (a process pool,
or Beam's); for convert, shard and fetch. Mounting needs root: those tests are skipped, saying so, when not root.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from genreclf import space
from genreclf.artifacts import CLIP_COLUMNS, SPLITS, read_converted, write_clips, write_split
from genreclf.data.audio import read_wav, write_wav
from genreclf.engine import Engine, map_in_order
from genreclf.errors import FileSystemError, NotEnoughSpaceError
from genreclf.io import atomic_dir, file_error
from genreclf.resume import SCRATCH_ROOT
from tests.support.fma_fixture import build_fma_fixture
from tests.support.helpers import ROOT, directory_bytes, make_project, run_command, run_stage, subprocess_env
from tests.support.http_range_server import RangeServer
from tests.support.shared_data import under_ci

IS_ROOT = os.geteuid() == 0
# Outside CI a run without root skips them, saying why; under CI=true (which runs as root) they run
# and a missing privilege fails them instead of hiding them.
UNDER_CI = under_ci(os.environ)
NEEDS_ROOT = pytest.mark.skipif(
    not IS_ROOT and not UNDER_CI, reason="mounting a tmpfs or a read-only bind mount needs root"
)
CLIPS_PER_GENRE = 3  # 30 clips: about 40 MB of WAVs at 22050 Hz
WAV_MB = 40


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@contextmanager
def tmpfs(where: Path, size_mb: int):
    where.mkdir(parents=True, exist_ok=True)
    mount("-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where))
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def gtzan_project(dest: Path, gtzan_mini: Path) -> Path:
    """A project whose data/raw/clips.csv lists CLIPS_PER_GENRE clips per genre of gtzan_mini (in place)."""
    make_project(dest)
    rows = [
        (f.stem, genre.name, str(f), "")
        for genre in sorted(gtzan_mini.iterdir())
        if genre.is_dir()
        for f in sorted(genre.glob("*.wav"))[:CLIPS_PER_GENRE]
    ]
    write_clips(dest / "data" / "raw" / "clips.csv", pd.DataFrame(rows, columns=CLIP_COLUMNS))
    return dest


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " error: " in line]


def assert_one_line(proc: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit status 1, no traceback, one error line holding every ``expected`` text; that line."""
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr[-3000:]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def temporary_files(project: Path) -> list[str]:
    return [str(p.relative_to(project)) for p in project.rglob("*") if p.name.endswith((".tmp", ".old"))]


# ---- the messages, and what crosses a process boundary


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "the disk is full"),
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "read-only file system"),
        (errno.EMFILE, "too many open files"),
        (errno.ENOENT, "the file vanished"),
    ],
)
def test_an_os_error_is_one_line_that_pickles(tmp_path, code, words):
    error = file_error(OSError(code, os.strerror(code), str(tmp_path / "a.wav")))
    text = str(error)
    assert "\n" not in text and text.startswith(f"{tmp_path / 'a.wav'}: {words} ({os.strerror(code)}")
    assert "rerun" in text and error.errno == code
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), str(again), again.path, again.errno) == (FileSystemError, text, error.path, code)


def test_a_file_in_a_temporary_folder_is_named_by_its_final_name(tmp_path):
    final = tmp_path / "wav"
    with pytest.raises(FileSystemError) as caught, atomic_dir(final) as tmp:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / "blues.00000.wav"))
    assert caught.value.path == str(final / "blues.00000.wav")
    assert str(caught.value).startswith(f"{final / 'blues.00000.wav'}: the disk is full")
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone


def test_a_vanished_file_in_a_worker_comes_back_as_one_line(tmp_path):
    """read_wav in a process pool's worker: libsndfile's "System error." becomes the file vanished."""
    missing = tmp_path / "gone.wav"

    def in_pool(fn, items):
        with ProcessPoolExecutor(max_workers=1) as pool:
            yield from pool.map(fn, *zip(*items))

    with pytest.raises(FileSystemError, match=f"{missing}: the file vanished") as caught:
        list(map_in_order(read_wav, [(missing,)], Engine(), local=in_pool))
    assert caught.value.errno == errno.ENOENT


@pytest.mark.slow  # a Beam pipeline on the FnApiRunner: a few seconds
def test_an_os_error_in_a_beam_worker_comes_back_as_one_line(tmp_path):
    pytest.importorskip("genreclf.beam", reason="the beam engine needs `pip install -r requirements-beam.txt`")
    from genreclf.engine import engine_from_environ

    engine = engine_from_environ({"GENRECLF_ENGINE": "beam", "GENRECLF_BEAM_OPTIONS": "--direct_num_workers=1"})
    missing = tmp_path / "gone.wav"
    with pytest.raises(FileSystemError, match=f"{missing}: the file vanished"):
        list(map_in_order(read_wav, [(missing,)], engine))


def test_write_wav_on_a_read_only_folder_names_the_file(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    if IS_ROOT:
        mount("--bind", "-o", "ro", str(folder), str(folder))
    else:
        folder.chmod(0o555)
    try:
        with pytest.raises(FileSystemError) as caught:
            write_wav(folder / "a.wav", [0, 1, 2], 22050)
    finally:
        if IS_ROOT:
            subprocess.run(["umount", str(folder)], check=True)
        folder.chmod(0o755)
    assert caught.value.errno in (errno.EROFS, errno.EACCES)
    assert str(caught.value).startswith(f"{folder / 'a.wav'}: ")
    assert list(folder.iterdir()) == []


# ---- the check of the free space


def test_the_check_refuses_what_does_not_fit_naming_the_sizes(gtzan_mini, tmp_path):
    """(How long it takes is a benchmark's question: the stage test below prints it.)"""
    paths = sorted(str(p) for p in gtzan_mini.rglob("*.wav"))
    size = space.converted_wav_bytes(paths, 22050)
    with pytest.raises(NotEnoughSpaceError) as caught:
        space.check_space("convert", [space.Need("WAVs", size, tmp_path / "data" / "wav")], remedy="keep it on GCS")
        space.check_space("convert", [space.Need("WAVs", 10**13, tmp_path / "data" / "wav")], remedy="keep it on GCS")
    assert 130e6 < size < 135e6  # 100 clips of 30 s at 22050 Hz, 16 bits
    assert "convert would write about 10.0 TB of WAVs to" in str(caught.value)
    assert "free (needs" in str(caught.value) and "keep it on GCS" in str(caught.value)


def test_the_check_counts_a_cache_on_another_disk(tmp_path):
    if not IS_ROOT and not UNDER_CI:
        pytest.skip("mounting a tmpfs needs root")
    with tmpfs(tmp_path / "cache", 8):
        need = space.Need("WAVs", 20 * 10**6, tmp_path / "data" / "wav")
        space.check_space("convert", [need])  # the workspace's disk has room
        with pytest.raises(NotEnoughSpaceError, match=f"to {tmp_path / 'cache'}; its disk has 8.4 MB free"):
            space.check_space("convert", [need], mirrors=[tmp_path / "cache"])


def test_the_check_can_be_turned_off():
    assert space.check_enabled({}) and not space.check_enabled({space.SPACE_VARIABLE: "off"})


@NEEDS_ROOT
@pytest.mark.slow  # convert in its own process
def test_convert_that_cannot_fit_stops_before_any_work(gtzan_mini, tmp_path):
    with tmpfs(tmp_path / "disk", WAV_MB // 2) as disk:
        project = gtzan_project(disk / "project", gtzan_mini)
        started = time.perf_counter()
        proc = run_stage(project, "convert", check=False)
        seconds = time.perf_counter() - started
        line = assert_one_line(proc, "convert would write about 39.7 MB of WAVs to data/wav; its disk has 2", "GCS")
        assert not (project / "data" / "wav").exists() and temporary_files(project) == []
        assert "decoding" not in proc.stderr  # no work started
    print(f"refused in {seconds:.1f} s (the process, imports included): {line}")


@NEEDS_ROOT
@pytest.mark.parametrize(
    ("clips_per_genre", "expected"),
    [
        (None, "fetch would write about 7.2 GB of archive to data/downloads; about 7.2 GB of clips to data/raw/audio"),
        (2, "fetch would write about 14.4 MB of clips to data/raw/audio"),  # read by ranges: no archive
    ],
    ids=["whole-archive", "clips-per-genre"],
)
def test_fetch_that_cannot_fit_stops_before_any_download(shared_data, tmp_path, clips_per_genre, expected):
    """The FMA fixture's archives served on 127.0.0.1; the project on an 8 MB disk. fetch's check
    counts the archive it would download (unless it reads the chosen members by ranges) and the
    clips it would extract, from the dataset's published sizes (genreclf/space.py): it refuses in
    the stage's own process, with one line naming the sizes, before any request."""
    fma = build_fma_fixture(shared_data, tmp_path / "archives", ("fma_small",))
    with RangeServer(fma.directory) as server, tmpfs(tmp_path / "disk", 8) as disk:
        data = {"dataset": "fma_small", "source": server.url, "clips_per_genre": clips_per_genre}
        project = make_project(disk / "project", {"data": data}, contents="params")
        proc = run_stage(project, "fetch", check=False)
        print(assert_one_line(proc, expected, "its disk has 8.", "choose fewer clips (data.clips_per_genre)"))
        assert server.requests == [] and not (project / "data" / "raw").exists()
        assert temporary_files(project) == []


# ---- a stage meeting each error


@NEEDS_ROOT
@pytest.mark.slow  # convert runs three times in its own process
def test_convert_on_a_disk_that_fills_up_is_one_line_and_a_rerun_gives_a_clean_runs_bytes(gtzan_mini, tmp_path):
    clean = gtzan_project(tmp_path / "clean", gtzan_mini)
    run_stage(clean, "convert")
    env_off = {space.SPACE_VARIABLE: "off"}  # as if the disk filled up after the check
    with tmpfs(tmp_path / "disk", WAV_MB // 2) as disk:
        project = gtzan_project(disk / "project", gtzan_mini)
        env = dict(subprocess_env(), PYTHONPATH=str(ROOT), **env_off)
        proc = run_command([sys.executable, "-m", "stages.convert"], project, env=env, check=False)
        line = assert_one_line(
            proc, "data/wav/", ".wav: the disk is full (No space left on device, ENOSPC)", "free space"
        )
        print(line)
        assert temporary_files(project) == [] and not (project / "data" / "wav").exists()
        assert not (project / "data" / "converted.csv").exists()
        mount("-o", f"remount,size={WAV_MB * 3}m", str(disk))
        run_stage(project, "convert")
        for output in ("data/wav", "data/converted.csv", "data/convert_skipped.csv", "metrics/convert.json"):
            got, want = project / output, clean / output
            if want.is_dir():
                assert directory_bytes(got) == directory_bytes(want), output
            else:
                assert got.read_bytes() == want.read_bytes(), output
        assert temporary_files(project) == []


def split_project(project: Path) -> Path:
    """data/split of the clips that convert wrote: every third clip val, every third test."""
    converted = read_converted(project / "data" / "converted.csv")
    genres = sorted(converted["genre"].unique())
    manifest = converted[["track_id", "path", "genre"]].copy()
    manifest["label"] = [genres.index(g) for g in manifest["genre"]]
    manifest["split"] = [SPLITS[i % 3] for i in range(len(manifest))]
    write_split(project / "data" / "split", manifest, genres)
    return project


@NEEDS_ROOT
@pytest.mark.slow  # convert, then shard three times, in their own process
def test_shard_on_a_disk_that_fills_up_is_one_line_and_a_rerun_gives_a_clean_runs_bytes(gtzan_mini, tmp_path):
    """The WAVs fit on the disk, and about half of the shards: the shard being written when the
    disk fills up is named as the file of data/shards it is, nothing is left of it, and the rerun
    once space is freed reuses the shards that were finished."""
    clean = gtzan_project(tmp_path / "clean", gtzan_mini)
    run_stage(clean, "convert")
    split_project(clean)
    with tmpfs(tmp_path / "disk", WAV_MB + WAV_MB // 2) as disk:
        project = make_project(disk / "project")
        shutil.copytree(clean / "data", project / "data")  # the WAVs and the split: about 40 MB
        run_stage(clean, "shard")
        env = dict(subprocess_env(), PYTHONPATH=str(ROOT), **{space.SPACE_VARIABLE: "off"})
        proc = run_command([sys.executable, "-m", "stages.shard"], project, env=env, check=False)
        line = assert_one_line(
            proc, "error: data/shards/", ".tfrecord: the disk is full (No space left on device, ENOSPC)", "free space"
        )
        print(line)
        assert temporary_files(project) == [] and not (project / "data" / "shards").exists()
        (scratch,) = (project / SCRATCH_ROOT / "shard").iterdir()
        written = sorted(p.name for p in (scratch / "files").iterdir())
        failed = line.split("data/shards/")[1].split(":")[0]
        assert written and failed not in written  # the shard being written is gone; those before it stay
        mount("-o", f"remount,size={WAV_MB * 3}m", str(disk))
        proc = run_stage(project, "shard")
        assert f"resume: reused {len(written)} shards" in proc.stderr, proc.stderr[-3000:]
        assert directory_bytes(project / "data" / "shards") == directory_bytes(clean / "data" / "shards")
        assert temporary_files(project) == [] and not (project / SCRATCH_ROOT).exists()


@pytest.mark.slow  # convert in its own process
def test_convert_in_a_read_only_project_is_one_line(gtzan_mini, tmp_path):
    project = gtzan_project(tmp_path / "project", gtzan_mini)
    data = project / "data"
    if IS_ROOT:
        mount("--bind", "-o", "ro", str(data), str(data))
        expected = "data/wav: read-only file system (Read-only file system, EROFS)"
    else:
        data.chmod(0o555)
        expected = "data/wav: permission denied (Permission denied, EACCES)"
    try:
        proc = run_stage(project, "convert", check=False)
    finally:
        if IS_ROOT:
            subprocess.run(["umount", str(data)], check=True)
        data.chmod(0o755)
    print(assert_one_line(proc, expected))
    assert temporary_files(project) == []


EMFILE_SCRIPT = """
import os, resource
import stages.convert as convert
from genreclf.engine import limit_threads
from stages.common import run_stage

def no_more_files():  # each worker starts with every file descriptor it may have in use
    limit_threads()
    in_use = len(os.listdir("/proc/self/fd")) - 1  # less the one that lists them
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

convert.limit_threads = no_more_files
run_stage("convert", convert.main)
"""


@pytest.mark.slow  # convert in its own process
def test_too_many_open_files_in_a_worker_is_one_line(gtzan_mini, tmp_path):
    project = gtzan_project(tmp_path / "project", gtzan_mini)
    proc = run_command([sys.executable, "-c", EMFILE_SCRIPT], project, check=False)
    line = assert_one_line(proc, ": too many open files (Too many open files, EMFILE)", "ulimit -n")
    assert "gtzan_mini/" in line or "data/wav/" in line  # the clip read, or the WAV written
    print(line)
    assert temporary_files(project) == [] and not (project / "data" / "wav").exists()
