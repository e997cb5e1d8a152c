"""Helpers for the scikit-learn, evaluate, summarize and predict tests.

They build a scratch project folder (params.yaml + data/features/...) in which the tests run
the real stage scripts with tests.support.helpers.run_stage, as DVC would.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from genreclf.artifacts import FEATURE_ID_COLUMNS, write_features
from genreclf.features import fma_features as features
from tests.support.helpers import ROOT

FEATURE_COLUMNS = list(features.FEATURE_COLUMNS)

SKLEARN_PARAMS = {
    "logreg": {"pca_components": None, "C": 1.0, "max_iter": 2000, "seed": 0},
    "knn": {"pca_components": None, "n_neighbors": 1, "weights": "uniform"},
    "gnb": {"pca_components": None, "var_smoothing": 1.0e-9},
    "svm": {
        "pca_components": None,
        "C": 10.0,
        "kernel": "rbf",
        "gamma": "scale",
        "cv_folds": 5,
        "search_workers": 1,
        "seed": 0,
    },
    "musicnn": {"pca_components": None, "C": 1.0, "cv_folds": 5, "max_iter": 2000, "seed": 0},
}


def write_params(project: Path, overrides: dict | None = None) -> None:
    """The repository's params.yaml with the scikit-learn sections of SKLEARN_PARAMS (every stage
    validates the whole file); ``overrides`` replaces whole keys of a section."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params.update(json.loads(json.dumps(SKLEARN_PARAMS)))
    for name, values in (overrides or {}).items():
        params.setdefault(name, {}).update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def write_feature_tables(
    project: Path,
    tables: dict[str, pd.DataFrame],
    columns: list[str] = FEATURE_COLUMNS,
    sample_rate: int = 22050,
    feature_params: dict | None = None,
) -> None:
    """data/features/<split>.csv from frames with track_id, label, genre and ``columns``, plus
    feature_info.json (by default the 518 FMA columns and the default feature params), written
    by the features stage's writer."""
    if feature_params is None:
        feature_params = features.params_to_dict(features.DEFAULT_PARAMS)
    rows = (row for table in tables.values() for row in table[columns].to_numpy(dtype=np.float64))
    write_features(
        project / "data" / "features",
        {split: table[FEATURE_ID_COLUMNS] for split, table in tables.items()},
        rows,
        columns,
        sample_rate,
        feature_params,
    )


def feature_frame(
    track_ids: list[str], labels: list[int], genres: list[str], features: np.ndarray, columns: list[str]
) -> pd.DataFrame:
    frame = pd.DataFrame(np.asarray(features, dtype=np.float64), columns=columns)
    frame.insert(0, "genre", [genres[i] for i in labels])
    frame.insert(0, "label", labels)
    frame.insert(0, "track_id", track_ids)
    return frame
