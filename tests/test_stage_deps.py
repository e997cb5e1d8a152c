"""dvc.yaml must list, for every stage, every project module its command runs.

The import closure of a stage is computed from its ``cmd`` with ``ast`` alone (no
import is executed): the module ``python -m <module>`` runs, then every project
module it imports, at the top or inside a function, and so on. A module is covered
when a dep of the stage is that file or a folder above it. Package ``__init__.py``
files that hold nothing but a docstring cannot change what a stage does and are
not required.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("genreclf", "stages")
CMD_MODULE_RE = re.compile(r"\bpython -m ([\w.]+)")


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """The file of a project module (``a.b`` -> a/b.py or a/b/__init__.py), or None if not ours."""
    if module.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def package_inits(module: str, root: Path = ROOT) -> list[Path]:
    """The __init__.py of every package above ``module`` (importing a.b.c runs a and a.b)."""
    parts = module.split(".")
    return [f for i in range(1, len(parts)) if (f := root.joinpath(*parts[:i], "__init__.py")).is_file()]


def imported_modules(path: Path, module: str) -> set[str]:
    """Every module named by an import statement anywhere in the file (relative ones resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            # "from pkg import mod" imports the module pkg.mod when there is one
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def import_closure(module: str, root: Path = ROOT) -> dict[Path, str]:
    """Every project file the module runs when imported: {file: module name}."""
    seen: dict[Path, str] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        path = module_file(name, root)
        if path is None or path in seen:
            continue
        seen[path] = name
        for init in package_inits(name, root):
            if init not in seen:
                todo.append(".".join(init.relative_to(root).parent.parts))
        todo.extend(imported_modules(path, name))
    return seen


def only_docstring(path: Path) -> bool:
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def covered(path: Path, deps: list[str], root: Path = ROOT) -> bool:
    relative = path.relative_to(root)
    return any(relative == Path(dep) or Path(dep) in relative.parents for dep in deps)


def expanded_stages(root: Path = ROOT) -> dict[str, dict]:
    """The stages of dvc.yaml with foreach expanded over the params (as DVC does)."""
    dvc = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    stages = {}
    for name, stage in dvc["stages"].items():
        if "foreach" not in stage:
            stages[name] = with_params(stage, params)
            continue
        items = stage["foreach"]
        if isinstance(items, str):
            match = re.fullmatch(r"\$\{([\w.]+)\}", items)
            assert match, f"dvc.yaml: {name}.foreach = {items!r}; expected a list or ${{params.key}}"
            items = params
            for key in match.group(1).split("."):
                items = items[key]
        pairs = items.items() if isinstance(items, dict) else ((item, item) for item in items)
        for key, item in pairs:  # DVC: over a list ${key} is ${item}; over a mapping the key and its value
            text = yaml.safe_dump(stage["do"]).replace("${item}", str(item)).replace("${key}", str(key))
            stages[f"{name}@{key}"] = yaml.safe_load(text)
    return stages


def with_params(stage: dict, params: dict) -> dict:
    """The stage with each ``${a.b}`` in it replaced by that param's value (DVC's templating)."""

    def value(match: re.Match) -> str:
        found = params
        for key in match.group(1).split("."):
            found = found[key]
        return str(found)

    return yaml.safe_load(re.sub(r"\$\{([\w.]+)\}", value, yaml.safe_dump(stage)))


def dep_paths(stage: dict) -> list[str]:
    return [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]


def command_closure(stage: dict, root: Path = ROOT) -> dict[Path, str]:
    """Every project file the stage's command runs: {file: module name}."""
    modules = CMD_MODULE_RE.findall(stage["cmd"])
    assert modules, f"cmd {stage['cmd']!r} runs no 'python -m <module>'"
    closure = {}
    for module in modules:
        closure.update(import_closure(module, root))
    return closure


def uncovered_modules(stage: dict, root: Path = ROOT) -> list[str]:
    deps = dep_paths(stage)
    return [
        f"{name} ({path.relative_to(root)})"
        for path, name in sorted(command_closure(stage, root).items())
        if not covered(path, deps, root) and not (path.name == "__init__.py" and only_docstring(path))
    ]


def is_code(dep: str) -> bool:
    return dep.split("/")[0] in PROJECT_PACKAGES


def unimported_code_deps(stage: dict, root: Path = ROOT) -> list[str]:
    """The code deps (files or folders of stages/ and genreclf/) that hold no module the command runs."""
    run = [path.relative_to(root) for path in command_closure(stage, root)]
    return [dep for dep in dep_paths(stage) if is_code(dep) and not any(covered(root / p, [dep], root) for p in run)]


STAGES = expanded_stages()


@pytest.mark.parametrize("stage_name", sorted(STAGES))
def test_stage_deps_cover_every_module_its_command_imports(stage_name):
    missing = uncovered_modules(STAGES[stage_name])
    assert not missing, f"dvc.yaml stage {stage_name}: deps do not cover {missing}; add them (or their folder)"


@pytest.mark.parametrize("stage_name", sorted(STAGES))
def test_stage_deps_name_no_code_its_command_does_not_import(stage_name):
    unread = unimported_code_deps(STAGES[stage_name])
    assert not unread, f"dvc.yaml stage {stage_name}: deps {unread} hold no module its command imports; remove them"


def test_foreach_lists_are_the_model_lists_of_params():
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    trained = {name.split("@", 1)[1] for name in STAGES if name.startswith("train_")}
    evaluated = {name.split("@", 1)[1] for name in STAGES if name.startswith("evaluate_")}
    assert trained == evaluated == set(params["models"]["sklearn"]) | set(params["models"]["keras"])


def test_a_missing_module_is_reported_with_stage_and_module(tmp_path):
    """The check itself: a stage whose deps leave out an imported module is caught, by name."""
    (tmp_path / "stages").mkdir()
    (tmp_path / "genreclf" / "models").mkdir(parents=True)
    (tmp_path / "stages" / "__init__.py").write_text("")
    (tmp_path / "genreclf" / "__init__.py").write_text('"""doc"""\n')
    (tmp_path / "genreclf" / "models" / "__init__.py").write_text("from . import helper\n")
    (tmp_path / "genreclf" / "models" / "helper.py").write_text("import numpy\n")
    (tmp_path / "genreclf" / "io.py").write_text("def late():\n    from genreclf.models import x\n")
    (tmp_path / "genreclf" / "models" / "x.py").write_text("")
    (tmp_path / "stages" / "run.py").write_text("from genreclf import io\n")
    stage = {"cmd": "python -m stages.run", "deps": ["stages/run.py", "genreclf/io.py"]}
    missing = uncovered_modules(stage, tmp_path)
    # the lazy import inside late(), the package __init__ that holds code, and what it imports
    assert missing == [
        "genreclf.models (genreclf/models/__init__.py)",
        "genreclf.models.helper (genreclf/models/helper.py)",
        "genreclf.models.x (genreclf/models/x.py)",
    ]
    stage["deps"].append("genreclf/models")
    assert uncovered_modules(stage, tmp_path) == []


def test_a_code_dep_that_nothing_imports_is_reported(tmp_path):
    """The check itself: a folder or file of code in deps that the command never imports is named."""
    for folder in ("stages", "genreclf/models", "genreclf/features"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "stages" / "__init__.py").write_text("")
    (tmp_path / "genreclf" / "__init__.py").write_text("")
    (tmp_path / "genreclf" / "models" / "__init__.py").write_text("")
    (tmp_path / "genreclf" / "models" / "fit.py").write_text("")
    (tmp_path / "genreclf" / "features" / "__init__.py").write_text("")
    (tmp_path / "genreclf" / "io.py").write_text("")
    (tmp_path / "stages" / "run.py").write_text("from genreclf.models import fit\n")
    deps = ["stages/run.py", "genreclf/models", "genreclf/features", "genreclf/io.py", "data/features"]
    stage = {"cmd": "python -m stages.run", "deps": deps}
    assert unimported_code_deps(stage, tmp_path) == ["genreclf/features", "genreclf/io.py"]
