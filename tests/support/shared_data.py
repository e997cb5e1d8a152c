"""Where the real audio is: ../shared/data beside the repository, never committed.

A test that needs it asks for the ``shared_data`` fixture (or one built on it, such as
``gtzan_mini``). Outside CI a missing folder skips the test with the reason; under ``CI=true``
it fails the test, so that CI cannot pass with those tests left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.support.helpers import ROOT

SHARED_DATA = ROOT.parent / "shared" / "data"
MARKER_FOLDER = "gtzan_mini"  # present in every copy of ../shared/data


def under_ci(environ: Mapping[str, str]) -> bool:
    """Whether CI runs the tests: CI=true, as GitHub Actions and GitLab CI set it (tests/test_faults.py too)."""
    return environ.get("CI", "").strip().lower() == "true"


def require_shared_data(folder: Path, environ: Mapping[str, str]) -> Path:
    """``folder`` if it holds the real audio; else pytest.skip (outside CI) or pytest.fail (under CI)."""
    if (folder / MARKER_FOLDER).is_dir():
        return folder
    reason = (
        f"{folder} is missing (no {MARKER_FOLDER}/ in it): this test needs the real audio of "
        "../shared/data beside the repository (see ../shared/README.md)"
    )
    if under_ci(environ):
        pytest.fail(f"{reason}; CI=true, so its absence is a failure", pytrace=False)
    pytest.skip(reason)
