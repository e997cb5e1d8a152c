"""genreclf: a small library for music genre classification.

It knows nothing of DVC: every function takes plain values and paths, and the
scripts in ``stages/`` read params.yaml and call it.
"""
