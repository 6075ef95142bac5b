"""Panoptic-DeepLab training targets computed from a panoptic label.

Everything is vectorized TF (no loop over instances, no py_function), so it
runs inside the tf.data pipeline after augmentation. Per-segment areas and
coordinate sums come from the label's row runs; per-id tables (indexed by the
panoptic id itself, at most a few 100k entries) are then gathered back to
pixels, and the Gaussians are scattered window by window.

Decisions:
- Center = mean of the instance's pixel coordinates rounded half to even
  (`tf.round`), as the reference deeplab2 sample generator does.
- The Gaussian window has `2 * round(3 * sigma + 1) + 1` pixels a side (51 for
  sigma 8, i.e. 6 * sigma + 3); it is not truncated at a radius, values outside
  it are 0, and the peak is exactly 1.0.
- Heatmap, offsets and weights use every instance; only the CENTER_POINTS list
  is truncated to `max_instances` rows (instances sorted by panoptic id).
- Crowd pixels (thing class, instance 0) keep their semantic class and weight 1,
  but get center weight 0 and no offset.
"""
import functools
from typing import Dict, Union

import gin
import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.dataset_info import DatasetInfo


def _gaussian_patch(sigma: float) -> np.ndarray:
    """The square Gaussian window, peak 1.0 at its center."""
    radius = int(round(3 * sigma + 1))
    d = np.arange(-radius, radius + 1, dtype=np.float64)
    sq = d[:, None] ** 2 + d[None, :] ** 2
    return np.exp(-sq / (2.0 * sigma ** 2)).astype(np.float32)


def _dims(label: tf.Tensor):
    """(height, width): Python ints when static, scalar tensors otherwise."""
    static = label.shape.as_list()
    dynamic = tf.shape(label)
    return tuple(s if s is not None else dynamic[i] for i, s in enumerate(static))


@functools.lru_cache(maxsize=4)
def _numpy_shifted_coords(height: int, width: int) -> np.ndarray:
    grid = np.stack(np.mgrid[1:height + 1, 1:width + 1], -1)
    return grid.astype(np.float32)


def _shifted_coords(height, width) -> tf.Tensor:
    """float32 [H, W, 2] holding (y + 1, x + 1) at pixel (y, x).

    Static sizes get a constant built once with numpy: the graph optimizer does
    not fold tensors over 10 MB, and rebuilding the grid costs several ms per
    1025x2049 example. Dynamic sizes compute it.
    """
    if isinstance(height, int) and isinstance(width, int):
        return tf.constant(_numpy_shifted_coords(height, width))
    rows, cols = tf.meshgrid(tf.range(1, height + 1), tf.range(1, width + 1), indexing="ij")
    return tf.cast(tf.stack([rows, cols], -1), tf.float32)


def _segment_stats(label: tf.Tensor):
    """(ids, area, row sum, column sum) of each panoptic id present in `label`.

    A label is piecewise constant along its rows, so it is summarised by its
    runs of equal values (tens per row) and each run contributes closed-form
    sums: one comparison pass over the pixels instead of three full-resolution
    histograms. Ids come in order of first appearance; sums are float64, exact
    for any area.
    """
    width = tf.shape(label)[1]
    flat = tf.reshape(label, [-1])
    size = tf.size(flat)
    is_start = tf.concat([[True], tf.not_equal(flat[1:], flat[:-1])], 0)
    is_start |= tf.equal(tf.range(size) % width, 0)  # every row starts a run
    starts = tf.cast(tf.where(is_start)[:, 0], tf.int32)
    lengths = tf.concat([starts[1:], [size]], 0) - starts
    ids, run_id = tf.unique(tf.gather(flat, starts))
    num = tf.size(ids)
    row = tf.cast(starts // width, tf.float64)
    first_col = tf.cast(starts % width, tf.float64)
    length = tf.cast(lengths, tf.float64)
    sums = tf.math.unsorted_segment_sum(
        tf.stack([row * length, length * first_col + length * (length - 1) / 2], 1),
        run_id, num)
    return ids, tf.math.unsorted_segment_sum(lengths, run_id, num), sums[:, 0], sums[:, 1]


def _heatmap(centers: tf.Tensor, height, width, sigma: float) -> tf.Tensor:
    """Max over instances of the Gaussian windows placed at `centers` [K, 2].

    Each window is scattered with a max into a canvas padded by the window
    radius (cost O(K * window area)), then the canvas is cropped.
    """
    patch = _gaussian_patch(sigma)
    size = patch.shape[0]
    radius = size // 2
    steps = tf.range(size, dtype=tf.int32)
    # In padded coordinates the window of center c starts at c - radius + radius.
    rows = centers[:, 0, None, None] + steps[None, :, None]
    cols = centers[:, 1, None, None] + steps[None, None, :]
    k = tf.shape(centers)[0]
    indices = tf.stack([tf.broadcast_to(rows, [k, size, size]),
                        tf.broadcast_to(cols, [k, size, size])], axis=-1)
    updates = tf.broadcast_to(tf.constant(patch), [k, size, size])
    canvas = tf.zeros([height + 2 * radius, width + 2 * radius], tf.float32)
    canvas = tf.tensor_scatter_nd_max(canvas, indices, updates)
    return canvas[radius:radius + height, radius:radius + width]


def make_targets(panoptic_label: Union[tf.Tensor, np.ndarray],
                 dataset_info: DatasetInfo,
                 *,
                 sigma: float = 8,
                 small_instance_area: int = 4096,
                 small_instance_weight: float = 3.0,
                 max_instances: int = 256) -> Dict[str, tf.Tensor]:
    """Semantic, center and offset targets and loss weights of one label.

    Args:
        panoptic_label: int32 [H, W], `class * label_divisor + instance`, >= 0;
            ignore pixels are `ignore_label * label_divisor`.
        dataset_info: descriptor giving thing ids, ignore label and divisor.
        sigma: standard deviation of the center Gaussians, in pixels.
        small_instance_area: thing instances with fewer pixels (in this label)
            get `small_instance_weight` as semantic weight.
        small_instance_weight: semantic weight of small instances (1 = off).
        max_instances: rows of CENTER_POINTS.

    Returns:
        A dict with SEMANTIC_TARGET (int32 [H, W]), CENTER_HEATMAP_TARGET,
        SEMANTIC_WEIGHTS, CENTER_WEIGHTS, OFFSET_WEIGHTS (float32 [H, W]),
        OFFSET_TARGET (float32 [H, W, 2], (y, x) = center - pixel),
        CENTER_POINTS (int32 [max_instances, 2], (y, x), -1 padded) and
        NUM_INSTANCES (int32, valid rows of CENTER_POINTS).
    """
    label = tf.convert_to_tensor(panoptic_label, tf.int32)
    label.shape.assert_has_rank(2)
    height, width = _dims(label)
    divisor = dataset_info.label_divisor
    flat = tf.reshape(label, [-1])
    ids, ids_area, sum_y, sum_x = _segment_stats(label)
    num_ids = tf.reduce_max(ids) + 1  # size of the per-id tables
    centers = tf.cast(tf.round(tf.stack([sum_y, sum_x], 1)
                               / tf.cast(ids_area, tf.float64)[:, None]), tf.int32)

    id_class = ids // divisor
    id_instance = ids - id_class * divisor
    thing_ids = tf.constant(dataset_info.thing_ids or (-1,), tf.int32)
    thing_class = tf.reduce_any(tf.equal(id_class[:, None], thing_ids[None, :]), axis=1)
    is_instance = thing_class & (id_instance > 0)
    is_crowd = thing_class & tf.equal(id_instance, 0)
    is_ignore = tf.equal(id_class, dataset_info.ignore_label)
    semantic_weight = tf.where(is_instance & (ids_area < small_instance_area),
                               tf.cast(small_instance_weight, tf.float32), 1.0)
    semantic_weight = tf.where(is_ignore, 0.0, semantic_weight)
    center_weight = tf.where(is_ignore | is_crowd, 0.0, 1.0)
    # Center + 1 for instances, 0 elsewhere: offsets and the instance mask then
    # follow by arithmetic (tf.where over all pixels is several times slower).
    shifted_centers = tf.cast(centers + 1, tf.float32) * tf.cast(is_instance, tf.float32)[:, None]

    def to_pixels(values):
        """Gathers per-id rows [K, C] of the present ids to pixels [H, W, C]."""
        table = tf.scatter_nd(ids[:, None], values, [num_ids, values.shape[1]])
        return tf.reshape(tf.gather(table, flat), [height, width, values.shape[1]])

    pixel_centers = to_pixels(shifted_centers)
    pixel_is_instance = tf.minimum(pixel_centers, 1.0)
    offsets = pixel_centers - pixel_is_instance * _shifted_coords(height, width)
    weights = to_pixels(tf.stack([semantic_weight, center_weight], 1))

    instance_centers = tf.gather(tf.boolean_mask(centers, is_instance),
                                 tf.argsort(tf.boolean_mask(ids, is_instance)))
    num_instances = tf.minimum(tf.shape(instance_centers)[0], max_instances)
    points = tf.pad(instance_centers[:max_instances],
                    [[0, max_instances - num_instances], [0, 0]], constant_values=-1)
    points = tf.ensure_shape(points, [max_instances, 2])

    return {
        common.SEMANTIC_TARGET: label // divisor,
        common.CENTER_HEATMAP_TARGET: _heatmap(instance_centers, height, width, sigma),
        common.CENTER_POINTS: points,
        common.NUM_INSTANCES: num_instances,
        common.OFFSET_TARGET: offsets,
        common.SEMANTIC_WEIGHTS: weights[..., 0],
        common.CENTER_WEIGHTS: weights[..., 1],
        common.OFFSET_WEIGHTS: pixel_is_instance[..., 0],
    }


@gin.configurable(denylist=["dataset_info"])
class PanopticDeepLabTargets:
    """The targets the input pipeline adds for Panoptic-DeepLab training.

    The Gin edge of `make_targets`: bind its options here, e.g.
    `PanopticDeepLabTargets.small_instance_area = 1024`; the label space comes
    from the model's dataset.
    """

    def __init__(self, dataset_info: DatasetInfo, *, sigma: float = 8,
                 small_instance_area: int = 4096, small_instance_weight: float = 3.0,
                 max_instances: int = 256):
        self.dataset_info = dataset_info
        self.options = dict(sigma=sigma, small_instance_area=small_instance_area,
                            small_instance_weight=small_instance_weight,
                            max_instances=max_instances)

    def __call__(self, panoptic_label: tf.Tensor) -> Dict[str, tf.Tensor]:
        return make_targets(panoptic_label, self.dataset_info, **self.options)
