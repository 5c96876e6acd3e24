"""Metrics: pure functions first (``functional``, ``verification``), torchmetrics ``Metric`` s beside them."""
