"""Scoring predictions: accuracy, macro-F1, per-class scores, confusion data."""
