"""Greedy non-maximum suppression with static shapes, for XLA and for CPUs.

Two forms give the same selection (`method`; "auto" picks by the tracing
context, as RoIAlign does):
- "padded", for XLA: `tf.image.non_max_suppression_padded`, the only TF NMS that
  compiles with XLA (NonMaxSuppressionV5 and combined_non_max_suppression have
  no XLA kernel); a loop over tiles of 512 boxes, slow on a CPU.
- "greedy", elsewhere: `tf.image.non_max_suppression` (NonMaxSuppressionV3,
  which suppresses at IoU > threshold) on the boxes in score order, fed their
  rank as the score so that ties keep the order; padded to the static size.

The padded op runs greedy NMS on boxes in score order with two quirks handled here:
- it treats a box whose coordinates are all <= 0 as suppressed, so the boxes are
  translated to coordinates >= 1 first (IoU does not change under translation);
- it suppresses at IoU >= threshold; the threshold is raised by one float32 step so
  that a box is suppressed at IoU > threshold, as in detectron2 and
  tf.image.non_max_suppression.
Score ties go to the lower index.

A known defect of the op remains: within a tile of 512 boxes it iterates until an
iteration lowers the tile's float32 sum of IoUs by at most the threshold. A chain of
suppressions whose link IoU exceeds the threshold by less than the rounding error of
that sum can stop the iteration early and wrongly drop boxes (a strict xfail in
tests/model/top_down/test_nms.py shows one).
"""
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from deeplab2.model.top_down.xla_context import traced_for_xla


class Selection(NamedTuple):
    """Kept boxes, best first, padded to a fixed size.

    indices: [M] int32 indices into the input boxes; 0 past the kept ones.
    valid: [M] bool; the kept rows come first.
    """
    indices: tf.Tensor
    valid: tf.Tensor


_METHODS = ("auto", "padded", "greedy")


def _resolve(method: str) -> str:
    """The form `method` stands for here ("auto": by the tracing context)."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if method != "auto":
        return method
    return "padded" if traced_for_xla() else "greedy"


def nms_padded(boxes: tf.Tensor, scores: tf.Tensor, valid: tf.Tensor, *, max_output: int,
               iou_threshold: float, method: str = "auto") -> Selection:
    """Greedy NMS of [N, 4] (x0, y0, x1, y1) boxes: the best `max_output` survivors.

    Args:
        boxes: [N, 4] float32 with x0 <= x1 and y0 <= y1 (N static).
        scores: [N] float32.
        valid: [N] bool; invalid boxes neither survive nor suppress.
        max_output: static number of output rows.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scored box
            is > this.
        method: "padded", "greedy" or "auto" (see the module docstring).
    """
    num_boxes = boxes.shape[0]
    order = tf.math.top_k(tf.where(valid, scores, -np.inf), k=num_boxes).indices
    sorted_boxes = tf.gather(boxes, order)
    if _resolve(method) == "greedy":
        return _greedy(sorted_boxes, tf.gather(valid, order), order, max_output,
                       iou_threshold)
    sorted_valid = tf.gather(valid, order)[:, None]
    low = tf.reduce_min(tf.where(sorted_valid, sorted_boxes, 0.0))
    # Valid boxes move to coordinates >= 1; invalid ones become all-zero, which the
    # op treats as already suppressed.
    moved = tf.where(sorted_valid, sorted_boxes - low + 1.0, 0.0)
    strict = np.nextafter(np.float32(iou_threshold), np.float32(np.inf))
    kept, count = tf.image.non_max_suppression_padded(
        tf.gather(moved, [1, 0, 3, 2], axis=1), tf.gather(scores, order), max_output,
        iou_threshold=strict, pad_to_max_output_size=True, sorted_input=True,
        canonicalized_coordinates=True)
    is_kept = tf.range(max_output) < count
    return Selection(tf.where(is_kept, tf.gather(order, kept), 0), is_kept)


def _greedy(sorted_boxes: tf.Tensor, sorted_valid: tf.Tensor, order: tf.Tensor,
            max_output: int, iou_threshold: float) -> Selection:
    """NonMaxSuppressionV3 on boxes already in score order (valid ones first):
    scores are the ranks N, N - 1, ... (exact in float32 below 2**24), 0 for
    invalid boxes, which the score threshold of 0.5 drops."""
    num_boxes = sorted_boxes.shape[0]
    ranks = tf.range(num_boxes, 0, -1, dtype=tf.int32)
    rank_scores = tf.cast(tf.where(sorted_valid, ranks, 0), tf.float32)
    kept = tf.image.non_max_suppression(
        tf.gather(sorted_boxes, [1, 0, 3, 2], axis=1), rank_scores, max_output,
        iou_threshold=iou_threshold, score_threshold=0.5)
    count = tf.shape(kept)[0]
    kept = tf.pad(kept, [[0, max_output - count]])
    is_kept = tf.range(max_output) < count
    return Selection(tf.where(is_kept, tf.gather(order, kept), 0), is_kept)


def class_aware_nms(boxes: tf.Tensor, scores: tf.Tensor, classes: tf.Tensor, valid: tf.Tensor,
                    *, max_output: int, iou_threshold: float, method: str = "auto"
                    ) -> Selection:
    """Per-class greedy NMS, then the best `max_output` of all classes, in one NMS call.

    The offset trick: the boxes of class c move right by c * (extent + 1), extent =
    the span of all valid coordinates, so boxes of different classes never overlap
    and one NMS equals NMS within each class. The shift costs float32 precision: the
    coordinates round to steps of about num_classes * extent * 6e-8.

    Args:
        boxes, scores, valid, max_output, iou_threshold, method: as for `nms_padded`.
        classes: [N] int32 class of each box, >= 0.
    """
    coordinates = tf.where(valid[:, None], boxes, 0.0)
    extent = tf.reduce_max(coordinates) - tf.reduce_min(coordinates)
    shift = tf.cast(classes, tf.float32) * (extent + 1.0)
    zero = tf.zeros_like(shift)
    moved = boxes + tf.stack([shift, zero, shift, zero], axis=1)
    return nms_padded(moved, scores, valid, max_output=max_output, iou_threshold=iou_threshold,
                      method=method)
