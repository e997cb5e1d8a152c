"""Not a benchmark: tests/support/plain_librosa.py (FMA's feature recipe in plain librosa) re-exported for
tests/test_features.py, which imports it from here; delete this file once that test imports tests.support."""

from tests.support.plain_librosa import init_plain_worker, plain_features, plain_frames, plain_wav_features

__all__ = ["init_plain_worker", "plain_features", "plain_frames", "plain_wav_features"]
