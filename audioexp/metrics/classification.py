"""torchmetrics collections for single-label classification, one per stage."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix


def classification_metrics(num_classes: int, prefix: str, top_k: tuple[int, ...] = ()) -> MetricCollection:
    """``acc`` (micro accuracy), ``uar`` (unweighted average recall) and ``top{k}`` accuracies."""
    metrics = {
        "acc": MulticlassAccuracy(num_classes=num_classes, average="micro"),
        "uar": MulticlassAccuracy(num_classes=num_classes, average="macro"),
    }
    for k in top_k:
        if 1 < k < num_classes:
            metrics[f"top{k}"] = MulticlassAccuracy(num_classes=num_classes, top_k=k, average="micro")
    return MetricCollection(metrics, prefix=prefix)


def confusion_matrix_metric(num_classes: int) -> MulticlassConfusionMatrix:
    return MulticlassConfusionMatrix(num_classes=num_classes)
