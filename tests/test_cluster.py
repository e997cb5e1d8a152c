"""TF_CONFIG: which cluster a training process is in, and clear errors for a malformed value."""

from __future__ import annotations

import json

import pytest

from genreclf.errors import ParamError
from genreclf.models.cluster import read_cluster

TWO_HOSTS = ["10.0.0.1:12345", "10.0.0.2:12345"]


def config(cluster, task) -> dict[str, str]:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": task})}


@pytest.mark.parametrize("value", [None, "", "  \n"])
def test_no_tf_config_is_no_cluster(value):
    assert read_cluster({} if value is None else {"TF_CONFIG": value}) is None


@pytest.mark.parametrize(
    "cluster, task, workers, chief",
    [
        ({"worker": TWO_HOSTS}, {"type": "worker", "index": 0}, 2, True),
        ({"worker": TWO_HOSTS}, {"type": "worker", "index": 1}, 2, False),
        ({"chief": ["c:1"], "worker": TWO_HOSTS}, {"type": "chief", "index": 0}, 3, True),
        ({"chief": ["c:1"], "worker": TWO_HOSTS}, {"type": "worker", "index": 0}, 3, False),
        ({"worker": ["localhost:2222"]}, {"type": "worker"}, 1, True),  # index 0 by default
    ],
)
def test_the_task_and_its_role(cluster, task, workers, chief):
    found = read_cluster(config(cluster, task))
    assert found.workers == workers and found.is_chief is chief
    assert found.task_type == task["type"] and found.task_index == task.get("index", 0)
    assert found.describe().startswith(f"task {task['type']} {task.get('index', 0)} of {workers} worker(s)")


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"TF_CONFIG": "{'cluster': 1}"}, r"not valid JSON \(Expecting property name"),
        ({"TF_CONFIG": "[1, 2]"}, 'expected a JSON object with "cluster" and "task"'),
        (config({}, {"type": "worker"}), '"cluster" = {}: expected an object of task types'),
        (config({"worker": "a:1,b:2"}, {"type": "worker"}), r'"cluster"."worker" = "a:1,b:2": expected a list'),
        (config({"worker": ["a", "b:2"]}, {"type": "worker"}), 'expected a list of "host:port"'),
        (config({"worker": []}, {"type": "worker"}), 'expected a list of "host:port"'),
        (config({"ps": ["p:1"], "worker": TWO_HOSTS}, {"type": "worker"}), "task type 'ps'.*no parameter servers"),
        (config({"chief": ["a:1", "b:1"]}, {"type": "chief"}), "there is at most one chief"),
        (config({"worker": TWO_HOSTS}, {"type": "chief", "index": 0}), "expected one of the cluster's \\['worker'\\]"),
        (config({"worker": TWO_HOSTS}, {"type": "worker", "index": 2}), "expected a whole number from 0 to 1"),
        (config({"worker": TWO_HOSTS}, {"type": "worker", "index": "1"}), '"index" = "1": expected a whole number'),
        (config({"worker": TWO_HOSTS}, {"type": "worker", "index": True}), "expected a whole number"),
        (config({"worker": TWO_HOSTS}, {"type": "worker", "id": 0}), 'expected {"type": ..., "index": ...}'),
    ],
)
def test_a_malformed_tf_config_is_refused_with_what_to_do(environ, message):
    with pytest.raises(ParamError, match=message) as refused:
        read_cluster(environ)
    text = str(refused.value)
    assert text.startswith("environment variable TF_CONFIG: ")
    assert "or unset it to train on this machine alone" in text and '"task": {"type": "worker", "index": 0}' in text
