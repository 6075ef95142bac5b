"""AutoAugment: the photometric policy of SWideRNet (paper 004, Table 2).

Five sub-policies of two operations each; one sub-policy is drawn uniformly per
image and each of its operations is applied with its probability. Operations
act on uint8 RGB images only (labels are untouched) and follow PIL's
ImageEnhance / ImageOps definitions, as the original AutoAugment did.

Magnitudes: Table 2 lists magnitudes such as 1.4 and 2.0. We read them on the
standard AutoAugment level scale 0..10 (the reference's simple policy uses
levels 0..10 times 0.2, which gives exactly these numbers):
- enhance factor (Sharpness, Brightness, Contrast, Color) = level / 10 * 1.8 + 0.1,
  so level 1.4 -> 0.352 and 2.0 -> 0.46 (factor 1 would be the identity);
- Solarize threshold = int(level / 10 * 256), truncated as in the standard
  implementation (level 1.4 -> 35): pixels >= threshold are inverted;
- Equalize ignores its magnitude.

Rounding: blends are computed in float, clipped to [0, 255] and truncated to
uint8 (PIL's Image.blend); grayscale is round(0.299 R + 0.587 G + 0.114 B);
the contrast mean is the rounded mean grayscale; the sharpness blur (kernel
[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13) is rounded and keeps border pixels.
"""
from typing import Callable, Dict, Tuple

import tensorflow as tf

MAX_LEVEL = 10.0

# (operation, probability, magnitude) pairs; Table 2 of paper 004.
POLICY: Tuple[Tuple[Tuple[str, float, float], ...], ...] = (
    (("sharpness", 0.4, 1.4), ("brightness", 0.2, 2.0)),
    (("equalize", 0.0, 1.8), ("contrast", 0.2, 2.0)),
    (("sharpness", 0.2, 1.8), ("color", 0.2, 1.8)),
    (("solarize", 0.2, 1.4), ("equalize", 0.6, 1.8)),
    (("sharpness", 0.2, 0.2), ("equalize", 0.2, 1.4)),
)


def enhance_factor(level: float) -> float:
    return level / MAX_LEVEL * 1.8 + 0.1


def solarize_threshold(level: float) -> int:
    return int(level / MAX_LEVEL * 256)


def blend(degenerate: tf.Tensor, image: tf.Tensor, factor: float) -> tf.Tensor:
    """`degenerate + factor * (image - degenerate)`, clipped and truncated to uint8."""
    degenerate = tf.cast(degenerate, tf.float32)
    out = degenerate + factor * (tf.cast(image, tf.float32) - degenerate)
    return tf.cast(tf.clip_by_value(out, 0.0, 255.0), tf.uint8)


def grayscale(image: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, 1] luma, ITU-R 601-2 weights, rounded."""
    rgb = tf.cast(image, tf.float32)
    luma = tf.tensordot(rgb, tf.constant([0.299, 0.587, 0.114]), axes=1)
    return tf.cast(tf.clip_by_value(tf.round(luma), 0.0, 255.0), tf.uint8)[..., None]


def brightness(image: tf.Tensor, factor: float) -> tf.Tensor:
    return blend(tf.zeros_like(image), image, factor)


def color(image: tf.Tensor, factor: float) -> tf.Tensor:
    return blend(grayscale(image), image, factor)


def contrast(image: tf.Tensor, factor: float) -> tf.Tensor:
    mean = tf.floor(tf.reduce_mean(tf.cast(grayscale(image), tf.float32)) + 0.5)
    return blend(mean, image, factor)


def sharpness(image: tf.Tensor, factor: float) -> tf.Tensor:
    """Blends with a smoothed copy; border pixels stay unchanged (needs H, W >= 3)."""
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(tf.cast(image, tf.float32)[None], kernel,
                                    [1, 1, 1, 1], "VALID")[0]
    smooth = tf.cast(tf.clip_by_value(tf.floor(smooth + 0.5), 0.0, 255.0), tf.uint8)
    middle = tf.concat([image[1:-1, :1], smooth, image[1:-1, -1:]], axis=1)
    degenerate = tf.concat([image[:1], middle, image[-1:]], axis=0)
    return blend(degenerate, image, factor)


def solarize(image: tf.Tensor, threshold: int) -> tf.Tensor:
    """Inverts pixels >= threshold."""
    return tf.where(tf.cast(image, tf.int32) < threshold, image, 255 - image)


def equalize(image: tf.Tensor) -> tf.Tensor:
    """Per-channel histogram equalization, as PIL's ImageOps.equalize.

    With h the channel histogram and step = (sum(h) - h[last used value]) // 255,
    value v maps to min((cumsum_before(v) + step // 2) // step, 255); channels
    with step 0 are unchanged.
    """
    channels = tf.reshape(tf.transpose(tf.cast(image, tf.int32), [2, 0, 1]), [3, -1])
    hist = tf.math.bincount(channels, minlength=256, maxlength=256, axis=-1)
    last_used = tf.reduce_max(tf.where(hist > 0, tf.range(256), -1), axis=1)
    last_count = tf.gather(hist, last_used, batch_dims=1)
    step = (tf.reduce_sum(hist, axis=1) - last_count) // 255
    safe_step = tf.maximum(step, 1)[:, None]
    before = tf.cumsum(hist, axis=1, exclusive=True)
    lut = tf.minimum((before + safe_step // 2) // safe_step, 255)
    lut = tf.where(step[:, None] > 0, lut, tf.range(256)[None, :])
    out = tf.gather(lut, channels, batch_dims=1)
    out = tf.transpose(tf.reshape(out, tf.concat([[3], tf.shape(image)[:2]], 0)), [1, 2, 0])
    return tf.cast(out, tf.uint8)


_OPS: Dict[str, Callable[[tf.Tensor, float], tf.Tensor]] = {
    "sharpness": lambda image, level: sharpness(image, enhance_factor(level)),
    "brightness": lambda image, level: brightness(image, enhance_factor(level)),
    "contrast": lambda image, level: contrast(image, enhance_factor(level)),
    "color": lambda image, level: color(image, enhance_factor(level)),
    "solarize": lambda image, level: solarize(image, solarize_threshold(level)),
    "equalize": lambda image, level: equalize(image),
}


def apply_operation(image: tf.Tensor, name: str, level: float) -> tf.Tensor:
    """Applies one named operation at a magnitude level (0..10 scale)."""
    if name not in _OPS:
        raise ValueError(f"Unknown AutoAugment operation {name!r}; known: {sorted(_OPS)}.")
    return tf.ensure_shape(_OPS[name](image, level), image.shape)


def _sub_policy(image, sub_policy, seeds):
    for (name, prob, level), seed in zip(sub_policy, seeds):
        if prob <= 0:
            continue
        apply = tf.random.stateless_uniform([], seed) < prob
        image = tf.cond(apply, lambda n=name, l=level, x=image: apply_operation(x, n, l),
                        lambda x=image: x)
    return image


def autoaugment(image: tf.Tensor, seed: tf.Tensor, policy=POLICY) -> tf.Tensor:
    """Applies one uniformly drawn sub-policy to a uint8 [H, W, 3] image.

    `seed` is a stateless seed of shape [2]; the result is deterministic in it.
    """
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:
        raise TypeError(f"AutoAugment expects a uint8 image, got {image.dtype.name}.")
    num_ops = max(len(sub) for sub in policy)
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, num_ops + 1))
    choice = tf.random.stateless_uniform([], seeds[0], 0, len(policy), tf.int32)
    branches = [lambda sub=sub: _sub_policy(image, sub, seeds[1:]) for sub in policy]
    return tf.switch_case(choice, branches)
