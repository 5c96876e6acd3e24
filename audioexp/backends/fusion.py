"""Score-level fusion by logistic regression (as FoCal's linear fusion does).

Weights are trained on development scores (systems trained on train only) and applied to
evaluation scores (systems retrained on train + dev): ``s = b + sum_k w_k s_k``.
scikit-learn's ``LogisticRegression`` (L2 penalty, C large: ours) with class weights
balanced, so the fused score is a calibrated log-odds at a prior of 0.5.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LogisticRegressionFusion"]


class LogisticRegressionFusion:
    """Linear fusion of system scores.

    Parameters
    ----------
    C : float
        Inverse L2 strength (large: nearly unregularised).
    """

    def __init__(self, C: float = 1e4) -> None:
        self.C = C
        self.weights: np.ndarray | None = None
        self.bias: float = 0.0

    def fit(self, scores: np.ndarray, labels) -> "LogisticRegressionFusion":
        """``scores``: shape (trials, systems); ``labels``: 1 genuine, 0 spoof."""
        from sklearn.linear_model import LogisticRegression

        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 2:
            raise ValueError(f"scores must have shape (trials, systems), got {scores.shape}")
        model = LogisticRegression(C=self.C, class_weight="balanced", max_iter=1000).fit(scores, np.asarray(labels))
        self.weights, self.bias = model.coef_[0].copy(), float(model.intercept_[0])
        return self

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        if self.weights is None:
            raise RuntimeError("fit the fusion on development scores first")
        return np.asarray(scores, dtype=np.float64) @ self.weights + self.bias
