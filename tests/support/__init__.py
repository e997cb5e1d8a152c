"""Scripts that make or check test fixtures; the tests import their functions."""
