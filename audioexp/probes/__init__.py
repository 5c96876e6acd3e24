"""Embedding probes: per-speaker normalisation, speaker-independent splits, grid-searched classifiers."""
