"""The documentation holds: README.md, docs/*.md and CONTRIBUTING.md name only things that exist.

- every relative link resolves to a file or folder of the repository, and every ``#anchor``
  (in the same page or another) to a heading of that page, by GitHub's slug rules;
- every ``python -m X`` in their code (fenced blocks and inline spans) names a module: a file of
  the repository for its own packages, an installed top-level module otherwise (found, not imported);
- every ``genreclf <sub>`` there names a subcommand of the parser in ``genreclf/cli.py``;
- every ``-S key=value`` there names a key of ``params.yaml`` (a dotted path).

The pages are globbed, so a page added to docs/ is checked without a change here.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
REPO_PACKAGES = ("genreclf", "stages", "benchmarks", "tests")

FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
MODULE = re.compile(r"\bpython3?\s+-m\s+([A-Za-z_][\w.]*\w|[A-Za-z_])(?![\w.<])")
# genreclf at a command's start: a line's start (after an optional prompt), or after ; & | ( or $(
SUBCOMMAND = re.compile(r"(?:^|[;&|(]\s*|^\s*\$\s+)genreclf\s+([A-Za-z][\w-]*)", re.MULTILINE)
PARAM_OVERRIDE = re.compile(r"(?:^|\s)-S\s+['\"]?([A-Za-z_][\w.]*)=")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def pages() -> list[Path]:
    found = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    contributing = ROOT / "CONTRIBUTING.md"
    return found + ([contributing] if contributing.exists() else [])


# ---- reading a page


def outside_fences(text: str) -> tuple[list[str], list[str]]:
    """(the page's lines outside fenced code blocks, the text of each fenced block)."""
    lines, blocks, block = [], [], None
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            if block is None:
                block = []
            else:
                blocks.append("\n".join(block))
                block = None
        elif block is not None:
            block.append(line)
        else:
            lines.append(line)
    return lines, blocks


def split_code(text: str) -> tuple[list[str], list[str]]:
    """(the page's prose lines without their code, the code: each fenced block's text and each inline span's)."""
    lines, code = outside_fences(text)
    code += [match.group(2) for line in lines for match in INLINE_CODE.finditer(line)]
    return [INLINE_CODE.sub("", line) for line in lines], code


def slug(heading: str) -> str:
    """GitHub's anchor of a heading's text: links and code as their text, lower case, spaces to
    hyphens, every character but letters, digits, hyphens and underscores dropped."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.lower().replace(" ", "-")
    return "".join(char for char in text if char.isalnum() or char in "-_")


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings; a repeated one gets -1, -2, ... as on GitHub."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    lines, _ = outside_fences(text)
    for line in lines:
        match = HEADING.match(line.replace("`", ""))  # a heading's code counts as its text
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> list[str]:
    prose, _ = split_code(text)
    return [match.group(1) for line in prose for match in LINK.finditer(line)]


def broken_links(page: Path) -> list[str]:
    """Each relative link of ``page`` whose file, or whose anchor in that file, does not exist."""
    problems = []
    for target in links(page.read_text(encoding="utf-8")):
        if EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            problems.append(f"{target}: no file {destination}")
            continue
        if anchor and (destination.is_dir() or anchor not in anchors(destination.read_text(encoding="utf-8"))):
            problems.append(f"{target}: no heading with the anchor #{anchor} in {destination.name}")
    return problems


# ---- what the code names


def module_exists(name: str) -> bool:
    """A module of the repository's own packages is a file there; any other, an installed top-level module."""
    parts = name.split(".")
    if parts[0] in REPO_PACKAGES:
        base = ROOT.joinpath(*parts)
        return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()
    return importlib.util.find_spec(parts[0]) is not None


def cli_subcommands(cli: Path) -> set[str] | None:
    """The names given to ``add_parser`` (and their aliases) in ``cli``; None when there is no such file."""
    if not cli.is_file():
        return None
    names = set()
    for node in ast.walk(ast.parse(cli.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_parser":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
            for keyword in node.keywords:
                if keyword.arg == "aliases" and isinstance(keyword.value, ast.List | ast.Tuple):
                    names |= {item.value for item in keyword.value.elts if isinstance(item, ast.Constant)}
    return names


def has_key(params: dict, dotted: str) -> bool:
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def unknown_names(code: list[str], params: dict, subcommands: set[str] | None) -> list[str]:
    problems = []
    for snippet in code:
        for name in MODULE.findall(snippet):
            if not module_exists(name):
                problems.append(f"python -m {name}: no such module")
        for sub in SUBCOMMAND.findall(snippet):
            if subcommands is None:
                problems.append(f"genreclf {sub}: genreclf/cli.py does not exist")
            elif sub not in subcommands and not sub.startswith("-"):
                problems.append(f"genreclf {sub}: not a subcommand of genreclf/cli.py ({sorted(subcommands)})")
        for key in PARAM_OVERRIDE.findall(snippet):
            if not has_key(params, key):
                problems.append(f"-S {key}=...: params.yaml has no key {key}")
    return problems


# ---- the tests


@pytest.mark.parametrize("page", pages(), ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(page):
    problems = broken_links(page)
    assert problems == [], f"{page.relative_to(ROOT)}: broken links:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", pages(), ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_command_names_a_module_subcommand_and_param_that_exist(page):
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    _, code = split_code(page.read_text(encoding="utf-8"))
    problems = unknown_names(code, params, cli_subcommands(ROOT / "genreclf" / "cli.py"))
    assert problems == [], f"{page.relative_to(ROOT)}: names what does not exist:\n" + "\n".join(problems)


def test_the_checks_find_what_is_wrong(tmp_path):
    """The checks above, on a page made to break each rule once (and to keep each once)."""
    (tmp_path / "other.md").write_text(
        "# Other page\n\n## Train on a GPU/TPU machine\n\n## Train on a GPU/TPU machine\n"
    )
    page = tmp_path / "page.md"
    page.write_text(
        "# A `code` heading: with [a link](other.md)\n\n"
        "[ok](other.md#train-on-a-gputpu-machine) [ok](other.md#train-on-a-gputpu-machine-1)\n"
        "[ok](#a-code-heading-with-a-link)\n"
        "[bad](missing.md) [bad](other.md#nowhere) [bad](#nowhere) [web](https://example.com/#x)\n"
        "`[not a link](missing.md)`\n\n"
        "```\n[not a link either](missing.md)\n```\n"
    )
    assert broken_links(page) == [
        f"missing.md: no file {tmp_path / 'missing.md'}",
        "other.md#nowhere: no heading with the anchor #nowhere in other.md",
        "#nowhere: no heading with the anchor #nowhere in page.md",
    ]

    params = {"svm": {"C": [1, 10]}, "data": {"checksums": {"gtzan": None}}}
    code = [
        "python -m stages.split && python -m stages.nothing\npython -m pytest -n 0",
        "python -m no_such_module_here",
        "python -m stages.<name>",  # a placeholder: not a module name
        "$ genreclf predict song.mp3 | genreclf fly\ncd genreclf && git clone url genreclf",
        "dvc exp run -S 'svm.C=0.1,1' -S data.checksums.gtzan=null -S svm.gamma=1 -S data.root.x=1",
    ]
    assert unknown_names(code, params, {"predict", "recommend"}) == [
        "python -m stages.nothing: no such module",
        "python -m no_such_module_here: no such module",
        "genreclf fly: not a subcommand of genreclf/cli.py (['predict', 'recommend'])",
        "-S svm.gamma=...: params.yaml has no key svm.gamma",
        "-S data.root.x=...: params.yaml has no key data.root.x",
    ]
    assert unknown_names(["genreclf models"], params, None) == ["genreclf models: genreclf/cli.py does not exist"]

    cli = tmp_path / "cli.py"
    cli.write_text(
        "import argparse\nparser = argparse.ArgumentParser()\nsub = parser.add_subparsers()\n"
        "sub.add_parser('predict')\nsub.add_parser('models', aliases=['list'])\n"
    )
    assert cli_subcommands(cli) == {"predict", "models", "list"}
    assert cli_subcommands(tmp_path / "absent.py") is None
