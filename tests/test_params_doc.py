"""docs/params.md is generated from the config models and is current; every key has a description."""

from __future__ import annotations

from pathlib import Path

import yaml

from stages import params_doc
from stages.config import sections

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "params.md"


def test_every_key_has_a_description():
    undescribed = [
        f"{name}.{key}" if name else key
        for name, model in sections()
        for key, field in model.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert undescribed == [], f"add Field(description=...) to {undescribed} in stages/config.py"


def test_the_params_reference_is_current():
    assert DOC.read_text(encoding="utf-8") == params_doc.render(), (
        "docs/params.md is stale: run `python -m stages.params_doc > docs/params.md`"
    )


def test_the_reference_names_every_key_of_params_yaml():
    """Each key of the repository's params.yaml (its sections followed down) has its row."""
    text = DOC.read_text(encoding="utf-8")
    section_names = {name for name, _ in sections()}

    def keys(mapping: dict, prefix: str = ""):
        for key, value in mapping.items():
            dotted = f"{prefix}.{key}" if prefix else key
            yield dotted
            if isinstance(value, dict) and dotted in section_names:  # not a mapping of values (models.sklearn)
                yield from keys(value, dotted)

    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    missing = [key for key in keys(params) if f"| `{key}` |" not in text]
    assert missing == []


def test_a_constraint_reads_as_words():
    row = next(line for line in params_doc.render().splitlines() if line.startswith("| `cnn1d.epochs` |"))
    assert "| integer > 0 |" in row
    row = next(line for line in params_doc.render().splitlines() if line.startswith("| `split.method` |"))
    assert '`"stratified"` or `"official"` or `"fault_filtered"`' in row
