"""Every published figure, from the benchmarks' JSON documents: docs/results.md, docs/benchmarks.md, README's table.

    python -m benchmarks.report [--results DIR] [--docs DIR] [--readme PATH] [--check]

Reads every ``*.json`` of --results (default benchmarks/results), each a document of
``benchmarks/record.py`` (benchmark, command, date, commit, machine, load average, seconds,
figures), and writes:

- ``docs/results.md``: the documents of the pipeline's results (``RESULT_BENCHMARKS``);
- ``docs/benchmarks.md``: every other document;
- the results table of README.md, between the lines ``<!-- results:begin -->`` and
  ``<!-- results:end -->`` (the rest of the README is left as it is): the models of the
  newest ``results_table`` document.

One section per document, in file-name order: its command, its date, the machine's CPU and
cores and the load (``record.machine_line``), then its figures as tables. No commit is shown
(figure keys named ``commit`` or ``*_commit`` are left out too). How a figure is laid out:

- a list of dicts is a table, one row per dict, the union of their keys as columns (nested
  dicts as dotted columns; ``COLUMN_ORDER`` puts the known columns first);
- a dict whose values are all dicts is a table too, one row per key;
- every other value (numbers, strings, lists of them) goes to one figure/value table, its
  key the dotted path;
- numbers: integers as they are, floats to 3 significant digits (whole numbers from 100),
  None blank, booleans yes/no.

So a new benchmark needs no code here. With --check nothing is written: it exits 1 with one
line naming each file that differs from what it would write.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.record import MACHINE_KEYS, ROOT, SCHEMA, machine_line

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
PIPELINE_RESULTS = "results_table"  # the benchmark whose models make README's table
RESULT_BENCHMARKS = (PIPELINE_RESULTS, "split_seeds", "musicnn_seeds")  # to docs/results.md
GENERATED = "<!-- Written by `python -m benchmarks.report` from {results}/*.json: edit those, not this page. -->"

# What each known benchmark measures (one line under its section's title).
DESCRIPTIONS = {
    "results_table": "The pipeline's test-set scores on gtzan_mini (the end-to-end test's project).",
    "split_seeds": "Every model's test accuracy over split seeds (`dvc exp run` per seed).",
    "musicnn_seeds": "musicnn's test accuracy over split seeds.",
    "rehearsal": "The whole pipeline at scale, stage by stage.",
    "bench_data": "convert + features: clips/s and peak memory.",
    "bench_features": "The FMA features against the same recipe in plain librosa calls: CPU seconds per clip.",
    "bench_input": "Keras input pipelines and training steps; tf.data against WAV files.",
    "bench_sklearn_memory": "Peak RSS of the scikit-learn stages.",
    "bench_recommend": "Similar-song queries on a large library.",
    "numba_cache_race": "Crashes when processes compile librosa's gufuncs together.",
}
# The columns that go first, in this order, in a known benchmark's tables (by the figure's key).
COLUMN_ORDER = {
    PIPELINE_RESULTS: {
        "models": ("model", "accuracy", "macro_f1", "unit", "unit_accuracy", "training_seconds", "epochs"),
    },
}
# Column titles: a key's own (LABELS), else its words with a unit for its suffix (UNITS, WORDS).
LABELS = {"accuracy": "test accuracy", "macro_f1": "macro-F1", "training_seconds": "training (s)"}
UNITS = (
    ("_per_s", "/s"),
    ("_seconds", " (s)"),
    ("_ms", " (ms)"),
    ("_hours", " (h)"),
    ("_mib", " (MiB)"),
    ("_gib", " (GiB)"),
    ("_mb", " (MB)"),
    ("_bytes", ""),  # the cell gives the unit: fmt_bytes
)
WORDS = {"rss": "RSS", "cpu": "CPU", "cv": "CV", "f1": "F1", "mb": "MB", "mib": "MiB", "ms": "ms"}


MARKDOWN_SPECIAL = re.compile(r"[|\\`*<\[\]]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


class ReportError(Exception):
    """A results folder or README that the report cannot use: one line, naming the file."""


@dataclass
class Document:
    path: Path
    doc: dict

    @property
    def benchmark(self) -> str:
        return self.doc["benchmark"]


# ---- reading


def load_documents(results: Path) -> list[Document]:
    """Every ``*.json`` of ``results`` in file-name order (none when the folder is missing), each checked."""
    if not results.is_dir():
        return []
    documents = []
    for path in sorted(results.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ReportError(f"{path}: not readable as JSON ({error})") from error
        check_document(path, doc)
        documents.append(Document(path, doc))
    return documents


def check_document(path: Path, doc) -> None:
    problem = None
    if not isinstance(doc, dict):
        problem = "not a JSON object"
    elif missing := [key for key in SCHEMA if key not in doc]:
        problem = f"missing {', '.join(missing)}"
    elif not isinstance(doc["machine"], dict) or any(key not in doc["machine"] for key in MACHINE_KEYS):
        problem = f"machine must hold {', '.join(MACHINE_KEYS)}"
    elif not isinstance(doc["load_average"], dict) or not all(
        is_number(doc["load_average"].get(key)) for key in ("start", "end")
    ):
        problem = "load_average must hold the numbers start and end"
    elif not isinstance(doc["figures"], dict):
        problem = "figures must be a JSON object"
    if problem:
        raise ReportError(f"{path}: not a benchmark document ({problem}); benchmarks/record.py writes them")


# ---- formatting


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_scalar(value) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def fmt(value) -> str:
    """A figure as a table cell: 3 significant digits for floats (whole from 100), None blank."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value) or value == 0:
            return str(value) if value else "0"
        magnitude = math.floor(math.log10(abs(value)))
        if magnitude >= 2:
            return f"{value:.0f}"
        if magnitude < -3:
            return f"{value:.2e}"
        return f"{value:.{2 - magnitude}f}"
    if isinstance(value, str):
        return cell_text(value)
    if isinstance(value, list) and all(is_scalar(item) for item in value):
        return ", ".join(fmt(item) for item in value)
    return cell_text(json.dumps(value, separators=(", ", ": ")))


def cell_text(text: str) -> str:
    """``text`` on one line, as literal Markdown: | \\ ` * < [ ] and a word-edge _ escaped."""
    return MARKDOWN_SPECIAL.sub(r"\\\g<0>", " ".join(text.split()))


def label(key: str) -> str:
    """A column's title: each part of a dotted key by ``part_label``, joined by ›."""
    return " › ".join(part_label(part) for part in key.split("."))


def part_label(part: str) -> str:
    """'peak_tree_rss_mib' -> 'peak tree RSS (MiB)', 'clips_per_s' -> 'clips/s', 'cache_bytes' -> 'cache'."""
    if part in LABELS:
        return LABELS[part]
    unit = ""
    for suffix, shown in UNITS:
        if part.endswith(suffix) and len(part) > len(suffix):
            part, unit = part[: -len(suffix)], shown
            break
    return " ".join(WORDS.get(word, word) for word in part.split("_")) + unit


def cell(key: str, value) -> str:
    """A figure as a cell of its column: sizes in bytes (keys ``*_bytes``) in kB, MB, GB or TB."""
    if key.endswith("_bytes") and is_number(value):
        return fmt_bytes(value)
    return fmt(value)


def fmt_bytes(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1000:
            return f"{fmt(size) if unit != 'B' else int(size)} {unit}"
        size /= 1000
    return f"{fmt(float(size))} TB"


def code(text: str) -> str:
    """``text`` as inline code, whatever backticks it holds."""
    longest = 0
    run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def is_commit_key(key: str) -> bool:
    return key == "commit" or key.endswith("_commit")


def markdown_table(header: list[str], rows: list[list[str]], numeric: list[bool]) -> str:
    """A Markdown table of cells already formatted; numeric columns right-aligned."""
    lines = [
        "| " + " | ".join(cell_text(title) for title in header) + " |",
        "| " + " | ".join("---:" if right else "---" for right in numeric) + " |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def flat_row(record: dict, prefix: str = "") -> dict:
    """A row's cells: nested dicts as dotted keys, commit keys left out."""
    row = {}
    for key, value in record.items():
        key = str(key)
        if is_commit_key(key):
            continue
        if isinstance(value, dict) and value:
            row.update(flat_row(value, f"{prefix}{key}."))
        else:
            row[f"{prefix}{key}"] = value
    return row


def rows_table(records: list[dict], order: tuple[str, ...] = ()) -> str:
    """One row per dict; columns: ``order``'s keys that occur, then the others as first met."""
    rows = [flat_row(record) for record in records]
    seen = list(dict.fromkeys(key for row in rows for key in row))
    columns = [key for key in order if key in seen] + [key for key in seen if key not in order]
    numeric = [
        all(is_number(row.get(key)) for row in rows if row.get(key) is not None)
        and any(row.get(key) is not None for row in rows)
        for key in columns
    ]
    cells = [[cell(key, row.get(key)) for key in columns] for row in rows]
    return markdown_table([label(key) for key in columns], cells, numeric)


def render_figures(figures: dict, orders: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """The figures as Markdown blocks: the figure/value table of the scalars first, then one table per list."""
    orders = orders or {}
    scalars: list[tuple[str, object]] = []
    tables: list[str] = []

    def walk(path: list[str], value) -> None:
        if is_commit_key(path[-1]):
            return
        dotted = ".".join(path)
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            tables.append(f"**{label(dotted)}**\n\n{rows_table(value, orders.get(dotted, ()))}")
        elif isinstance(value, dict) and value and all(isinstance(item, dict) for item in value.values()):
            records = [{path[-1]: key, **item} for key, item in value.items()]
            tables.append(f"**{label(dotted)}**\n\n{rows_table(records, (path[-1], *orders.get(dotted, ())))}")
        elif isinstance(value, dict) and value:
            for key, item in value.items():
                walk([*path, str(key)], item)
        else:
            scalars.append((dotted, value))

    for key, value in figures.items():
        walk([str(key)], value)
    blocks = []
    if scalars:
        rows = [[cell_text(label(key)), cell(key, value)] for key, value in scalars]
        blocks.append(markdown_table(["figure", "value"], rows, [False, all(is_number(v) for _, v in scalars)]))
    return blocks + tables


def run_line(doc: dict) -> str:
    """'Measured by `python …` on 2025-06-01 10:00 UTC (312 s): Intel…, 2 cores, load 1.02 → 1.87 (7.8 GiB, Linux).'"""
    when = doc["date"]
    try:
        parsed = dt.datetime.fromisoformat(str(when))
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.UTC)
        when = parsed.strftime("%Y-%m-%d %H:%M") + (" UTC" if parsed.tzinfo is not None else "")
    except ValueError:
        pass
    took = f" ({fmt(float(doc['seconds']))} s)" if is_number(doc["seconds"]) else ""
    machine = doc["machine"]
    extra = [f"{machine['memory_gib']} GiB" if machine["memory_gib"] is not None else None, machine["system"]]
    extra = [str(item) for item in extra if item]
    return (
        f"Measured by {code(str(doc['command']))} on {when}{took}: {machine_line(doc)}"
        + (f" ({', '.join(extra)})" if extra else "")
        + "."
    )


def section(document: Document) -> str:
    doc = document.doc
    name = document.path.stem
    parts = [f"## {name}"]
    intro = DESCRIPTIONS.get(document.benchmark, "")
    if name != document.benchmark:
        intro = f"Benchmark `{document.benchmark}`. {intro}".strip()
    if intro:
        parts.append(intro)
    parts.append(run_line(doc))
    blocks = render_figures(doc["figures"], COLUMN_ORDER.get(document.benchmark))
    parts += blocks or ["(No figures.)"]
    return "\n\n".join(parts)


# ---- the pages


def page(title: str, lead: str, documents: list[Document], empty: str, results_name: str) -> str:
    parts = [f"# {title}", GENERATED.format(results=results_name), lead]
    if documents:
        parts.append("\n".join(f"- [{d.path.stem}](#{anchor(d.path.stem)})" for d in documents))
        parts += [section(d) for d in documents]
    else:
        parts.append(empty)
    return "\n\n".join(parts) + "\n"


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, spaces to hyphens, other punctuation but - and _ dropped."""
    return "".join(c for c in heading.lower().replace(" ", "-") if c.isalnum() or c in "-_")


def results_page(documents: list[Document], results_name: str) -> str:
    return page(
        "Results",
        "The pipeline's test-set figures, one section per JSON document: each names the command that "
        "measured it, when, and the machine it ran on.",
        documents,
        "No results are recorded yet. To record them, run `dvc repro` in a project (the end-to-end test "
        "builds one: `tests/support/pipeline_project.py`), then `python benchmarks/results_table.py PROJECT`: it "
        "writes its JSON document to `benchmarks/results/results_table.json` (`--json PATH` elsewhere; "
        f"this page reads `{results_name}/`). Then run `python -m benchmarks.report`.",
        results_name,
    )


def benchmarks_page(documents: list[Document], results_name: str) -> str:
    return page(
        "Benchmarks",
        "What each benchmark measured, one section per JSON document: each names the command that "
        "measured it, when, and the machine it ran on, with the load average at its start and end "
        "(other work on the machine slows every wall-clock figure).",
        documents,
        "No benchmark results are recorded yet. To record one, run a benchmark (the commands are in "
        "[usage.md](usage.md#benchmarks)): it writes its JSON document (`benchmarks/record.py`) to "
        "`benchmarks/results/<benchmark>.json` (`--json PATH` elsewhere; this page reads "
        f"`{results_name}/`). Then run `python -m benchmarks.report`.",
        results_name,
    )


def readme_block(documents: list[Document]) -> str:
    """What goes between the README's markers: the newest pipeline results' models table and its run line."""
    candidates = [d for d in documents if d.benchmark == PIPELINE_RESULTS]
    if not candidates:
        return "No results are recorded yet: [docs/results.md](docs/results.md) says how to record them."
    newest = max(candidates, key=lambda d: (str(d.doc["date"]), d.path.name))
    figures = newest.doc["figures"]
    models = figures.get("models")
    if isinstance(models, list) and models and all(isinstance(m, dict) for m in models):
        table = rows_table(models, COLUMN_ORDER[PIPELINE_RESULTS]["models"])
    else:
        table = "\n\n".join(render_figures(figures)) or "(No figures.)"
    return f"{table}\n\n{run_line(newest.doc)}"


def with_readme_block(readme: str, block: str, name: str) -> str:
    """``readme`` with what lies between its two marker lines replaced by ``block``; the rest as it is."""
    lines = readme.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise ReportError(
            f"{name}: expected one line {BEGIN} and, after it, one line {END} around the results table "
            f"(found {len(begins)} and {len(ends)})"
        )
    start, stop = begins[0], ends[0]
    return "".join(lines[: start + 1]) + block.rstrip("\n") + "\n" + "".join(lines[stop:])


def display_name(path: Path) -> str:
    """A path as the pages and messages name it: relative to the repository when inside it."""
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def outputs(results: Path, docs: Path, readme: Path) -> dict[Path, str]:
    """Each file the report writes, with its text."""
    documents = load_documents(results)
    results_name = display_name(results)
    pipeline = [d for d in documents if d.benchmark in RESULT_BENCHMARKS]
    others = [d for d in documents if d.benchmark not in RESULT_BENCHMARKS]
    try:
        readme_text = readme.read_text(encoding="utf-8")
    except OSError as error:
        raise ReportError(f"{readme}: not readable ({error.strerror})") from error
    return {
        docs / "results.md": results_page(pipeline, results_name),
        docs / "benchmarks.md": benchmarks_page(others, results_name),
        readme: with_readme_block(readme_text, readme_block(documents), str(readme)),
    }


def stale(files: dict[Path, str]) -> list[Path]:
    def current(path: Path) -> str | None:
        try:
            return path.read_text(encoding="utf-8")
        except OSError:
            return None

    return [path for path, text in files.items() if current(path) != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"), help="the JSON documents")
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="where results.md and benchmarks.md go")
    parser.add_argument("--readme", type=Path, default=Path("README.md"), help="the README with the markers")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs")
    args = parser.parse_args(argv)
    try:
        files = outputs(args.results, args.docs, args.readme)
    except ReportError as error:
        print(f"benchmarks.report: error: {error}", file=sys.stderr)
        return 1
    changed = stale(files)
    if args.check:
        if changed:
            names = ", ".join(str(path) for path in changed)
            verb = "is" if len(changed) == 1 else "are"
            print(
                f"benchmarks.report: {names} {verb} stale (not what the JSON documents of {args.results} give): "
                "run python -m benchmarks.report",
                file=sys.stderr,
            )
            return 1
        print(f"benchmarks.report: {', '.join(str(path) for path in files)} are up to date")
        return 0
    for path in changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(files[path], encoding="utf-8")
        partial.replace(path)
        print(f"wrote {path}")
    if not changed:
        print("benchmarks.report: nothing changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
