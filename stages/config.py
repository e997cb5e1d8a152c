"""Reading params.yaml and checking values before any heavy work starts."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from genreclf.errors import ParamError

PARAMS_FILE = "params.yaml"


def load_params(path: str | Path = PARAMS_FILE) -> dict:
    """Load the whole params file as a dict."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            params = yaml.safe_load(f)
    except FileNotFoundError:
        raise ParamError(f"{path}: no params file here; run the stage from the repository root") from None
    except yaml.YAMLError as e:
        raise ParamError(f"{path}: not valid YAML ({e}); fix the file and run again") from None
    if not isinstance(params, dict):
        raise ParamError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


def section(params: dict, name: str, path: str | Path = PARAMS_FILE) -> dict:
    """Return one top-level section, or a ParamError naming the file and the section."""
    value = params.get(name)
    if not isinstance(value, dict):
        raise ParamError(f"{path}: section '{name}' is missing or not a mapping; "
                         f"add it (see README, 'Params')")
    return value


def get(sec: dict, key: str, where: str, *, types: type | tuple = object,
        choices: Iterable | None = None, minimum: float | None = None,
        allow_none: bool = False) -> Any:
    """Fetch ``sec[key]`` and check its type, choices and minimum.

    ``where`` is the dotted prefix used in messages, e.g. ``"params.yaml: convert"``.
    """
    if key not in sec:
        raise ParamError(f"{where}.{key} is missing; add it to params.yaml (see README, 'Params')")
    value = sec[key]
    if value is None:
        if allow_none:
            return None
        raise ParamError(f"{where}.{key} is null; expected {_describe(types, choices)}")
    if types is not object:
        # bool is an int in Python; never accept it for a number.
        if isinstance(value, bool) and bool not in _as_tuple(types):
            raise ParamError(f"{where}.{key} = {value!r}; expected {_describe(types, choices)}")
        if not isinstance(value, types):
            raise ParamError(f"{where}.{key} = {value!r}; expected {_describe(types, choices)}")
    if choices is not None and value not in list(choices):
        raise ParamError(f"{where}.{key} = {value!r}; expected one of {sorted(map(str, choices))}")
    if minimum is not None and value < minimum:
        raise ParamError(f"{where}.{key} = {value!r}; expected a value >= {minimum}")
    return value


def check_fractions(fractions: Any, where: str, names: tuple[str, ...] = ("train", "val", "test")) -> dict:
    """Check that ``fractions`` maps exactly ``names`` to positive numbers summing to 1."""
    if not isinstance(fractions, dict) or set(fractions) != set(names):
        raise ParamError(f"{where} = {fractions!r}; expected a mapping with exactly the keys {list(names)}")
    for name in names:
        value = fractions[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ParamError(f"{where}.{name} = {value!r}; expected a number between 0 and 1")
    total = sum(fractions[n] for n in names)
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ParamError(f"{where} = {dict(fractions)} sums to {total:g}; the fractions must sum to 1")
    return {n: float(fractions[n]) for n in names}


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def _describe(types, choices) -> str:
    if choices is not None:
        return f"one of {sorted(map(str, choices))}"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "a mapping"}
    return " or ".join(names.get(t, t.__name__) for t in _as_tuple(types))
