"""AutoAugment operations against numpy formulas and PIL, and the policy itself."""
import itertools

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from deeplab2.data import autoaugment as aa


def _image(seed=0, shape=(23, 31, 3)):
    image = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    image[:4] = 250  # a bright band so that clipping happens
    return image


def _blend(degenerate, image, factor):
    out = degenerate.astype(np.float32) + np.float32(factor) * (
        image.astype(np.float32) - degenerate.astype(np.float32))
    return np.clip(out, 0, 255).astype(np.uint8)


def _gray(image):
    luma = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.clip(np.round(luma), 0, 255).astype(np.uint8)


def test_level_scale():
    assert aa.enhance_factor(1.4) == pytest.approx(0.352)
    assert aa.enhance_factor(2.0) == pytest.approx(0.46)
    assert aa.enhance_factor(10) == pytest.approx(1.9)
    assert aa.solarize_threshold(1.4) == 35 and aa.solarize_threshold(10) == 256


def test_policy_is_table_2_of_paper_004():
    assert aa.POLICY == (
        (("sharpness", 0.4, 1.4), ("brightness", 0.2, 2.0)),
        (("equalize", 0.0, 1.8), ("contrast", 0.2, 2.0)),
        (("sharpness", 0.2, 1.8), ("color", 0.2, 1.8)),
        (("solarize", 0.2, 1.4), ("equalize", 0.6, 1.8)),
        (("sharpness", 0.2, 0.2), ("equalize", 0.2, 1.4)),
    )


@pytest.mark.parametrize("threshold", [0, 35, 128, 256])
def test_solarize(threshold):
    image = _image()
    expected = np.where(image < threshold, image, 255 - image)
    np.testing.assert_array_equal(aa.solarize(tf.constant(image), threshold), expected)


@pytest.mark.parametrize("factor", [0.352, 0.46, 1.5])
def test_brightness_is_a_blend_with_black(factor):
    image = _image()
    expected = np.clip(image.astype(np.float32) * np.float32(factor), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(aa.brightness(tf.constant(image), factor), expected)


@pytest.mark.parametrize("factor", [0.424, 1.5])
def test_color_is_a_blend_with_grayscale(factor):
    image = _image()
    expected = _blend(_gray(image)[..., None], image, factor)
    np.testing.assert_array_equal(aa.color(tf.constant(image), factor), expected)


def test_contrast_is_a_blend_with_the_mean_gray():
    image = _image()
    mean = np.floor(_gray(image).mean() + 0.5)
    expected = _blend(np.full_like(image, mean), image, 0.46)
    np.testing.assert_array_equal(aa.contrast(tf.constant(image), 0.46), expected)


def test_sharpness_blends_with_a_smoothed_interior():
    image = _image()
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float64) / 13
    smooth = image.astype(np.float64).copy()
    for y in range(1, image.shape[0] - 1):
        for x in range(1, image.shape[1] - 1):
            patch = image[y - 1:y + 2, x - 1:x + 2].astype(np.float64)
            smooth[y, x] = np.floor((patch * kernel[..., None]).sum((0, 1)) + 0.5)
    expected = _blend(smooth.astype(np.uint8), image, 0.352)
    np.testing.assert_array_equal(aa.sharpness(tf.constant(image), 0.352), expected)


def test_equalize_on_a_known_histogram():
    # Values 10, 20, 30 with 255 pixels each: step = (765 - 255) // 255 = 2, so
    # 10 -> (1 + 0) // 2 = 0, 20 -> (1 + 255) // 2 = 128, 30 -> (1 + 510) // 2 = 255.
    values = np.repeat(np.array([10, 20, 30], np.uint8), 255)
    channels = [np.random.default_rng(c).permutation(values) for c in range(3)]
    image = np.stack(channels, -1).reshape(15, 51, 3)
    lut = {10: 0, 20: 128, 30: 255}
    expected = np.vectorize(lut.get)(image).astype(np.uint8)
    np.testing.assert_array_equal(aa.equalize(tf.constant(image)), expected)


def test_equalize_leaves_a_flat_channel_unchanged():
    image = _image()
    image[..., 1] = 77
    out = aa.equalize(tf.constant(image)).numpy()
    np.testing.assert_array_equal(out[..., 1], 77)


@pytest.mark.parametrize("name, pil_op", [
    ("brightness", lambda im, f: ImageEnhance.Brightness(im).enhance(f)),
    ("color", lambda im, f: ImageEnhance.Color(im).enhance(f)),
    ("contrast", lambda im, f: ImageEnhance.Contrast(im).enhance(f)),
    ("sharpness", lambda im, f: ImageEnhance.Sharpness(im).enhance(f)),
])
def test_enhance_ops_match_pil(name, pil_op):
    image = _image(seed=5)
    for level in (0.2, 1.4, 2.0, 7.0):
        ours = aa.apply_operation(tf.constant(image), name, level)
        theirs = np.asarray(pil_op(Image.fromarray(image), aa.enhance_factor(level)))
        np.testing.assert_array_equal(ours, theirs, err_msg=f"{name} level {level}")


def test_equalize_and_solarize_match_pil():
    image = _image(seed=6)
    np.testing.assert_array_equal(aa.equalize(tf.constant(image)),
                                  np.asarray(ImageOps.equalize(Image.fromarray(image))))
    np.testing.assert_array_equal(aa.apply_operation(tf.constant(image), "solarize", 1.4),
                                  np.asarray(ImageOps.solarize(Image.fromarray(image), 35)))


def _possible_outcomes(image):
    """Every result the policy can give: each sub-policy, each op applied or not."""
    outcomes = []
    for sub_policy in aa.POLICY:
        ops = [(name, level) for name, prob, level in sub_policy if prob > 0]
        for mask in itertools.product([False, True], repeat=len(ops)):
            out = tf.constant(image)
            for (name, level), on in zip(ops, mask):
                if on:
                    out = aa.apply_operation(out, name, level)
            outcomes.append(out.numpy())
    return outcomes


def test_policy_outputs_are_policy_outcomes_and_deterministic():
    image = _image(seed=1, shape=(12, 16, 3))
    outcomes = _possible_outcomes(image)
    results = [aa.autoaugment(tf.constant(image), tf.constant([4, i], tf.int64)).numpy()
               for i in range(40)]
    for out in results:
        assert out.dtype == np.uint8 and out.shape == image.shape
        assert any(np.array_equal(out, o) for o in outcomes)
    assert any(np.array_equal(out, image) for out in results)  # often nothing applies
    assert sum(not np.array_equal(out, image) for out in results) >= 5
    again = aa.autoaugment(tf.constant(image), tf.constant([4, 3], tf.int64))
    np.testing.assert_array_equal(again, results[3])


def test_autoaugment_rejects_float_images():
    with pytest.raises(TypeError, match="uint8"):
        aa.autoaugment(tf.zeros([8, 8, 3]), tf.constant([0, 0], tf.int64))
