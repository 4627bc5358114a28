"""Predict with a fitted scikit-learn tree ensemble in microseconds, not milliseconds.

A surrogate trial predicts one configuration at a time, and scikit-learn's ``predict`` spends
several milliseconds per call on input validation and dispatching one job per tree; three models
per trial made a simulated trial cost ~50 ms. This module copies the fitted trees into padded
arrays once and walks all trees at the same time with NumPy, so one prediction costs a few dozen
vectorised steps (the depth of the deepest tree). The result equals scikit-learn's own
prediction (tested), including its float32 comparison of features against thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class FastForest:
    """Padded node arrays of every tree: (trees, nodes) each; leaves have ``left == -1``."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray  # (trees, nodes, outputs): mean for regression, class fractions otherwise
    classes: np.ndarray | None = None

    @classmethod
    def from_sklearn(cls, model: Any) -> FastForest:
        trees = [est.tree_ for est in model.estimators_]
        n_nodes = max(t.node_count for t in trees)
        n_out = trees[0].value.shape[2] if hasattr(model, "classes_") else 1
        shape = (len(trees), n_nodes)
        left = np.full(shape, -1, dtype=np.int64)
        right = np.full(shape, -1, dtype=np.int64)
        feature = np.zeros(shape, dtype=np.int64)
        threshold = np.zeros(shape, dtype=np.float64)
        value = np.zeros((*shape, n_out), dtype=np.float64)
        for i, t in enumerate(trees):
            n = t.node_count
            left[i, :n] = t.children_left
            right[i, :n] = t.children_right
            feature[i, :n] = np.maximum(t.feature, 0)
            threshold[i, :n] = t.threshold
            v = t.value[:, 0, :n_out] if n_out > 1 else t.value[:, 0, :1]
            if hasattr(model, "classes_"):
                v = v / np.maximum(v.sum(axis=1, keepdims=True), 1e-300)
            value[i, :n] = v
        classes = np.asarray(model.classes_) if hasattr(model, "classes_") else None
        return cls(left, right, feature, threshold, value, classes)

    def _leaves(self, x: np.ndarray) -> np.ndarray:
        """Leaf index of every (tree, row)."""
        x = np.asarray(x, dtype=np.float32).astype(np.float64)  # as scikit-learn compares
        n_trees = self.left.shape[0]
        rows = np.arange(x.shape[0])
        trees = np.arange(n_trees)[:, None]
        node = np.zeros((n_trees, x.shape[0]), dtype=np.int64)
        while True:
            left = self.left[trees, node]
            inner = left >= 0
            if not inner.any():
                return node
            feat = self.feature[trees, node]
            go_left = x[rows[None, :], feat] <= self.threshold[trees, node]
            nxt = np.where(go_left, left, self.right[trees, node])
            node = np.where(inner, nxt, node)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Regression: the mean over trees of each row's leaf value."""
        node = self._leaves(x)
        trees = np.arange(self.left.shape[0])[:, None]
        return self.value[trees, node, 0].mean(axis=0)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Classification: class fractions averaged over trees, columns in ``classes`` order."""
        node = self._leaves(x)
        trees = np.arange(self.left.shape[0])[:, None]
        return self.value[trees, node, :].mean(axis=0)
