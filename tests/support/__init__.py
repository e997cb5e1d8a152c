"""What the tests build on: scratch projects and stage runs, the end-to-end project, the GCS
emulator and its TLS proxy, the HTTP range server, and the builders of the FMA, Keras and
scikit-learn fixtures. Some are scripts too (their docstrings say how to run them)."""
