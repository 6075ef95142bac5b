"""Pastes the M x M mask probabilities of boxes into the image (SPEC_TOP_DOWN section 1).

Image pixel (y, x) samples its box's mask at u = (x + 0.5 - x0) / (x1 - x0) * M - 0.5
(and v likewise from y), bilinearly, with zeros outside the M x M grid: detectron2's
paste (grid_sample with align_corners=False). Bilinear sampling of a grid is separable:
with interpolation matrices Ay [N, H, M] and Ax [N, W, M], row y of Ay holding 1 - f
and f at columns floor(v) and floor(v) + 1 (f = v - floor(v); columns outside the grid
are dropped, which is the zero padding), the pasted masks are Ay @ mask @ Ax^T. This
form is exact and compiles with XLA. The masks are pasted a chunk at a time in a loop,
so only one chunk of float [chunk, H, W] exists at once (100 masks of 1024 x 2048 are
800 MB of float32; their binary form is a quarter of it).
"""
from typing import Callable

import tensorflow as tf


def paste_masks(masks: tf.Tensor, boxes: tf.Tensor, height, width, *,
                chunk_size: int = 8) -> tf.Tensor:
    """[N, M, M] probabilities in [N, 4] (x0, y0, x1, y1) boxes -> [N, height, width] float32.

    `height` and `width` are ints or scalar int32 tensors.

    A box with zero width or height pastes nothing. `chunk_size` bounds memory only.
    """
    return _paste_in_chunks(masks, boxes, height, width, chunk_size, tf.float32, lambda p: p)


def paste_binary_masks(masks: tf.Tensor, boxes: tf.Tensor, height, width, *,
                       threshold: float = 0.5, chunk_size: int = 8) -> tf.Tensor:
    """As `paste_masks`, then pasted probability >= `threshold`: [N, height, width] bool."""
    return _paste_in_chunks(masks, boxes, height, width, chunk_size, tf.bool,
                            lambda p: p >= threshold)


def _paste_in_chunks(masks: tf.Tensor, boxes: tf.Tensor, height, width,
                     chunk_size: int, dtype: tf.DType,
                     finish: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """Pastes the masks `chunk_size` at a time and applies `finish` to each chunk."""
    num_masks, grid, _ = masks.shape
    chunk_size = max(1, min(chunk_size, num_masks))
    num_chunks = -(-num_masks // chunk_size)
    padding = num_chunks * chunk_size - num_masks
    masks = tf.reshape(tf.pad(tf.cast(masks, tf.float32), [[0, padding], [0, 0], [0, 0]]),
                       [num_chunks, chunk_size, grid, grid])
    boxes = tf.reshape(tf.pad(tf.cast(boxes, tf.float32), [[0, padding], [0, 0]]),
                       [num_chunks, chunk_size, 4])
    pasted = tf.map_fn(lambda chunk: finish(_paste(chunk[0], chunk[1], height, width)),
                       (masks, boxes), fn_output_signature=dtype)
    return tf.reshape(pasted, [num_chunks * chunk_size, height, width])[:num_masks]


def _paste(masks: tf.Tensor, boxes: tf.Tensor, height, width) -> tf.Tensor:
    """[n, M, M] masks of [n, 4] boxes -> [n, height, width] probabilities."""
    grid = masks.shape[-1]
    rows = _interpolation(boxes[:, 1], boxes[:, 3], height, grid)
    columns = _interpolation(boxes[:, 0], boxes[:, 2], width, grid)
    return tf.einsum("nhi,nij,nwj->nhw", rows, masks, columns)


def _interpolation(start: tf.Tensor, end: tf.Tensor, size, grid: int) -> tf.Tensor:
    """[n, size, grid] bilinear weights of the grid cells sampled by each pixel of an axis."""
    pixel = tf.range(size, dtype=tf.float32)[None] + 0.5
    length = (end - start)[:, None]
    u = (pixel - start[:, None]) / length * grid - 0.5
    # Coordinates outside [-1, grid] sample zeros only: clipping them keeps the floor in
    # int32 range. An empty box samples nowhere.
    u = tf.where(length > 0, tf.clip_by_value(u, -2.0, grid + 1.0), -2.0)
    low = tf.floor(u)
    fraction = (u - low)[..., None]
    index = tf.cast(low, tf.int32)
    return tf.one_hot(index, grid) * (1.0 - fraction) + tf.one_hot(index + 1, grid) * fraction
