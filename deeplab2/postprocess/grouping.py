"""Grouping: each pixel's predicted center (pixel + offset) goes to its nearest center.

Works on one tile of pixels at a time, exactly and without a [pixels, K]
distance matrix:
1. Culling: the predicted centers of the tile's pixels span a box. A center
   whose nearest possible distance to the box exceeds some other center's
   farthest possible distance to the box is never the nearest one for any of
   those pixels, and is dropped (with a margin far above float rounding, so the
   result equals a search over all centers). Predicted centers of one tile
   usually point at one or a few objects, so few centers remain.
2. Search: a while loop visits the remaining centers, in increasing index order,
   a block at a time, keeping a running minimum per pixel; a center replaces the
   current one only when strictly closer, so ties go to the lower center index.

Distance, defined so that it is reproducible bit for bit: dy = float32((y - cy)
+ offset_y), dx likewise, squared distance = dy**2 + dx**2 in float64. The
float64 squares of float32 numbers are exact, so the one rounding left does not
depend on whether the compiler fuses multiply and add.
"""
import math
from typing import Tuple

import tensorflow as tf

# Culling keeps a center unless its lower bound exceeds the best upper bound by
# this much; float32 rounding of dy, dx changes distances by ~1e-7 relative.
_RELATIVE_MARGIN = 1e-5
_ABSOLUTE_MARGIN = 1e-6


def candidate_centers(y: tf.Tensor, x: tf.Tensor, offset_y: tf.Tensor,
                      offset_x: tf.Tensor, mask: tf.Tensor, points: tf.Tensor,
                      count: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Centers that may be the nearest one of a masked pixel (step 1 above).

    Args:
        y, x: int32 pixel coordinates, broadcastable to the offsets' shape.
        offset_y, offset_x: float32 predicted offsets to the center.
        mask: bool, offsets' shape: the pixels to group.
        points: [K, 2] int32 (y, x) centers of the image, the real ones first.
        count: scalar int32 number of real centers.

    Returns:
        order: [K] int32 indices of the candidate centers, increasing, first.
        num: scalar int32 number of candidates.
    """
    def span(coordinate, offset):
        predicted = tf.cast(coordinate, tf.float64) + tf.cast(offset, tf.float64)
        low = tf.reduce_min(tf.where(mask, predicted, float("inf")))
        high = tf.reduce_max(tf.where(mask, predicted, float("-inf")))
        return low, high

    def gaps(low, high, center):
        """Squared smallest and largest distance from `center` to [low, high]."""
        nearest = tf.maximum(tf.maximum(low - center, center - high), 0.0)
        farthest = tf.maximum(tf.abs(center - low), tf.abs(center - high))
        return nearest * nearest, farthest * farthest

    keep_k = points.shape[0]
    centers = tf.cast(points, tf.float64)
    near_y, far_y = gaps(*span(y, offset_y), centers[:, 0])
    near_x, far_x = gaps(*span(x, offset_x), centers[:, 1])
    real = tf.range(keep_k) < count
    bound = tf.reduce_min(tf.where(real, far_y + far_x, float("inf")))
    keep = tf.logical_and(real, near_y + near_x <= bound * (1 + _RELATIVE_MARGIN)
                          + _ABSOLUTE_MARGIN)
    # Stable compaction: candidate i goes to position (number of candidates before i).
    position = tf.where(keep, tf.cumsum(tf.cast(keep, tf.int32), exclusive=True), keep_k)
    order = tf.math.unsorted_segment_sum(tf.range(keep_k), position, keep_k + 1)[:keep_k]
    return order, tf.reduce_sum(tf.cast(keep, tf.int32))


def nearest_center(y: tf.Tensor, x: tf.Tensor, offset_y: tf.Tensor, offset_x: tf.Tensor,
                   points: tf.Tensor, order: tf.Tensor, num: tf.Tensor,
                   block_size: int = 2) -> tf.Tensor:
    """Returns int32 1 + index of each pixel's nearest center, 0 when there is none.

    Args:
        y, x, offset_y, offset_x, points: as for `candidate_centers`.
        order, num: the candidates from `candidate_centers`.
        block_size: centers compared per loop step (performance only).
    """
    keep_k = points.shape[0]
    order = tf.pad(order, [[0, math.ceil(keep_k / block_size) * block_size - keep_k]])
    num_blocks = (num + block_size - 1) // block_size

    def step(block, best, nearest):
        first = block * block_size
        index = tf.slice(order, [first], [block_size])
        block_points = tf.gather(points, index)
        for i in range(block_size):
            dy = tf.cast(tf.cast(y - block_points[i, 0], tf.float32) + offset_y, tf.float64)
            dx = tf.cast(tf.cast(x - block_points[i, 1], tf.float32) + offset_x, tf.float64)
            distance = dy * dy + dx * dx
            closer = tf.logical_and(first + i < num, distance < best)
            best = tf.where(closer, distance, best)
            nearest = tf.where(closer, index[i] + 1, nearest)
        return block + 1, best, nearest

    shape = tf.shape(offset_y)
    _, _, nearest = tf.while_loop(
        lambda block, *_: block < num_blocks, step,
        (tf.constant(0), tf.fill(shape, tf.constant(float("inf"), tf.float64)),
         tf.zeros(shape, tf.int32)))
    return nearest
