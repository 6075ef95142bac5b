"""The Panoptic FPN loss (paper 003 section 3.2; SPEC_TOP_DOWN.md section 2):

    L = instance_weight * (L_rpn_objectness + L_rpn_box + L_box_cls + L_box_reg + L_mask)
        + semantic_weight * L_semantic,

each a [batch] vector of per-image losses (`top_down.losses` for the Mask R-CNN
terms; the semantic term is the softmax cross-entropy averaged over each
image's labeled pixels at input resolution). Every term is also reported.
The RPN anchors are sampled here, with the step's RPN seed
(`targets.sampling_seeds`); the RoIs were sampled by the model.
"""
from typing import Dict

import tensorflow as tf

from deeplab2 import common
from deeplab2.model.meta import TOTAL_LOSS
from deeplab2.model.panoptic_fpn import model as model_lib
from deeplab2.model.panoptic_fpn.targets import sampling_seeds
from deeplab2.model.top_down import instance_targets as gt
from deeplab2.model.top_down import losses
from deeplab2.model.top_down.anchors import STANDARD_ANCHORS, AnchorSet
from deeplab2.model.top_down.roi_targets import RoITargets

SEMANTIC_LOSS = "semantic_loss"
INSTANCE_LOSSES = (losses.RPN_OBJECTNESS_LOSS, losses.RPN_BOX_LOSS,
                   losses.BOX_CLASSIFICATION_LOSS, losses.BOX_REGRESSION_LOSS,
                   losses.MASK_LOSS)


def semantic_cross_entropy(target: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """[B] mean softmax cross-entropy over each image's pixels with target >= 0
    (0 for an image without any)."""
    labeled = target >= 0
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.where(labeled, target, 0), logits=tf.cast(logits, tf.float32))
    total = tf.reduce_sum(tf.where(labeled, cross_entropy, 0.0), axis=[1, 2])
    count = tf.reduce_sum(tf.cast(labeled, tf.float32), axis=[1, 2])
    return tf.math.divide_no_nan(total, count)


class PanopticFPNLoss:
    """(batch with targets, training outputs) -> per-image losses with TOTAL_LOSS.

    Args:
        instance_weight, semantic_weight: lambda_i and lambda_s.
        box_regression_beta: smooth-L1 beta of the RPN and box regression (0 = L1).
        anchor_set: the model's anchors (`PanopticFPN.anchor_set`).
    """

    def __init__(self, *, instance_weight: float, semantic_weight: float,
                 box_regression_beta: float = 0.0, anchor_set: AnchorSet = STANDARD_ANCHORS):
        self.instance_weight = instance_weight
        self.semantic_weight = semantic_weight
        self.box_regression_beta = box_regression_beta
        self.anchor_set = anchor_set

    def semantic_loss(self, targets: Dict[str, tf.Tensor],
                      outputs: Dict[str, tf.Tensor]) -> tf.Tensor:
        """[B] semantic term; a family with another one (Seamless) overrides it."""
        return semantic_cross_entropy(targets[common.SEMANTIC_TARGET],
                                      outputs[common.SEMANTIC_LOGITS])

    def __call__(self, targets: Dict[str, tf.Tensor],
                 outputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        beta = self.box_regression_beta
        height, width = outputs[common.SEMANTIC_LOGITS].shape[1:3]
        result = losses.rpn_losses(
            outputs[model_lib.RPN_LOGITS], outputs[model_lib.RPN_DELTAS],
            self.anchor_set.anchors(height, width), targets[gt.GT_BOXES], targets[gt.GT_VALID],
            sampling_seeds(targets[common.SAMPLE_SEED]).rpn, beta=beta)
        rois = RoITargets(boxes=None, valid=outputs[model_lib.ROI_VALID],
                          classes=outputs[model_lib.ROI_CLASSES],
                          box_targets=outputs[model_lib.ROI_BOX_TARGETS],
                          gt_panoptic_ids=None, foreground=outputs[model_lib.ROI_FOREGROUND])
        result.update(losses.box_head_losses(outputs[model_lib.BOX_CLASS_LOGITS],
                                             outputs[model_lib.BOX_DELTAS], rois, beta=beta))
        result[losses.MASK_LOSS] = losses.mask_loss(
            outputs[model_lib.MASK_LOGITS], outputs[model_lib.MASK_TARGETS],
            outputs[model_lib.MASK_CLASSES], outputs[model_lib.MASK_FOREGROUND])
        result[SEMANTIC_LOSS] = self.semantic_loss(targets, outputs)
        result[TOTAL_LOSS] = (self.instance_weight * tf.add_n([result[k] for k in INSTANCE_LOSSES])
                              + self.semantic_weight * result[SEMANTIC_LOSS])
        return result
