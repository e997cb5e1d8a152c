"""The project's Google Cloud Storage DVC remote, against a real GCS JSON API on loopback.

gcp-storage-emulator serves a bucket on 127.0.0.1; each clone points the committed
``gcs`` remote at it in its git-ignored .dvc/config.local (endpointurl,
allow_anonymous_login). The pipeline project comes from the ``pipeline_project``
fixture: a git repository whose pipeline has been run (dvc.lock committed, outputs in
its DVC cache). The constants below name the stages these tests expect to see; they
hold for both this repository's pipeline and the stand-in at the bottom of the file.

Push and pull times are printed; see them with ``pytest tests/test_remote_gcs.py -s``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.gcs_emulator import (HOST, REMOTE_NAME, GcsEmulator, dvc, dvc_env, file_digests,
                                free_port, git_clone, point_remote_at)

BUCKET = "genreclf-test"
# The param changed in test_changing_one_param_reruns_only_its_model, and what must (or may) rerun.
CHANGED_PARAM = ("svm", "C")
STAGES_THAT_MUST_RERUN = {"train_sklearn@svm", "evaluate@svm"}
# summarize reads metrics/svm.json: it reruns only if the new C changes svm's test scores.
STAGES_THAT_MAY_RERUN = {"summarize"}
# The stage whose dvc.lock entry is deleted and must come back from the run-cache.
RUN_CACHE_STAGE = "train_sklearn@svm"
RUN_CACHE_STAGE_COMMAND = "-m stages.train_sklearn svm"   # how its python command line ends
# The push that is cut short: stop the remote once this many objects have landed.
OBJECTS_BEFORE_STOP = 3
# An unreachable endpoint makes gcsfs try each request 6 times with exponential backoff
# (about 31-36 s in all, not configurable through DVC); each failing call must end within this.
FAILURE_TIMEOUT_S = 120
PUSH_PULL_TIMEOUT_S = 300
REPRO_TIMEOUT_S = 600

RUNNING_STAGE = re.compile(r"Running stage '([^']+)'")
FILES_PUSHED = re.compile(r"(\d+) files? pushed")
UP_TO_DATE = "Data and pipelines are up to date."
IN_SYNC = f"Cache and remote '{REMOTE_NAME}' are in sync."
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


def count_pushed(dvc_output: str) -> int:
    match = FILES_PUSHED.search(dvc_output)
    return int(match.group(1)) if match else 0


def error_lines(dvc_stderr: str) -> list[str]:
    return [line for line in dvc_stderr.splitlines() if line.startswith("ERROR:")]


def checkout_failures(dvc_stderr: str) -> list[str]:
    """The targets DVC lists after 'Checkout failed for following targets:'."""
    lines = dvc_stderr.splitlines()
    if CHECKOUT_FAILED not in lines:
        return []
    failed = []
    for line in lines[lines.index(CHECKOUT_FAILED) + 1:]:
        if not line.strip() or line.startswith("Is your cache up to date?"):
            break
        failed.append(line.strip())
    return sorted(failed)


def cache_file_count(repo: Path) -> int:
    return sum(1 for f in (repo / ".dvc" / "cache").rglob("*") if f.is_file())


def fresh_clone(pipeline_project: Path, dest: Path, endpoint: str, url: str) -> Path:
    """A new git clone (no DVC cache) with the gcs remote pointed at ``url`` on ``endpoint``."""
    git_clone(pipeline_project, dest)
    point_remote_at(dest, url, endpoint)
    return dest


def start_dvc(repo: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=repo, env=dvc_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Wait for ``process`` at most ``timeout`` seconds (then kill it and fail the test)."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"{' '.join(process.args[2:])} still running after {timeout:.0f} s")


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
    """A copy of the pipeline project with its DVC cache: the clone that pushes.

    A copy, so that pointing its remote (config.local) never touches the shared fixture.
    """
    dest = tmp_path_factory.mktemp("source") / "repo"
    shutil.copytree(pipeline_project, dest, symlinks=True)
    return dest


@pytest.fixture(scope="module")
def pushed_remote(source_repo, emulator) -> PushedRemote:
    prefix = "cache"
    url = f"gs://{BUCKET}/{prefix}"
    point_remote_at(source_repo, url, emulator.endpoint)
    start = time.perf_counter()
    result = dvc(source_repo, "push", timeout=PUSH_PULL_TIMEOUT_S)
    seconds = time.perf_counter() - start
    stored = [f for f in (emulator.data_dir / ".cloudstorage" / BUCKET / prefix).rglob("*") if f.is_file()]
    remote = PushedRemote(emulator, url, count_pushed(result.stdout),
                          len(emulator.object_names(f"{prefix}/")),
                          sum(f.stat().st_size for f in stored), seconds)
    print(f"\n[gcs remote] dvc push: {remote.files_pushed} files, {remote.bytes_stored / 1e6:.1f} MB "
          f"in {seconds:.1f} s")
    return remote


def test_repository_declares_gcs_default_remote(repo_root):
    default = dvc(repo_root, "config", "core.remote").stdout.strip()
    remotes = dict(line.split(None, 1) for line in dvc(repo_root, "remote", "list").stdout.splitlines())
    assert default == REMOTE_NAME
    assert remotes[REMOTE_NAME].strip().startswith("gs://")
    # Credentials and endpoints go to config.local, which git must ignore.
    assert "/config.local" in (repo_root / ".dvc" / ".gitignore").read_text().splitlines()


def test_push_then_pull_in_fresh_clone_gives_identical_outputs(pipeline_project, source_repo,
                                                               pushed_remote, tmp_path, command_log):
    remote = pushed_remote
    assert remote.files_pushed > 0
    assert remote.files_pushed == remote.objects_stored
    assert remote.files_pushed <= cache_file_count(source_repo)

    clone = fresh_clone(pipeline_project, tmp_path / "clone", remote.emulator.endpoint, remote.url)
    start = time.perf_counter()
    dvc(clone, "pull", timeout=PUSH_PULL_TIMEOUT_S)
    seconds = time.perf_counter() - start
    print(f"\n[gcs remote] dvc pull into a fresh clone: {remote.objects_stored} files, "
          f"{remote.bytes_stored / 1e6:.1f} MB in {seconds:.1f} s")

    outputs = output_paths(source_repo)
    expected = file_digests(source_repo, outputs)
    assert expected
    assert file_digests(clone, outputs) == expected

    env, log = command_log
    repro = dvc(clone, "repro", timeout=REPRO_TIMEOUT_S, env=env)
    assert stages_run(repro.stdout) == set()
    assert log.read_text() == ""
    assert UP_TO_DATE in dvc(clone, "status").stdout


def test_run_cache_restores_a_stage_missing_from_dvc_lock(pipeline_project, source_repo,
                                                          pushed_remote, tmp_path, command_log):
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


def test_changing_one_param_reruns_only_its_model(pipeline_project, pushed_remote, tmp_path,
                                                  command_log):
    remote = pushed_remote
    clone = fresh_clone(pipeline_project, tmp_path / "clone", remote.emulator.endpoint, remote.url)
    dvc(clone, "pull", timeout=PUSH_PULL_TIMEOUT_S)
    params_path = clone / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    section, key = CHANGED_PARAM
    params[section][key] = params[section][key] * 2
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))

    env, log = command_log
    repro = dvc(clone, "repro", timeout=REPRO_TIMEOUT_S, env=env)

    ran = stages_run(repro.stdout)
    assert STAGES_THAT_MUST_RERUN <= ran
    assert ran <= STAGES_THAT_MUST_RERUN | STAGES_THAT_MAY_RERUN
    assert len(log.read_text().splitlines()) == len(ran)
    assert UP_TO_DATE in dvc(clone, "status").stdout


def test_unreachable_remote_fails_clearly_and_an_interrupted_push_resumes(pipeline_project,
                                                                          source_repo, tmp_path):
    """A remote stopped in the middle of a push, and (meanwhile) a clone whose endpoint is a
    closed port: both fail within one gcsfs retry cycle, naming the endpoint. The push then
    completes against the restarted remote and the local cache is untouched."""
    server = GcsEmulator(tmp_path / "gcs", BUCKET)
    server.start()
    try:
        prefix = "interrupted"
        point_remote_at(source_repo, f"gs://{BUCKET}/{prefix}", server.endpoint)
        closed_endpoint = f"http://{HOST}:{free_port()}"
        unreachable_clone = fresh_clone(pipeline_project, tmp_path / "clone", closed_endpoint,
                                        f"gs://{BUCKET}/{prefix}")
        cache_before = file_digests(source_repo, [".dvc/cache"])

        # Enough jobs for every upload to be in flight at once: once the remote is gone each
        # gives up after one retry cycle, instead of ceil(files / jobs) cycles in a row.
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
        pull = start_dvc(unreachable_clone, "pull")
        pull_started = time.perf_counter()
        _, push_err = finish(push, FAILURE_TIMEOUT_S)
        push_seconds = time.perf_counter() - started
        _, pull_err = finish(pull, FAILURE_TIMEOUT_S)
        pull_seconds = time.perf_counter() - pull_started

        # DVC's last words depend on the step the push was in ("failed to transfer '<md5>' - "
        # while uploading, "unexpected error - " while listing); they name the endpoint.
        assert push.returncode != 0
        assert any(f"Cannot connect to host {HOST}:{server.port}" in line for line in error_lines(push_err))
        assert pull.returncode != 0
        assert any(f"Cannot connect to host {closed_endpoint.removeprefix('http://')}" in line
                   for line in error_lines(pull_err))
        print(f"\n[gcs remote] remote stopped after {landed} objects: push failed in {push_seconds:.1f} s "
              f"with: {error_lines(push_err)[-1]}\n[gcs remote] closed port: pull failed in "
              f"{pull_seconds:.1f} s with: {error_lines(pull_err)[-1]}")

        server.start()   # the same port and storage
        assert len(server.object_names(f"{prefix}/")) == landed
        resumed = dvc(source_repo, "push", timeout=PUSH_PULL_TIMEOUT_S)
        assert count_pushed(resumed.stdout) + landed == len(server.object_names(f"{prefix}/"))
        assert IN_SYNC in dvc(source_repo, "status", "-c", timeout=PUSH_PULL_TIMEOUT_S).stdout
        assert UP_TO_DATE in dvc(source_repo, "status").stdout
        assert file_digests(source_repo, [".dvc/cache"]) == cache_before
    finally:
        server.stop()


@pytest.mark.parametrize("command", ["push", "pull"])
def test_wrong_bucket_fails_clearly(command, pipeline_project, source_repo, emulator, tmp_path):
    bucket = "genreclf-no-such-bucket"
    url = f"gs://{bucket}/cache"
    if command == "push":
        repo = source_repo
        point_remote_at(repo, url, emulator.endpoint)
    else:
        repo = fresh_clone(pipeline_project, tmp_path / "clone", emulator.endpoint, url)

    start = time.perf_counter()
    result = dvc(repo, command, timeout=FAILURE_TIMEOUT_S, check=False)
    print(f"\n[gcs remote] wrong bucket: dvc {command} failed in {time.perf_counter() - start:.1f} s "
          f"with: {error_lines(result.stderr)}")
    assert result.returncode != 0
    # gcsfs reports the 404 of the bucket's object listing by its path, b/<bucket>/o.
    assert any(f"b/{bucket}/o" in line for line in error_lines(result.stderr))


# ---------------------------------------------------------------------------------------------
# Stand-in for the `pipeline_project` fixture of tests/conftest.py: a tiny git + DVC project
# shaped like this repository's pipeline (a chain, then a foreach over models, each with its own
# params section, then a summary). Delete from here to the end of the file to run the tests on
# the real pipeline.
# ---------------------------------------------------------------------------------------------

STANDIN_MODELS = ["logreg", "knn", "svm"]

STANDIN_PARAMS = {
    "prepare": {"clips": 60, "clip_bytes": 16384, "seed": 0},
    "features": {"bins": 8},
    "logreg": {"C": 1.0},
    "knn": {"n_neighbors": 5},
    "svm": {"C": 10.0},
}

STANDIN_DVC_YAML = {
    "stages": {
        "prepare": {"cmd": "python -m stages.prepare", "deps": ["stages/prepare.py"],
                    "params": ["prepare"], "outs": ["data/raw"]},
        "features": {"cmd": "python -m stages.features", "deps": ["stages/features.py", "data/raw"],
                     "params": ["features"], "outs": ["data/features"]},
        "train_sklearn": {"foreach": STANDIN_MODELS, "do": {
            "cmd": "python -m stages.train_sklearn ${item}",
            "deps": ["stages/train_sklearn.py", "data/features"],
            "params": ["${item}"], "outs": ["models/${item}"]}},
        "evaluate": {"foreach": STANDIN_MODELS, "do": {
            "cmd": "python -m stages.evaluate ${item}",
            "deps": ["stages/evaluate.py", "models/${item}", "data/features"],
            "metrics": ["metrics/${item}.json"]}},
        "summarize": {"cmd": "python -m stages.summarize",
                      "deps": ["stages/summarize.py"] + [f"metrics/{m}.json" for m in STANDIN_MODELS],
                      "metrics": ["metrics/summary.json"]},
    }
}

STANDIN_STAGES = {
    "prepare": """
        import random, yaml
        from pathlib import Path
        params = yaml.safe_load(open("params.yaml"))["prepare"]
        rng = random.Random(params["seed"])
        out = Path("data/raw")
        out.mkdir(parents=True, exist_ok=True)
        for i in range(params["clips"]):
            (out / f"clip_{i:03d}.bin").write_bytes(rng.randbytes(params["clip_bytes"]))
    """,
    "features": """
        import json, yaml
        from pathlib import Path
        bins = yaml.safe_load(open("params.yaml"))["features"]["bins"]
        rows = []
        for i, path in enumerate(sorted(Path("data/raw").glob("*.bin"))):
            data = path.read_bytes()
            histogram = [0] * bins
            for byte in data:
                histogram[byte * bins // 256] += 1
            rows.append({"clip": path.stem, "label": i % 3, "x": [h / len(data) for h in histogram]})
        Path("data/features").mkdir(parents=True, exist_ok=True)
        Path("data/features/table.json").write_text(json.dumps(rows, indent=1))
    """,
    "train_sklearn": """
        import json, sys, yaml
        from pathlib import Path
        model = sys.argv[1]
        strength = float(next(iter(yaml.safe_load(open("params.yaml"))[model].values())))
        rows = json.loads(Path("data/features/table.json").read_text())
        labels = sorted({r["label"] for r in rows})
        mean = [sum(col) / len(rows) for col in zip(*(r["x"] for r in rows))]
        centroids = {}
        for label in labels:
            xs = [r["x"] for r in rows if r["label"] == label]
            centroid = [sum(col) / len(xs) for col in zip(*xs)]
            shrink = strength / (1.0 + strength)
            centroids[label] = [m + shrink * (c - m) for c, m in zip(centroid, mean)]
        Path(f"models/{model}").mkdir(parents=True, exist_ok=True)
        Path(f"models/{model}/model.json").write_text(json.dumps({"centroids": centroids}, indent=1))
    """,
    "evaluate": """
        import json, sys
        from pathlib import Path
        model = sys.argv[1]
        centroids = json.loads(Path(f"models/{model}/model.json").read_text())["centroids"]
        rows = json.loads(Path("data/features/table.json").read_text())
        def distance(x, c):
            return sum((a - b) ** 2 for a, b in zip(x, c))
        correct, spread = 0, 0.0
        for r in rows:
            best = min(centroids, key=lambda label: distance(r["x"], centroids[label]))
            correct += int(best) == r["label"]
            spread += distance(r["x"], centroids[best])
        Path("metrics").mkdir(exist_ok=True)
        Path(f"metrics/{model}.json").write_text(json.dumps(
            {"accuracy": correct / len(rows), "spread": round(spread, 12)}, indent=1))
    """,
    "summarize": """
        import json
        from pathlib import Path
        models = %r
        table = {m: json.loads(Path(f"metrics/{m}.json").read_text()) for m in models}
        Path("metrics/summary.json").write_text(json.dumps(table, indent=1, sort_keys=True))
    """ % STANDIN_MODELS,
}


def run_quiet(command: list[str], cwd: Path) -> None:
    subprocess.run(command, cwd=cwd, env=dvc_env(), check=True, capture_output=True, text=True)


def make_standin_project(path: Path) -> Path:
    """Create the stand-in project at ``path``, run its pipeline and commit everything."""
    path.mkdir(parents=True)
    run_quiet(["git", "init", "-q"], path)
    run_quiet([sys.executable, "-m", "dvc", "init", "-q"], path)
    run_quiet([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], path)
    run_quiet([sys.executable, "-m", "dvc", "remote", "add", "-d", REMOTE_NAME,
               "gs://genreclf-dvc/cache"], path)
    (path / "stages").mkdir()
    (path / "stages" / "__init__.py").write_text("")
    for name, source in STANDIN_STAGES.items():
        (path / "stages" / f"{name}.py").write_text(textwrap.dedent(source).lstrip())
    (path / "params.yaml").write_text(yaml.safe_dump(STANDIN_PARAMS, sort_keys=False))
    (path / "dvc.yaml").write_text(yaml.safe_dump(STANDIN_DVC_YAML, sort_keys=False))
    (path / ".gitignore").write_text("__pycache__/\n")
    run_quiet([sys.executable, "-m", "dvc", "repro", "-q"], path)
    run_quiet(["git", "add", "-A"], path)
    run_quiet(["git", "-c", "user.name=test", "-c", "user.email=test@example.com",
               "commit", "-q", "-m", "stand-in pipeline, reproduced"], path)
    return path


@pytest.fixture(scope="session")
def pipeline_project(tmp_path_factory) -> Path:
    return make_standin_project(tmp_path_factory.mktemp("pipeline") / "project")
