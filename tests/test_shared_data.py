"""A test that needs ../shared/data skips without it, with the reason, and fails under CI=true."""

from __future__ import annotations

import pytest

from tests.support.shared_data import require_shared_data, under_ci


def test_a_folder_with_the_audio_is_returned(tmp_path):
    (tmp_path / "gtzan_mini").mkdir()
    assert require_shared_data(tmp_path, {"CI": "true"}) == tmp_path


@pytest.mark.parametrize("environ", [{}, {"CI": "false"}, {"CI": ""}, {"CI": "1"}])
def test_outside_ci_a_missing_folder_skips_naming_it(tmp_path, environ):
    missing = tmp_path / "shared" / "data"
    with pytest.raises(pytest.skip.Exception, match="needs the real audio of ../shared/data") as skipped:
        require_shared_data(missing, environ)
    assert str(missing) in str(skipped.value)


@pytest.mark.parametrize("value", ["true", "TRUE"])
def test_under_ci_a_missing_folder_fails(tmp_path, value):
    (tmp_path / "data").mkdir()  # present but without the audio
    with pytest.raises(pytest.fail.Exception, match="CI=true, so its absence is a failure") as failed:
        require_shared_data(tmp_path / "data", {"CI": value})
    assert str(tmp_path / "data") in str(failed.value)
    assert under_ci({"CI": value})
