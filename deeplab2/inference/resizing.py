"""Test-time image sizing: shrink to fit a box, or resize by the shorter side.

`fit_inside` shrinks an image to fit a (height, width) box (deeplab2's
evaluation). `shorter_side_size` is the test-time rule of the top-down papers
(detectron2's ResizeShortestEdge at test): the shorter side becomes S unless
the longer side would then exceed L. `resize_into_canvas` resizes each image
of a padded batch by its own factor into a canvas of one static size, and
`sample_back` brings maps predicted on the canvas back to each image's own
size, so that a batch of images of different sizes runs through one compiled
model. Sizes are computed in exact int32 arithmetic; no float64 (these run in
exported models and on TPUs).
"""
from typing import Sequence, Tuple

import tensorflow as tf


def fit_inside(height, width, size):
    """(height, width) shrunk to fit inside `size`, aspect ratio kept (never
    enlarged, as deeplab2's evaluation), rounded to the nearest integer in
    exact int32 arithmetic."""
    height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    limit_h, limit_w = size
    fits = tf.logical_and(height <= limit_h, width <= limit_w)
    by_height = limit_h * width <= limit_w * height
    fit_h = tf.where(by_height, limit_h, (2 * height * limit_w + width) // (2 * width))
    fit_w = tf.where(by_height, (2 * width * limit_h + height) // (2 * height), limit_w)
    return (tf.where(fits, height, tf.minimum(fit_h, limit_h)),
            tf.where(fits, width, tf.minimum(fit_w, limit_w)))


def shorter_side_size(sizes: tf.Tensor, shorter_side: int, max_longer_side: int) -> tf.Tensor:
    """[N, 2] (height, width) -> the sizes with the shorter side at
    `shorter_side`, or the longer side at `max_longer_side` when that scale is
    smaller; each side `floor(side * scale + 0.5)`, as training's
    shorter-side resize rounds (deeplab2.data.augment), computed exactly."""
    sizes = tf.maximum(tf.cast(sizes, tf.int32), 1)
    short = tf.reduce_min(sizes, axis=1, keepdims=True)
    long = tf.reduce_max(sizes, axis=1, keepdims=True)
    # scale = numerator / denominator: S / short, or L / long if L * short < S * long.
    capped = max_longer_side * short < shorter_side * long
    numerator = tf.where(capped, max_longer_side, shorter_side)
    denominator = tf.where(capped, long, short)
    return (2 * sizes * numerator + denominator) // (2 * denominator)


def _source_coordinates(length: int, source: tf.Tensor, target: tf.Tensor,
                        half_pixel: bool) -> tf.Tensor:
    """[N, length] float32 source coordinate sampled by each output pixel of a
    side resized from `source` to `target` pixels ([N] int32 each), clamped
    into the source."""
    index = tf.range(length, dtype=tf.float32)[None, :]
    source = tf.cast(source, tf.float32)[:, None]
    target = tf.cast(target, tf.float32)[:, None]
    if half_pixel:
        coordinate = (index + 0.5) * source / target - 0.5
    else:
        coordinate = index * (source - 1.0) / tf.maximum(target - 1.0, 1.0)
    return tf.clip_by_value(coordinate, 0.0, source - 1.0)


def _resize_axis(images: tf.Tensor, axis: int, length: int, source: tf.Tensor,
                 target: tf.Tensor, half_pixel: bool) -> tf.Tensor:
    """Linear interpolation of [N, H, W, C] along spatial `axis` (1 or 2) to
    `length` output pixels, each image by its own source/target sizes."""
    coordinate = _source_coordinates(length, source, target, half_pixel)
    low = tf.floor(coordinate)
    weight = coordinate - low
    low = tf.cast(low, tf.int32)
    high = tf.minimum(low + 1, tf.cast(source, tf.int32)[:, None] - 1)
    first = tf.gather(images, low, axis=axis, batch_dims=1)
    second = tf.gather(images, high, axis=axis, batch_dims=1)
    shape = [-1, length, 1, 1] if axis == 1 else [-1, 1, length, 1]
    weight = tf.reshape(weight, shape)
    return first + (second - first) * weight


def resize_into_canvas(images: tf.Tensor, sizes: tf.Tensor, new_sizes: tf.Tensor,
                       canvas: Sequence[int], pad_value, half_pixel: bool) -> tf.Tensor:
    """Bilinearly resizes image i of a padded [N, H, W, C] batch from its
    `sizes[i]` to `new_sizes[i]` (height, width) and places it at the top left
    of a `canvas` (height, width) filled with `pad_value` (a scalar or per
    channel); `new_sizes` must fit in the canvas. `half_pixel` picks the
    convention of the model's training resizes (align corners otherwise)."""
    images = tf.cast(images, tf.float32)
    sizes, new_sizes = tf.cast(sizes, tf.int32), tf.cast(new_sizes, tf.int32)
    rows = _resize_axis(images, 1, canvas[0], sizes[:, 0], new_sizes[:, 0], half_pixel)
    resized = _resize_axis(rows, 2, canvas[1], sizes[:, 1], new_sizes[:, 1], half_pixel)
    inside_rows = tf.range(canvas[0])[None, :] < new_sizes[:, :1]
    inside_columns = tf.range(canvas[1])[None, :] < new_sizes[:, 1:]
    inside = tf.logical_and(inside_rows[:, :, None], inside_columns[:, None, :])
    pad = tf.broadcast_to(tf.constant(pad_value, tf.float32), [images.shape[-1] or 3])
    return tf.where(inside[..., None], resized, pad)


def _nearest_indices(length, source: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """[N, length] int32 source pixel of each output pixel, nearest neighbour
    half pixel: floor((i + 0.5) * source / target), exact, clamped."""
    index = tf.range(length)[None, :]
    source, target = source[:, None], tf.maximum(target[:, None], 1)
    return tf.minimum((2 * index + 1) * source // (2 * target), tf.maximum(source - 1, 0))


def sample_back(maps: tf.Tensor, canvas_sizes: tf.Tensor, sizes: tf.Tensor,
                output_size: Tuple) -> tf.Tensor:
    """Maps predicted on the canvas ([N, h, w] or [N, h, w, C]) -> the same
    maps at each image's own size (`sizes`, from `canvas_sizes`), nearest
    neighbour, in an `output_size` (height, width) batch; pixels beyond an
    image repeat its last row or column."""
    canvas_sizes, sizes = tf.cast(canvas_sizes, tf.int32), tf.cast(sizes, tf.int32)
    rows = _nearest_indices(output_size[0], canvas_sizes[:, 0], sizes[:, 0])
    columns = _nearest_indices(output_size[1], canvas_sizes[:, 1], sizes[:, 1])
    return tf.gather(tf.gather(maps, rows, axis=1, batch_dims=1), columns, axis=2,
                     batch_dims=1)
