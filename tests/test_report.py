"""benchmarks/report.py: the docs and README's results table, regenerated from the benchmarks' JSON documents.

The report runs as a subprocess (``python -m benchmarks.report``), as a person runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
MACHINE = {"cpu": "Test CPU Model 9000 @ 3.00GHz", "cores": 2, "memory_gib": 7.8, "system": "Linux 6.1.0"}
README = """# A project

```bash
python -m pytest
```

## Results

Text before the table.

<!-- results:begin -->
| an old table |
<!-- results:end -->

Text after the table, with a figure of another study: 48 %.
"""


def document(benchmark: str, command: str, figures: dict, load=(1.02, 1.87), date="2025-06-01T10:00:00+00:00") -> dict:
    return {
        "benchmark": benchmark,
        "command": command,
        "date": date,
        "commit": COMMIT,
        "machine": MACHINE,
        "load_average": {"start": load[0], "end": load[1]},
        "seconds": 312.4,
        "figures": figures,
    }


REHEARSAL = document(
    "rehearsal",
    "python benchmarks/rehearsal.py --clips 1000",
    {
        "clips": 1000,
        "stages": [
            {"stage": "convert", "seconds": 42.4, "clips_per_s": 23.6, "peak_tree_rss_mib": 300},
            {"stage": "train_keras@cnn1d", "seconds": 203.2, "peak_tree_rss_mib": 3510, "steps": {"first_s": 9.1}},
        ],
        "disk": {"workspace_bytes": 3_614_000_000, "audio_copies": 2.0},
        "complete": True,
        "base_commit": "fedcba9",
    },
)
RECOMMEND = document(
    "bench_recommend",
    "python benchmarks/bench_recommend.py",
    {"library": 100000, "dims": {"518": {"build_s": 3.14, "query_ms": 0.0234}, "200": {"build_s": 0.52}}},
    load=(3.5, 4.25),
)
RESULTS = document(
    "results_table",
    "python benchmarks/results_table.py P --json benchmarks/results/results_table.json",
    {
        "models": [
            {"model": "cnn1d", "accuracy": 0.2, "macro_f1": 0.147, "unit_accuracy": 0.128, "unit": "window"}
            | {"training_seconds": 256.3, "epochs": 15},
            {"model": "svm", "accuracy": 0.75, "macro_f1": 0.703, "unit_accuracy": None, "unit": None}
            | {"training_seconds": 6.88, "epochs": None},
        ],
        "test_clips": 20,
    },
    load=(0.5, 0.75),
)


def report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.report", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def write_fixtures(tmp_path: Path, documents: dict[str, dict]) -> tuple[Path, Path, Path]:
    results, docs, readme = tmp_path / "results", tmp_path / "docs", tmp_path / "README.md"
    results.mkdir()
    for name, doc in documents.items():
        (results / name).write_text(json.dumps(doc, indent=2) + "\n")
    readme.write_text(README)
    return results, docs, readme


def options(results: Path, docs: Path, readme: Path) -> list[str]:
    return ["--results", str(results), "--docs", str(docs), "--readme", str(readme)]


def test_the_docs_and_the_readme_table_come_from_the_json_documents(tmp_path):
    results, docs, readme = write_fixtures(
        tmp_path,
        {"rehearsal-n1000.json": REHEARSAL, "bench_recommend.json": RECOMMEND, "results_table.json": RESULTS},
    )
    run = report(*options(results, docs, readme))
    assert run.returncode == 0, run.stderr

    benchmarks = (docs / "benchmarks.md").read_text()
    pipeline = (docs / "results.md").read_text()
    written = readme.read_text()
    for text in (benchmarks, pipeline, written):
        assert COMMIT[:7] not in text and "fedcba9" not in text, "a commit hash is shown"
    # Each run names its command, its date and its machine (CPU, cores, load) above its tables.
    assert "`python benchmarks/rehearsal.py --clips 1000`" in benchmarks
    assert "2025-06-01 10:00 UTC" in benchmarks
    assert "Test CPU Model 9000 @ 3.00GHz, 2 cores, load 1.02 → 1.87" in benchmarks
    assert "Test CPU Model 9000 @ 3.00GHz, 2 cores, load 3.50 → 4.25" in benchmarks
    assert "## rehearsal-n1000" in benchmarks and "## bench_recommend" in benchmarks
    assert "results_table" not in benchmarks
    # The generic tables: a list of dicts with differing keys (a nested dict as dotted columns),
    # a dict of dicts as rows, the scalars as figure/value rows; 3 significant digits, None blank.
    assert "| stage | seconds | clips/s | peak tree RSS (MiB) | steps › first s |" in benchmarks
    assert "| convert | 42.4 | 23.6 | 300 |  |" in benchmarks
    assert "| train_keras@cnn1d | 203 |  | 3510 | 9.10 |" in benchmarks
    assert "| dims | build s | query (ms) |" in benchmarks
    assert "| 518 | 3.14 | 0.0234 |" in benchmarks and "| 200 | 0.520 |  |" in benchmarks
    assert "| clips | 1000 |" in benchmarks and "| disk › workspace | 3.61 GB |" in benchmarks
    assert "| complete | yes |" in benchmarks

    assert "## results_table" in pipeline and "`python benchmarks/results_table.py P" in pipeline
    assert "Test CPU Model 9000 @ 3.00GHz, 2 cores, load 0.50 → 0.75" in pipeline
    header = "| model | test accuracy | macro-F1 | unit | unit accuracy | training (s) | epochs |"
    assert header in pipeline and "| svm | 0.750 | 0.703 |  |  | 6.88 |  |" in pipeline
    assert "| test clips | 20 |" in pipeline

    # README: the block between the markers replaced, every other line as it was.
    before, _, rest = README.partition("<!-- results:begin -->\n")
    _, _, after = rest.partition("<!-- results:end -->\n")
    assert written.startswith(before + "<!-- results:begin -->\n") and written.endswith(
        "<!-- results:end -->\n" + after
    )
    block = written[len(before) : len(written) - len(after)]
    assert "an old table" not in block
    assert header in block and "| cnn1d | 0.200 | 0.147 | window | 0.128 | 256 | 15 |" in block
    assert "`python benchmarks/results_table.py P" in block
    assert "Test CPU Model 9000 @ 3.00GHz, 2 cores, load 0.50 → 0.75" in block

    # Run again: nothing changes, and --check agrees.
    assert report(*options(results, docs, readme)).returncode == 0
    assert (docs / "benchmarks.md").read_text() == benchmarks and readme.read_text() == written
    check = report(*options(results, docs, readme), "--check")
    assert check.returncode == 0, check.stderr


def test_check_names_the_stale_file_and_writes_nothing(tmp_path):
    results, docs, readme = write_fixtures(tmp_path, {"rehearsal.json": REHEARSAL, "results_table.json": RESULTS})
    assert report(*options(results, docs, readme)).returncode == 0
    stale = (docs / "benchmarks.md").read_text().replace("23.6", "99.9")
    (docs / "benchmarks.md").write_text(stale)
    check = report(*options(results, docs, readme), "--check")
    assert check.returncode == 1
    assert len(check.stderr.strip().splitlines()) == 1 and str(docs / "benchmarks.md") in check.stderr
    assert str(docs / "results.md") not in check.stderr and str(readme) not in check.stderr
    assert (docs / "benchmarks.md").read_text() == stale, "--check wrote the file"

    # A new document makes the docs stale too; a README table edited by hand makes the README stale.
    (results / "bench_recommend.json").write_text(json.dumps(RECOMMEND))
    readme.write_text(readme.read_text().replace("| svm | 0.750", "| svm | 0.800"))
    check = report(*options(results, docs, readme), "--check")
    assert check.returncode == 1 and str(readme) in check.stderr and str(docs / "results.md") not in check.stderr
    assert not (docs / ".benchmarks.md.partial").exists()


def test_without_results_the_pages_say_how_to_record_them(tmp_path):
    results, docs, readme = write_fixtures(tmp_path, {})
    for folder in (results, tmp_path / "missing"):
        run = report(*options(folder, docs, readme))
        assert run.returncode == 0, run.stderr
        assert "No benchmark results are recorded yet" in (docs / "benchmarks.md").read_text()
        assert "No results are recorded yet" in (docs / "results.md").read_text()
        assert "python -m benchmarks.report" in (docs / "results.md").read_text()
        assert "No results are recorded yet" in readme.read_text() and "an old table" not in readme.read_text()


def test_a_document_that_is_not_a_record_or_a_readme_without_markers_is_refused(tmp_path):
    results, docs, readme = write_fixtures(tmp_path, {"odd.json": {"figures": {}}})
    run = report(*options(results, docs, readme))
    assert run.returncode == 1 and "odd.json" in run.stderr and "missing benchmark" in run.stderr
    assert not docs.exists()

    (results / "odd.json").unlink()
    readme.write_text("# A project\n\nNo markers here.\n")
    run = report(*options(results, docs, readme))
    assert run.returncode == 1 and str(readme) in run.stderr and "<!-- results:begin -->" in run.stderr
    assert readme.read_text() == "# A project\n\nNo markers here.\n"


def test_the_committed_docs_are_what_the_report_writes():
    """docs/results.md, docs/benchmarks.md and README's table must be regenerated with the JSON they come from."""
    check = report("--check")
    assert check.returncode == 0, f"{check.stderr.strip()}\n(run `python -m benchmarks.report` and commit the result)"


def test_the_readme_and_docs_name_no_commit():
    """History lives in git: no word of README.md or docs/ that looks like a hash names a commit."""
    import re

    root = Path(__file__).resolve().parents[1]
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    words = {word for page in pages for word in re.findall(r"\b[0-9a-f]{7,40}\b", page.read_text())}
    commits = [
        word
        for word in sorted(words)
        if subprocess.run(["git", "cat-file", "-e", f"{word}^{{commit}}"], cwd=root, capture_output=True).returncode
        == 0
    ]
    assert commits == [], f"README.md or docs/ name the commits {commits}: say what changed instead (git log has when)"
