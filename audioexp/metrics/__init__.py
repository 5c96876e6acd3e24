"""Metrics: pure functions in :mod:`.functional`, torchmetrics collections beside them."""
