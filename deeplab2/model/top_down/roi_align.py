"""Aligned RoIAlign (detectron2 ROIAlignV2) on one feature map or over FPN levels P2..P5.

The rule (SPEC_TOP_DOWN.md section 1): a box edge x in image pixels is at the
continuous feature coordinate c = x / stride - 0.5. Each axis of a box holds
M = P * S sample points, point m at C0 + (m + 0.5)(C1 - C0) / M, sampled
bilinearly: a coordinate < -1 or > H (W for x) gives 0; otherwise it is clamped
at >= 0, and if its floor is >= H - 1 it becomes H - 1. A bin is the mean of its
S x S samples, invalid samples counting as 0.

Two equivalent forms:
- "gather": per box, separable 1-D indices and weights along each axis, 4
  gathers on the flattened map and outer-product weights. Static shapes, so it
  compiles with XLA (jit_compile=True); over FPN levels every box is pooled on
  every level and the output selects its own.
- "crop_and_resize": `tf.image.crop_and_resize` on the map edge-padded by 1, then
  an S x S average pool. No XLA kernel, but its forward pass is about 10x
  faster without XLA on CPU (1024 RoIs on a 192x256 pyramid); its gradient is
  a segment sum of its own (crop_and_resize's races on CPU, see
  `_crop_and_resize_boxes`); over FPN levels the boxes are partitioned by
  level, so each is pooled once.
"auto" (the default) takes "gather" while tracing for XLA and "crop_and_resize"
otherwise, so a model runs fast in eager and graph mode and still compiles.

Inputs are either one image (boxes [N, 4], map [H, W, C]) or a batch (boxes
[B, N, 4], map [B, H, W, C], box n of image b pooled on map b); the output is
[N, P, P, C] or [B, N, P, P, C] likewise.
"""
from typing import Mapping

import tensorflow as tf

from deeplab2.model.top_down.boxes import roi_levels
from deeplab2.model.top_down.xla_context import traced_for_xla

# FPN levels the RoIs are pooled from.
_MIN_LEVEL = 2
_MAX_LEVEL = 5

_METHODS = ("auto", "gather", "crop_and_resize")


def _resolve(method: str) -> str:
    """The form `method` stands for here ("auto": by the tracing context)."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if method != "auto":
        return method
    return "gather" if traced_for_xla() else "crop_and_resize"


def roi_align(features: tf.Tensor, boxes: tf.Tensor, output_size: int, stride: int, *,
              sampling_ratio: int = 2, method: str = "auto") -> tf.Tensor:
    """[N, P, P, C] (or [B, N, P, P, C]) aligned RoIAlign of `boxes` on one map.

    Args:
        features: [H, W, C] map, or [B, H, W, C].
        boxes: [N, 4] (x0, y0, x1, y1) in image pixels, or [B, N, 4].
        output_size: P, bins per axis.
        stride: image pixels per feature pixel.
        sampling_ratio: S, samples per bin per axis.
        method: "gather" (XLA-safe), "crop_and_resize" (no XLA kernel) or
            "auto" (see the module docstring).
    """
    method = _resolve(method)
    if len(boxes.shape) == 2:
        return roi_align(features[None], boxes[None], output_size, stride,
                         sampling_ratio=sampling_ratio, method=method)[0]
    pool = _gather_form if method == "gather" else _crop_and_resize_form
    return pool(features, tf.cast(boxes, tf.float32) / stride - 0.5,
                output_size, sampling_ratio)


def multilevel_roi_align(features: Mapping[int, tf.Tensor], boxes: tf.Tensor,
                         output_size: int, *, sampling_ratio: int = 2,
                         method: str = "auto") -> tf.Tensor:
    """RoIAlign of each box on its FPN level (`boxes.roi_levels`).

    Args:
        features: level -> map with stride 2**level, [H, W, C] or [B, H, W, C];
            levels 2..5 are used (others, e.g. the RPN-only P6, are ignored).
        boxes, output_size, sampling_ratio, method: as in `roi_align`.
    """
    method = _resolve(method)
    if len(boxes.shape) == 2:
        return multilevel_roi_align({level: value[None] for level, value in features.items()},
                                    boxes[None], output_size,
                                    sampling_ratio=sampling_ratio, method=method)[0]
    levels = roi_levels(tf.cast(boxes, tf.float32), _MIN_LEVEL, _MAX_LEVEL)
    if method == "crop_and_resize":
        return _partitioned_by_level(features, boxes, levels, output_size, sampling_ratio)

    def pool(level):
        return roi_align(features[level], boxes, output_size, 2 ** level,
                         sampling_ratio=sampling_ratio, method=method)

    # Static shapes: every box on every level, each keeping its own level's.
    levels = levels[..., None, None, None]
    pooled = pool(_MIN_LEVEL)
    for level in range(_MIN_LEVEL + 1, _MAX_LEVEL + 1):
        pooled = tf.where(levels == level, pool(level), pooled)
    return pooled


def _partitioned_by_level(features, boxes, levels, output_size, sampling_ratio):
    """crop_and_resize over levels: each box [B, N, 4] pooled on its level only."""
    batch, num_boxes = tf.shape(boxes)[0], tf.shape(boxes)[1]
    flat = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    box_image = tf.repeat(tf.range(batch), num_boxes)
    positions = tf.dynamic_partition(tf.range(batch * num_boxes),
                                     tf.reshape(levels, [-1]) - _MIN_LEVEL,
                                     _MAX_LEVEL - _MIN_LEVEL + 1)
    pooled = []
    for level, where in zip(range(_MIN_LEVEL, _MAX_LEVEL + 1), positions):
        corners = tf.gather(flat, where) / 2 ** level - 0.5
        pooled.append(_crop_and_resize_boxes(features[level], corners,
                                             tf.gather(box_image, where), output_size,
                                             sampling_ratio))
    channels = tf.shape(pooled[0])[-1]
    return tf.reshape(tf.dynamic_stitch(positions, pooled),
                      [batch, num_boxes, output_size, output_size, channels])


def _gather_form(features: tf.Tensor, corners: tf.Tensor, output_size: int,
                 sampling_ratio: int) -> tf.Tensor:
    """XLA form on [B, H, W, C] with box corners [B, N, 4] in continuous feature coordinates."""
    batch, height, width, channels = tf.unstack(tf.shape(features))
    num_boxes = tf.shape(corners)[1]
    # Index of image b's pixel (0, 0) in the flattened map, [B, 1, 1, 1].
    base = tf.reshape(tf.range(batch) * height * width, [-1, 1, 1, 1])
    return tf.reshape(_gathered_bins(features, corners, base, output_size, sampling_ratio),
                      [batch, num_boxes, output_size, output_size, channels])


def _gathered_bins(features, corners, base, output_size, sampling_ratio):
    """[..., P, P, C] bins of boxes `corners` [..., 4] on maps [B, H, W, C] by
    4 gathers; `base` [..., 1, 1] is the flat index of each box's map's pixel (0, 0)."""
    _, height, width, channels = tf.unstack(tf.shape(features))
    samples = output_size * sampling_ratio
    rows = axis_samples(corners[..., 1], corners[..., 3], height, samples)
    cols = axis_samples(corners[..., 0], corners[..., 2], width, samples)
    flat = tf.reshape(features, [-1, channels])
    total = 0.0
    for index, weight in _grid_corners(rows, cols, base, width):
        total += tf.gather(flat, index) * tf.cast(weight, features.dtype)[..., None]
    shape = tf.concat([tf.shape(total)[:-3], [output_size, sampling_ratio, output_size,
                                              sampling_ratio, channels]], 0)
    return tf.reduce_mean(tf.reshape(total, shape), axis=[-4, -2])


def _grid_corners(rows, cols, base, width):
    """The 4 bilinear corners of each sample of an M x M grid, from the
    `axis_samples` of its rows and columns ([..., M]) and the flat index
    `base` [..., 1, 1] of the map's pixel (0, 0): (flat indices, weights)
    pairs, each [..., M, M]."""
    return [(base + row_index[..., :, None] * width + col_index[..., None, :],
             row_weight[..., :, None] * col_weight[..., None, :])
            for row_index, row_weight in rows for col_index, col_weight in cols]


def axis_samples(start: tf.Tensor, end: tf.Tensor, size: tf.Tensor, samples: int):
    """((low index, low weight), (high index, high weight)), each [..., M], along one axis.

    Invalid samples (coordinate < -1 or > size) get weight 0 on both neighbours;
    indices are always in [0, size - 1] so the gathers stay in range.
    """
    step = (end - start) / samples
    offsets = tf.range(samples, dtype=tf.float32) + 0.5
    coord = start[..., None] + offsets * step[..., None]
    size = tf.cast(size, tf.float32)
    valid = tf.cast(tf.logical_and(coord >= -1.0, coord <= size), tf.float32)
    coord = tf.maximum(coord, 0.0)
    low = tf.floor(coord)
    at_edge = low >= size - 1.0
    low = tf.where(at_edge, size - 1.0, low)
    high = tf.where(at_edge, low, low + 1.0)
    fraction = tf.where(at_edge, 0.0, coord - low)
    return ((tf.cast(low, tf.int32), (1.0 - fraction) * valid),
            (tf.cast(high, tf.int32), fraction * valid))


def _crop_and_resize_form(features: tf.Tensor, corners: tf.Tensor, output_size: int,
                          sampling_ratio: int) -> tf.Tensor:
    """crop_and_resize form of `_gather_form` (same arguments and result)."""
    batch, num_boxes = tf.shape(corners)[0], tf.shape(corners)[1]
    bins = _crop_and_resize_boxes(features, tf.reshape(corners, [-1, 4]),
                                  tf.repeat(tf.range(batch), num_boxes), output_size,
                                  sampling_ratio)
    return tf.reshape(bins, [batch, num_boxes, output_size, output_size, tf.shape(bins)[-1]])


def _crop_and_resize_boxes(features: tf.Tensor, corners: tf.Tensor, box_image: tf.Tensor,
                           output_size: int, sampling_ratio: int) -> tf.Tensor:
    """[R, P, P, C] bins of boxes `corners` [R, 4] (continuous feature
    coordinates) on maps `features` [B, H, W, C], box r on map `box_image[r]`.

    The forward pass is crop_and_resize's. Its CPU gradient for the map
    (CropAndResizeGradImage) adds the boxes' contributions from several threads
    without synchronization, so overlapping boxes lose updates (measured:
    errors up to 5 on a test of 32 boxes, one run in five). The gradient is
    `_scattered_gradient` instead; the boxes get none (proposals and ground
    truth are constants).
    """
    @tf.custom_gradient
    def pool(features):
        def gradient(upstream):
            return _scattered_gradient(upstream, features, corners, box_image, output_size,
                                       sampling_ratio)

        return _crop_and_resize_bins(features, corners, box_image, output_size,
                                     sampling_ratio), gradient

    return pool(features)


def _scattered_gradient(upstream, features, corners, box_image, output_size, sampling_ratio):
    """The gradient of the map `features` [B, H, W, C] for the bins' gradient
    `upstream` [R, P, P, C].

    Each box spreads its bins' gradients over the pixels its samples read, by
    one of two equal sums (in float32, cast to the map's type):
    - windows: along each axis, the box's bins weigh the K pixels of a window
      (K the longest span over the boxes) with a [P, K] matrix; two batched
      matrix products give each box's [K_h, K_w] window, and one segment sum
      adds the windows into the map;
    - corners: one segment sum over the 4 bilinear corners of all M x M
      samples (M = P * S), 4 M^2 rows per box.
    The windows are taken when no span exceeds 2 M and K_h K_w <= 2 M^2: small
    windows hold fewer rows than the corners, wide ones more. UPSNet's RoI
    loss shape (the `roi_align` case of `scripts/benchmark.py gradients`):
    3.4-3.8x faster pooling and gradient than differentiating the gather form.
    """
    shape = tf.shape(features)
    height, width = shape[1], shape[2]
    num_boxes, channels = tf.shape(upstream)[0], tf.shape(upstream)[-1]
    upstream32 = tf.cast(upstream, tf.float32)
    samples = output_size * sampling_ratio
    rows = axis_samples(corners[:, 1], corners[:, 3], height, samples)
    cols = axis_samples(corners[:, 0], corners[:, 2], width, samples)
    row_start, row_span = _window(rows)
    col_start, col_span = _window(cols)
    segments = shape[0] * height * width

    def by_windows():
        row_weights = _window_weights(rows, row_start, row_span, output_size, sampling_ratio)
        col_weights = _window_weights(cols, col_start, col_span, output_size, sampling_ratio)
        # [R, P, K_w, C], then [R, K_h, K_w * C]: batched products, no transposes.
        spread = tf.matmul(tf.transpose(col_weights, [0, 2, 1])[:, None], upstream32)
        per_box = tf.matmul(row_weights, tf.reshape(spread, [num_boxes, output_size, -1]),
                            transpose_a=True)
        row = tf.minimum(row_start[:, None] + tf.range(row_span), height - 1)
        col = tf.minimum(col_start[:, None] + tf.range(col_span), width - 1)
        index = (box_image[:, None, None] * height + row[:, :, None]) * width + col[:, None, :]
        return tf.math.unsorted_segment_sum(tf.reshape(per_box, [-1, channels]),
                                            tf.reshape(index, [-1]), segments)

    def by_corners():
        per_sample = tf.repeat(tf.repeat(upstream32, sampling_ratio, axis=1),
                               sampling_ratio, axis=2) / float(sampling_ratio ** 2)
        base = tf.reshape(box_image * height * width, [-1, 1, 1])
        # The 4 corners' rows and weights [4, R, M, M], then one segment sum.
        index, weight = (tf.stack(values)
                         for values in zip(*_grid_corners(rows, cols, base, width)))
        return tf.math.unsorted_segment_sum(
            tf.reshape(per_sample * weight[..., None], [-1, channels]),
            tf.reshape(index, [-1]), segments)

    use_windows = ((tf.maximum(row_span, col_span) <= 2 * samples)
                   & (row_span * col_span <= 2 * samples * samples))
    gradient = tf.cond(use_windows, by_windows, by_corners)
    return tf.cast(tf.reshape(gradient, shape), features.dtype)


def _window(axis):
    """[R] first pixel each box's samples read along an axis (`axis_samples`'
    pair), and the longest span over the boxes (>= 1, also for no box)."""
    (low, _), (high, _) = axis
    start = tf.reduce_min(low, axis=1)
    span = tf.reduce_max(high, axis=1) - start + 1
    return start, tf.maximum(tf.reduce_max(span), 1)


def _window_weights(axis, start, span, output_size, sampling_ratio):
    """[R, P, span]: each bin's weight on the window's pixels along an axis,
    the mean of its S samples' bilinear weights."""
    total = 0.0
    for index, weight in axis:
        total += tf.one_hot(index - start[:, None], span) * weight[..., None]
    total = tf.reshape(total, [-1, output_size, sampling_ratio, span])
    return tf.reduce_sum(total, axis=2) / float(sampling_ratio)


def _crop_and_resize_bins(features, corners, box_image, output_size, sampling_ratio):
    """The forward pass of `_crop_and_resize_boxes`. With the map edge-padded by
    1, crop_and_resize's extrapolation (outside [0, H + 1] in padded
    coordinates) is exactly the < -1 or > H rule, and its interpolation with a
    padded row is exactly the clamp to row 0 or H - 1."""
    height, width = tf.shape(features)[1], tf.shape(features)[2]
    samples = output_size * sampling_ratio
    # crop_and_resize takes no bfloat16: mixed-precision maps are pooled in float32.
    padded = tf.pad(tf.cast(features, tf.float32), [[0, 0], [1, 1], [1, 1], [0, 0]],
                    mode="SYMMETRIC")
    x0, y0, x1, y1 = tf.unstack(corners, axis=-1)
    dx = (x1 - x0) / samples
    dy = (y1 - y0) / samples
    # First and last sample points, shifted by the pad, over the padded size - 1.
    span_y = tf.cast(height + 1, tf.float32)
    span_x = tf.cast(width + 1, tf.float32)
    normalized = tf.stack([(y0 + 0.5 * dy + 1.0) / span_y,
                           (x0 + 0.5 * dx + 1.0) / span_x,
                           (y0 + (samples - 0.5) * dy + 1.0) / span_y,
                           (x0 + (samples - 0.5) * dx + 1.0) / span_x], axis=-1)
    crops = tf.image.crop_and_resize(padded, normalized, box_image, [samples, samples],
                                     extrapolation_value=0.0)
    bins = tf.nn.avg_pool2d(crops, sampling_ratio, sampling_ratio, "VALID")
    return tf.cast(bins, features.dtype)
