"""Mean IoU from a streaming confusion matrix.

Rows are ground-truth classes, columns predicted classes plus one last column
for predicted void: a labelled pixel predicted as void is a miss of its class
and a false positive of none. Ground-truth void pixels are left out. Classes
with an empty union (absent from ground truth and prediction) are reported as
None and left out of the mean.
"""
from typing import Dict, Optional, Sequence

import numpy as np


class ConfusionMatrix:
    """Streaming [K, K + 1] pixel confusion matrix of K classes."""

    def __init__(self, num_classes: int, keys: Optional[Sequence] = None,
                 evaluated: Optional[Sequence[bool]] = None):
        self.num_classes = num_classes
        self.keys = tuple(keys) if keys is not None else tuple(range(num_classes))
        self.evaluated = (np.ones(num_classes, bool) if evaluated is None
                          else np.asarray(evaluated, bool))
        self.matrix = np.zeros((num_classes, num_classes + 1), np.int64)

    def add(self, matrix: np.ndarray) -> None:
        """Adds a [K, K + 1] count matrix (e.g. `Overlaps.semantic_confusion`)."""
        self.matrix += matrix

    def update(self, gt: np.ndarray, pred: np.ndarray,
               ignore_label: int) -> None:
        """Adds semantic maps; `ignore_label` marks void in both (and any
        predicted value outside [0, K) is counted as void)."""
        gt = np.asarray(gt).reshape(-1).astype(np.int64)
        pred = np.asarray(pred).reshape(-1).astype(np.int64)
        if gt.shape != pred.shape:
            raise ValueError(f"semantic maps differ in size: ground truth "
                             f"{gt.size} pixels, prediction {pred.size}")
        labelled = gt != ignore_label
        gt, pred = gt[labelled], pred[labelled]
        if np.any((gt < 0) | (gt >= self.num_classes)):
            raise ValueError(f"ground-truth classes must lie in [0, "
                             f"{self.num_classes}) or be {ignore_label}")
        k = self.num_classes
        pred = np.where((pred < 0) | (pred >= k) | (pred == ignore_label), k,
                        pred)
        counts = np.bincount(gt * (k + 1) + pred, minlength=k * (k + 1))
        self.add(counts.reshape(k, k + 1))

    def result(self) -> Dict:
        """{'miou': mean over classes with a non-empty union (None if none),
        'per_class': {key: IoU or None}}."""
        k = self.num_classes
        inter = np.diag(self.matrix[:, :k])
        union = self.matrix.sum(1) + self.matrix[:, :k].sum(0) - inter
        valid = self.evaluated & (union > 0)
        iou = inter / np.maximum(union, 1)
        return {
            "miou": float(iou[valid].mean()) if valid.any() else None,
            "per_class": {key: float(iou[i]) if valid[i] else None
                          for i, key in enumerate(self.keys)
                          if self.evaluated[i]},
        }
