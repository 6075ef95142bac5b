"""The UPSNet loss (paper 001 sections 3.1 and 4; SPEC_TOP_DOWN.md section 3):

    L = L_rpn_objectness + L_rpn_box + L_box_cls + L_box_reg + L_mask
        + semantic_weight * (L_semantic + L_roi / 5) + panoptic_weight * L_panoptic,

per image. The Mask R-CNN and semantic terms are Panoptic FPN's (instance
weight 1; the semantic cross-entropy over every class at input resolution).
- L_roi: the stride-4 semantic logits pooled by RoIAlign on each ground-truth
  box to 28 x 28, against the semantic target sampled (nearest) at the bin
  centres; softmax cross-entropy over the labeled bins of the image's boxes.
- L_panoptic: softmax cross-entropy of the training panoptic logits Z against
  `panoptic_head.panoptic_targets` of the label at stride 4 (pixel 4i + 2,
  nearest with half-pixel centres), averaged over the labeled pixels.
"""
from typing import Dict, Sequence

import tensorflow as tf

from deeplab2 import common
from deeplab2.model.meta import TOTAL_LOSS
from deeplab2.model.panoptic_fpn.loss import PanopticFPNLoss, semantic_cross_entropy
from deeplab2.model.top_down import instance_targets as gt
from deeplab2.model.top_down.roi_align import roi_align
from deeplab2.model.top_down.sampling import rows_in_use
from deeplab2.model.upsnet import model as model_lib
from deeplab2.model.upsnet import panoptic_head
from deeplab2.model.upsnet.semantic_head import OUTPUT_STRIDE

ROI_SEMANTIC_LOSS = "roi_semantic_loss"
PANOPTIC_LOSS = "panoptic_loss"
# Bins per axis of the RoI loss (the mask head's resolution).
ROI_SIZE = 28


def roi_semantic_targets(semantic_target: tf.Tensor, boxes: tf.Tensor,
                         size: int = ROI_SIZE) -> tf.Tensor:
    """int32 [B, N, size, size]: the target at the pixel holding each bin centre
    of each [B, N, 4] box (x0, y0, x1, y1) (clipped to the image)."""
    height, width = tf.shape(semantic_target)[1], tf.shape(semantic_target)[2]
    steps = (tf.range(size, dtype=tf.float32) + 0.5) / size
    boxes = tf.cast(boxes, tf.float32)

    def centres(start, end, limit):
        position = start[..., None] + steps * (end - start)[..., None]
        return tf.clip_by_value(tf.cast(tf.floor(position), tf.int32), 0, limit - 1)

    rows = centres(boxes[..., 1], boxes[..., 3], height)
    columns = centres(boxes[..., 0], boxes[..., 2], width)
    index = rows[..., :, None] * width + columns[..., None, :]
    flat = tf.reshape(semantic_target, [tf.shape(semantic_target)[0], -1])
    return tf.gather(flat, index, batch_dims=1)


def roi_semantic_loss(stride4_logits: tf.Tensor, semantic_target: tf.Tensor,
                      boxes: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """[B] mean cross-entropy over the labeled bins of each image's valid boxes
    (0 for an image without any). The padding rows after the batch's last
    valid box are left out first (`sampling.rows_in_use`; none under XLA):
    they add nothing, and with COCO's 100 slots and a handful of instances
    they would be most of the pooling of 133 classes and of its gradient."""
    used = rows_in_use(valid)
    boxes, valid = boxes[:, :used], valid[:, :used]
    pooled = roi_align(tf.cast(stride4_logits, tf.float32), boxes, ROI_SIZE, OUTPUT_STRIDE)
    target = roi_semantic_targets(semantic_target, boxes)
    labeled = (target >= 0) & valid[:, :, None, None]
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.where(labeled, target, 0), logits=pooled)
    total = tf.reduce_sum(tf.where(labeled, cross_entropy, 0.0), axis=[1, 2, 3])
    count = tf.reduce_sum(tf.cast(labeled, tf.float32), axis=[1, 2, 3])
    return tf.math.divide_no_nan(total, count)


class UPSNetLoss:
    """(batch with targets, training outputs) -> per-image losses with TOTAL_LOSS.

    Args:
        semantic_weight, panoptic_weight: lambda_sem and lambda_pan; the RoI
            loss weighs lambda_sem / 5.
        stuff_class_ids, thing_class_ids, label_divisor: the dataset's.
        box_regression_beta: smooth-L1 beta of the RPN and box regression (0 = L1).
    """

    def __init__(self, *, semantic_weight: float, panoptic_weight: float,
                 stuff_class_ids: Sequence[int], thing_class_ids: Sequence[int],
                 label_divisor: int, box_regression_beta: float = 0.0):
        self.semantic_weight = semantic_weight
        self.panoptic_weight = panoptic_weight
        self.stuff_class_ids = tuple(stuff_class_ids)
        self.thing_class_ids = tuple(thing_class_ids)
        self.label_divisor = label_divisor
        self.mask_rcnn_and_semantic = PanopticFPNLoss(
            instance_weight=1.0, semantic_weight=semantic_weight,
            box_regression_beta=box_regression_beta)

    def __call__(self, targets: Dict[str, tf.Tensor],
                 outputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        result = self.mask_rcnn_and_semantic(targets, outputs)
        result[ROI_SEMANTIC_LOSS] = roi_semantic_loss(
            outputs[model_lib.SEMANTIC_LOGITS_STRIDE4], targets[common.SEMANTIC_TARGET],
            targets[gt.GT_BOXES], targets[gt.GT_VALID])
        half = OUTPUT_STRIDE // 2
        panoptic_target = panoptic_head.panoptic_targets(
            targets[common.PANOPTIC_LABEL][:, half::OUTPUT_STRIDE, half::OUTPUT_STRIDE],
            targets[gt.GT_PANOPTIC_IDS], outputs[model_lib.PANOPTIC_KEPT],
            stuff_class_ids=self.stuff_class_ids, thing_class_ids=self.thing_class_ids,
            label_divisor=self.label_divisor)
        result[PANOPTIC_LOSS] = semantic_cross_entropy(panoptic_target,
                                                       outputs[model_lib.PANOPTIC_LOGITS])
        result[TOTAL_LOSS] = (result[TOTAL_LOSS]
                              + self.semantic_weight / 5.0 * result[ROI_SEMANTIC_LOSS]
                              + self.panoptic_weight * result[PANOPTIC_LOSS])
        return result
