"""The musicnn model's test accuracy over several split seeds, from one built project's embeddings.

A clip's embedding does not depend on the split, so the embed stage's tables of one project
(all three splits together: every clip) are re-split for each seed exactly as the split stage
splits (``genreclf.data.splits.stratified_split``, the fractions of params.yaml), then the
musicnn model is trained as ``stages.train_sklearn musicnn`` trains it (C chosen by stratified
CV on the train split only, with the settings of params.yaml's musicnn section) and scored on
that seed's test split. Nothing is chosen on a test split.

    python benchmarks/musicnn_seeds.py --project P --seeds 0 1 2 3 4

P is a project whose `embed` stage ran on every clip (split.method stratified), e.g. the
end-to-end test's (``--basetemp=DIR``: DIR/pipeline/project).

The JSON (--json, default benchmarks/results/musicnn_seeds.json; benchmarks/record.py's
document) holds in ``figures``: ``clips``, ``columns`` (the embedding's width), ``seeds``: one
object per split seed: ``seed``, ``C`` (chosen by CV on train), ``cv_accuracy``,
``test_accuracy``, ``test_right``, ``test_clips``; then ``mean_test_accuracy`` and
``std_test_accuracy`` over the seeds (ddof 0).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402
from genreclf.artifacts import EMBEDDINGS_DIR, SPLITS, read_feature_info, read_feature_split  # noqa: E402
from genreclf.data.splits import stratified_split  # noqa: E402
from genreclf.models import sklearn_models  # noqa: E402

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "musicnn_seeds.json"


def main() -> None:
    run = record.start("musicnn_seeds")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, required=True, help="a project whose embed stage has run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="the figures' JSON (default %(default)s)")
    args = parser.parse_args()

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    settings, fractions = params["musicnn"], params["split"]["fractions"]
    table_dir = args.project / EMBEDDINGS_DIR
    info = read_feature_info(table_dir)
    parts = [read_feature_split(table_dir, split, info["columns"]) for split in SPLITS]
    track_ids = [t for part in parts for t in part.track_ids]
    genres = [g for part in parts for g in part.genres]
    features = np.concatenate([part.features for part in parts])
    labels = np.concatenate([part.labels for part in parts])
    order = np.argsort(track_ids, kind="stable")  # the split stage's order: by track id
    track_ids = [track_ids[i] for i in order]
    genres = [genres[i] for i in order]
    features, labels = features[order], labels[order]
    print(f"{len(track_ids)} clips, {features.shape[1]} columns ({info['params']}) from {table_dir}")
    print(f"musicnn: C in {settings['C']}, {settings['cv_folds']}-fold CV on train; split fractions {fractions}")

    print("\n| split seed | C chosen (CV on train) | CV accuracy | test accuracy |\n| ---: | ---: | ---: | ---: |")
    accuracies, rows = [], []
    for seed in args.seeds:
        split = np.array(stratified_split(track_ids, genres, fractions, seed))
        train, test = split == "train", split == "test"
        C, cv_accuracy, _ = sklearn_models.select_musicnn_C(
            features[train],
            labels[train],
            settings["pca_components"],
            settings["C"],
            settings["cv_folds"],
            settings["max_iter"],
            settings["seed"],
        )
        pipeline = sklearn_models.build_pipeline(
            "musicnn", settings["pca_components"], C=C, max_iter=settings["max_iter"], seed=settings["seed"]
        )
        pipeline.fit(features[train], labels[train])
        probs = sklearn_models.class_probabilities(pipeline, features[test], int(labels.max()) + 1)
        accuracy = float(np.mean(probs.argmax(axis=1) == labels[test]))
        accuracies.append(accuracy)
        right = int(round(accuracy * test.sum()))
        print(f"| {seed} | {C:g} | {cv_accuracy:.3f} | {accuracy:.3f} ({right}/{test.sum()}) |")
        rows.append(
            {
                "seed": seed,
                "C": float(C),
                "cv_accuracy": round(float(cv_accuracy), 6),
                "test_accuracy": round(accuracy, 6),
                "test_right": right,
                "test_clips": int(test.sum()),
            }
        )
    print(
        f"\nmean test accuracy over {len(accuracies)} seeds: {np.mean(accuracies):.3f} (std {np.std(accuracies):.3f})"
    )
    figures = {
        "clips": len(track_ids),
        "columns": int(features.shape[1]),
        "seeds": rows,
        "mean_test_accuracy": round(float(np.mean(accuracies)), 6),
        "std_test_accuracy": round(float(np.std(accuracies)), 6),
    }
    record.write(args.json, run, figures)


if __name__ == "__main__":
    main()
