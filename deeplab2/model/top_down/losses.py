"""Mask R-CNN losses (SPEC_TOP_DOWN.md section 1), one value per image.

Every loss returns a [B] vector of per-image losses, like the library's pixel
losses; the trainer averages them over the global batch. Normalizations:
- RPN: objectness BCE over the sampled anchors and box regression over the
  positive ones, each summed and divided by `num_samples` (256), however many
  anchors were actually sampled ("each sum / (256 x images)" over a batch).
- Box head: softmax CE averaged over the sampled RoIs, and box regression of
  the foreground RoIs' GT-class deltas summed and divided by the same count.
- Mask head: BCE of the GT-class channel averaged over foreground RoIs x 28 x 28.
An image without a valid sample or without foreground contributes 0, never NaN.
Box regression is smooth-L1 with `beta`; beta 0 (default, detectron2) is L1
(SPEC section 7, item 11). All compile with XLA and accept bfloat16 outputs.
"""
from typing import Dict, Mapping, Union

import tensorflow as tf

from deeplab2.model.top_down import sampling
from deeplab2.model.top_down.boxes import RPN_WEIGHTS
from deeplab2.model.top_down.roi_targets import RoITargets, encode_targets

RPN_OBJECTNESS_LOSS = "rpn_objectness_loss"
RPN_BOX_LOSS = "rpn_box_loss"
BOX_CLASSIFICATION_LOSS = "box_classification_loss"
BOX_REGRESSION_LOSS = "box_regression_loss"
MASK_LOSS = "mask_loss"

PerLevel = Mapping[Union[int, str], tf.Tensor]


def concat_levels(per_level: PerLevel) -> tf.Tensor:
    """Concatenates RPNHead outputs {level: [B, N_l, ...]} along axis 1, lowest level first.

    Levels are ints l or "p<l>" strings; the result lines up with `anchors.fpn_anchors`.
    """
    levels = sorted(per_level, key=lambda level: int(str(level).lstrip("p")))
    return tf.concat([per_level[level] for level in levels], axis=1)


def smooth_l1(difference: tf.Tensor, beta: float) -> tf.Tensor:
    """Elementwise smooth-L1: 0.5 d^2 / beta if |d| < beta, else |d| - 0.5 beta; L1 at beta 0."""
    absolute = tf.abs(difference)
    if beta <= 0.0:
        return absolute
    return tf.where(absolute < beta, 0.5 * tf.square(difference) / beta, absolute - 0.5 * beta)


def rpn_losses(objectness_logits: Union[tf.Tensor, PerLevel],
               box_deltas: Union[tf.Tensor, PerLevel], anchors: tf.Tensor,
               gt_boxes: tf.Tensor, gt_valid: tf.Tensor, seed: tf.Tensor, *,
               beta: float = 0.0, match_rule: sampling.MatchRule = sampling.RPN_MATCH,
               sample_rule: sampling.SampleRule = sampling.RPN_SAMPLE) -> Dict[str, tf.Tensor]:
    """Per-image RPN losses {RPN_OBJECTNESS_LOSS, RPN_BOX_LOSS}, each [B].

    Anchors are matched to the GT with `match_rule` (IoU >= 0.7 positive, < 0.3
    negative, each GT's best anchors positive) and `sample_rule.num_samples`
    (256, <= 50% positive) are drawn. Without valid GT every sampled anchor is
    negative and the box loss is 0.

    Args:
        objectness_logits: [B, A], or RPNHead's {level: [B, A_l]}.
        box_deltas: [B, A, 4] (dx, dy, dw, dh), or RPNHead's {level: [B, A_l, 4]}.
        anchors: [A, 4] `anchors.fpn_anchors` of the padded image size.
        gt_boxes: [B, G, 4]; gt_valid: [B, G] bool.
        seed: [2] int32 seed of the stateless sampling, new every step.
        beta: smooth-L1 beta of the box loss (0 = L1).
        match_rule, sample_rule: the matching and sampling rules.
    """
    if isinstance(objectness_logits, Mapping):
        objectness_logits = concat_levels(objectness_logits)
    if isinstance(box_deltas, Mapping):
        box_deltas = concat_levels(box_deltas)
    num_logits, num_anchors = objectness_logits.shape[1], anchors.shape[0]
    if None not in (num_logits, num_anchors) and num_logits != num_anchors:
        raise ValueError(f"{num_logits} objectness logits per image for {num_anchors} anchors")
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    match = sampling.match_boxes(anchors, gt_boxes, gt_valid, match_rule)
    sample = sampling.sample_balanced(match.labels, sample_rule, seed)
    positive = sample.valid & (tf.gather(match.labels, sample.indices, batch_dims=1)
                               == sampling.POSITIVE)
    logits = tf.cast(tf.gather(objectness_logits, sample.indices, batch_dims=1), tf.float32)
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.cast(positive, tf.float32), logits=logits)
    matched = tf.gather(gt_boxes, tf.gather(match.gt_index, sample.indices, batch_dims=1),
                        batch_dims=1)
    targets = encode_targets(matched, tf.gather(anchors, sample.indices), positive, RPN_WEIGHTS)
    deltas = tf.cast(tf.gather(box_deltas, sample.indices, batch_dims=1), tf.float32)
    regression = tf.where(positive[..., None], smooth_l1(deltas - targets, beta), 0.0)
    return {
        RPN_OBJECTNESS_LOSS: tf.reduce_sum(tf.where(sample.valid, cross_entropy, 0.0), axis=1)
                             / sample_rule.num_samples,
        RPN_BOX_LOSS: tf.reduce_sum(regression, axis=[1, 2]) / sample_rule.num_samples,
    }


def _per_image(outputs: tf.Tensor, slots: tf.Tensor, rank: int) -> tf.Tensor:
    """float32 [B, S, ...] head outputs of rank `rank`, from [B, S, ...] or flat [B * S, ...].

    slots: [B, S], giving B and S.
    """
    if outputs.shape.rank == rank - 1:
        outputs = tf.reshape(outputs, tf.concat([tf.shape(slots), tf.shape(outputs)[1:]], 0))
    elif outputs.shape.rank != rank:
        raise ValueError(f"Expected head outputs of rank {rank} or {rank - 1}, got "
                         f"shape {outputs.shape}")
    return tf.cast(outputs, tf.float32)


def box_head_losses(class_logits: tf.Tensor, box_deltas: tf.Tensor, targets: RoITargets, *,
                    beta: float = 0.0) -> Dict[str, tf.Tensor]:
    """Per-image box-head losses {BOX_CLASSIFICATION_LOSS, BOX_REGRESSION_LOSS}, each [B].

    Args:
        class_logits: [B, S, K + 1] (or BoxHead's [B * S, K + 1]), column 0 background.
        box_deltas: [B, S, 4K] (or [B * S, 4K]), class k at columns 4(k - 1) .. 4k - 1.
        targets: `roi_targets.sample_rois` of the same RoIs.
        beta: smooth-L1 beta of the box loss (0 = L1).
    """
    logits = _per_image(class_logits, targets.classes, 3)
    deltas = _per_image(box_deltas, targets.classes, 3)
    deltas = tf.reshape(deltas, tf.concat([tf.shape(deltas)[:2], [-1, 4]], axis=0))
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets.classes,
                                                                   logits=logits)
    class_deltas = tf.gather(deltas, tf.maximum(targets.classes - 1, 0), batch_dims=2)
    regression = tf.where(targets.foreground[..., None],
                          smooth_l1(class_deltas - targets.box_targets, beta), 0.0)
    count = tf.reduce_sum(tf.cast(targets.valid, tf.float32), axis=1)
    return {
        BOX_CLASSIFICATION_LOSS: tf.math.divide_no_nan(
            tf.reduce_sum(tf.where(targets.valid, cross_entropy, 0.0), axis=1), count),
        BOX_REGRESSION_LOSS: tf.math.divide_no_nan(tf.reduce_sum(regression, axis=[1, 2]),
                                                   count),
    }


def mask_loss(mask_logits: tf.Tensor, mask_targets: tf.Tensor, classes: tf.Tensor,
              foreground: tf.Tensor) -> tf.Tensor:
    """[B] mean BCE of the GT-class mask logits over foreground RoIs x mask pixels.

    Args:
        mask_logits: [B, F, M, M, K] (or MaskHead's [B * F, M, M, K]); channel
            k - 1 is thing class k.
        mask_targets: [B, F, M, M] 0/1 (`roi_targets.mask_targets`).
        classes: [B, F] int32 target classes of the RoIs (1..K where foreground).
        foreground: [B, F] bool; other RoIs do not count.
    """
    logits = _per_image(mask_logits, classes, 5)
    logits = tf.gather(logits, tf.maximum(classes - 1, 0), axis=4, batch_dims=2)
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.cast(mask_targets, tf.float32), logits=logits)
    total = tf.reduce_sum(tf.where(foreground[..., None, None], cross_entropy, 0.0),
                          axis=[1, 2, 3])
    pixels = tf.cast(tf.reduce_prod(tf.shape(logits)[2:]), tf.float32)
    return tf.math.divide_no_nan(
        total, tf.reduce_sum(tf.cast(foreground, tf.float32), axis=1) * pixels)
