"""The top-down training resize: shorter side sampled from a range with the longer
side capped (golden sizes, the grid, the cap), the half-pixel convention (sizes
rounded half up, golden image and label values, window vs whole-image resize),
flips, determinism, and the `TrainingInput` options' errors."""
import re

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.data import augment
from deeplab2.data.pipeline import TrainingInput

IGNORE = 255000


def _seed(*values):
    return tf.constant(values, tf.int64)


def _pair(height, width, seed=0):
    """A random image and a label with no ignore pixel (so the padding shows)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    label = rng.integers(0, 19, (height, width)).astype(np.int32) * 1000
    return tf.constant(image), tf.constant(label)


def _valid_size(label):
    valid = label.numpy() != IGNORE
    return int(valid.any(1).sum()), int(valid.any(0).sum())


def test_shorter_side_800_of_a_480x640_image():
    """scale 800 / 480; sides 800 and floor(640 * 5 / 3 + 0.5) = 1067 (1066.67)."""
    scale = augment.shorter_side_scale(_seed(0, 0), 480, 640, (800, 800), 32, 1333)
    assert float(scale) == pytest.approx(800 / 480, abs=1e-12)
    rows = augment.crop_window(480, 800, scale, half_pixel=True)
    cols = augment.crop_window(640, 1088, scale, half_pixel=True)
    assert [int(v) for v in (*rows, *cols)] == [479, 800, 639, 1067]
    image, label = _pair(480, 640)
    out_image, out_label = augment.random_scale_crop_flip(
        image, label, _seed(1, 2), (800, 1088), IGNORE, shorter_side=(800, 800),
        max_longer_side=1333, flip_prob=0.0, half_pixel=True)
    assert _valid_size(out_label) == (800, 1067)
    # The whole image fits the crop: exactly detectron2's resize, then padding.
    np.testing.assert_array_equal(out_image[:800, :1067],
                                  tf.image.resize(image, [800, 1067], method="bilinear"))
    assert np.all(out_image[:, 1067:] == augment.IMAGE_PAD_VALUE)


def test_the_longer_side_cap_binds_for_a_500x2000_image():
    """Any S in 640..800 would make the longer side > 1333: scale 1333 / 2000,
    sides floor(333.25 + 0.5) = 333 and 1333."""
    image, label = _pair(500, 2000)
    for i in range(3):
        scale = augment.shorter_side_scale(_seed(2, i), 500, 2000, (640, 800), 32, 1333)
        assert float(scale) == pytest.approx(1333 / 2000, abs=1e-12)
        _, out_label = augment.random_scale_crop_flip(
            image, label, _seed(2, i), (352, 1344), IGNORE, shorter_side=(640, 800),
            max_longer_side=1333, half_pixel=True)
        assert _valid_size(out_label) == (333, 1333)
    # Without the cap the shorter side decides.
    uncapped = augment.shorter_side_scale(_seed(2, 0), 500, 2000, (640, 640), 32)
    assert float(uncapped) == pytest.approx(640 / 500, abs=1e-12)


def test_shorter_sides_cover_the_grid_and_the_continuous_range():
    sides = {round(float(augment.shorter_side_scale(_seed(3, i), 300, 400, (640, 800), 32))
                   * 300, 6) for i in range(200)}
    assert sides == {640.0 + 32 * k for k in range(6)}
    continuous = [float(augment.shorter_side_scale(_seed(4, i), 400, 300, (640, 800), 0))
                  * 300 for i in range(30)]
    assert all(640 <= s <= 800 for s in continuous) and len(set(continuous)) == 30


def test_half_pixel_sizes_round_half_up():
    """5 * 0.5 = 2.5 -> 3 (half to even would give 2); windows likewise."""
    assert int(augment.crop_window(5, 64, 0.5, half_pixel=True)[1]) == 3
    assert int(augment.crop_window(7, 64, 0.5, half_pixel=True)[1]) == 4
    # 100 px at scale 3.2 do not fit in 64: a window of floor(20 + 0.5) = 20
    # pixels (span 19) is resized to the crop.
    assert [int(v) for v in augment.crop_window(100, 64, 3.2, half_pixel=True)] == [19, 64]
    # A tiny side never vanishes.
    assert int(augment.crop_window(1, 64, 0.1, half_pixel=True)[1]) == 1


def test_half_pixel_upscale_doubles_each_pixel():
    label = tf.constant([[1, 2], [3, 4]], tf.int32)
    image = tf.constant([[[0] * 3, [100] * 3], [[0] * 3, [100] * 3]], tf.uint8)
    out_image, out_label = augment.scale_and_crop(image, label, tf.constant(2.0, tf.float64),
                                                  (0, 0), (4, 4), IGNORE, half_pixel=True)
    np.testing.assert_array_equal(out_label, [[1, 1, 2, 2], [1, 1, 2, 2],
                                              [3, 3, 4, 4], [3, 3, 4, 4]])
    # Columns sample -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
    np.testing.assert_allclose(out_image[0, :, 0], [0, 25, 75, 100], atol=1e-4)
    # Align corners (the default) gives 3 pixels, corners on corners.
    _, corners = augment.scale_and_crop(image, label, tf.constant(2.0, tf.float64), (0, 0),
                                        (4, 4), IGNORE)
    np.testing.assert_array_equal(corners[:3, :3], [[1, 2, 2], [3, 4, 4], [3, 4, 4]])


def test_half_pixel_downscale_samples_between_pixels():
    """6 -> 3 at scale 0.5: bilinear at 0.5, 2.5, 4.5; nearest floor(1, 3, 5)."""
    row = tf.range(6, dtype=tf.int32)[None]
    image = tf.cast(tf.tile(row[..., None] * 10, [1, 1, 3]), tf.uint8)
    out_image, out_label = augment.scale_and_crop(image, row, tf.constant(0.5, tf.float64),
                                                  (0, 0), (1, 4), IGNORE, half_pixel=True)
    np.testing.assert_allclose(out_image[0, :3, 0], [5, 25, 45], atol=1e-4)
    np.testing.assert_array_equal(out_label[0], [1, 3, 5, IGNORE])


def test_a_half_pixel_window_is_the_crop_of_the_resized_image():
    """40x60 with shorter side 64: scale 1.6, 64x96 > the 64x64 crop, so a window
    of 40 source columns is resized. At window start 10 it equals columns
    16..79 of the whole resized image, except the edge columns, which the
    window clamps at its own border."""
    image, label = _pair(40, 60)
    scale = augment.shorter_side_scale(_seed(0, 0), 40, 60, (64, 64), 32)
    assert [int(v) for v in augment.crop_window(60, 64, scale, half_pixel=True)] == [39, 64]
    out_image, out_label = augment.scale_and_crop(image, label, scale, (0, 10), (64, 64),
                                                  IGNORE, half_pixel=True)
    whole = tf.image.resize(image, [64, 96], method="bilinear")
    np.testing.assert_allclose(out_image[:, 1:-1], whole[:, 17:79], atol=1e-4)
    assert not np.allclose(out_image[:, 0], whole[:, 16], atol=1e-2)
    # Label pixel (i, j) takes source (floor((i + 0.5) / 1.6), 10 + floor((j + 0.5) / 1.6)).
    nearest = [int((i + 0.5) / 1.6) for i in range(64)]
    np.testing.assert_array_equal(out_label, label.numpy()[nearest][:, np.add(nearest, 10)])


def test_half_pixel_flip_mirrors_the_label_exactly():
    image, label = _pair(30, 50)
    kwargs = dict(shorter_side=(40, 48), shorter_side_step=4, half_pixel=True)
    plain = augment.random_scale_crop_flip(image, label, _seed(5, 1), (64, 96), IGNORE,
                                           flip_prob=0.0, **kwargs)
    flipped = augment.random_scale_crop_flip(image, label, _seed(5, 1), (64, 96), IGNORE,
                                             flip_prob=1.0, **kwargs)
    rows, cols = _valid_size(plain[1])
    assert rows in (40, 44, 48) and cols == int(50 * rows / 30 + 0.5)
    np.testing.assert_array_equal(flipped[1][:rows, :cols], plain[1][:rows, :cols][:, ::-1])
    np.testing.assert_allclose(flipped[0][:rows, :cols], plain[0][:rows, :cols][:, ::-1],
                               atol=1e-3)


def test_shorter_side_augmentation_is_deterministic_in_the_seed():
    image, label = _pair(40, 60)
    kwargs = dict(shorter_side=(32, 96), shorter_side_step=16, max_longer_side=120,
                  half_pixel=True)
    first = augment.random_scale_crop_flip(image, label, _seed(7, 1), (64, 64), IGNORE,
                                           **kwargs)
    again = augment.random_scale_crop_flip(image, label, _seed(7, 1), (64, 64), IGNORE,
                                           **kwargs)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    others = [augment.random_scale_crop_flip(image, label, _seed(7, i), (64, 64), IGNORE,
                                             **kwargs)[1] for i in range(2, 6)]
    assert any(not np.array_equal(first[1], o) for o in others)


def test_training_input_normalizes_shorter_side():
    options = TrainingInput(shorter_side=[640, 800], max_longer_side=1333)
    assert options.shorter_side == (640, 800)
    assert (options.shorter_side_step, options.max_longer_side) == (32, 1333)


@pytest.mark.parametrize("kwargs, field", [
    (dict(shorter_side=(800, 640)), "shorter_side"),
    (dict(shorter_side=(0, 800)), "shorter_side"),
    (dict(shorter_side=(640,)), "shorter_side"),
    (dict(shorter_side=(640.0, 800)), "shorter_side"),
    (dict(shorter_side=(640, 800), shorter_side_step=-32), "shorter_side_step"),
    (dict(shorter_side=(640, 800), shorter_side_step=48), "shorter_side_step"),
    (dict(shorter_side=(640, 800), max_longer_side=0), "max_longer_side"),
    (dict(shorter_side=(640, 800), min_scale=1.0), "min_scale"),
    (dict(shorter_side=(640, 800), max_scale=1.5), "max_scale"),
    (dict(shorter_side=(640, 800), scale_step=0.25), "scale_step"),
    (dict(max_longer_side=1333), "max_longer_side"),
    (dict(shorter_side_step=16), "shorter_side_step"),
    (dict(longest_side=0), "longest_side"),
    (dict(longest_side=1025.0), "longest_side"),
    (dict(longest_side=1025, shorter_side=(640, 800)), "longest_side"),
])
def test_bad_shorter_side_options_raise_one_line_naming_the_field(kwargs, field):
    with pytest.raises(ValueError) as error:
        TrainingInput(**kwargs)
    # Gin appends the configurable's name on lines of its own.
    assert re.match(rf"TrainingInput\.{field} ", str(error.value).splitlines()[0])
