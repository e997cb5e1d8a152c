"""Scale rehearsal: the real pipeline on N clips built from ../shared/data, measured stage by stage.

    python benchmarks/rehearsal.py --clips 1000 [--seed 0] [--workdir DIR] [--json PATH]
                                   [--keras-steps 20] [--skip-keras] [--set KEY=VALUE ...]
                                   [--workers N] [--keep]

1. **The source.** N clips made from the real audio in ``../shared/data``, laid out as an
   unpacked local FMA copy of fma_small (8 balanced genres, FMA's official 80/10/10 split)
   that the fetch stage reads with ``data.source=<dir>``: tests/support/fma_source.py builds
   it (how: its docstring) and caches it in --workdir by (N, seed); a rerun reuses it.
2. **What runs.** A ``git clone`` of this repository's HEAD into --workdir (a fresh one at
   every run, deleted at the end unless --keep; uncommitted changes are not in it: a warning
   says so), with params.yaml changed by the yaml library only in ``data.source`` (the built
   source), ``data.dataset`` (fma_small), ``data.clips_per_genre`` (null),
   ``mobilenet.weights`` (null: ImageNet weights cannot be downloaded offline) and any
   ``--set key=value``. Then ``dvc repro --single-item`` of every stage of the clone's
   dvc.yaml, each foreach item apart (``train_sklearn@svm``), in dependency order: fetch,
   convert, split, shard, features, pretrained (the musicnn wheel: pip-downloaded into
   ``pretrained.cache_dir`` once), embed, train_sklearn, train_keras, evaluate_sklearn,
   evaluate_keras, summarize, recommend_index. ``--skip-keras`` leaves out train_keras and
   every stage that needs its models. The Keras stages run with ``<model>.max_steps`` =
   --keras-steps in the clone's params.yaml: the stage then stops training after that many
   batches (over as many epochs as that takes, each validated on at most as many batches;
   early stopping may end it sooner) and logs the step times (stages/train_keras.py: a
   Keras callback, a benchmark-only param, null in normal runs). N must be at least
   MIN_CLIPS. The Keras stage's time also covers starting TensorFlow, building the model,
   its prediction of the whole val split and saving it; from its log come the fit's time,
   the number of steps, the first step (which traces the model and starts the input
   pipeline) and the mean of the others (examples/s = batch / that mean).
3. **What it prints.** Per stage: wall time, clips/s, peak RSS of the whole process tree
   (benchmarks/process_tree.py, every 0.2 s: the RSS of dvc and all its descendants summed
   at each sample, the maximum kept; pages shared between processes count once per process)
   and the bytes the stage wrote (its outs in dvc.lock, apparent size). Then the disk use of
   the workspace (the clone without .git and .dvc/cache) and of the DVC cache, each inode
   counted once, the time of a no-op ``dvc repro`` and of ``dvc status``, and a projection
   for fma_large (benchmarks/rehearsal_projection.py, ``project_large``: assumptions in its
   docstring), as Markdown tables (benchmarks/rehearsal_report.py).

**The JSON** (--json, default benchmarks/results/rehearsal.json; benchmarks/record.py's
document) holds in ``figures``:

- ``clips``, ``seed``, ``keras_step_limit`` (null with --skip-keras), ``complete`` (every
  planned stage ran and succeeded), ``planned`` (the stage names, in order);
- ``stages``: one object per stage that ran, in order: ``stage``, ``status`` (exit status),
  ``seconds`` (wall), ``work_seconds`` (what the stage's log says its work took; for a stage
  that does not say, the span from its first timestamped log line to its last, 1 s
  resolution, which misses what it does before its first line; null without either),
  ``clips_per_s`` (null for the Keras training stages), ``peak_tree_rss_mib``,
  ``peak_leaf_rss_mib``, ``processes_at_peak``, ``written_mb``; the Keras training stages
  add ``steps``, ``batch_size``, ``units_per_clip``, ``first_step_seconds``,
  ``seconds_per_step``, ``examples_per_s``;
- ``disk``: ``workspace_bytes``, ``workspace_data_bytes``, ``cache_bytes``,
  ``workspace_and_cache_bytes``, ``audio_copies`` (copies of the decoded audio in the
  workspace and the cache together), ``source_bytes``;
- ``bookkeeping``: ``noop_repro_command``, ``noop_repro_seconds``, ``status_seconds``,
  ``noop_repro_reran`` (the stages the no-op repro ran: should be empty);
- ``projection`` (null unless complete): fma_large's ``clips``, ``measured_cores``,
  ``reference_cores``, ``data_hours``, ``sklearn_hours``, ``other_hours`` (each
  ``{"measured_cores": h, "reference_cores": h}``), ``keras`` (per training stage:
  ``steps_per_epoch``, ``seconds_per_step``, ``upper_bound``, ``hours_per_epoch``),
  ``stages`` (per stage: ``hours``, ``peak_rss_bytes``), ``workspace_bytes``,
  ``cache_bytes``, ``combined_bytes``, ``peak_rss_bytes``.

Other work on the machine slows every wall-clock figure: the load average is recorded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402
from benchmarks.rehearsal_project import clone_project, dvc_stages, noop_targets, pipeline_stages, set_params  # noqa: E402
from benchmarks.rehearsal_report import figures, report_markdown  # noqa: E402
from benchmarks.rehearsal_stages import bookkeeping, run_pipeline  # noqa: E402
from tests.support.fma_source import GENRES, build_source  # noqa: E402

DEFAULT_SHARED = ROOT.parent / "shared" / "data"
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "genreclf-rehearsal"
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "rehearsal.json"
DEFAULT_KERAS_STEPS = 20
MIN_CLIPS = 10 * len(GENRES)  # the SVM's 5 CV folds need 5 training clips per genre (0.64 x 8 > 5)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, required=True, help="N: clips in the source")
    parser.add_argument("--seed", type=int, default=0, help="the source's changes (default 0)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"source cache, scratch clone, logs (default {DEFAULT_WORKDIR})",
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help="where to write the figures (default %(default)s)"
    )
    parser.add_argument(
        "--keras-steps",
        type=int,
        default=DEFAULT_KERAS_STEPS,
        help=f"training steps of each Keras model (default {DEFAULT_KERAS_STEPS})",
    )
    parser.add_argument("--skip-keras", action="store_true", help="do not run the Keras stages (nor what needs them)")
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="one more params.yaml change in the clone (YAML value; e.g. cnn2d.image_size=64); repeatable",
    )
    parser.add_argument(
        "--shared", type=Path, default=DEFAULT_SHARED, help=f"the real audio (default {DEFAULT_SHARED})"
    )
    parser.add_argument("--workers", type=int, default=None, help="processes building the source (default: every core)")
    parser.add_argument("--keep", action="store_true", help="keep the project clone (default: deleted at the end)")
    args = parser.parse_args(argv)
    if args.clips < MIN_CLIPS:
        parser.error(
            f"--clips must be at least {MIN_CLIPS} ({MIN_CLIPS // len(GENRES)} per genre: the SVM's "
            "cross-validation needs 5 training clips per genre, and val and test one each)"
        )
    if args.keras_steps < 1:
        parser.error("--keras-steps must be at least 1")
    for override in args.overrides:
        if "=" not in override:
            parser.error(f"--set {override}: give KEY=VALUE")
    return args


def main(argv: list[str] | None = None) -> int:
    run = record.start("rehearsal", argv if argv is None else [__file__, *argv])
    args = parse_args(argv)
    workdir = args.workdir.resolve()
    tag = f"n{args.clips}-seed{args.seed}"
    print(
        f"rehearsal of {args.clips} clips in {workdir} ({os.cpu_count()} cores, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())})",
        flush=True,
    )
    source = build_source(args.clips, args.seed, args.shared.resolve(), workdir, args.workers)
    project = workdir / f"project-{tag}"
    commit = clone_project(project)
    keras_limit = None if args.skip_keras else args.keras_steps
    params = set_params(project, source, args.overrides, keras_limit)
    print(
        f"project: {project} (a clone of {commit[:10]}; params.yaml: data.source={source}, mobilenet.weights=null"
        + (f", max_steps={keras_limit} in each Keras model's section" if keras_limit else "")
        + "".join(f", {o}" for o in args.overrides)
        + ")",
        flush=True,
    )
    stages = dvc_stages(yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8")), params)
    planned = pipeline_stages(stages, args.skip_keras)
    logs = workdir / f"logs-{tag}"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    results, ran = run_pipeline(project, params, planned, args.clips, logs, keras_limit)
    book = bookkeeping(project, noop_targets(ran, planned, stages), logs)
    if book["noop_repro_reran"]:
        print(f"warning: the no-op dvc repro ran {book['noop_repro_reran']} again", flush=True)
    doc = record.write(args.json, run, figures(args, planned, project, source, params, results, book))
    print("\n" + report_markdown(doc), flush=True)
    print(f"\nlogs in {logs}")
    if args.keep:
        print(f"the project (delete when done): {project}")
    else:
        shutil.rmtree(project, ignore_errors=True)
    return 0 if doc["figures"]["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
