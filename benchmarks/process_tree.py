"""Peak memory of a process and all its descendants, sampled in a background thread.

Not a benchmark: a module that bench_data.py, bench_sklearn_memory.py and rehearsal_stages.py import.

    with peak_rss(pid) as peak:        # pid None: this process
        ...                            # the work, e.g. a pool or a `dvc repro`
    peak.tree_rss, peak.root_rss, peak.leaf_rss

The tree's RSS is the sum over the process and every descendant at one instant, so
a pool's workers count together; a sample every ``interval`` seconds can miss a peak
shorter than that.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import psutil

SAMPLE_SECONDS = 0.2


@dataclass
class TreePeak:
    """The largest values seen: the summed RSS of the tree, the root's, and one leaf process's."""

    tree_rss: int = 0
    root_rss: int = 0
    leaf_rss: int = 0  # largest process without children: a pool worker, or a stage run alone
    processes: int = 0  # processes in the tree at the tree's peak
    samples: int = 0


def sample_tree(root: psutil.Process, peak: TreePeak) -> None:
    """Read the RSS of ``root`` and its descendants once, and raise ``peak`` where it is exceeded."""
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:  # the root has ended
        return
    total = counted = leaf = 0
    for process in processes:
        try:
            rss = process.memory_info().rss
            has_children = bool(process.children())
        except psutil.Error:  # ended between the listing and the reading
            continue
        total += rss
        counted += 1
        if process.pid == root.pid:
            peak.root_rss = max(peak.root_rss, rss)
        if not has_children:
            leaf = max(leaf, rss)
    peak.samples += 1
    if total > peak.tree_rss:
        peak.tree_rss, peak.processes = total, counted
    peak.leaf_rss = max(peak.leaf_rss, leaf)


@contextlib.contextmanager
def peak_rss(pid: int | None = None, interval: float = SAMPLE_SECONDS) -> Iterator[TreePeak]:
    """Sample the tree of ``pid`` (None: this process) every ``interval`` s while the block runs."""
    root, peak, stop = psutil.Process(pid), TreePeak(), threading.Event()

    def keep_sampling() -> None:
        while not stop.is_set():
            sample_tree(root, peak)
            stop.wait(interval)

    thread = threading.Thread(target=keep_sampling, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
        sample_tree(root, peak)  # once more at the end: short work may fall between samples
