"""Grouping: each pixel's predicted center (pixel + offset) goes to its nearest center.

Works on one tile of pixels at a time, exactly and without a [pixels, K]
distance matrix:
1. Culling: the predicted centers of the tile's pixels span a box. A center
   whose nearest possible distance to the box exceeds some other center's
   farthest possible distance to the box is never the nearest one for any of
   those pixels, and is dropped (with margins that cover float rounding, so the
   result equals a search over all centers). Predicted centers of one tile
   usually point at one or a few objects, so few centers remain.
2. Search: a while loop visits the remaining centers, in increasing index order,
   a block at a time, keeping a running minimum per pixel; a center replaces the
   current one only when strictly closer, so ties go to the lower center index.

Distance, in float32 only (TPUs have no float64) and reproducible bit for bit:
dy = float32((y - cy) + offset_y), dx likewise (the integer difference, then one
rounding). Compilers may contract `a * b + c` into a fused multiply-add, which
skips the rounding of the product, so a plain `dy * dy + dx * dx` depends on the
compiler. Here every product is exact instead: `d` is split into `hi` (`d` with
the low 12 of its 23 mantissa bits cleared, by integer masking of its bits) and
`lo = d - hi` (exact), each of at most 12 significant bits, so `hi * hi`,
`2 * hi * lo` and `lo * lo` have at most 24: they are exact in float32. An exact
product rounds the same fused or not, and the six products are summed in one
fixed order, which XLA keeps (it does not reassociate float additions; the
post-processing always runs XLA-compiled, while TensorFlow's graph optimizer
without XLA may regroup the sum):
    (hi_y**2 + hi_x**2) + ((2 hi_y lo_y + 2 hi_x lo_x) + (lo_y**2 + lo_x**2)).
Products are exact only above the float32 underflow range, and devices may flush
subnormal numbers to zero, so a |d| below 2**-32 (a 2e-10 pixel) counts as 0:
then every nonzero product is at least 2**-110, a normal number. Apart from
that, the result is dy**2 + dx**2 with at most 3 roundings (the sums).
"""
import math
from typing import Tuple

import tensorflow as tf

# |d| below this counts as 0 (module docstring).
_FLUSH_BELOW = 2.0 ** -32
# The mantissa bits cleared in `hi`.
_LOW_MANTISSA_BITS = 0xFFF

# Culling margins (see `candidate_centers`): the float32 unit roundoff is 2**-24.
_SPAN_SLACK = 2.0 ** -22
_RELATIVE_MARGIN = 2.0 ** -16
_ABSOLUTE_MARGIN = 2.0 ** -40


def difference(coordinate: tf.Tensor, center: tf.Tensor, offset: tf.Tensor) -> tf.Tensor:
    """float32((coordinate - center) + offset) of int32 coordinates, float32 offset."""
    return tf.cast(coordinate - center, tf.float32) + offset


def squared_distance(dy: tf.Tensor, dx: tf.Tensor) -> tf.Tensor:
    """float32 dy**2 + dx**2 from exact products: the same bits, fused multiply-adds or not."""
    hi_y, lo_y = _split(dy)
    hi_x, lo_x = _split(dx)
    return ((hi_y * hi_y + hi_x * hi_x)
            + ((2 * hi_y * lo_y + 2 * hi_x * lo_x) + (lo_y * lo_y + lo_x * lo_x)))


def _split(d: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """(hi, lo) of at most 12 significant bits each, hi + lo = d; tiny d -> (0, 0)."""
    d = tf.where(tf.abs(d) < _FLUSH_BELOW, tf.zeros_like(d), d)
    bits = tf.bitwise.bitwise_and(tf.bitcast(d, tf.int32), ~_LOW_MANTISSA_BITS)
    hi = tf.bitcast(bits, tf.float32)
    return hi, d - hi


def candidate_centers(y: tf.Tensor, x: tf.Tensor, offset_y: tf.Tensor,
                      offset_x: tf.Tensor, mask: tf.Tensor, points: tf.Tensor,
                      count: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Centers that may be the nearest one of a masked pixel (step 1 above).

    Why the margins suffice (u = 2**-24, the float32 unit roundoff). Per axis,
    the span ends `low`, `high` are the exact min and max of y + offset rounded
    once (rounding is monotone), and centers are exact. So the computed nearest
    and farthest gaps of a center to the span differ from their exact values by
    at most u * (far + scale) (scale = max(|low|, |high|)): one rounding of the
    span end, one of the subtraction. Widened by `_SPAN_SLACK` * (far + scale),
    four times that, they bound the exact gaps. The grouping distance of a pixel
    is its exact distance with at most 5 roundings (2 in dy and dx, 3 in the
    sums), minus at most 2**-63 for flushed tiny differences; the bounds below
    take at most 5 roundings each. `_RELATIVE_MARGIN` (2**-16 = 256u, above the
    20u of these roundings) and `_ABSOLUTE_MARGIN` (2**-40) cover all of it.
    Fused multiply-adds only remove roundings, and a NaN bound keeps every center.

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
    def gap_bounds(coordinate, offset, center):
        """Squared lower bound of the nearest and upper bound of the farthest gap."""
        predicted = tf.cast(coordinate, tf.float32) + offset
        low = tf.reduce_min(tf.where(mask, predicted, float("inf")))
        high = tf.reduce_max(tf.where(mask, predicted, float("-inf")))
        nearest = tf.maximum(tf.maximum(low - center, center - high), 0.0)
        farthest = tf.maximum(tf.abs(center - low), tf.abs(center - high))
        slack = _SPAN_SLACK * (farthest + tf.maximum(tf.abs(low), tf.abs(high)))
        nearest = tf.maximum(nearest - slack, 0.0)
        farthest = farthest + slack
        return nearest * nearest, farthest * farthest

    keep_k = points.shape[0]
    centers = tf.cast(points, tf.float32)
    near_y, far_y = gap_bounds(y, offset_y, centers[:, 0])
    near_x, far_x = gap_bounds(x, offset_x, centers[:, 1])
    real = tf.range(keep_k) < count
    bound = tf.reduce_min(tf.where(real, far_y + far_x, float("inf")))
    too_far = near_y + near_x > bound * (1 + _RELATIVE_MARGIN) + _ABSOLUTE_MARGIN
    keep = tf.logical_and(real, tf.logical_not(too_far))
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
            distance = squared_distance(difference(y, block_points[i, 0], offset_y),
                                        difference(x, block_points[i, 1], offset_x))
            # `distance` has one consumer, the minimum: XLA would otherwise copy its
            # computation into the fusions of two selects (5x slower). Only a strictly
            # smaller distance replaces; a NaN one (NaN or infinite offset) is NaN for
            # every center, so the pixel keeps 0.
            closest = tf.minimum(best, tf.where(first + i < num, distance, float("inf")))
            nearest = tf.where(closest < best, index[i] + 1, nearest)
            best = closest
        return block + 1, best, nearest

    shape = tf.shape(offset_y)
    _, _, nearest = tf.while_loop(
        lambda block, *_: block < num_blocks, step,
        (tf.constant(0), tf.fill(shape, float("inf")), tf.zeros(shape, tf.int32)))
    return nearest
