"""The cluster a training process belongs to, from the TF_CONFIG environment variable.

TensorFlow's multi-worker strategies read TF_CONFIG, a JSON object such as::

    {"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}

``cluster`` lists every process of the job ("chief": at most one, "worker": any number);
``task`` says which of them this process is. The chief is task "chief", or worker 0 when
there is no chief: it alone writes the outputs. This module only reads and checks the
variable (no TensorFlow import, so a bad value is refused before TensorFlow loads); the
strategy itself (``tf.distribute.MultiWorkerMirroredStrategy``) reads it again.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from genreclf.errors import ParamError

VARIABLE = "TF_CONFIG"
TASK_TYPES = ("chief", "worker")  # the jobs of MultiWorkerMirroredStrategy
ADDRESS_RE = re.compile(r"^\S+:\d{1,5}$")
EXAMPLE = '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}'
WHAT_TO_DO = (
    'set it as in this example (the same "cluster" on every host, "index": the host\'s place in its list), '
    f"or unset it to train on this machine alone: {EXAMPLE}"
)


@dataclass(frozen=True)
class Cluster:
    """This process's place in a cluster: the addresses of every job, and its own task."""

    jobs: dict[str, list[str]]  # task type -> "host:port" of each task
    task_type: str
    task_index: int

    @property
    def workers(self) -> int:
        """Training processes in the cluster (chief included)."""
        return sum(len(addresses) for addresses in self.jobs.values())

    @property
    def is_chief(self) -> bool:
        if "chief" in self.jobs:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    def describe(self) -> str:
        role = "the chief" if self.is_chief else "not the chief"
        return f"task {self.task_type} {self.task_index} of {self.workers} worker(s), {role}"


def malformed(detail: str) -> ParamError:
    return ParamError(f"environment variable {VARIABLE}: {detail}; {WHAT_TO_DO}")


def is_address_list(addresses) -> bool:
    return (
        isinstance(addresses, list)
        and bool(addresses)
        and all(isinstance(a, str) and ADDRESS_RE.match(a) is not None for a in addresses)
    )


def check_jobs(cluster) -> dict[str, list[str]]:
    """The "cluster" object: task type -> list of "host:port" strings."""
    if not isinstance(cluster, dict) or not cluster:
        raise malformed(f'"cluster" = {json.dumps(cluster)}: expected an object of task types, e.g. "worker"')
    for task_type, addresses in cluster.items():
        if task_type not in TASK_TYPES:
            raise malformed(
                f'"cluster" has task type {task_type!r}: the Keras stages train with MultiWorkerMirroredStrategy, '
                f"whose task types are {list(TASK_TYPES)} (no parameter servers or evaluators)"
            )
        if not is_address_list(addresses):
            raise malformed(f'"cluster"."{task_type}" = {json.dumps(addresses)}: expected a list of "host:port"')
    if len(cluster.get("chief", [])) > 1:
        raise malformed(f'"cluster"."chief" lists {len(cluster["chief"])} addresses: there is at most one chief')
    return {task_type: list(addresses) for task_type, addresses in cluster.items()}


def check_task(task, jobs: dict[str, list[str]]) -> tuple[str, int]:
    """The "task" object: (type, index), a task that "cluster" lists."""
    if not isinstance(task, dict) or set(task) - {"type", "index"}:
        raise malformed(f'"task" = {json.dumps(task)}: expected {{"type": ..., "index": ...}}')
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in jobs:
        raise malformed(f'"task"."type" = {json.dumps(task_type)}: expected one of the cluster\'s {list(jobs)}')
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(jobs[task_type]):
        raise malformed(
            f'"task"."index" = {json.dumps(index)}: expected a whole number from 0 to {len(jobs[task_type]) - 1} '
            f'(the position of this host in "cluster"."{task_type}")'
        )
    return task_type, index


def read_cluster(environ: Mapping[str, str] | None = None) -> Cluster | None:
    """The cluster TF_CONFIG names, or None when it is unset or blank; a ParamError if it is malformed."""
    text = (os.environ if environ is None else environ).get(VARIABLE, "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise malformed(f"not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(config, dict) or "cluster" not in config or "task" not in config:
        raise malformed('expected a JSON object with "cluster" and "task"')
    jobs = check_jobs(config["cluster"])
    task_type, index = check_task(config["task"], jobs)
    return Cluster(jobs, task_type, index)
