"""Box arithmetic: area, pairwise IoU, clipping, the delta coder and RoI levels.

Boxes are float32 (x0, y0, x1, y1) in image pixels, pixel i spanning [i, i + 1),
so a box's width is x1 - x0 (no +1). Every function takes any leading dimensions
(a batch, RoIs per class...) and broadcasts them; all compile with XLA.
"""
import math
from typing import Sequence, Tuple, Union

import tensorflow as tf

# Delta weights (wx, wy, ww, wh) of the coder (SPEC_TOP_DOWN section 1).
RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
BOX_HEAD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
# Upper bound of the decoded log size ratio ln(w / pw): a box grows at most 1000/16 times.
LOG_SIZE_RATIO_LIMIT = math.log(1000.0 / 16.0)


def area(boxes: tf.Tensor) -> tf.Tensor:
    """[..., 4] boxes -> [...] areas; an empty or inverted box has area 0."""
    x0, y0, x1, y1 = tf.unstack(boxes, axis=-1)
    return tf.maximum(x1 - x0, 0.0) * tf.maximum(y1 - y0, 0.0)


def pairwise_iou(boxes: tf.Tensor, other: tf.Tensor) -> tf.Tensor:
    """[..., N, 4] and [..., M, 4] boxes -> [..., N, M] intersection over union.

    A pair whose union is empty (both boxes empty) has IoU 0, never NaN. Each
    coordinate is broadcast on its own, so every [..., N, M] intermediate is
    one plane (no [..., N, M, 2] tensors to slice: N is every anchor in training).
    """
    x0, y0, x1, y1 = [c[..., :, None] for c in tf.unstack(boxes, axis=-1)]
    u0, v0, u1, v1 = [c[..., None, :] for c in tf.unstack(other, axis=-1)]
    width = tf.maximum(tf.minimum(x1, u1) - tf.maximum(x0, u0), 0.0)
    height = tf.maximum(tf.minimum(y1, v1) - tf.maximum(y0, v0), 0.0)
    intersection = width * height
    union = area(boxes)[..., :, None] + area(other)[..., None, :] - intersection
    return tf.math.divide_no_nan(intersection, union)


def clip(boxes: tf.Tensor, image_size: Union[Tuple[int, int], tf.Tensor]) -> tf.Tensor:
    """Clips [..., 4] boxes to an image of `image_size` = (height, width) pixels.

    The image spans [0, width] x [0, height] (pixel i covers [i, i + 1)).
    """
    height = tf.cast(image_size[0], tf.float32)
    width = tf.cast(image_size[1], tf.float32)
    x0, y0, x1, y1 = tf.unstack(boxes, axis=-1)
    return tf.stack([tf.clip_by_value(x0, 0.0, width), tf.clip_by_value(y0, 0.0, height),
                     tf.clip_by_value(x1, 0.0, width), tf.clip_by_value(y1, 0.0, height)],
                    axis=-1)


def _centre_and_size(boxes: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """(cx, cy, w, h) of [..., 4] boxes, centre = x0 + w / 2."""
    x0, y0, x1, y1 = tf.unstack(boxes, axis=-1)
    width = x1 - x0
    height = y1 - y0
    return x0 + 0.5 * width, y0 + 0.5 * height, width, height


def encode(boxes: tf.Tensor, reference: tf.Tensor, weights: Sequence[float]) -> tf.Tensor:
    """Deltas [..., 4] = (dx, dy, dw, dh) of `boxes` relative to `reference` boxes.

    dx = wx (gx - px) / pw, dy = wy (gy - py) / ph, dw = ww ln(gw / pw),
    dh = wh ln(gh / ph), with `weights` = (wx, wy, ww, wh). Both boxes need a
    positive size: an empty box gives an infinite dw or dh, so select the rows
    that are targets with tf.where, not by multiplying with a mask.
    """
    wx, wy, ww, wh = weights
    gx, gy, gw, gh = _centre_and_size(boxes)
    px, py, pw, ph = _centre_and_size(reference)
    return tf.stack([wx * (gx - px) / pw, wy * (gy - py) / ph,
                     ww * tf.math.log(gw / pw), wh * tf.math.log(gh / ph)], axis=-1)


def decode(deltas: tf.Tensor, reference: tf.Tensor, weights: Sequence[float]) -> tf.Tensor:
    """Boxes [..., 4] from (dx, dy, dw, dh) `deltas` relative to `reference` boxes.

    Inverts `encode`, except that dw / ww and dh / wh are clamped from above at
    `LOG_SIZE_RATIO_LIMIT`, so a wild prediction cannot overflow exp.
    """
    wx, wy, ww, wh = weights
    dx, dy, dw, dh = tf.unstack(deltas, axis=-1)
    px, py, pw, ph = _centre_and_size(reference)
    centre_x = px + dx / wx * pw
    centre_y = py + dy / wy * ph
    half_width = 0.5 * pw * tf.exp(tf.minimum(dw / ww, LOG_SIZE_RATIO_LIMIT))
    half_height = 0.5 * ph * tf.exp(tf.minimum(dh / wh, LOG_SIZE_RATIO_LIMIT))
    return tf.stack([centre_x - half_width, centre_y - half_height,
                     centre_x + half_width, centre_y + half_height], axis=-1)


def roi_levels(boxes: tf.Tensor, min_level: int = 2, max_level: int = 5,
               canonical_size: float = 224.0, canonical_level: int = 4) -> tf.Tensor:
    """[..., 4] RoIs -> [...] int32 FPN level that pools each of them.

    k = clamp(floor(canonical_level + log2(sqrt(area) / canonical_size + 1e-8)),
    min_level, max_level). Computed without a logarithm, whose rounding could
    move an exact power of two across a level: k counts the levels l in
    (min_level, max_level] with sqrt(area) / canonical_size + 1e-8 >= 2**(l - canonical_level).
    """
    scale = tf.sqrt(area(boxes)) / canonical_size + 1e-8
    level = tf.fill(tf.shape(scale), min_level)
    for next_level in range(min_level + 1, max_level + 1):
        threshold = 2.0 ** (next_level - canonical_level)
        level += tf.cast(scale >= threshold, tf.int32)
    return level
