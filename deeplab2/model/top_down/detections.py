"""From head outputs to boxes, for one image, with static shapes for XLA.

- RPN proposals (SPEC_TOP_DOWN section 1, "Proposals"): per level, the top-k anchors
  by objectness are decoded, clipped and NMS-ed, then the best proposals over all
  levels are kept.
- Detections ("Inference"): per-class boxes of the box head's (RoI, class) pairs
  with score > 0.05, per-class NMS, the best 100.
Per-level (per-class) NMS followed by a global top-k is one class-aware NMS call
(nms.py), with the level (class) as the class. Outputs are padded with a validity mask.
"""
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from deeplab2.model.top_down import nms
from deeplab2.model.top_down.boxes import BOX_HEAD_WEIGHTS, RPN_WEIGHTS, clip, decode

ImageSize = Union[Tuple[int, int], tf.Tensor]


class Proposals(NamedTuple):
    """Proposals of one image, best first.

    boxes: [P, 4] float32 (x0, y0, x1, y1), no gradient; zeros past the valid rows.
    logits: [P] float32 objectness logits; 0 past the valid rows.
    valid: [P] bool.
    """
    boxes: tf.Tensor
    logits: tf.Tensor
    valid: tf.Tensor


class Detections(NamedTuple):
    """Detections of one image, best first; every field is 0 past the valid rows.

    boxes: [D, 4] float32 (x0, y0, x1, y1).
    scores: [D] float32 class probabilities.
    classes: [D] int32 in 1..K.
    roi_indices: [D] int32 row of the RoI each detection comes from.
    valid: [D] bool.
    """
    boxes: tf.Tensor
    scores: tf.Tensor
    classes: tf.Tensor
    roi_indices: tf.Tensor
    valid: tf.Tensor


def generate_proposals(objectness: Sequence[tf.Tensor], deltas: Sequence[tf.Tensor],
                       anchors: Sequence[tf.Tensor], image_size: ImageSize, *,
                       pre_nms_top_k: int = 1000, post_nms_top_k: int = 1000,
                       iou_threshold: float = 0.7, min_size: float = 0.0) -> Proposals:
    """RPN outputs of one image -> the best `post_nms_top_k` proposals.

    Args:
        objectness: per level, [N_l] logits (N_l static, or unknown when the
            image size is: see `_level_top_k`).
        deltas: per level, [N_l, 4] (dx, dy, dw, dh) for coder weights (1, 1, 1, 1).
        anchors: per level, [N_l, 4] boxes in the same order.
        image_size: (height, width) that boxes are clipped to.
        pre_nms_top_k: anchors kept per level before NMS (2000 in training, 1000 in test).
        post_nms_top_k: proposals kept over all levels.
        iou_threshold: NMS threshold within a level.
        min_size: proposals with width or height <= this are dropped.
    """
    boxes, logits, levels, real = [], [], [], []
    for level, (level_logits, level_deltas, level_anchors) in enumerate(
            zip(objectness, deltas, anchors)):
        top_logits, top, is_real = _level_top_k(level_logits, pre_nms_top_k)
        boxes.append(decode(tf.gather(level_deltas, top), tf.gather(level_anchors, top),
                             RPN_WEIGHTS))
        logits.append(top_logits)
        levels.append(tf.fill([top.shape[0]], level))
        real.append(is_real)
    boxes = clip(tf.concat(boxes, axis=0), image_size)
    logits = tf.concat(logits, axis=0)
    size = boxes[:, 2:] - boxes[:, :2]
    valid = tf.reduce_all(size > min_size, axis=1) & tf.concat(real, axis=0)
    kept = nms.class_aware_nms(boxes, logits, tf.concat(levels, axis=0), valid,
                               max_output=post_nms_top_k, iou_threshold=iou_threshold)
    return Proposals(
        boxes=tf.stop_gradient(tf.where(kept.valid[:, None], tf.gather(boxes, kept.indices), 0.0)),
        logits=tf.where(kept.valid, tf.gather(logits, kept.indices), 0.0),
        valid=kept.valid)


def _level_top_k(level_logits: tf.Tensor, k: int):
    """(logits [k'], indices [k'], real [k']) of the best anchors of one level.

    With N_l static, k' = min(k, N_l) and every row is real. With N_l unknown
    (a model traced for any image size), k' = k, static as XLA and NMS need:
    a level of fewer than k anchors is padded with rows that are not real
    (index of its last anchor, logit 0), ranked after its real ones, so the
    real rows are those of the static case.
    """
    count = level_logits.shape[0]
    if count is not None:
        k = min(k, count)
        top_logits, top = tf.math.top_k(level_logits, k=k)
        return top_logits, top, tf.ones([k], tf.bool)
    count = tf.shape(level_logits)[0]
    padded = tf.pad(level_logits, [[0, tf.maximum(k - count, 0)]],
                    constant_values=-np.inf)
    top_logits, top = tf.math.top_k(padded, k=k)
    real = top < count
    return tf.where(real, top_logits, 0.0), tf.minimum(top, count - 1), real


def postprocess_detections(class_probabilities: tf.Tensor, box_deltas: tf.Tensor,
                           rois: tf.Tensor, image_size: ImageSize, *,
                           roi_valid: Optional[tf.Tensor] = None, score_threshold: float = 0.05,
                           num_candidates: int = 5000, iou_threshold: float = 0.5,
                           max_detections: int = 100) -> Detections:
    """Box-head outputs of one image -> the best `max_detections` detections.

    Each (RoI, class) pair with probability > `score_threshold` is a candidate with
    the RoI decoded by that class's deltas and clipped to the image; the best
    `num_candidates` candidates go through per-class NMS.

    Args:
        class_probabilities: [R, K + 1] softmax output, column 0 = background (R static).
        box_deltas: [R, 4K] class-specific (dx, dy, dw, dh), class k at columns
            4(k - 1) .. 4k - 1, for coder weights (10, 10, 5, 5).
        rois: [R, 4] boxes the deltas refer to.
        image_size: (height, width) that boxes are clipped to.
        roi_valid: [R] bool, False for padded RoIs; None means all are real.
        score_threshold, num_candidates, iou_threshold, max_detections: as above.
    """
    num_rois, num_columns = class_probabilities.shape
    num_classes = num_columns - 1
    deltas = tf.reshape(box_deltas, [num_rois, num_classes, 4])
    boxes = decode(deltas, tf.broadcast_to(rois[:, None], deltas.shape), BOX_HEAD_WEIGHTS)
    boxes = tf.reshape(clip(boxes, image_size), [-1, 4])
    scores = tf.reshape(class_probabilities[:, 1:], [-1])
    is_candidate = scores > score_threshold
    if roi_valid is not None:
        is_candidate &= tf.repeat(roi_valid, num_classes)
    k = min(num_candidates, num_rois * num_classes)
    # Non-candidates rank below every candidate (probabilities are >= 0).
    _, pairs = tf.math.top_k(tf.where(is_candidate, scores, -1.0), k=k)
    kept = nms.class_aware_nms(tf.gather(boxes, pairs), tf.gather(scores, pairs),
                               pairs % num_classes + 1, tf.gather(is_candidate, pairs),
                               max_output=max_detections, iou_threshold=iou_threshold)
    pairs = tf.gather(pairs, kept.indices)
    valid = kept.valid
    return Detections(
        boxes=tf.where(valid[:, None], tf.gather(boxes, pairs), 0.0),
        scores=tf.where(valid, tf.gather(scores, pairs), 0.0),
        classes=tf.where(valid, pairs % num_classes + 1, 0),
        roi_indices=tf.where(valid, pairs // num_classes, 0),
        valid=valid)
