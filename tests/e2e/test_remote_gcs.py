"""The project's Google Cloud Storage DVC remote, against a real GCS JSON API on loopback.

gcp-storage-emulator serves a bucket on 127.0.0.1 (tests/support/gcs_emulator.py); each clone
points the committed ``gcs`` remote at it in its git-ignored .dvc/config.local. The
pipeline project comes from the ``pipeline_project`` fixture: a git repository whose
pipeline has been run (dvc.lock committed, outputs in its DVC cache). The constants
below name what these tests expect of it (this repository's pipeline, run on gtzan_mini
with small settings: tests/support/pipeline_project.py). Failures of the remote: test_remote_gcs_faults.py.

Push and pull times are printed: ``pytest tests/e2e/test_remote_gcs.py -s``.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.gcs_emulator import (
    EMULATOR_STORAGE_DIR,
    REMOTE_NAME,
    UP_TO_DATE,
    GcsEmulator,
    cache_dir,
    count_pushed,
    crlf_framed,
    dvc,
    dvc_env,
    emulated_bucket,
    file_digests,
    fresh_clone,
    point_remote_at,
    split_lf_multipart,
)
from tests.support.pipeline_project import clone_with_shared_cache

BUCKET = "genreclf-test"
# The param changed in test_changing_one_param_reruns_only_its_model, and what must (or may) rerun.
CHANGED_PARAM = ("svm", "C")
CHANGED_VALUE = 3.0
STAGES_THAT_MUST_RERUN = {"train_sklearn@svm", "evaluate_sklearn@svm"}
# summarize reads metrics/models/svm.json: it reruns only if the new C changes svm's test scores.
STAGES_THAT_MAY_RERUN = {"summarize"}
# The stage whose dvc.lock entry is deleted and must come back from the run-cache.
RUN_CACHE_STAGE = "train_sklearn@svm"
RUN_CACHE_STAGE_COMMAND = "-m stages.train_sklearn svm"  # how its python command line ends
PUSH_PULL_TIMEOUT_S = 300
REPRO_TIMEOUT_S = 600

RUNNING_STAGE = re.compile(r"Running stage '([^']+)'")
CHECKOUT_FAILED = "ERROR: failed to pull data from the cloud - Checkout failed for following targets:"


@dataclass
class PushedRemote:
    """A bucket prefix holding the pipeline project's outputs, sent there by ``dvc push``."""

    emulator: GcsEmulator
    url: str
    files_pushed: int
    objects_stored: int
    bytes_stored: int
    seconds: float


def output_paths(repo: Path) -> list[str]:
    """Every output path (outs, metrics, plots) recorded in the repository's dvc.lock."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return sorted({out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])})


def stages_run(dvc_output: str) -> set[str]:
    return set(RUNNING_STAGE.findall(dvc_output))


def checkout_failures(dvc_stderr: str) -> list[str]:
    """The targets DVC lists after 'Checkout failed for following targets:'."""
    lines = dvc_stderr.splitlines()
    if CHECKOUT_FAILED not in lines:
        return []
    failed = []
    for line in lines[lines.index(CHECKOUT_FAILED) + 1 :]:
        if not line.strip() or line.startswith("Is your cache up to date?"):
            break
        failed.append(line.strip())
    return sorted(failed)


def cache_file_count(repo: Path) -> int:
    return sum(1 for f in cache_dir(repo).rglob("*") if f.is_file())


@pytest.fixture
def command_log(tmp_path):
    """An environment whose ``python`` records its arguments in a log, then runs the real one.

    Shows which stage commands really ran, independently of what DVC prints.
    """
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    log = tmp_path / "commands.log"
    log.touch()
    shim = shim_dir / "python"
    shim.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    env = dvc_env()
    env["PATH"] = f"{shim_dir}:{env.get('PATH', '')}"
    return env, log


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    server = GcsEmulator(tmp_path_factory.mktemp("gcs") / "data", BUCKET)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def source_repo(pipeline_project, tmp_path_factory) -> Path:
    """The clone that pushes: checked out, reading its objects from the project's DVC cache.

    A clone, so that pointing its remote (config.local) never touches the shared fixture.
    """
    return clone_with_shared_cache(pipeline_project, tmp_path_factory.mktemp("source") / "repo")


@pytest.fixture(scope="module")
def pushed_remote(source_repo, emulator) -> PushedRemote:
    prefix = "cache"
    url = f"gs://{BUCKET}/{prefix}"
    point_remote_at(source_repo, url, emulator.endpoint)
    start = time.perf_counter()
    result = dvc(source_repo, "push", timeout=PUSH_PULL_TIMEOUT_S)
    seconds = time.perf_counter() - start
    stored = [f for f in (emulator.data_dir / EMULATOR_STORAGE_DIR / BUCKET / prefix).rglob("*") if f.is_file()]
    remote = PushedRemote(
        emulator,
        url,
        count_pushed(result.stdout),
        len(emulator.object_names(f"{prefix}/")),
        sum(f.stat().st_size for f in stored),
        seconds,
    )
    print(
        f"\n[gcs remote] dvc push: {remote.files_pushed} files, {remote.bytes_stored / 1e6:.1f} MB in {seconds:.1f} s"
    )
    return remote


@pytest.mark.slow  # runs dvc (config, remote list)
def test_repository_declares_gcs_default_remote(repo_root):
    default = dvc(repo_root, "config", "core.remote").stdout.strip()
    remotes = dict(line.split(None, 1) for line in dvc(repo_root, "remote", "list").stdout.splitlines())
    assert default == REMOTE_NAME
    assert remotes[REMOTE_NAME].strip().startswith("gs://")
    # dvc pull re-hashes what it downloads and refuses an object that does not match.
    assert dvc(repo_root, "config", f"remote.{REMOTE_NAME}.verify").stdout.strip() == "true"
    # Credentials and endpoints go to config.local, which git must ignore.
    assert "/config.local" in (repo_root / ".dvc" / ".gitignore").read_text().splitlines()


@pytest.mark.slow  # dvc push/pull, from the end-to-end project
def test_push_then_pull_in_fresh_clone_gives_identical_outputs(
    pipeline_project, source_repo, pushed_remote, tmp_path, command_log
):
    remote = pushed_remote
    assert remote.files_pushed > 0
    assert remote.files_pushed == remote.objects_stored
    assert remote.files_pushed <= cache_file_count(source_repo)

    clone = fresh_clone(pipeline_project, tmp_path / "clone", remote.emulator.endpoint, remote.url)
    start = time.perf_counter()
    dvc(clone, "pull", timeout=PUSH_PULL_TIMEOUT_S)
    seconds = time.perf_counter() - start
    print(
        f"\n[gcs remote] dvc pull into a fresh clone: {remote.objects_stored} files, "
        f"{remote.bytes_stored / 1e6:.1f} MB in {seconds:.1f} s"
    )

    outputs = output_paths(source_repo)
    expected = file_digests(source_repo, outputs)
    assert expected
    assert file_digests(clone, outputs) == expected

    env, log = command_log
    repro = dvc(clone, "repro", timeout=REPRO_TIMEOUT_S, env=env)
    assert stages_run(repro.stdout) == set()
    assert log.read_text() == ""
    assert UP_TO_DATE in dvc(clone, "status").stdout


@pytest.mark.slow  # dvc push/pull, from the end-to-end project
def test_run_cache_restores_a_stage_missing_from_dvc_lock(
    pipeline_project, source_repo, pushed_remote, tmp_path, command_log
):
    remote = pushed_remote
    point_remote_at(source_repo, remote.url, remote.emulator.endpoint)
    dvc(source_repo, "push", "--run-cache", timeout=PUSH_PULL_TIMEOUT_S)
    assert any(name.startswith("cache/runs/") for name in remote.emulator.object_names("cache/"))

    clone = fresh_clone(pipeline_project, tmp_path / "clone", remote.emulator.endpoint, remote.url)
    lock_path = clone / "dvc.lock"
    original_lock = yaml.safe_load(lock_path.read_text())
    without_stage = yaml.safe_load(lock_path.read_text())
    del without_stage["stages"][RUN_CACHE_STAGE]
    lock_path.write_text(yaml.safe_dump(without_stage, sort_keys=False))

    # The pull fetches the outputs dvc.lock records and the run-cache entries, but not the
    # outputs of a stage that dvc.lock lacks: it names exactly those and exits non-zero.
    pull = dvc(clone, "pull", "--run-cache", timeout=PUSH_PULL_TIMEOUT_S, check=False)
    stage_outputs = sorted(out["path"] for out in original_lock["stages"][RUN_CACHE_STAGE]["outs"])
    assert checkout_failures(pull.stderr) == stage_outputs
    assert not any((clone / path).exists() for path in stage_outputs)

    # `repro --pull` downloads the outputs a matching run-cache entry names (a plain `repro`
    # finds them missing from the local cache and runs the stage).
    env, log = command_log
    repro = dvc(clone, "repro", "--pull", timeout=REPRO_TIMEOUT_S, env=env)

    output = repro.stdout + repro.stderr
    assert f"Stage '{RUN_CACHE_STAGE}' is cached - skipping run, checking out outputs" in output
    assert stages_run(output) == set()
    assert RUN_CACHE_STAGE_COMMAND not in log.read_text()
    restored = yaml.safe_load(lock_path.read_text())["stages"][RUN_CACHE_STAGE]
    assert restored == original_lock["stages"][RUN_CACHE_STAGE]
    assert file_digests(clone, stage_outputs) == file_digests(source_repo, stage_outputs)
    assert UP_TO_DATE in dvc(clone, "status").stdout


@pytest.mark.slow  # dvc push/pull, from the end-to-end project
def test_changing_one_param_reruns_only_its_model(pipeline_project, pushed_remote, tmp_path, command_log):
    remote = pushed_remote
    clone = fresh_clone(pipeline_project, tmp_path / "clone", remote.emulator.endpoint, remote.url)
    dvc(clone, "pull", timeout=PUSH_PULL_TIMEOUT_S)
    params_path = clone / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    section, key = CHANGED_PARAM
    params[section][key] = CHANGED_VALUE
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))

    env, log = command_log
    repro = dvc(clone, "repro", timeout=REPRO_TIMEOUT_S, env=env)

    ran = stages_run(repro.stdout)
    assert STAGES_THAT_MUST_RERUN <= ran
    assert ran <= STAGES_THAT_MUST_RERUN | STAGES_THAT_MAY_RERUN
    assert len(log.read_text().splitlines()) == len(ran)
    assert UP_TO_DATE in dvc(clone, "status").stdout


@pytest.mark.slow  # dvc push/pull, from the end-to-end project
def test_pull_refuses_an_object_corrupted_on_the_remote(pipeline_project, source_repo, pushed_remote, tmp_path):
    remote = pushed_remote
    lock = yaml.safe_load((source_repo / "dvc.lock").read_text())
    path, md5 = next(
        (out["path"], out["md5"])
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
        if not out["md5"].endswith(".dir")
    )
    stored = remote.emulator.data_dir / EMULATOR_STORAGE_DIR / BUCKET / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    original = stored.read_bytes()
    stored.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))  # one flipped byte
    try:
        clone = fresh_clone(pipeline_project, tmp_path / "clone", remote.emulator.endpoint, remote.url)
        pull = dvc(clone, "pull", timeout=PUSH_PULL_TIMEOUT_S, check=False)
    finally:
        stored.write_bytes(original)

    assert pull.returncode != 0
    assert checkout_failures(pull.stderr) == [path]
    assert not (clone / path).exists()


PAYLOADS = [b"", b"audio", b"ends in CR\r", b"ends in LF\n", b"ends in CRLF\r\n", b"\r\n--==0==\r\n", bytes(range(256))]
UPLOAD_META = {"name": "cache/files/md5/00/11"}


def lf_framed_upload(meta: dict, payload: bytes) -> bytes:
    """A two-part upload as gcsfs frames it (bare LFs, boundary ==0==): ``meta``, then ``payload``."""
    return (
        b"--==0==\nContent-Type: application/json; charset=UTF-8\n\n"
        + json.dumps(meta).encode()
        + b"\n--==0==\nContent-Type: application/octet-stream\n\n"
        + payload
        + b"\n--==0==--"
    )


@pytest.mark.parametrize("payload", PAYLOADS)
def test_lf_framed_upload_is_split_on_its_exact_delimiter(payload):
    """The framing gcsfs uses for uploads under 50 MiB (gcsfs.core.simple_upload)."""
    body = lf_framed_upload(UPLOAD_META, payload)
    upload = split_lf_multipart(body, "==0==")
    assert upload == {"meta": UPLOAD_META, "content": payload, "content-type": "application/octet-stream"}


@pytest.mark.parametrize("payload", PAYLOADS)
def test_an_lf_framed_upload_framed_again_reads_back_whole_as_the_emulator_parses_it(payload):
    """What the proxy in front of the emulator sends on, parsed as gcp-storage-emulator parses an
    upload (the email package, CRLF framing): the same metadata, content type and every byte."""
    from email.parser import BytesParser

    body = lf_framed_upload(UPLOAD_META, payload)
    framed, content_type = crlf_framed(body, 'multipart/related; boundary="==0=="')
    parts = BytesParser().parsebytes(f"Content-Type: {content_type}\r\n".encode() + framed).get_payload()
    assert json.loads(parts[0].get_payload()) == UPLOAD_META
    assert parts[1].get_content_type() == "application/octet-stream"
    assert parts[1].get_payload(decode=True) == payload


def test_a_body_that_is_not_an_lf_framed_upload_passes_unchanged():
    crlf = b"--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\n\r\ndata\r\n--b--"
    assert crlf_framed(crlf, "multipart/related; boundary=b") == (crlf, "multipart/related; boundary=b")
    assert crlf_framed(b'{"name": "x"}', "application/json") == (b'{"name": "x"}', "application/json")


@pytest.mark.slow  # starts the emulator
def test_the_emulator_keeps_every_byte_of_a_gcsfs_upload(tmp_path):
    """gcsfs's uploads (LF-framed under 50 MiB) through the emulator's port read back whole; the
    emulator alone stores b"ends in CR\\r" one byte short."""
    from genreclf.data import gcs

    with emulated_bucket(tmp_path, BUCKET):
        fs = gcs.filesystem()
        for i, payload in enumerate(PAYLOADS):
            fs.pipe_file(f"gs://{BUCKET}/object-{i}", payload)
        assert [fs.cat_file(f"gs://{BUCKET}/object-{i}") for i in range(len(PAYLOADS))] == PAYLOADS


@pytest.mark.slow  # starts the emulator
def test_the_emulator_stops_on_sigint_where_its_parent_ignores_sigint(tmp_path):
    """As under a shell that starts a command in the background without job control: the
    emulator still stops cleanly on stop()'s SIGINT (exit status 0), not by the SIGKILL after
    its timeout, which could cut its index write."""
    import signal

    emulator = GcsEmulator(tmp_path / "emulator", BUCKET)
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the emulator's process
    try:
        emulator.start()
    finally:
        signal.signal(signal.SIGINT, before)
    process = emulator.process
    emulator.stop()
    assert process.returncode == 0


def test_crlf_framed_upload_is_left_to_the_emulator():
    body = b"--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\n\r\ndata\r\n--b--"
    assert split_lf_multipart(body, "b") is None
