"""compile_librosa_gufuncs covers every cached gufunc of librosa (numba issue 10128), and a test
process that crashes ends the run with a failure instead of hanging it (pytest-xdist)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import librosa
import pytest

from genreclf.features import librosa_cache
from tests.support.helpers import ROOT, subprocess_env

LIBROSA_DIR = Path(librosa.__file__).parent


def is_cached_guvectorize(decorator: ast.expr) -> bool:
    if not isinstance(decorator, ast.Call):
        return False
    func = decorator.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    cached = any(
        k.arg == "cache" and isinstance(k.value, ast.Constant) and k.value.value is True for k in decorator.keywords
    )
    return name == "guvectorize" and cached


def cached_gufuncs() -> dict[str, list[tuple[str, int]]]:
    """librosa's modules with a guvectorize(cache=True) function: module -> [(function, line)],
    the line of its first decorator (the code object's first line, which names its cache files)."""
    found: dict[str, list[tuple[str, int]]] = {}
    for path in sorted(LIBROSA_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and any(map(is_cached_guvectorize, node.decorator_list)):
                module = ".".join(("librosa", *path.relative_to(LIBROSA_DIR).with_suffix("").parts))
                first_line = node.decorator_list[0].lineno
                found.setdefault(module.removesuffix(".__init__"), []).append((node.name, first_line))
    return found


def test_the_module_list_is_every_librosa_module_with_a_cached_gufunc():
    found = cached_gufuncs()
    assert "librosa.core.pitch" in found  # the scan finds what it looks for
    assert sorted(found) == sorted(librosa_cache.GUFUNC_MODULES), (
        f"librosa {librosa.__version__} declares cached gufuncs in {sorted(found)}: "
        "list exactly those in genreclf/features/librosa_cache.py GUFUNC_MODULES"
    )


@pytest.mark.slow
def test_the_call_writes_both_cache_files_of_each_gufunc_of_the_listed_modules(tmp_path, monkeypatch):
    """In a fresh process with an empty NUMBA_CACHE_DIR and only librosa.core.audio listed, the
    call leaves the cache index of its gufunc and of the guf- wrapper, and none of beat's: the
    processes started later load what the listed modules declare instead of compiling it."""
    code = (
        "from genreclf.features import librosa_cache as c; "
        "c.GUFUNC_MODULES = ('librosa.core.audio',); c.compile_librosa_gufuncs()"
    )
    env = dict(subprocess_env(), NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=600)
    index_files = {p.name for p in tmp_path.rglob("*.nbi")}
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    for name, line in cached_gufuncs()["librosa.core.audio"]:
        for prefix in ("", "guf-"):
            assert f"{prefix}audio.{name}-{line}.{python}.nbi" in index_files, sorted(index_files)
    assert not [name for name in index_files if "beat." in name], sorted(index_files)


@pytest.mark.slow
def test_a_crashed_test_process_fails_the_run_instead_of_hanging_it(tmp_path):
    """pytest.ini's options under pytest-xdist (--dist loadfile): a test process that dies (a
    segmentation fault in a native library) is reported as a failure and the run ends; with
    the default worker restarts, pytest-xdist 3.8 can wait for ever."""
    (tmp_path / "pytest.ini").write_text((ROOT / "pytest.ini").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_crash.py").write_text(
        textwrap.dedent("""
            import os, signal
            def test_before(): pass
            def test_crash(): os.kill(os.getpid(), signal.SIGSEGV)
            def test_after(): pass
        """)
    )
    for name in ("test_a.py", "test_b.py", "test_c.py"):
        (tmp_path / "tests" / name).write_text("import time\n\ndef test_sleep(): time.sleep(1)\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--durations=0"],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stdout[-3000:]
    assert "crashed while running 'tests/test_crash.py::test_crash'" in run.stdout, run.stdout[-3000:]
