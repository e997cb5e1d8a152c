"""The rehearsal's figures (the JSON document's ``figures``, laid out in benchmarks/rehearsal.py's
docstring) and its Markdown tables."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from benchmarks import record
from benchmarks.rehearsal_project import keras_units_per_clip
from benchmarks.rehearsal_projection import project_large
from benchmarks.rehearsal_stages import MIB, StageResult, audio_copies, disk_usage

GIB = 2**30


def _hours(value: float) -> str:
    return f"{value:.2f}" if value < 1 else f"{value:,.1f}"


def _copies(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _gb(value: float) -> str:
    return f"{value / 1e9:,.2f}"


def _cell(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _name(row: dict) -> str:
    return f"`{row['stage']}`" + (f" **failed** (exit {row['status']})" if row["status"] else "")


def stage_table(rows: list[dict]) -> str:
    """One row per stage that ran (the Keras training stages too: bounded, see keras_table)."""
    lines = [
        "| stage | wall (s) | of which its work (s) | clips/s | peak RSS, process tree (MiB) | written (MB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {_name(r)} | {r['seconds']:.1f} | {_cell(r['work_seconds'], '.1f')} | {_cell(r['clips_per_s'], '.1f')} "
            f"| {r['peak_tree_rss_mib']:,.0f} | {r['written_mb']:,.1f} |"
        )
    return "\n".join(lines)


def keras_table(rows: list[dict]) -> str:
    lines = [
        (
            "| stage, bounded | steps × batch | wall (s) | of which the fit (s) | first step (s) "
            "| then s/step | examples/s | peak RSS, process tree (MiB) | written (MB) |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if r.get("steps") is not None:
            lines.append(
                f"| {_name(r)} | {r['steps']} × {r['batch_size']} | {r['seconds']:.1f} "
                f"| {_cell(r['work_seconds'], '.1f')} | {_cell(r['first_step_seconds'], '.1f')} "
                f"| {_cell(r['seconds_per_step'], '.2f')} | {_cell(r['examples_per_s'], '.0f')} "
                f"| {r['peak_tree_rss_mib']:,.0f} | {r['written_mb']:,.1f} |"
            )
    return "\n".join(lines) if len(lines) > 2 else ""


def projection_table(p: dict) -> str:
    cores, ref = p["measured_cores"], p["reference_cores"]
    lines = [
        f"| fma_large, {p['clips']:,} clips | {cores} cores | {ref} cores |",
        "| --- | ---: | ---: |",
    ]
    for key, label in (
        ("data_hours", "fetch … embed (h)"),
        ("sklearn_hours", "sklearn models, trained and evaluated (h)"),
        ("other_hours", "Keras evaluation, summarize, recommend_index (h)"),
    ):
        lines.append(f"| {label} | {_hours(p[key]['measured_cores'])} | {_hours(p[key]['reference_cores'])} |")
    for stage, k in p["keras"].items():
        bound = " (upper bound: one step measured)" if k["upper_bound"] else ""
        hours = k["hours_per_epoch"]
        lines.append(
            f"| `{stage}`, one epoch of {k['steps_per_epoch']:,} steps (h){bound} "
            f"| {_hours(hours['measured_cores'])} | {_hours(hours['reference_cores'])} |"
        )
    lines += [
        f"| workspace (GB) | {_gb(p['workspace_bytes'])} | {_gb(p['workspace_bytes'])} |",
        f"| DVC cache (GB) | {_gb(p['cache_bytes'])} | {_gb(p['cache_bytes'])} |",
        f"| both, each file once (GB) | {_gb(p['combined_bytes'])} | {_gb(p['combined_bytes'])} |",
        (
            f"| peak RSS of a stage (GiB) | {p['peak_rss_bytes']['measured_cores'] / GIB:.1f} "
            f"| {p['peak_rss_bytes']['reference_cores'] / GIB:.1f} |"
        ),
    ]
    return "\n".join(lines)


PROJECTION_NOTE = (
    "Projection: each stage's work (as its log times it, else its wall time) linear in clips "
    "(kernel SVM: clips squared), the rest of its wall time once; on more cores only convert, "
    "features and the Keras steps speed up, ideally; disk under data/ linear in clips, models once; "
    "memory flat in clips, plus one worker per extra core in convert and features. Keras: the mean "
    "step after the first of a bounded run, times the steps of one fma_large epoch."
)


def report_markdown(doc: dict) -> str:
    """The Markdown tables of a rehearsal's document (what record.write wrote)."""
    f = doc["figures"]
    disk, book, p = f["disk"], f["bookkeeping"], f["projection"]
    parts = [
        (
            f"Rehearsal: {f['clips']:,} clips (seed {f['seed']}), commit {(doc['commit'] or '?')[:10]}, "
            f"{record.machine_line(doc)}, {doc['seconds'] / 60:.1f} min in all"
        ),
        "",
        stage_table(f["stages"]),
    ]
    keras = keras_table(f["stages"])
    if keras:
        parts += ["", keras]
    parts += [
        "",
        "| workspace (GB) | DVC cache (GB) | both, each file once (GB) | copies of the audio "
        "| source mp3s (GB) | no-op `dvc repro` (s) | `dvc status` (s) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        (
            f"| {_gb(disk['workspace_bytes'])} | {_gb(disk['cache_bytes'])} "
            f"| {_gb(disk['workspace_and_cache_bytes'])} | {_copies(disk['audio_copies'])} "
            f"| {_gb(disk['source_bytes'])} "
            f"| {book['noop_repro_seconds']:.1f} | {book['status_seconds']:.1f} |"
        ),
    ]
    if p:
        parts += ["", projection_table(p), "", PROJECTION_NOTE]
    return "\n".join(parts)


def stage_row(r: StageResult, params: dict) -> dict:
    """A stage's figures as the JSON holds them."""
    row = {
        "stage": r.stage,
        "status": r.status,
        "seconds": round(r.seconds, 2),
        "work_seconds": r.work_seconds,
        "clips_per_s": round(r.clips_per_second, 3) if r.steps is None else None,
        "peak_tree_rss_mib": round(r.peak_tree_rss / MIB, 1),
        "peak_leaf_rss_mib": round(r.peak_leaf_rss / MIB, 1),
        "processes_at_peak": r.processes_at_peak,
        "written_mb": round(r.bytes_written / 1e6, 3),
    }
    if r.steps is not None:
        row |= {
            "steps": r.steps,
            "batch_size": r.batch_size,
            "units_per_clip": keras_units_per_clip(params, r.stage.split("@", 1)[1]),
            "first_step_seconds": r.first_step_seconds,
            "seconds_per_step": r.seconds_per_step,
            "examples_per_s": round(r.batch_size / r.seconds_per_step, 1) if r.seconds_per_step else None,
        }
    return row


def figures(args, planned: list[str], project: Path, source: Path, params: dict, results, book: dict) -> dict:
    """What the JSON's ``figures`` holds (the layout is in the module's docstring)."""
    cores = os.cpu_count() or 1
    workspace = disk_usage(project, exclude=(project / ".git", project / ".dvc" / "cache"))
    cache = disk_usage(project / ".dvc" / "cache")
    data = disk_usage(project / "data")
    combined = disk_usage(project, exclude=(project / ".git",))  # workspace + cache, each inode once
    complete = len(results) == len(planned) and all(r.status == 0 for r in results)
    projection = None
    if complete:
        measured = [
            dataclasses.asdict(r) | ({"units_per_clip": keras_units_per_clip(params, r.stage.split("@", 1)[1])})
            if r.steps is not None
            else dataclasses.asdict(r)
            for r in results
        ]
        projection = project_large(
            measured,
            args.clips,
            cores,
            {"workspace": workspace, "data": data, "cache": cache, "combined": combined},
            float(params["split"]["fractions"]["train"]),
        )
    return {
        "clips": args.clips,
        "seed": args.seed,
        "keras_step_limit": None if args.skip_keras else args.keras_steps,
        "complete": complete,
        "planned": planned,
        "stages": [stage_row(r, params) for r in results],
        "disk": {
            "workspace_bytes": workspace,
            "workspace_data_bytes": data,
            "cache_bytes": cache,
            "workspace_and_cache_bytes": combined,
            "audio_copies": audio_copies(project) if complete else None,
            "source_bytes": disk_usage(source),
        },
        "bookkeeping": book,
        "projection": projection,
    }
