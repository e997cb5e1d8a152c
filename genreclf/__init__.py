"""genreclf: a small library for music genre classification.

It knows nothing of DVC: every function takes plain values and paths, and the
scripts in ``stages/`` read the pipeline's settings and call it. What one stage passes
to the next is defined once, in ``genreclf.artifacts``.
"""
