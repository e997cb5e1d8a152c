"""The rehearsal's projection to fma_large from the measured per-clip costs (benchmarks/rehearsal.py)."""

from __future__ import annotations

import math

FMA_LARGE_CLIPS = 106_574
DATA_STAGES = ("fetch", "convert", "split", "shard", "features", "pretrained", "embed")
POOL_STAGES = ("convert", "features")  # one worker process per core
QUADRATIC_STAGES = ("train_sklearn@svm",)  # kernel SVM training grows at least as clips squared
REFERENCE_CORES = 32


def scaled_hours(seconds: float, clips: int, target: int, exponent: int = 1) -> float:
    """Hours for ``target`` clips from ``seconds`` for ``clips``, growing as clips**exponent."""
    return seconds * (target / clips) ** exponent / 3600


def keras_epoch_steps(clips: int, train_fraction: float, units_per_clip: int, batch_size: int) -> int:
    """Training batches in one epoch over ``clips`` clips (the last batch may be short)."""
    return math.ceil(round(clips * train_fraction) * units_per_clip / batch_size)


def project_large(
    stages: list[dict],
    clips: int,
    cores: int,
    disk: dict[str, float],
    train_fraction: float,
    target: int = FMA_LARGE_CLIPS,
    reference_cores: int = REFERENCE_CORES,
) -> dict:
    """fma_large figures from the measured per-clip costs. The assumptions:

    - a stage's work (``work_seconds``: what its log times, else the span of its log lines; else
      its whole ``seconds``) grows
      linearly with clips, except in QUADRATIC_STAGES (kernel SVM: as clips squared, a lower
      bound); the rest of its wall time (starting Python, reading params, DVC's hashing at
      this size) is counted once; a Keras epoch is its batches times the measured seconds per step:
      the mean step after the first (``seconds_per_step``), else, when only one step ran,
      the fit's seconds over its steps (``work_seconds``, else the stage's ``seconds``): an
      upper bound, as it includes tracing the model and the validation batches;
    - on ``reference_cores`` cores the POOL_STAGES (one process per core) run
      ``reference_cores / cores`` times faster and the Keras steps too (TensorFlow's
      threads: ideal scaling, an optimistic bound); the other stages run on one core
      and do not speed up;
    - disk (``disk``: bytes of the "workspace", of its "data" folder and of the DVC "cache"):
      what the workspace holds under data/ grows linearly with clips,
      the rest of it (models, metrics) does not; the DVC cache holds that rest once too
      and its other bytes grow linearly;
    - memory is flat in clips (what issue 8 asks; compare two runs to check it); with
      more cores a POOL_STAGE adds one worker per extra core, each as large as the
      largest leaf process measured.

    ``stages``: dicts with stage, seconds, peak_tree_rss, peak_leaf_rss, and for Keras
    stages steps, batch_size, units_per_clip, seconds_per_step and work_seconds (either may be None).
    """
    speedup = reference_cores / cores
    workspace_bytes, data_bytes, cache_bytes = disk["workspace"], disk["data"], disk["cache"]
    fixed_bytes = max(0, workspace_bytes - data_bytes)
    rows, keras = {}, {}
    for stage in stages:
        name = stage["stage"]
        pool = name in POOL_STAGES
        leaf_more = (reference_cores - cores) * stage["peak_leaf_rss"] if pool else 0
        memory = {"measured_cores": stage["peak_tree_rss"], "reference_cores": stage["peak_tree_rss"] + leaf_more}
        if stage.get("steps"):
            per_step = stage.get("seconds_per_step") or (stage.get("work_seconds") or stage["seconds"]) / stage["steps"]
            epoch_steps = keras_epoch_steps(target, train_fraction, stage["units_per_clip"], stage["batch_size"])
            hours = epoch_steps * per_step / 3600
            keras[name] = {
                "seconds_per_step": per_step,
                "upper_bound": not stage.get("seconds_per_step"),
                "steps_per_epoch": epoch_steps,
                "hours_per_epoch": {"measured_cores": hours, "reference_cores": hours / speedup},
                "peak_rss_bytes": memory,
            }
            continue
        work = stage["seconds"] if stage.get("work_seconds") is None else stage["work_seconds"]
        fixed = (stage["seconds"] - work) / 3600
        hours = scaled_hours(work, clips, target, 2 if name in QUADRATIC_STAGES else 1)
        rows[name] = {
            "hours": {"measured_cores": fixed + hours, "reference_cores": fixed + (hours / speedup if pool else hours)},
            "peak_rss_bytes": memory,
        }

    def total(names, cores_key):
        return sum(rows[n]["hours"][cores_key] for n in names)

    data = [n for n in rows if n in DATA_STAGES]
    sklearn = [n for n in rows if n.split("@", 1)[0] in ("train_sklearn", "evaluate_sklearn")]
    other = [n for n in rows if n not in data and n not in sklearn]
    every = [*rows.values(), *keras.values()]
    return {
        "clips": target,
        "measured_clips": clips,
        "measured_cores": cores,
        "reference_cores": reference_cores,
        "stages": rows,
        "keras": keras,
        "data_hours": {k: total(data, k) for k in ("measured_cores", "reference_cores")},
        "sklearn_hours": {k: total(sklearn, k) for k in ("measured_cores", "reference_cores")},
        "other_hours": {k: total(other, k) for k in ("measured_cores", "reference_cores")},
        "workspace_bytes": fixed_bytes + data_bytes * target / clips,
        "cache_bytes": min(fixed_bytes, cache_bytes) + max(0, cache_bytes - fixed_bytes) * target / clips,
        # workspace and cache together, each file once (outputs are links to the cache): only data/ grows
        "combined_bytes": disk.get("combined", workspace_bytes + cache_bytes) + data_bytes * (target / clips - 1),
        "peak_rss_bytes": {
            k: max((r["peak_rss_bytes"][k] for r in every), default=0) for k in ("measured_cores", "reference_cores")
        },
    }
