"""Fusion of instance masks and a semantic map into panoptic predictions (Panoptic FPN).

The heuristic of SPEC_TOP_DOWN.md section 2 ("Fusion"), per image:
1. instances that are valid and score >= score_threshold are visited by score,
   best first (ties: lower index first);
2. an instance is skipped when |mask & occupied| / |mask| > overlap_threshold or
   when no pixel of its mask is free (the ratio is float32); otherwise its free
   pixels become a new segment, instance id k for the k-th kept instance, and
   are occupied;
3. per stuff class, the free pixels whose semantic class it is form one segment
   if they are at least stuff_area_limit pixels, else they stay void;
4. every other pixel is void.
The result is the library's common currency (deeplab2.model.meta.architecture):
semantic, instance and panoptic maps and per-instance tables. Instance pixels
get panoptic id class * label_divisor + instance id, stuff pixels
class * label_divisor, void pixels ignore_label * label_divisor.

Batched: a while_loop visits the eligible instances of all images at once,
best first, with an occupancy (instance id) map; stuff areas are segment sums.
Static N (H and W may be unknown when tracing), no float64, compiles with XLA.
"""
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from deeplab2 import common


def fuse_panoptic(masks: tf.Tensor, scores: tf.Tensor, classes: tf.Tensor, valid: tf.Tensor,
                  semantic: tf.Tensor, *, stuff_class_ids: Sequence[int], label_divisor: int,
                  ignore_label: int, score_threshold: float = 0.5,
                  overlap_threshold: float = 0.5,
                  stuff_area_limit: int = 4096,
                  boxes: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
    """Fuses the instances and semantic prediction of a batch of images.

    Args:
        masks: [B, N, H, W] binary instance masks at image resolution, bool or
            numbers (non-zero = inside); N static (H and W may be unknown
            when tracing).
        scores: [B, N] float32 instance scores.
        classes: [B, N] int32 dataset class id of each instance.
        valid: [B, N] bool; invalid rows are never kept.
        semantic: [B, H, W] int32 semantic prediction in dataset class ids.
            Only pixels of a class in `stuff_class_ids` can form stuff segments.
        stuff_class_ids: class ids allowed to form stuff segments (COCO: the
            stuff classes, without 'other'; Cityscapes: the non-thing classes).
        label_divisor, ignore_label: the dataset's panoptic encoding; N must be
            < label_divisor so that instance ids fit.
        score_threshold: instances scoring below it are never kept.
        overlap_threshold: an instance is skipped when more than this fraction
            of its mask is already occupied.
        stuff_area_limit: a stuff class with fewer free pixels stays void.
        boxes: optional [B, N, 4] float32 box of each instance, carried into
            the instance tables.

    Returns:
        A dict of int32 [B, H, W] maps `common.SEMANTIC` (class of each pixel's
        segment, ignore_label for void), `common.INSTANCE` (1..k for the pixels
        of the kept instances in kept order, 0 elsewhere) and `common.PANOPTIC`,
        and per-instance [B, N] tables, row i describing instance id i + 1:
        `common.INSTANCE_SCORES` float32 (0 for rows without instance),
        `common.INSTANCE_CLASSES` (ignore_label for none) and
        `common.INSTANCE_PANOPTIC_IDS` (void for none); with `boxes`, also
        `common.BOXES` [B, N, 4] (0 for none).
    """
    num_instances = masks.shape[1]
    if num_instances is None:
        raise ValueError(f"fuse_panoptic needs a static N; got masks {masks.shape}.")
    if num_instances >= label_divisor:
        raise ValueError(f"{num_instances} instances do not fit label_divisor {label_divisor}.")
    semantic = tf.cast(semantic, tf.int32)
    instance, count, kept_scores, kept_classes, kept_sources = _place_instances(
        masks, semantic, tf.cast(scores, tf.float32), tf.cast(classes, tf.int32),
        tf.cast(valid, tf.bool), score_threshold=score_threshold,
        overlap_threshold=overlap_threshold)
    is_stuff = _stuff_pixels(semantic, instance == 0, stuff_class_ids, stuff_area_limit)

    is_kept = tf.range(num_instances) < count[:, None]
    kept_classes = tf.where(is_kept, kept_classes, ignore_label)
    # Pixels without instance read row 0 here; their value is replaced below.
    pixel_class = tf.gather(kept_classes, tf.maximum(instance - 1, 0), batch_dims=1)
    has_instance = instance > 0
    semantic_out = tf.where(has_instance, pixel_class,
                            tf.where(is_stuff, semantic, ignore_label))
    void = ignore_label * label_divisor
    fused = {
        common.SEMANTIC: semantic_out,
        common.INSTANCE: instance,
        common.PANOPTIC: tf.where(has_instance | is_stuff,
                                  semantic_out * label_divisor + instance, void),
        common.INSTANCE_SCORES: tf.where(is_kept, kept_scores, 0.0),
        common.INSTANCE_CLASSES: kept_classes,
        common.INSTANCE_PANOPTIC_IDS: tf.where(
            is_kept, kept_classes * label_divisor + tf.range(1, num_instances + 1), void),
    }
    if boxes is not None:
        kept_boxes = tf.gather(tf.cast(boxes, tf.float32), kept_sources, batch_dims=1)
        fused[common.BOXES] = tf.where(is_kept[..., None], kept_boxes, 0.0)
    return fused


def _place_instances(masks, semantic, scores, classes, valid, *, score_threshold,
                     overlap_threshold):
    """Steps 1-2: the instance map [B, H, W], the number of kept instances [B],
    and the score, class and input row of each kept instance [B, N] (rows past
    the count are meaningless)."""
    num_instances = masks.shape[1]
    eligible = tf.logical_and(valid, scores >= score_threshold)
    # Eligible instances best first, ties to the lower index; the others last.
    order = tf.math.top_k(tf.where(eligible, scores, -np.inf), k=num_instances).indices
    num_eligible = tf.reduce_sum(tf.cast(eligible, tf.int32), axis=1)
    order_scores = tf.gather(scores, order, batch_dims=1)
    order_classes = tf.gather(classes, order, batch_dims=1)

    # Column i is read with tf.gather: x[:, i:i + 1] with the loop counter i
    # miscompiles under XLA (TF 2.21 reads wrong columns).
    def step(i, instance, count, kept_scores, kept_classes, kept_sources):
        mask = tf.cast(tf.gather(masks, tf.gather(order, i, axis=1), batch_dims=1), tf.bool)
        new = tf.logical_and(mask, instance == 0)
        area = tf.reduce_sum(tf.cast(mask, tf.int32), axis=[1, 2])
        new_area = tf.reduce_sum(tf.cast(new, tf.int32), axis=[1, 2])
        overlap = (tf.cast(area - new_area, tf.float32)
                   / tf.cast(tf.maximum(area, 1), tf.float32))
        keep = (i < num_eligible) & (new_area > 0) & ~(overlap > overlap_threshold)
        count += tf.cast(keep, tf.int32)
        instance = tf.where(new & keep[:, None, None], count[:, None, None], instance)
        row = tf.logical_and(tf.range(num_instances) == count[:, None] - 1, keep[:, None])
        kept_scores = tf.where(row, tf.gather(order_scores, [i], axis=1), kept_scores)
        kept_classes = tf.where(row, tf.gather(order_classes, [i], axis=1), kept_classes)
        kept_sources = tf.where(row, tf.gather(order, [i], axis=1), kept_sources)
        return i + 1, instance, count, kept_scores, kept_classes, kept_sources

    _, instance, count, kept_scores, kept_classes, kept_sources = tf.while_loop(
        lambda i, *_: i < tf.reduce_max(num_eligible), step,
        (tf.constant(0), tf.zeros_like(semantic), tf.zeros_like(num_eligible),
         tf.zeros_like(scores), tf.zeros_like(classes), tf.zeros_like(order)))
    return instance, count, kept_scores, kept_classes, kept_sources


def _stuff_pixels(semantic, free, stuff_class_ids, stuff_area_limit):
    """Step 3: [B, H, W] bool, the free pixels of stuff classes with at least
    `stuff_area_limit` free pixels in their image."""
    stuff_class_ids = sorted({int(c) for c in stuff_class_ids})
    if not stuff_class_ids:
        return tf.zeros_like(free)
    if stuff_class_ids[0] < 0:
        raise ValueError(f"Stuff class ids must be >= 0, got {stuff_class_ids}.")
    num_stuff = len(stuff_class_ids)
    # Index of each class among the stuff classes; num_stuff for any other
    # class, including ids outside [0, max stuff id].
    table_size = stuff_class_ids[-1] + 2
    table = np.full([table_size], num_stuff, np.int32)
    table[stuff_class_ids] = np.arange(num_stuff)
    in_table = tf.logical_and(semantic >= 0, semantic < table_size)
    stuff = tf.gather(table, tf.where(in_table, semantic, table_size - 1))
    stuff = tf.where(free, stuff, num_stuff)
    batch = tf.shape(semantic)[0]
    image = tf.range(batch)[:, None, None] * (num_stuff + 1)
    area = tf.math.unsorted_segment_sum(tf.ones_like(stuff), image + stuff,
                                        batch * (num_stuff + 1))
    area = tf.reshape(area, [batch, num_stuff + 1])
    # The last column (not stuff, or occupied) never forms a segment.
    large = tf.logical_and(area >= stuff_area_limit, tf.range(num_stuff + 1) < num_stuff)
    return tf.gather(large, stuff, batch_dims=1)
