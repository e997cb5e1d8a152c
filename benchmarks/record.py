"""What every benchmark writes: one JSON document with the machine, the command and the figures.

A benchmark calls ``start()`` before its work and ``write(path, run, figures)`` after it:

    run = record.start("bench_features")
    ... measure ...
    record.write(args.json, run, {"clips_per_s": 12.3, ...})

The document (``SCHEMA`` names its top-level keys) holds:

- ``benchmark``: the script's name; ``command``: the command line, as typed;
- ``date``: when it started (UTC, ISO 8601); ``commit``: the checked-out commit (null outside git);
- ``machine``: the CPU model, the core count, the total memory, the OS;
- ``load_average``: the 1-minute load average when the work started and when it ended;
- ``seconds``: the wall time of the whole run; ``figures``: the benchmark's own results.

``python -m benchmarks.report`` turns these documents into docs/benchmarks.md and docs/results.md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ("benchmark", "command", "date", "commit", "machine", "load_average", "seconds", "figures")
MACHINE_KEYS = ("cpu", "cores", "memory_gib", "system")


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo (Linux) or the platform module says it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return round(pages * page_size / 2**30, 1)


def machine() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "system": f"{platform.system()} {platform.release()}",
    }


def current_commit(root: Path = ROOT) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def command_line(argv: list[str] | None = None) -> str:
    """The command as one would type it again from the repository root."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0])
    if script.suffix == ".py" and script.is_file():
        try:
            argv[0] = script.resolve().relative_to(ROOT).as_posix()
        except ValueError:
            argv[0] = str(script)
    return shlex.join(["python", *argv])


@dataclass
class Run:
    benchmark: str
    command: str
    date: str
    started: float = field(repr=False)
    load_at_start: float


def start(benchmark: str, argv: list[str] | None = None) -> Run:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return Run(benchmark, command_line(argv), now.isoformat(), time.perf_counter(), round(os.getloadavg()[0], 2))


def document(run: Run, figures: dict) -> dict:
    return {
        "benchmark": run.benchmark,
        "command": run.command,
        "date": run.date,
        "commit": current_commit(),
        "machine": machine(),
        "load_average": {"start": run.load_at_start, "end": round(os.getloadavg()[0], 2)},
        "seconds": round(time.perf_counter() - run.started, 3),
        "figures": figures,
    }


def write(path: Path | str | None, run: Run, figures: dict) -> dict:
    """The run's document; written to ``path`` (atomically: a temporary file renamed) unless None."""
    doc = document(run, figures)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
        partial.replace(path)
        print(f"wrote {path}", flush=True)
    return doc


def machine_line(doc: dict) -> str:
    """'Intel(R) Xeon(R) Processor, 2 cores, load 1.02 → 1.87': how a report names a run's machine."""
    m, load = doc["machine"], doc["load_average"]
    return f"{m['cpu']}, {m['cores']} cores, load {load['start']:.2f} → {load['end']:.2f}"
