"""Regression metrics (D-GEX's gene-wise MAE)."""

from __future__ import annotations

import numpy as np


def mae_per_gene(y_true, y_pred) -> np.ndarray:
    """Mean absolute error of each output column (gene) over samples: `[T]`."""
    y_true = np.asarray(y_true, np.float64)
    y_pred = np.asarray(y_pred, np.float64)
    if y_true.shape != y_pred.shape or y_true.ndim != 2:
        raise ValueError(f"expected two [samples, genes] arrays of the same shape, got {y_true.shape}, {y_pred.shape}")
    return np.abs(y_true - y_pred).mean(axis=0)


def mean_gene_mae(y_true, y_pred) -> float:
    """D-GEX's metric: MAE per gene, averaged over genes (= `np.abs(Y - Y_hat).mean()`)."""
    return float(mae_per_gene(y_true, y_pred).mean())
