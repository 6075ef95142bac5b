"""Geometric augmentation of an (image, panoptic label) pair, in TF ops.

Training: a random scale, random crop with padding, left-right flip. The
scale is either sampled from a range (Panoptic-DeepLab) or set per image by a
shorter side sampled from a range, capped so that the longer side stays within
a limit (top-down models, detectron2's ResizeShortestEdge). Evaluation: pad to
the crop size, nothing random. Randomness comes from stateless ops keyed by an
explicit seed, so a pipeline is reproducible element by element.

Conventions:
- Scale then crop, per side: when the scaled side fits in the crop, the whole
  side is resized to it and padded at the bottom/right (image with the model's
  pad value, by default 127.5, which its normalization maps to 0; label with
  the ignore id); otherwise a source window of about `crop / scale` pixels at
  a uniformly random position is resized to the crop (`crop_window`).
  Resizing the window rather than the whole image is the same up to rounding
  the window to whole pixels (and, half pixel, the crop's edge pixels, which
  clamp at the window's border), and costs at most one crop.
- Two resize conventions (`half_pixel`), each with its own lengths:
  - align corners (default, Panoptic-DeepLab): a side scales by its span,
    `round((size - 1) * scale) + 1` (half to even), and output pixel i of a
    side samples source coordinate `start + i * span / (length - 1)`;
  - half pixel (top-down families): a side scales to
    `floor(size * scale + 0.5)` (half up, as detectron2's `int(x + 0.5)`) and
    output pixel i samples `start + (i + 0.5) * window / length - 0.5` (the
    window's pixel count over the output's), i.e. about
    `(i + 0.5) / scale - 0.5`; labels take source pixel
    `start + floor((i + 0.5) * window / length)`.
  Images are resized bilinearly and labels by nearest neighbor.
- A flip mirrors the scaled window before it is padded (padding stays at the
  bottom/right).
- Images come out float32 in [0, 255]; labels int32.
"""
from typing import Optional, Sequence, Tuple, Union

import tensorflow as tf

# The default image padding: the pixel value models normalize to 0
# (deeplab2.model.meta.ModelConfig.pad_value).
IMAGE_PAD_VALUE = 127.5

PadValue = Union[float, Sequence[float]]


def pad_image(image: tf.Tensor, paddings, value: PadValue = IMAGE_PAD_VALUE) -> tf.Tensor:
    """Pads an [..., H, W, 3] image with a scalar or per-channel (R, G, B) value.

    `paddings` are those of the spatial axes and the channels, as for tf.pad.
    A per-channel value pads each channel separately, so pixels are copied,
    never recomputed.
    """
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * 3
    if len(set(values)) == 1:
        return tf.pad(image, paddings, constant_values=tf.cast(values[0], image.dtype))
    channels = tf.unstack(image, num=3, axis=-1)
    spatial = list(paddings)[:-1]
    return tf.stack([tf.pad(c, spatial, constant_values=tf.cast(v, image.dtype))
                     for c, v in zip(channels, values)], axis=-1)


def validate_crop_size(crop_size: Sequence[int], output_stride: int = 32) -> Tuple[int, int]:
    """Returns (height, width) after checking both are `k * output_stride + 1`.

    Such sizes keep feature maps aligned with input corners under
    align_corners resizing (e.g. 1025x2049, 513x1025, 641x641 at stride 32).
    """
    size = tuple(int(c) for c in crop_size)
    if len(size) != 2 or any(c < 1 or (c - 1) % output_stride for c in size):
        examples = ", ".join(f"{a * output_stride + 1}x{b * output_stride + 1}"
                             for a, b in ((32, 64), (16, 32), (20, 20)))
        raise ValueError(
            f"Crop size {tuple(crop_size)} must be (height, width) with each side "
            f"k * {output_stride} + 1 (output stride {output_stride}), e.g. {examples}.")
    return size


def sample_scale(seed: tf.Tensor, min_scale: float, max_scale: float,
                 scale_step: float) -> tf.Tensor:
    """A float64 scale in [min_scale, max_scale] on a grid of `scale_step`.

    `scale_step == 0` samples the interval uniformly.
    """
    if not 0 < min_scale <= max_scale:
        raise ValueError(f"Need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}.")
    if scale_step < 0:
        raise ValueError(f"scale_step must be >= 0, got {scale_step}.")
    if min_scale == max_scale:
        return tf.constant(min_scale, tf.float64)
    if scale_step == 0:
        return tf.random.stateless_uniform([], seed, min_scale, max_scale, tf.float64)
    steps = (max_scale - min_scale) / scale_step
    if abs(steps - round(steps)) > 1e-6:
        raise ValueError(f"max_scale - min_scale ({max_scale} - {min_scale}) must be a "
                         f"multiple of scale_step {scale_step}.")
    k = tf.random.stateless_uniform([], seed, 0, int(round(steps)) + 1, tf.int32)
    return min_scale + tf.cast(k, tf.float64) * scale_step


def _round_half_up(value: tf.Tensor) -> tf.Tensor:
    """int32 `floor(value + 0.5)`, detectron2's `int(x + 0.5)` rounding of sizes."""
    return tf.cast(tf.floor(value + 0.5), tf.int32)


def crop_window(size: tf.Tensor, crop: int, scale: tf.Tensor, half_pixel: bool = False
                ) -> Tuple[tf.Tensor, tf.Tensor]:
    """(source span, output length) of one side scaled by `scale` and cropped;
    the source window is `span + 1` pixels.

    Align corners (default): sizes scale by their span. If the scaled side
    `round((size - 1) * scale) + 1` fits in `crop`, the whole side (span
    size - 1) is resized to that length. Otherwise a source window of span
    `round((crop - 1) / scale)` pixels is resized to exactly `crop`. Either way
    output pixel i samples source pixel i / scale (up to the rounding of the
    length), the grid test-time augmentation at `scale` uses
    (deeplab2.inference.predictor), so a model sees the same pixels there.

    Half pixel: sizes scale by their pixel count. If `floor(size * scale +
    0.5)` fits in `crop`, the whole side is resized to it; otherwise a window
    of `floor(crop / scale + 0.5)` pixels is resized to `crop` (lengths at
    least 1).
    """
    scale = tf.cast(scale, tf.float64)
    if half_pixel:
        scaled = tf.maximum(_round_half_up(tf.cast(size, tf.float64) * scale), 1)
        window = tf.clip_by_value(_round_half_up(crop / scale), 1, size)
        fits = scaled <= crop
        return tf.where(fits, size, window) - 1, tf.where(fits, scaled, crop)
    scaled = tf.cast(tf.round(tf.cast(size - 1, tf.float64) * scale), tf.int32) + 1
    fits = scaled <= crop
    window = tf.minimum(tf.cast(tf.round((crop - 1) / scale), tf.int32), size - 1)
    return tf.where(fits, size - 1, window), tf.where(fits, scaled, crop)


def _nearest_indices(start: tf.Tensor, span: tf.Tensor, length: tf.Tensor,
                     half_pixel: bool = False) -> tf.Tensor:
    """Source indices of `length` outputs spanning start..start+span: align
    corners `floor(i * span / (length - 1) + 0.5)`, half pixel
    `floor((i + 0.5) * (span + 1) / length)` (exact in int32)."""
    if half_pixel:
        return start + (2 * tf.range(length) + 1) * (span + 1) // (2 * length)
    ratio = tf.cast(span, tf.float64) / tf.cast(tf.maximum(length - 1, 1), tf.float64)
    steps = tf.cast(tf.range(length), tf.float64)
    return start + tf.cast(tf.floor(steps * ratio + 0.5), tf.int32)


def _pad_to(image: tf.Tensor, label: tf.Tensor, crop_size: Tuple[int, int],
            ignore_id: int, pad_value: PadValue) -> Tuple[tf.Tensor, tf.Tensor]:
    """Pads a pair no larger than `crop_size` at the bottom/right."""
    pad_h = crop_size[0] - tf.shape(label)[0]
    pad_w = crop_size[1] - tf.shape(label)[1]
    image = pad_image(image, [[0, pad_h], [0, pad_w], [0, 0]], pad_value)
    label = tf.pad(label, [[0, pad_h], [0, pad_w]], constant_values=ignore_id)
    return (tf.ensure_shape(image, [*crop_size, 3]), tf.ensure_shape(label, crop_size))


def scale_and_crop(image: tf.Tensor, label: tf.Tensor, scale: tf.Tensor,
                   offset: Tuple[tf.Tensor, tf.Tensor], crop_size: Tuple[int, int],
                   ignore_id: int, flip: Union[bool, tf.Tensor] = False,
                   pad_value: PadValue = IMAGE_PAD_VALUE, half_pixel: bool = False
                   ) -> Tuple[tf.Tensor, tf.Tensor]:
    """Resizes the source window at `offset` (y, x) by `scale`, padded to the crop.

    Each side follows `crop_window`; `offset` is the window's top-left corner
    in source pixels, in [0, size - 1 - span]. Only the output window is
    computed, so scale 2.0 costs no more than scale 1.0. With `flip` the window
    is mirrored left-right before padding (the small uint8 source window is
    reversed, not the float output).

    Args:
        image: uint8 or float [H, W, 3].
        label: int32 [H, W] panoptic label.
        scale: scalar scale factor.
        offset: source top-left corner of the window.
        crop_size: (height, width) of the output.
        ignore_id: label value of padded pixels.
        flip: bool scalar, mirror the window.
        pad_value: image value of padded pixels, scalar or (R, G, B).
        half_pixel: the half-pixel convention instead of align corners (see
            the module docstring).
    """
    flip = tf.convert_to_tensor(flip, tf.bool)
    span_y, rows = crop_window(tf.shape(label)[0], crop_size[0], scale, half_pixel)
    span_x, cols = crop_window(tf.shape(label)[1], crop_size[1], scale, half_pixel)
    window = image[offset[0]:offset[0] + span_y + 1, offset[1]:offset[1] + span_x + 1]
    window = tf.cond(flip, lambda: tf.reverse(window, [1]), lambda: window)
    if half_pixel:
        image = tf.image.resize(window, [rows, cols], method="bilinear")
    else:
        image = tf.compat.v1.image.resize(window, [rows, cols], align_corners=True)
    image = tf.cast(image, tf.float32)
    col_index = _nearest_indices(offset[1], span_x, cols, half_pixel)
    col_index = tf.cond(flip, lambda: tf.reverse(col_index, [0]), lambda: col_index)
    label = tf.gather(label, _nearest_indices(offset[0], span_y, rows, half_pixel))
    label = tf.gather(label, col_index, axis=1)
    return _pad_to(image, label, crop_size, ignore_id, pad_value)


def validate_shorter_side(shorter_side: Sequence[int], step: int,
                          max_longer_side: Optional[int], prefix: str = ""
                          ) -> Tuple[int, int]:
    """Returns `shorter_side` as (min, max) after checking the shorter-side
    options; errors name them with `prefix` (e.g. "TrainingInput.")."""
    def is_int(value):
        return isinstance(value, int) and not isinstance(value, bool)

    sides = tuple(shorter_side) if isinstance(shorter_side, (tuple, list)) else ()
    if len(sides) != 2 or not all(is_int(s) and s > 0 for s in sides) or sides[0] > sides[1]:
        raise ValueError(f"{prefix}shorter_side must be (min, max) positive integers with "
                         f"min <= max, got {shorter_side!r}.")
    if not is_int(step) or step < 0:
        raise ValueError(f"{prefix}shorter_side_step must be an integer >= 0 (0: "
                         f"continuous), got {step!r}.")
    if step and (sides[1] - sides[0]) % step:
        raise ValueError(f"{prefix}shorter_side_step {step} must divide max - min of "
                         f"{prefix}shorter_side {sides}.")
    if max_longer_side is not None and not (is_int(max_longer_side) and max_longer_side > 0):
        raise ValueError(f"{prefix}max_longer_side must be a positive integer or None, "
                         f"got {max_longer_side!r}.")
    return sides


def shorter_side_scale(seed: tf.Tensor, height: tf.Tensor, width: tf.Tensor,
                       shorter_side: Tuple[int, int], step: int = 32,
                       max_longer_side: Optional[int] = None) -> tf.Tensor:
    """The float64 scale that takes the shorter side of an image to a random S.

    S is uniform on min, min + step, ..., max of `shorter_side` (`step == 0`:
    uniform on the interval); scale = S / min(height, width), lowered to
    max_longer_side / max(height, width) when the longer side would exceed it.
    """
    low, high = validate_shorter_side(shorter_side, step, max_longer_side)
    side = sample_scale(seed, low, high, step)  # the same grid draw, in pixels
    height, width = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    scale = side / tf.minimum(height, width)
    if max_longer_side is not None:
        scale = tf.minimum(scale, max_longer_side / tf.maximum(height, width))
    return scale


def random_scale_crop_flip(image: tf.Tensor, label: tf.Tensor, seed: tf.Tensor,
                           crop_size: Tuple[int, int], ignore_id: int, *,
                           min_scale: float = 0.5, max_scale: float = 2.0,
                           scale_step: float = 0.1,
                           shorter_side: Optional[Tuple[int, int]] = None,
                           shorter_side_step: int = 32,
                           max_longer_side: Optional[int] = None,
                           longest_side: Optional[int] = None,
                           flip_prob: float = 0.5,
                           pad_value: PadValue = IMAGE_PAD_VALUE,
                           half_pixel: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
    """Training augmentation of one pair; `seed` is a stateless seed of shape [2].

    The scale is `sample_scale` of the scale range, or, when `shorter_side`
    is set, `shorter_side_scale` of the image (the scale range is then unused).
    `longest_side` L first brings the image's longer side M to exactly L
    pixels: the sampled scale multiplies L / M (half pixel) or
    (L - 1) / (M - 1) (align corners, whose sides scale by their span).
    Returns float32 [crop_h, crop_w, 3] and int32 [crop_h, crop_w].
    """
    scale_seed, y_seed, x_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4))
    height, width = tf.shape(label)[0], tf.shape(label)[1]
    if shorter_side is None:
        scale = sample_scale(scale_seed, min_scale, max_scale, scale_step)
    else:
        scale = shorter_side_scale(scale_seed, height, width, shorter_side,
                                   shorter_side_step, max_longer_side)
    if longest_side is not None:
        longer = tf.cast(tf.maximum(height, width), tf.float64)
        if half_pixel:
            scale = scale * (longest_side / longer)
        else:
            scale = scale * ((longest_side - 1) / tf.maximum(longer - 1, 1))
    span_y, _ = crop_window(height, crop_size[0], scale, half_pixel)
    span_x, _ = crop_window(width, crop_size[1], scale, half_pixel)
    offset = (tf.random.stateless_uniform([], y_seed, 0, height - span_y, tf.int32),
              tf.random.stateless_uniform([], x_seed, 0, width - span_x, tf.int32))
    flip = tf.random.stateless_uniform([], flip_seed) < flip_prob
    return scale_and_crop(image, label, scale, offset, crop_size, ignore_id, flip,
                          pad_value, half_pixel)


def pad_for_eval(image: tf.Tensor, label: tf.Tensor, crop_size: Tuple[int, int],
                 ignore_id: int, pad_value: PadValue = IMAGE_PAD_VALUE
                 ) -> Tuple[tf.Tensor, tf.Tensor]:
    """Pads the pair at the bottom/right to `crop_size`; nothing random.

    Raises InvalidArgumentError when the image is larger than the crop size.
    """
    shape = tf.shape(label)
    checks = [tf.debugging.assert_less_equal(
        shape, tf.constant(crop_size, tf.int32),
        message=f"Evaluation image is larger than the crop size {tuple(crop_size)}; "
                "raise crop_size to at least the largest image size (k*stride+1).")]
    with tf.control_dependencies(checks):  # Both pads wait for the check.
        image = tf.cast(image, tf.float32)
        label = tf.identity(label)
    return _pad_to(image, label, crop_size, ignore_id, pad_value)
