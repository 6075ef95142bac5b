"""Instance centers from a predicted center heatmap: threshold, keypoint NMS, top-k.

Follows paper 000 section 3.2: heatmap values <= threshold are zeroed, a pixel is
a center candidate when it equals the max-pooled heatmap around it (stride 1,
'SAME') and is > 0, and the `keep_k` highest candidates are kept. Ties in score
are broken by the lower flat index y * W + x, so centers are in a deterministic
order and center i becomes instance id i + 1.
"""
from typing import NamedTuple

import tensorflow as tf

from deeplab2.model.panoptic_deeplab.postprocess.tiles import minimum, shape_of


class Centers(NamedTuple):
    """Top-k centers of a batch, best first, padded past `count`.

    points: [B, K, 2] int32 (y, x); -1 in padded rows.
    scores: [B, K] float32 heatmap value at each center; 0 in padded rows.
    count: [B] int32 number of real centers (they are the first rows).
    """
    points: tf.Tensor
    scores: tf.Tensor
    count: tf.Tensor


def keypoint_nms(heatmap: tf.Tensor, threshold: float, kernel: int) -> tf.Tensor:
    """[B, H, W] heatmap -> same shape, zero except at thresholded local maxima.

    The k x k max-pool is done as a 1 x k then a k x 1 pool: the max over a
    rectangle equals the max of its row maxima, so the result is exact and costs
    2k instead of k^2 comparisons per pixel.
    """
    heat = tf.where(heatmap > threshold, heatmap, tf.zeros_like(heatmap))
    pooled = tf.nn.max_pool2d(heat[..., None], [1, kernel], 1, "SAME")
    pooled = tf.nn.max_pool2d(pooled, [kernel, 1], 1, "SAME")[..., 0]
    is_peak = tf.logical_and(tf.equal(heat, pooled), heat > 0)
    return tf.where(is_peak, heat, tf.zeros_like(heat))


def find_centers(heatmap: tf.Tensor, *, threshold: float, nms_kernel: int,
                 keep_k: int) -> Centers:
    """Keeps the `keep_k` best keypoint-NMS peaks of a [B, H, W, 1] heatmap."""
    heat = tf.cast(heatmap[..., 0], tf.float32)
    _, height, width = shape_of(heat)
    peaks = tf.reshape(keypoint_nms(heat, threshold, nms_kernel), [-1, height * width])
    # top_k puts equal values in increasing index order.
    k = minimum(keep_k, height * width)
    scores, flat_index = tf.math.top_k(peaks, k=k)
    scores = tf.ensure_shape(tf.pad(scores, [[0, 0], [0, keep_k - k]]), [None, keep_k])
    flat_index = tf.ensure_shape(tf.pad(flat_index, [[0, 0], [0, keep_k - k]]),
                                 [None, keep_k])
    valid = scores > 0
    points = tf.stack([flat_index // width, flat_index % width], axis=-1)
    points = tf.where(valid[..., None], points, -tf.ones_like(points))
    count = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
    return Centers(points, scores, count)
