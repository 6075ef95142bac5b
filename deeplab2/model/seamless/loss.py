"""The Seamless loss (paper 002 section 3.4; SPEC_TOP_DOWN.md section 4):
Panoptic FPN's Mask R-CNN terms (`panoptic_fpn.loss`) plus a semantic term
that, per image, averages the softmax cross-entropy of its worst
ceil(top_fraction * H * W) pixels at input resolution (top_fraction 0.25, the
paper's tau = 4 / (W H)); unlabeled pixels count as 0 loss. All weights 1 by
default.
"""
import math
from typing import Dict

import tensorflow as tf

from deeplab2 import common
from deeplab2.model.panoptic_fpn.loss import PanopticFPNLoss


def top_pixel_cross_entropy(target: tf.Tensor, logits: tf.Tensor,
                            top_fraction: float) -> tf.Tensor:
    """[B] per image, the mean softmax cross-entropy of the ceil(top_fraction
    * H * W) pixels with the largest one; pixels with target < 0 count 0.

    Args:
        target: int [B, H, W] class channel, negative where unlabeled.
        logits: [B, H, W, C] (any float type; the loss is float32).
        top_fraction: in (0, 1].
    """
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}.")
    labeled = target >= 0
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.where(labeled, target, 0), logits=tf.cast(logits, tf.float32))
    cross_entropy = tf.where(labeled, cross_entropy, 0.0)
    batch = tf.shape(cross_entropy)[0]
    flat = tf.reshape(cross_entropy, [batch, -1])
    num_pixels = flat.shape[1]
    if num_pixels is not None:
        count = max(1, math.ceil(top_fraction * num_pixels))
    else:
        count = tf.maximum(1, tf.cast(tf.math.ceil(
            top_fraction * tf.cast(tf.shape(flat)[1], tf.float32)), tf.int32))
    worst = tf.math.top_k(flat, k=count, sorted=False).values
    return tf.reduce_sum(worst, axis=1) / tf.cast(count, tf.float32)


class SeamlessLoss(PanopticFPNLoss):
    """`PanopticFPNLoss` whose semantic term keeps each image's worst pixels.

    Args:
        top_fraction: share of each image's pixels averaged (0.25).
        **kwargs: `PanopticFPNLoss`'s (weights, box regression beta, anchors).
    """

    def __init__(self, *, top_fraction: float = 0.25, **kwargs):
        super().__init__(**kwargs)
        self.top_fraction = top_fraction

    def semantic_loss(self, targets: Dict[str, tf.Tensor],
                      outputs: Dict[str, tf.Tensor]) -> tf.Tensor:
        return top_pixel_cross_entropy(targets[common.SEMANTIC_TARGET],
                                       outputs[common.SEMANTIC_LOGITS], self.top_fraction)
