"""params.yaml, validated whole by stages/config.py: what passes, and the message of what does not.

The expected values and messages are written out here (the keys read from params.yaml
itself, the limits worked out by hand), never taken from the config module.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from genreclf.errors import ParamError
from stages import config as cfg

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
STAGE_TIMEOUT_S = 120


def validate(changes: dict | None = None, removals: tuple[str, ...] = ()) -> cfg.Config:
    """The repository's params with ``changes`` ({"cnn1d.epochs": 3}) set and ``removals`` deleted."""
    params = copy.deepcopy(PARAMS)
    for dotted, value in (changes or {}).items():
        *path, key = dotted.split(".")
        mapping = params
        for part in path:
            mapping = mapping[part]
        mapping[key] = value
    for dotted in removals:
        *path, key = dotted.split(".")
        mapping = params
        for part in path:
            mapping = mapping[part]
        del mapping[key]
    try:
        return cfg.Config.model_validate(params)
    except ValidationError as e:
        raise ParamError("\n".join(cfg.problems(e, "params.yaml"))) from None


def refused(changes: dict | None = None, removals: tuple[str, ...] = ()) -> str:
    with pytest.raises(ParamError) as error:
        validate(changes, removals)
    return str(error.value)


# mappings whose keys are the user's choice, not a section's fixed keys (models.sklearn: model -> table)
VALUE_MAPPINGS = ("models.sklearn",)


def mappings(params: dict, prefix: str = "") -> list[tuple[str, dict]]:
    """Every mapping of params.yaml that holds keys: (dotted name, mapping), sections and nested ones."""
    found = []
    for key, value in params.items():
        if isinstance(value, dict) and f"{prefix}{key}" not in VALUE_MAPPINGS:
            name = f"{prefix}{key}"
            found += [(name, value), *mappings(value, f"{name}.")]
    return found


MAPPINGS = mappings(PARAMS)
# keys that may be left out: the archives the chosen dataset (fma_small) does not need
OPTIONAL_KEYS = {
    "data.checksums.fma_medium",
    "data.checksums.fma_large",
    "data.checksums.gtzan",
    "data.checksums.folder",
}
MODEL_SECTIONS = ("logreg", "knn", "gnb", "svm", "musicnn", "cnn1d", "mobilenet", "cnn2d")
ALL_KEYS = [*PARAMS, *(f"{name}.{key}" for name, mapping in MAPPINGS for key in mapping)]


# ---- the repository's params ---------------------------------------------------------------------


def test_the_repository_params_validate_to_the_same_values():
    config = cfg.load_config(ROOT / "params.yaml")
    # nothing renamed, converted away or filled in: the model gives back the file
    assert config.model_dump(exclude_unset=True) == PARAMS
    assert config.svm.C == [1.0, 3.0, 10.0, 30.0, 100.0] and config.svm.gamma[0] == "scale"
    assert config.split.fractions.model_dump() == {"train": 0.64, "val": 0.16, "test": 0.20}
    assert list(config.models.family_of().items()) == [
        ("logreg", "sklearn"),
        ("knn", "sklearn"),
        ("gnb", "sklearn"),
        ("svm", "sklearn"),
        ("musicnn", "sklearn"),
        ("cnn1d", "keras"),
        ("mobilenet", "keras"),
        ("cnn2d", "keras"),
    ]


def test_the_keras_settings_are_the_plain_section():
    """What train_keras hands the library: the section as written, every key (no code default)."""
    config = cfg.load_config(ROOT / "params.yaml")
    for name in ("cnn1d", "mobilenet", "cnn2d"):
        assert config.model_section(name).model_dump() == PARAMS[name]
    assert config.mobilenet.model_dump()["n_fft"] == 2048 and config.cnn2d.model_dump()["n_fft"] == 2048


def test_every_key_of_every_section_is_required():
    """No default hides in the code: each section's keys are exactly those of params.yaml, all needed,
    but for the archives' checksums (which the dataset rule checks) and the models' sections (needed
    when models lists them)."""
    for name, mapping in [("", PARAMS), *MAPPINGS]:
        model = dict(cfg.sections())[name]
        assert sorted(model.model_fields) == sorted(mapping), name
        required = {key for key, field in model.model_fields.items() if field.is_required()}
        optional = {"": set(MODEL_SECTIONS), "data.checksums": set(mapping)}.get(name, set())
        assert required == set(mapping) - optional, name


# ---- unknown and missing keys --------------------------------------------------------------------


@pytest.mark.parametrize("name", [name for name, _ in MAPPINGS] + [""])
def test_an_unknown_key_in_any_section_is_named(name):
    typo = {"cnn1d": "epoch", "svm": "Cee", "features": "nfft"}.get(name, "seeed")
    dotted = f"{name}.{typo}" if name else typo
    keys = sorted(dict(MAPPINGS)[name] if name else PARAMS)
    message, suffix = refused({dotted: 3}), "; remove it or correct its name"
    prefix = f"params.yaml: {dotted} = 3: unknown key: the keys here are "
    assert message.startswith(prefix) and message.endswith(suffix), message
    assert sorted(message[len(prefix) : -len(suffix)].split(", ")) == keys
    assert typo not in keys


@pytest.mark.parametrize("dotted", [key for key in ALL_KEYS if key not in OPTIONAL_KEYS])
def test_a_missing_key_is_named(dotted):
    message = refused(removals=(dotted,))
    if dotted in MODEL_SECTIONS:
        family = "sklearn" if dotted in PARAMS["models"]["sklearn"] else "keras"
        assert message == (
            f"params.yaml: {dotted}: missing; models.{family} lists {dotted}, so add it (see docs/params.md)"
        )
    elif dotted in ("data.checksums.fma_metadata", "data.checksums.fma_small"):
        assert message == (
            f"params.yaml: {dotted}: missing; dataset fma_small needs it: set it to the "
            "archive's SHA-1, or to null to skip the check"
        )
    else:
        assert message == f"params.yaml: {dotted}: missing; add it (see docs/params.md)"


def test_every_section_is_tested_missing():
    """The parametrisation above covers every section and key of params.yaml."""
    assert {
        "data",
        "convert",
        "split",
        "shard",
        "features",
        "models",
        "cnn1d.epochs",
        "mobilenet.n_fft",
        "mobilenet.hop_length",
        "cnn2d.n_fft",
        "split.fractions.test",
        "shard.num_shards.val",
    } <= set(ALL_KEYS)


def test_optional_parts_may_be_left_out():
    """The archives the dataset does not use, and the sections of models the study does not list."""
    validate(removals=tuple(sorted(OPTIONAL_KEYS)))
    config = validate(
        {"models.sklearn": {"svm": "features"}, "models.keras": ["cnn2d"]},
        removals=("logreg", "knn", "gnb", "musicnn", "cnn1d", "mobilenet"),
    )
    assert config.gnb is None and list(config.models.family_of()) == ["svm", "cnn2d"]
    with pytest.raises(ParamError, match=r"^params.yaml: gnb: missing; add it \(see docs/params.md\)$"):
        config.model_section("gnb")


# ---- types and ranges ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dotted, value, shown, expected",
    [
        # a bool is not a number, a string is not a number, a float is not an integer
        ("cnn1d.epochs", True, "true", "Input should be a valid integer"),
        ("cnn1d.epochs", "3", '"3"', "Input should be a valid integer"),
        ("cnn1d.epochs", 2.5, "2.5", "Input should be a valid integer"),
        ("cnn1d.learning_rate", True, "true", "Input should be a valid number"),
        ("cnn1d.learning_rate", "0.001", '"0.001"', "Input should be a valid number"),
        ("cnn1d.mixed_precision", 1, "1", "Input should be a valid boolean"),
        ("cnn1d.mixed_precision", "yes", '"yes"', "Input should be a valid boolean"),
        ("cnn1d.seed", None, "null", "Input should be a valid integer"),
        ("cnn1d.conv_filters", 128, "128", "Input should be a valid list"),
        ("cnn2d.filters.1", "128", '"128"', "Input should be a valid integer"),
        ("data.seed", "0", '"0"', "Input should be a valid integer"),
        ("data.clips_per_genre", "20", '"20"', "Input should be a valid integer"),
        ("data.clips_per_genre", True, "true", "Input should be a valid integer"),
        ("data.clips_per_genre", 2.5, "2.5", "Input should be a valid integer"),
        ("data.checksums", None, "null", "Input should be a valid dictionary or instance of Checksums"),
        ("data.checksums.fma_metadata", 1234, "1234", "Input should be a valid string"),
        ("convert.sample_rate", 22050.0, "22050.0", "Input should be a valid integer"),
        ("split.method", 3, "3", "Input should be 'stratified', 'official' or 'fault_filtered'"),
        ("split.fractions.train", "0.64", '"0.64"', "Input should be a valid number"),
        ("shard.num_shards", 16, "16", "Input should be a valid dictionary or instance of NumShards"),
        ("shard.num_shards.train", "16", '"16"', "Input should be a valid integer"),
        ("features.n_fft", "2048", '"2048"', "Input should be a valid integer"),
        ("features.hop_length", True, "true", "Input should be a valid integer"),
        ("features.n_octaves", 7.0, "7.0", "Input should be a valid integer"),
        ("models.sklearn", "svm", '"svm"', "Input should be a valid dictionary"),
        ("logreg.C", "big", '"big"', "Input should be a valid number"),
        ("logreg.seed", True, "true", "Input should be a valid integer"),
        ("knn.n_neighbors", 2.5, "2.5", "Input should be a valid integer"),
        ("svm.pca_components", "ten", '"ten"', "Input should be a valid integer"),
        ("svm.C", True, "true", "expected a number > 0, or a non-empty list of them"),
        ("musicnn.C", [], "[]", "expected a number > 0, or a non-empty list of them"),
        ("embed.embedding", "mean_pool", '"mean_pool"', "Input should be 'penultimate' or 'max_pool'"),
        ("embed.patches_per_clip", 0, "0", "Input should be greater than 0"),
        ("pretrained.sha256", "F38A", '"F38A"', "String should match pattern '^[0-9a-f]{64}$'"),
        ("mobilenet.weights", 3, "3", "Input should be a valid string"),
        ("knn", 3, "3", "Input should be a valid dictionary or instance of KnnSection"),
    ],
)
def test_a_wrong_type_is_named_with_its_value_and_what_is_expected(dotted, value, shown, expected):
    *path, last = dotted.split(".")
    if last.isdigit():  # an item of a list
        values = copy.deepcopy(PARAMS[path[0]][path[1]])
        values[int(last)] = value
        message = refused({".".join(path): values})
        dotted = f"{'.'.join(path)}[{last}]"
    else:
        message = refused({dotted: value})
    assert message == f"params.yaml: {dotted} = {shown}: {expected}"


# pydantic's message, and the (key, value) pairs that must be refused with it.
OUT_OF_RANGE = {
    "Input should be greater than or equal to 8000": [("convert.sample_rate", 7999)],
    "Input should be less than or equal to 192000": [("convert.sample_rate", 192001)],
    "Input should be greater than or equal to 0": [
        ("convert.min_seconds", -1),
        ("gnb.var_smoothing", -1.0),
        ("split.seed", -1),
        ("data.seed", -1),
        ("cnn1d.patience", -1),
        ("mobilenet.fine_tune_layers", -1),
        ("cnn1d.dropout", -0.1),
    ],
    "Input should be greater than 0": [
        ("split.fractions.train", 0),
        ("shard.num_shards.val", 0),
        ("features.n_mfcc", 0),
        ("features.n_bands", -1),
        ("logreg.max_iter", 0),
        ("knn.n_neighbors", 0),
        ("svm.search_workers", 0),
        ("cnn1d.epochs", 0),
        ("cnn1d.batch_size", -4),
        ("cnn2d.segments_per_clip", 0),
        ("data.clips_per_genre", 0),
        ("cnn1d.max_steps", 0),
        ("logreg.C", 0),
        ("cnn1d.learning_rate", 0),
        ("mobilenet.fine_tune_learning_rate", 0),
        ("mobilenet.alpha", -1),
        ("knn.pca_components", 0),
    ],
    "Input should be less than 1": [("split.fractions.val", 1), ("cnn1d.dropout", 1.0)],
    "Input should be greater than or equal to 16": [("features.n_fft", 15)],
    "Input should be a valid integer": [("cnn2d.max_steps", 2.5)],
    "Input should be greater than or equal to 2": [("svm.cv_folds", 1), ("mobilenet.n_fft", 1)],
    "List should have at least 1 item after validation, not 0": [("cnn1d.conv_filters", []), ("models.keras", [])],
    "Input should be greater than or equal to 32": [("mobilenet.image_size", 16)],
    "String should have at least 1 character": [("data.source", "")],
    "String should match pattern '^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/[^/\\s]+)*$'": [
        ("data.root", "s3://bucket/genres"),
        ("data.root", "gs://bucket/genres/"),
        ("data.root", "gs://Bucket/genres"),
        ("data.root", "gs://b"),
        ("data.root", "data/shards"),
    ],
    "Input should be a valid string": [("data.root", 3)],
    "Input should be 'fma_small', 'fma_medium', 'fma_large', 'gtzan' or 'folder'": [("data.dataset", "fma_tiny")],
    "Input should be 'stratified', 'official' or 'fault_filtered'": [("split.method", "random")],
    "Input should be 'uniform' or 'distance'": [("knn.weights", "closest")],
    "Input should be 'linear', 'poly', 'rbf' or 'sigmoid'": [("svm.kernel", "cubic")],
    "Input should be 'softmax' or 'sigmoid'": [("cnn2d.loss", "hinge")],
    "Input should be 'musicnn', 'features' or 'cnn2d'": [("recommend.embedding", "cnn1d")],
    "String should match pattern '^[0-9a-fA-F]{40}$'": [
        ("data.checksums.fma_small", "abc"),
        ("data.checksums.fma_small", "gggggggggggggggggggggggggggggggggggggggg"),
    ],
    "expected a number > 0, or a non-empty list of them": [("svm.C", -1), ("svm.C", []), ("svm.C", [1, -2])],
    'expected a number > 0 or one of ["scale", "auto"], or a non-empty list of them': [
        ("svm.gamma", "wide"),
        ("svm.gamma", 0.0),
        ("svm.gamma", ["scale", "wide"]),
    ],
}


@pytest.mark.parametrize("dotted, value, expected", [(d, v, e) for e, pairs in OUT_OF_RANGE.items() for d, v in pairs])
def test_an_out_of_range_value_is_named_with_what_is_expected(dotted, value, expected):
    assert refused({dotted: value}) == f"params.yaml: {dotted} = {json.dumps(value)}: {expected}"


@pytest.mark.parametrize(
    "dotted, value, listed",
    [
        ("models.keras", ["svm"], "models.keras[0] = \"svm\": Input should be 'cnn1d', 'mobilenet' or 'cnn2d'"),
        (
            "models.keras",
            ["cnn2d", "cnn1d", "cnn2d"],
            ('models.keras = ["cnn2d", "cnn1d", "cnn2d"]: names ["cnn2d"] more than once; name each model once'),
        ),
        ("cnn1d.dense_units", [100, 0], "cnn1d.dense_units[1] = 0: Input should be greater than 0"),
    ],
)
def test_list_items_are_named_by_position(dotted, value, listed):
    assert refused({dotted: value}) == f"params.yaml: {listed}"


@pytest.mark.parametrize("embedding", ["musicnn", "features", "cnn2d"])
def test_every_recommend_embedding_is_accepted(embedding):
    assert validate({"recommend.embedding": embedding}).recommend.embedding == embedding


def test_good_values_at_the_limits_pass():
    validate(
        {
            "convert.sample_rate": 8000,
            "convert.min_seconds": 0,
            "features.n_fft": 16,
            "features.hop_length": 16,
            "features.n_mfcc": 1,
            "svm.cv_folds": 2,
            "svm.search_workers": 1,
            "cnn1d.dropout": 0,
            "cnn1d.patience": 0,
            "mobilenet.image_size": 32,
            "svm.C": 10,
            "svm.gamma": "auto",
            "logreg.C": 1,
            "split.fractions": {"train": 0.5, "val": 0.25, "test": 0.25},
            "data.checksums.fma_small": "ADE154F733639D52E35E32F5593EFE5BE76C6D70",
            "data.clips_per_genre": 1,
            "knn.pca_components": 1,
            "data.root": "gs://my-bucket.example/team/genres",
        }
    )
    assert validate({"data.root": "gs://abc"}).data.root == "gs://abc"
    config = validate({"svm.C": 10, "svm.gamma": 0.001, "logreg.C": 1})
    assert config.svm.C == [10.0] and config.svm.gamma == [0.001] and config.logreg.C == 1.0


def test_every_problem_gets_its_own_line():
    message = refused({"cnn1d.epoch": 3, "svm.Cee": 1, "features.nfft": 1024, "convert.min_seconds": "10"})
    lines = message.splitlines()
    assert len(lines) == 4
    assert [line.split(" = ")[0] for line in lines] == [
        "params.yaml: convert.min_seconds",
        "params.yaml: features.nfft",
        "params.yaml: svm.Cee",
        "params.yaml: cnn1d.epoch",
    ]


# ---- rules over several keys ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"split.fractions.test": 0.1},
            'split.fractions = {"train": 0.64, "val": 0.16, "test": 0.1}: the fractions sum to 0.9; they must sum to 1',
        ),
        (
            {"split.fractions.test": 0.3},
            'split.fractions = {"train": 0.64, "val": 0.16, "test": 0.3}: the fractions sum to 1.1; they must sum to 1',
        ),
        (
            {"features.hop_length": 2049},
            "features.hop_length = 2049, features.n_fft = 2048: "
            "hop_length is more than n_fft; frames would skip samples",
        ),
        ({"features.n_mfcc": 129}, "features.n_mfcc = 129: expected at most the 128 mel bands"),
        # 2048-point frames have 2048 / 2 + 1 = 1025 frequency bins
        (
            {"mobilenet.n_mels": 1026},
            (
                "mobilenet.n_mels = 1026, mobilenet.n_fft = 2048: 1026 mel bands need n_fft >= "
                "2050 (2048 gives 1025 frequency bins); lower n_mels or raise n_fft"
            ),
        ),
        (
            {"cnn2d.n_fft": 256},
            (
                "cnn2d.image_size = 256, cnn2d.n_fft = 256: 256 mel bands need n_fft >= 510 "
                "(256 gives 129 frequency bins); lower image_size or raise n_fft"
            ),
        ),
        (
            {"cnn2d.pools": [2, 4, 4]},
            (
                "cnn2d.filters = [64, 128, 256, 512], cnn2d.pools = [2, 4, 4]: they must have "
                "the same length (one max-pooling after each convolution)"
            ),
        ),
        (
            {"mobilenet.fine_tune_layers": 5},
            ("mobilenet.fine_tune_layers = 5, mobilenet.fine_tune_epochs = 0: set both > 0 to fine-tune, or both to 0"),
        ),
        (
            {"mobilenet.fine_tune_epochs": 3},
            ("mobilenet.fine_tune_layers = 0, mobilenet.fine_tune_epochs = 3: set both > 0 to fine-tune, or both to 0"),
        ),
        (
            {"mobilenet.weights": None, "mobilenet.fine_tune_layers": 5, "mobilenet.fine_tune_epochs": 3},
            (
                "mobilenet.fine_tune_layers = 5, mobilenet.weights = null: "
                "without pretrained weights the whole network trains already: "
                "set fine_tune_layers and fine_tune_epochs to 0, or give imagenet or a weights file"
            ),
        ),
        (
            {"mobilenet.alpha": 0.6},
            (
                'mobilenet.alpha = 0.6, mobilenet.weights = "imagenet": no ImageNet weights of '
                "this alpha; use one of [0.35, 0.5, 0.75, 1.0, 1.3, 1.4] or weights: null"
            ),
        ),
        (
            {"mobilenet.weights": "resnet"},
            'mobilenet.weights = "resnet": expected imagenet, null or the path of a weights file (.h5 or .weights.h5)',
        ),
        (
            {"mobilenet.weights": "no/such/file.weights.h5"},
            (
                'mobilenet.weights = "no/such/file.weights.h5": '
                "no such file (paths are relative to the repository root); "
                "give an existing weights file, imagenet or null"
            ),
        ),
        # two convolutions of kernel 3 each pooled by 2: 9 -> (9 - 2) // 2 = 3 -> (3 - 2) // 2 = 0 samples
        (
            {"cnn1d.window_size": 9},
            ("cnn1d.window_size = 9: too short for 2 convolutions of kernel 3 each pooled by 2; use a longer window"),
        ),
        (
            {"data.dataset": "gtzan"},
            (
                "data.checksums.gtzan: missing; dataset gtzan needs it: set it to the archive's "
                "SHA-1, or to null to skip the check"
            ),
        ),
    ],
)
def test_rules_over_several_keys(changes, message):
    removals = ("data.checksums.gtzan",) if changes.get("data.dataset") == "gtzan" else ()
    assert refused(changes, removals) == f"params.yaml: {message}"


@pytest.mark.parametrize(
    "changes",
    [
        {"features.hop_length": 2048, "features.n_mfcc": 128},
        {"mobilenet.n_mels": 1025},  # exactly one bin per band
        {"cnn2d.n_fft": 510},
        {"cnn2d.filters": [8], "cnn2d.pools": [2]},
        {"mobilenet.fine_tune_layers": 30, "mobilenet.fine_tune_epochs": 5},
        {"mobilenet.weights": None, "mobilenet.alpha": 0.6},  # any width from scratch
        {"cnn1d.window_size": 10},  # 10 -> 4 -> 1 sample
        {"split.fractions": {"train": 0.7, "val": 0.1, "test": 0.2}},  # 0.7 + 0.1 + 0.2 != 1.0 in floats
        {"data.dataset": "gtzan"},  # gtzan's null checksum is given
    ],
)
def test_values_that_keep_the_rules_pass(changes):
    validate(changes)


def test_a_weights_file_that_exists_passes(tmp_path):
    weights = tmp_path / "base.weights.h5"
    weights.write_bytes(b"")
    assert validate({"mobilenet.weights": str(weights)}).mobilenet.weights == str(weights)


# ---- the file itself -------------------------------------------------------------------------------


def test_a_missing_or_broken_file_is_named(tmp_path):
    with pytest.raises(ParamError, match="no params file here"):
        cfg.load_config(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("data: [unclosed\n")
    with pytest.raises(ParamError, match="not valid YAML"):
        cfg.load_config(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("- a list\n")
    with pytest.raises(ParamError, match="expected a mapping of sections, got list"):
        cfg.load_config(tmp_path / "params.yaml")


def test_the_library_does_not_import_the_config():
    """genreclf knows nothing of params.yaml: no module of it imports stages."""
    for path in (ROOT / "genreclf").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "import stages" not in text and "from stages" not in text, path


# ---- a real stage refuses the whole file, at once --------------------------------------------------


@pytest.mark.parametrize(
    "command, dotted",
    [
        (["train_keras", "cnn1d"], "cnn1d.epoch"),
        (["train_keras", "cnn1d"], "svm.Cee"),  # a typo in another section stops this stage too
        # its process loads scikit-learn (seconds) before it reads params.yaml: the full suite's tier
        pytest.param(["train_sklearn", "svm"], "features.nfft", marks=pytest.mark.slow),
    ],
)
def test_a_stage_with_an_unknown_key_fails_before_any_work_and_writes_nothing(tmp_path, command, dotted):
    params = copy.deepcopy(PARAMS)
    section, key = dotted.split(".")
    params[section][key] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-m", f"stages.{command[0]}", *command[1:]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=STAGE_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"error: params.yaml: {dotted} = 3: unknown key: the keys here are" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


# ---- models.sklearn: each model and the table it reads ---------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (
            {"logreg": "features", "forest": "features"},
            'models.sklearn.forest = "features": unknown model; expected one of '
            '["gnb", "knn", "logreg", "svm", "musicnn"]',
        ),
        ({"svm": "spectrograms"}, "models.sklearn.svm = \"spectrograms\": Input should be 'features' or 'embeddings'"),
        (
            {},
            "models.sklearn = {}: Dictionary should have at least 1 item after validation, not 0",
        ),
    ],
)
def test_each_sklearn_model_names_a_known_table(value, expected):
    assert refused({"models.sklearn": value}) == f"params.yaml: {expected}"


def test_a_sklearn_model_may_read_either_table():
    config = validate({"models.sklearn": {"svm": "embeddings", "musicnn": "features"}})
    assert config.models.sklearn == {"svm": "embeddings", "musicnn": "features"}
    assert list(config.models.family_of()) == ["svm", "musicnn", "cnn1d", "mobilenet", "cnn2d"]
