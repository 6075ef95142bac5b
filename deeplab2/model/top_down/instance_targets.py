"""Detection ground truth of one panoptic label: the thing instances, padded.

Computed in the tf.data pipeline after augmentation (vectorized TF, no loop
over instances), so boxes describe the augmented label. Per-segment areas and
extents come from the label's row runs (tens per row), not from per-pixel
segment reductions.

Decisions (SPEC_TOP_DOWN.md section 0):
- An instance is a segment of a thing class with instance > 0. Crowd regions
  (thing class, instance 0), stuff and void are not detection targets; the
  caller keeps the panoptic label for the semantic and mask targets.
- Its class is 1 + the position of its class id in `dataset_info.thing_ids`
  (0 = background / padding); its box is (min x, min y, max x + 1, max y + 1)
  of its pixels, so every box spans at least one pixel.
- Rows are sorted by pixel area, largest first, ties by smaller panoptic id.
  Beyond `max_instances`, the smallest are dropped and counted.
- Padding rows: class 0, box 0, panoptic id -1 (matches no pixel), invalid.
"""
from typing import Dict, Union

import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.dataset_info import DatasetInfo

GT_CLASSES = "gt_classes"  # int32 [N]: detection class 1..K, 0 in padding
GT_BOXES = "gt_boxes"  # float32 [N, 4]: (x0, y0, x1, y1), 0 in padding
GT_PANOPTIC_IDS = "gt_panoptic_ids"  # int32 [N]: panoptic id, -1 in padding
GT_VALID = "gt_valid"  # bool [N]
NUM_DROPPED_INSTANCES = "num_dropped_instances"  # int32: instances beyond N
PANOPTIC_LABEL = common.PANOPTIC_LABEL  # int32 [H, W]: the label itself

PADDING_ID = -1
MAX_INSTANCES = 100


def _segment_extents(label: tf.Tensor):
    """(ids, area, x0, y0, x1, y1) int32 of each panoptic id present in [H, W] `label`.

    A label is piecewise constant along its rows: each run of equal values (every
    row starts a new run) has one row, a first column and a length, and a
    segment's extent is the min / max over its runs.
    """
    width = tf.shape(label)[1]
    flat = tf.reshape(label, [-1])
    size = tf.size(flat)
    is_start = tf.concat([[True], tf.not_equal(flat[1:], flat[:-1])], 0)
    is_start |= tf.equal(tf.range(size) % width, 0)
    starts = tf.cast(tf.where(is_start)[:, 0], tf.int32)
    lengths = tf.concat([starts[1:], [size]], 0) - starts
    ids, run_id = tf.unique(tf.gather(flat, starts))
    num = tf.size(ids)
    rows = starts // width
    columns = starts % width
    return (ids, tf.math.unsorted_segment_sum(lengths, run_id, num),
            tf.math.unsorted_segment_min(columns, run_id, num),
            tf.math.unsorted_segment_min(rows, run_id, num),
            tf.math.unsorted_segment_max(columns + lengths, run_id, num),
            tf.math.unsorted_segment_max(rows + 1, run_id, num))


def instance_targets(panoptic_label: Union[tf.Tensor, np.ndarray], dataset_info: DatasetInfo,
                     *, max_instances: int = MAX_INSTANCES) -> Dict[str, tf.Tensor]:
    """The thing instances of one label as padded detection ground truth.

    Args:
        panoptic_label: int32 [H, W], `class * label_divisor + instance` >= 0;
            void pixels are `ignore_label * label_divisor`.
        dataset_info: thing ids and label divisor of the label space.
        max_instances: N, rows of the outputs.

    Returns:
        {GT_CLASSES, GT_BOXES, GT_PANOPTIC_IDS, GT_VALID} with N rows (see the
        module docstring), NUM_DROPPED_INSTANCES and PANOPTIC_LABEL.
    """
    label = tf.convert_to_tensor(panoptic_label, tf.int32)
    label.shape.assert_has_rank(2)
    ids, areas, x0, y0, x1, y1 = _segment_extents(label)
    # Sorting by id first makes top_k (which keeps equal keys in index order)
    # break area ties by the smaller id.
    order = tf.argsort(ids)
    ids = tf.gather(ids, order)
    boxes = tf.gather(tf.cast(tf.stack([x0, y0, x1, y1], axis=1), tf.float32), order)
    areas = tf.gather(areas, order)

    classes = ids // dataset_info.label_divisor
    thing_ids = tf.constant(dataset_info.thing_ids or (-1,), tf.int32)
    is_class = tf.equal(classes[:, None], thing_ids[None, :])
    is_instance = tf.reduce_any(is_class, axis=1) & (ids % dataset_info.label_divisor > 0)
    detection_classes = tf.argmax(tf.cast(is_class, tf.int32), axis=1, output_type=tf.int32) + 1

    num_instances = tf.reduce_sum(tf.cast(is_instance, tf.int32))
    num_kept = tf.minimum(num_instances, max_instances)
    # Areas are >= 1, so non-instances (key -1) rank after every instance.
    _, kept = tf.math.top_k(tf.where(is_instance, areas, -1),
                            k=tf.minimum(tf.size(ids), max_instances))
    kept = tf.pad(kept, [[0, max_instances - tf.size(kept)]])
    kept = tf.ensure_shape(kept, [max_instances])
    valid = tf.range(max_instances) < num_kept

    return {
        GT_CLASSES: tf.where(valid, tf.gather(detection_classes, kept), 0),
        GT_BOXES: tf.where(valid[:, None], tf.gather(boxes, kept), 0.0),
        GT_PANOPTIC_IDS: tf.where(valid, tf.gather(ids, kept), PADDING_ID),
        GT_VALID: valid,
        NUM_DROPPED_INSTANCES: num_instances - num_kept,
        PANOPTIC_LABEL: label,
    }
