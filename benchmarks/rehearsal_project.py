"""The rehearsal's project: a fresh clone of this repository, its params.yaml pointed at the
built source, and the stages of its dvc.yaml in dependency order (benchmarks/rehearsal.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.fma_source import DATASET

ROOT = Path(__file__).resolve().parents[1]


def dvc_env(extra: dict | None = None) -> dict:
    """The environment of dvc and the stages: this interpreter's folder first on PATH."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def git_output(args: list[str], cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, stdout=subprocess.PIPE, text=True).stdout.strip()


def clone_project(dest: Path, log=print) -> str:
    """A fresh ``git clone`` of this repository's HEAD at ``dest``; returns the commit."""
    commit = git_output(["rev-parse", "HEAD"], ROOT)
    if git_output(["status", "--porcelain"], ROOT):
        log(f"warning: {ROOT} has uncommitted changes; the rehearsal runs the committed HEAD {commit[:10]}")
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(dest)], check=True)
    return commit


def rehearsal_params(params: dict, source: Path, overrides: list[str] = (), keras_steps: int | None = None) -> dict:
    """params.yaml with the rehearsal's source; every other key as committed except mobilenet.weights,
    each Keras model's max_steps (``keras_steps``) and the ``overrides`` ("a.b=value", the value read as YAML)."""
    params = json.loads(json.dumps(params))
    params["data"].update({"dataset": DATASET, "source": str(source), "clips_per_genre": None})
    params["mobilenet"]["weights"] = None  # ImageNet weights cannot be downloaded offline
    for model in params["models"]["keras"]:
        params[model]["max_steps"] = keras_steps
    for override in overrides:
        dotted, value = override.split("=", 1)
        *parents, key = dotted.split(".")
        node = params
        for parent in parents:
            node = node[parent]
        if key not in node:
            raise SystemExit(f"--set {override}: params.yaml has no key {dotted}")
        node[key] = yaml.safe_load(value)
    return params


def set_params(project: Path, source: Path, overrides: list[str] = (), keras_steps: int | None = None) -> dict:
    path = project / "params.yaml"
    params = rehearsal_params(yaml.safe_load(path.read_text(encoding="utf-8")), source, overrides, keras_steps)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return params


OUT_FIELDS = ("outs", "metrics", "plots")  # what a dvc.yaml stage writes
KERAS_STAGES = ("train_keras",)  # left out by --skip-keras, with every stage that depends on them


def _foreach_items(value, params: dict):
    """(key, item) pairs of a dvc.yaml foreach: a list or a mapping, or ``${a.b}`` naming one in params."""
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        for key in value[2:-1].split("."):
            params = params[key]
        value = params
    return list(value.items()) if isinstance(value, dict) else [(item, item) for item in value]


def _paths(entries: list | None, key: str = "", item: str = "") -> list[str]:
    """The paths of a dvc.yaml deps/outs list (an entry is a path or {path: options}), ${key}/${item} filled."""
    paths = [next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries or []]
    return [str(path).replace("${key}", str(key)).replace("${item}", str(item)) for path in paths]


def _overlaps(a: str, b: str) -> bool:
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def dvc_stages(dvc_yaml: dict, params: dict) -> dict[str, dict]:
    """Every stage of a dvc.yaml, foreach items as ``stage@key``: name -> {"deps": [...], "outs": [...]},
    in dependency order (a stage after every stage whose outputs it reads; else dvc.yaml's order)."""
    stages = {}
    for name, stage in dvc_yaml["stages"].items():
        if "foreach" in stage:
            for key, item in _foreach_items(stage["foreach"], params):
                body = stage["do"]
                outs = [p for field in OUT_FIELDS for p in _paths(body.get(field), key, item)]
                stages[f"{name}@{key}"] = {"deps": _paths(body.get("deps"), key, item), "outs": outs}
        else:
            outs = [p for field in OUT_FIELDS for p in _paths(stage.get(field))]
            stages[name] = {"deps": _paths(stage.get("deps")), "outs": outs}
    for name, stage in stages.items():
        stage["upstream"] = {
            other
            for other, before in stages.items()
            if other != name and any(_overlaps(d, o) for d in stage["deps"] for o in before["outs"])
        }
    ordered, done = {}, set()
    while len(ordered) < len(stages):
        ready = [n for n in stages if n not in done and stages[n]["upstream"] <= done]
        if not ready:
            raise ValueError(f"dvc.yaml: these stages depend on one another: {sorted(set(stages) - done)}")
        ordered[ready[0]] = stages[ready[0]]
        done.add(ready[0])
    return ordered


def pipeline_stages(stages: dict[str, dict], skip_keras: bool) -> list[str]:
    """The stages to run, in order: all of them, or (skip_keras) all but KERAS_STAGES and what depends on them."""
    dropped = {n for n in stages if skip_keras and n.split("@", 1)[0] in KERAS_STAGES}
    grown = True
    while grown:
        more = {n for n, s in stages.items() if n not in dropped and s["upstream"] & dropped}
        dropped |= more
        grown = bool(more)
    return [n for n in stages if n not in dropped]


def noop_targets(ran: list[str], planned: list[str], stages: dict[str, dict]) -> list[str]:
    """``dvc repro`` arguments naming the stages that ran (and so every stage before them).

    When every stage of dvc.yaml ran: none (a plain ``dvc repro``). When every planned stage
    ran: the planned stages that no other planned stage depends on, a foreach whose items are
    all such stages as one ``--glob`` pattern (``evaluate_sklearn@*``): DVC reads dvc.yaml and
    dvc.lock again for each target, so naming many stages costs seconds that a user's plain
    ``dvc repro`` does not pay. Otherwise (a run that stopped early) the stages themselves.
    """
    if ran != planned:
        return ran
    if set(planned) == set(stages):
        return []
    leaves = [n for n in planned if not any(n in stages[m]["upstream"] for m in planned)]
    targets = []
    for name in leaves:
        group = name.split("@", 1)[0]
        items = [n for n in stages if n.startswith(group + "@")]
        if "@" in name and all(n in leaves for n in items):
            if f"{group}@*" not in targets:
                targets.append(f"{group}@*")
        else:
            targets.append(name)
    return ["--glob", *targets]


def keras_units_per_clip(params: dict, model: str) -> int:
    """Training units per clip: cnn2d trains on every segment, the others on one unit per clip."""
    return int(params[model]["segments_per_clip"]) if model == "cnn2d" else 1
