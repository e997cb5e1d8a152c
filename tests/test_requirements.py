"""The pinned environment: each requirements*.txt is uv's compilation of its requirements*.in and holds to it.

``requirements.in`` and ``requirements-beam.in`` name the packages the project uses, pinned;
``requirements.txt`` and ``requirements-beam.txt`` pin every package those pull in too
(CONTRIBUTING.md, "Dependencies"). These checks read the files only (no resolver, no network):

- every pin of an ``.in`` file (and of the files it includes with ``-r``) is in its ``.txt`` at
  that version, so an edit of an ``.in`` without compiling again fails here;
- every package of a ``.txt`` is pinned with ``==`` (one version per environment marker);
- ``requirements.txt`` is within ``requirements-beam.txt`` (every package at the same version): CI
  installs the second, so the core install is made of versions CI tests;
- each ``.txt`` starts with the command that made it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# (input, compiled): the compiled file of each input, in the order they are compiled
LOCKS = (("requirements-beam.in", "requirements-beam.txt"), ("requirements.in", "requirements.txt"))


def requirement_lines(path: Path) -> list[tuple[str, str]]:
    """(where, requirement) of each requirement line of a requirements file, following ``-r`` includes;
    ``where`` is ``file:line``."""
    found = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            found += requirement_lines(path.parent / line.split(maxsplit=1)[1])
        elif line.startswith("-"):  # -c constraints and other options: no requirement of this file
            continue
        else:
            found.append((f"{path.name}:{number}", line))
    return found


def pins(path: Path) -> tuple[dict[str, set[str]], list[str]]:
    """(the pinned versions of each package, by canonical name; the problems: lines that are not
    one ``==`` pin)."""
    versions: dict[str, set[str]] = {}
    problems = []
    for where, line in requirement_lines(path):
        try:
            requirement = Requirement(line)
        except InvalidRequirement as e:
            problems.append(f"{where}: {line!r} is not a requirement ({e})")
            continue
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            problems.append(f"{where}: {line!r} is not pinned to one version with ==")
            continue
        versions.setdefault(canonicalize_name(requirement.name), set()).add(specifiers[0].version)
    return versions, problems


def lock_problems(source: Path, compiled: Path) -> list[str]:
    """What makes ``compiled`` not a compilation of ``source`` that pins everything."""
    wanted, problems = pins(source)
    locked, lock_problems_found = pins(compiled)
    problems += lock_problems_found
    for name, versions in sorted(wanted.items()):
        if not versions <= locked.get(name, set()):
            problems.append(
                f"{compiled.name}: {name} is {sorted(locked.get(name, set())) or 'missing'}, "
                f"{source.name} pins {sorted(versions)}: compile it again (CONTRIBUTING.md, 'Dependencies')"
            )
    return problems


def within_problems(inner: Path, outer: Path) -> list[str]:
    """The packages of ``inner`` that ``outer`` pins to other versions, or lacks."""
    inner_pins, _ = pins(inner)
    outer_pins, _ = pins(outer)
    return [
        f"{inner.name}: {name} {sorted(versions)}, {outer.name}: {sorted(outer_pins.get(name, set())) or 'missing'}"
        for name, versions in sorted(inner_pins.items())
        if not versions <= outer_pins.get(name, set())
    ]


@pytest.mark.parametrize(("source", "compiled"), LOCKS)
def test_each_compiled_file_pins_every_package_of_its_input(source, compiled):
    assert lock_problems(ROOT / source, ROOT / compiled) == []


def test_the_core_install_is_made_of_the_versions_ci_installs():
    assert within_problems(ROOT / "requirements.txt", ROOT / "requirements-beam.txt") == []


@pytest.mark.parametrize(("source", "compiled"), LOCKS)
def test_each_compiled_file_names_the_command_that_made_it(source, compiled):
    command = next(line for line in (ROOT / compiled).read_text().splitlines() if "uv pip compile" in line)
    assert f"uv pip compile {source} " in command and command.endswith(f"-o {compiled}")


def test_a_pin_changed_in_an_input_but_not_compiled_is_found(tmp_path):
    (tmp_path / "base.in").write_text("numpy==2.4.6  # arrays\n")
    (tmp_path / "all.in").write_text("# the extra\n-r base.in\nscipy==1.17.1\n")
    (tmp_path / "all.txt").write_text("numpy==2.4.5\n    # via scipy\nscipy==1.17.1\nsix>=1.0\n")
    problems = lock_problems(tmp_path / "all.in", tmp_path / "all.txt")
    assert problems == [
        "all.txt:4: 'six>=1.0' is not pinned to one version with ==",
        "all.txt: numpy is ['2.4.5'], all.in pins ['2.4.6']: compile it again (CONTRIBUTING.md, 'Dependencies')",
    ]
    (tmp_path / "all.txt").write_text("numpy==2.4.6\nscipy==1.17.1\n")
    assert lock_problems(tmp_path / "all.in", tmp_path / "all.txt") == []


def test_a_package_of_the_core_install_at_another_version_than_cis_is_found(tmp_path):
    (tmp_path / "core.txt").write_text("Protobuf==7.36.2\ntqdm==4.70.1 ; sys_platform == 'linux'\n")
    (tmp_path / "ci.txt").write_text("protobuf==6.33.6\ntqdm==4.70.1\n")
    assert within_problems(tmp_path / "core.txt", tmp_path / "ci.txt") == [
        "core.txt: protobuf ['7.36.2'], ci.txt: ['6.33.6']"
    ]
