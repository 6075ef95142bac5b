"""The total Panoptic-DeepLab loss: 1.0 * semantic + 200 * center + 0.01 * offset.

`PanopticDeepLabLoss` is the Gin edge of the family's loss: its weights and the
bootstrapping fraction are bound there (`PanopticDeepLabLoss.center_weight`);
the ignore label and whether the model has an instance branch come from the
model.
"""
from typing import Dict

import gin
import tensorflow as tf

from deeplab2 import common
from deeplab2.losses.pixel_losses import (CenterHeatmapMSE, OffsetL1,
                                          WeightedBootstrappedCrossEntropy)
from deeplab2.model.meta import TOTAL_LOSS

SEMANTIC_LOSS = "semantic_loss"
CENTER_LOSS = "center_loss"
OFFSET_LOSS = "offset_loss"


@gin.configurable(denylist=["ignore_label", "semantic_only"])
class PanopticDeepLabLoss:
    """Combines the three losses; each is a [batch] vector of per-image losses.

    With `semantic_only=True` (a model without an instance branch) only the
    semantic loss counts.
    """

    def __init__(self, ignore_label: int, top_k_percent: float = 0.2,
                 semantic_weight: float = 1.0, center_weight: float = 200.0,
                 offset_weight: float = 0.01, semantic_only: bool = False):
        self.semantic = WeightedBootstrappedCrossEntropy(ignore_label, top_k_percent)
        self.center = CenterHeatmapMSE()
        self.offset = OffsetL1()
        self.semantic_weight = semantic_weight
        self.center_weight = center_weight
        self.offset_weight = offset_weight
        self.semantic_only = semantic_only

    def __call__(self, targets: Dict[str, tf.Tensor],
                 outputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Per-image losses {semantic_loss, center_loss, offset_loss, total_loss}."""
        losses = {SEMANTIC_LOSS: self.semantic(targets[common.SEMANTIC_TARGET],
                                               outputs[common.SEMANTIC_LOGITS],
                                               targets[common.SEMANTIC_WEIGHTS])}
        total = self.semantic_weight * losses[SEMANTIC_LOSS]
        if not self.semantic_only and common.CENTER_HEATMAP in outputs:
            losses[CENTER_LOSS] = self.center(targets[common.CENTER_HEATMAP_TARGET],
                                              outputs[common.CENTER_HEATMAP],
                                              targets[common.CENTER_WEIGHTS])
            losses[OFFSET_LOSS] = self.offset(targets[common.OFFSET_TARGET],
                                              outputs[common.OFFSET],
                                              targets[common.OFFSET_WEIGHTS])
            total += (self.center_weight * losses[CENTER_LOSS]
                      + self.offset_weight * losses[OFFSET_LOSS])
        losses[TOTAL_LOSS] = total
        return losses
