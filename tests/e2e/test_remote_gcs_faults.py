"""The GCS DVC remote when things go wrong: a remote that dies mid-push, an endpoint that
refuses connections, a bucket that does not exist. Each failing call is bounded in time
and must fail with a message naming what is wrong; a cut-short push must complete once
the remote is back, leaving the local cache as it was.

gcsfs tries each request 6 times with exponential backoff (about 31-36 s in all, fixed in
gcsfs: no DVC remote option changes it), and a push can meet the dead remote in up to
three steps in a row (listing, uploading, then the directories), hence FAILURE_TIMEOUT_S.
See tests/e2e/test_remote_gcs.py for the fixtures' shape.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.gcs_emulator import (
    HOST,
    IN_SYNC,
    UP_TO_DATE,
    GcsEmulator,
    cache_dir,
    count_pushed,
    dvc,
    error_lines,
    file_digests,
    finish,
    free_port,
    fresh_clone,
    point_remote_at,
    start_dvc,
)
from tests.support.pipeline_project import dvc as project_dvc
from tests.support.pipeline_project import git, make_dvc_project

pytestmark = pytest.mark.slow  # dvc push/pull against a GCS emulator

BUCKET = "genreclf-test"
# The push that is cut short: stop the remote once this many objects have landed.
OBJECTS_BEFORE_STOP = 3
UPLOAD_DELAY_S = 0.3
FAILURE_TIMEOUT_S = 180
PUSH_PULL_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def pushable_project(gtzan_mini, tmp_path_factory) -> Path:
    """A DVC project of this repository where `dvc repro split` ran on 50 gtzan_mini clips, dvc.lock
    committed: 100 audio files (each clip fetched and converted) and the tables in its cache,
    enough for a push to be cut short. These tests need a project to push, not the end-to-end one, so
    they run while that one builds."""
    project = make_dvc_project(
        tmp_path_factory.mktemp("faults") / "project", gtzan_mini, {"data": {"clips_per_genre": 5}}
    )
    project_dvc(["repro", "split"], project, timeout=PUSH_PULL_TIMEOUT_S)
    git(["add", "-A"], project)
    git(["commit", "-q", "-m", "dvc repro split"], project)
    return project


@pytest.fixture(scope="module")
def source_repo(pushable_project) -> Path:
    """The repository that pushes: the project itself (this module's own)."""
    return pushable_project


def test_unreachable_remote_fails_clearly_and_an_interrupted_push_resumes(pushable_project, source_repo, tmp_path):
    """A remote stopped in the middle of a push, and (meanwhile) a push from a clone whose
    endpoint is a closed port: both fail in bounded time, naming the endpoint. The
    interrupted push then completes against the restarted remote; no cached object is touched."""
    # Uploads land UPLOAD_DELAY_S apart, so the remote stops after the first few of them however
    # busy the machine is (the emulator answers one request at a time).
    server = GcsEmulator(tmp_path / "gcs", BUCKET, upload_delay_s=UPLOAD_DELAY_S)
    server.start()
    try:
        prefix = "interrupted"
        point_remote_at(source_repo, f"gs://{BUCKET}/{prefix}", server.endpoint)
        closed_endpoint = f"http://{HOST}:{free_port()}"
        unreachable_clone = fresh_clone(
            pushable_project, tmp_path / "clone", closed_endpoint, f"gs://{BUCKET}/{prefix}"
        )
        cache = cache_dir(source_repo)
        dvc(unreachable_clone, "cache", "dir", "--local", str(cache))
        cache_before = file_digests(cache)

        # Enough jobs for every upload to be in flight at once: once the remote is gone they
        # all give up in the same retry cycle, instead of ceil(files / jobs) cycles in a row.
        push = start_dvc(source_repo, "push", "-j", str(len(cache_before)))
        started = time.perf_counter()
        deadline = time.monotonic() + PUSH_PULL_TIMEOUT_S
        while server.stored_object_count(prefix) < OBJECTS_BEFORE_STOP:
            if push.poll() is not None or time.monotonic() > deadline:
                finish(push, 1)
                pytest.fail("the push ended (or nothing landed) before the remote could be stopped")
            time.sleep(0.01)
        server.stop()
        landed = server.stored_object_count(prefix)
        # (A pull into an empty cache is not bounded like this: DVC reads each directory
        # output's listing three times in a row, each under gcsfs's retry cycle.)
        unreachable_push = start_dvc(unreachable_clone, "push")
        unreachable_started = time.perf_counter()
        _, push_err = finish(push, FAILURE_TIMEOUT_S)
        push_seconds = time.perf_counter() - started
        _, unreachable_err = finish(unreachable_push, FAILURE_TIMEOUT_S)
        unreachable_seconds = time.perf_counter() - unreachable_started

        # DVC's last words depend on the step the push was in ("failed to transfer '<md5>' - "
        # while uploading, "unexpected error - " otherwise); they name the endpoint.
        assert push.returncode != 0
        assert any(f"Cannot connect to host {HOST}:{server.port}" in line for line in error_lines(push_err))
        assert unreachable_push.returncode != 0
        assert any(
            f"Cannot connect to host {closed_endpoint.removeprefix('http://')}" in line
            for line in error_lines(unreachable_err)
        )
        print(
            f"\n[gcs remote] remote stopped after {landed} objects: push failed in "
            f"{push_seconds:.1f} s with: {error_lines(push_err)[-1]}\n[gcs remote] closed port: "
            f"push failed in {unreachable_seconds:.1f} s with: {error_lines(unreachable_err)[-1]}"
        )

        server.upload_delay_s = 0.0
        server.start()  # the same port and storage
        assert len(server.object_names(f"{prefix}/")) == landed
        resumed = dvc(source_repo, "push", timeout=PUSH_PULL_TIMEOUT_S)
        assert count_pushed(resumed.stdout) + landed == len(server.object_names(f"{prefix}/"))
        assert IN_SYNC in dvc(source_repo, "status", "-c", timeout=PUSH_PULL_TIMEOUT_S).stdout
        # (the project ran the stages up to split: those are all up to date)
        assert UP_TO_DATE in dvc(source_repo, "status", "--with-deps", "split").stdout
        # The project's cache is shared with the other test process, whose clones may add objects
        # meanwhile: the check is that none of those that were there changed or went.
        cache_after = file_digests(cache)
        assert {name: cache_after.get(name) for name in cache_before} == cache_before
    finally:
        server.stop()


@pytest.mark.parametrize("command", ["push", "pull"])
def test_wrong_bucket_fails_clearly(command, pushable_project, source_repo, tmp_path):
    server = GcsEmulator(tmp_path / "gcs", BUCKET)
    server.start()
    try:
        bucket = "genreclf-no-such-bucket"
        url = f"gs://{bucket}/cache"
        if command == "push":
            repo = source_repo
            point_remote_at(repo, url, server.endpoint)
        else:
            repo = fresh_clone(pushable_project, tmp_path / "clone", server.endpoint, url)
        start = time.perf_counter()
        result = dvc(repo, command, timeout=FAILURE_TIMEOUT_S, check=False)
    finally:
        server.stop()

    print(
        f"\n[gcs remote] wrong bucket: dvc {command} failed in {time.perf_counter() - start:.1f} s "
        f"with: {error_lines(result.stderr)}"
    )
    assert result.returncode != 0
    # gcsfs reports the 404 of the bucket's object listing by its path, b/<bucket>/o.
    assert any(f"b/{bucket}/o" in line for line in error_lines(result.stderr))
