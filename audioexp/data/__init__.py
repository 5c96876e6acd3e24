"""Corpora: one module per corpus, plus manifests, audio reading, splits and miniature corpora."""
