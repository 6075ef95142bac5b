"""Geometric augmentation: crop-size validation, scale grid, window resize vs TF
resize, padding, flips, determinism and eval padding."""
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.data import augment

IGNORE = 255000
CROP = (33, 65)


def _pair(height=20, width=40, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    label = (rng.integers(0, 19, (height, width)) * 1000
             + rng.integers(0, 3, (height, width))).astype(np.int32)
    return tf.constant(image), tf.constant(label)


def _seed(*values):
    return tf.constant(values, tf.int64)


@pytest.mark.parametrize("size", [(1025, 2049), (513, 1025), (641, 641), (33, 65)])
def test_valid_crop_sizes(size):
    assert augment.validate_crop_size(size) == size


@pytest.mark.parametrize("size", [(1024, 2048), (1025, 2048), (512, 1024), (0, 33), (33,)])
def test_invalid_crop_sizes_are_rejected(size):
    with pytest.raises(ValueError, match=r"k \* 32 \+ 1"):
        augment.validate_crop_size(size)


def test_crop_size_with_other_stride():
    assert augment.validate_crop_size((17, 49), output_stride=16) == (17, 49)
    with pytest.raises(ValueError, match="16"):
        augment.validate_crop_size((33, 41), output_stride=16)


def test_scale_grid_and_continuous_range():
    grid = {round(float(augment.sample_scale(_seed(0, i), 0.5, 2.0, 0.1)), 9)
            for i in range(300)}
    assert grid == {round(0.5 + 0.1 * k, 9) for k in range(16)}
    values = [float(augment.sample_scale(_seed(1, i), 0.5, 2.0, 0)) for i in range(50)]
    assert all(0.5 <= v <= 2.0 for v in values) and len(set(values)) == 50
    assert float(augment.sample_scale(_seed(0, 0), 1.5, 1.5, 0.1)) == 1.5
    with pytest.raises(ValueError, match="multiple"):
        augment.sample_scale(_seed(0, 0), 0.5, 2.0, 0.4)
    with pytest.raises(ValueError):
        augment.sample_scale(_seed(0, 0), 2.0, 0.5, 0.1)


def test_downscale_equals_tf_resize_of_the_whole_image_then_padding():
    image, label = _pair()
    scale = tf.constant(0.75, tf.float64)  # 20x40 -> 15x30, fits in 33x65
    out_image, out_label = augment.scale_and_crop(image, label, scale, (0, 0), CROP, IGNORE)
    ref_image = tf.compat.v1.image.resize(image, [15, 30], align_corners=True)
    ref_label = tf.compat.v1.image.resize(label[..., None], [15, 30], method="nearest",
                                          align_corners=True)[..., 0]
    assert out_image.dtype == tf.float32 and out_image.shape == (*CROP, 3)
    np.testing.assert_array_equal(out_image[:15, :30], ref_image)
    np.testing.assert_array_equal(out_label[:15, :30], ref_label)
    assert np.all(out_image[15:] == 127.5) and np.all(out_image[:, 30:] == 127.5)
    assert np.all(out_label[15:] == IGNORE) and np.all(out_label[:, 30:] == IGNORE)


def test_upscale_resizes_only_the_source_window():
    image, label = _pair(30, 50)
    scale = tf.constant(2.0, tf.float64)  # 60x100 > 33x65: windows of 16 and 32 px
    assert [int(v) for v in augment.crop_window(30, 33, scale)] == [16, 33]
    out_image, out_label = augment.scale_and_crop(image, label, scale, (5, 7), CROP, IGNORE)
    window = image[5:22, 7:40]
    ref_image = tf.compat.v1.image.resize(window, CROP, align_corners=True)
    ref_label = tf.compat.v1.image.resize(label[5:22, 7:40, None], CROP, method="nearest",
                                          align_corners=True)[..., 0]
    np.testing.assert_array_equal(out_image, ref_image)
    np.testing.assert_array_equal(out_label, ref_label)
    # Align corners: the window's corner pixels land exactly on the crop corners.
    np.testing.assert_array_equal(out_image[-1, -1], tf.cast(image[21, 39], tf.float32))


def test_flip_mirrors_the_window_before_padding():
    image, label = _pair()
    seed = _seed(3, 4)
    kwargs = dict(min_scale=0.5, max_scale=2.0, scale_step=0.1)
    plain = augment.random_scale_crop_flip(image, label, seed, CROP, IGNORE, flip_prob=0.0,
                                           **kwargs)
    flipped = augment.random_scale_crop_flip(image, label, seed, CROP, IGNORE, flip_prob=1.0,
                                             **kwargs)
    valid = plain[1].numpy() != IGNORE
    rows, cols = valid.any(1).sum(), valid.any(0).sum()
    np.testing.assert_array_equal(flipped[1][:rows, :cols], plain[1][:rows, :cols][:, ::-1])
    np.testing.assert_allclose(flipped[0][:rows, :cols], plain[0][:rows, :cols][:, ::-1],
                               atol=1e-3)
    np.testing.assert_array_equal(flipped[1][rows:], IGNORE)


def test_random_augmentation_is_deterministic_in_the_seed():
    image, label = _pair()
    first = augment.random_scale_crop_flip(image, label, _seed(7, 1), CROP, IGNORE)
    again = augment.random_scale_crop_flip(image, label, _seed(7, 1), CROP, IGNORE)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    others = [augment.random_scale_crop_flip(image, label, _seed(7, i), CROP, IGNORE)[1]
              for i in range(2, 6)]
    assert any(not np.array_equal(first[1], o) for o in others)


def test_random_labels_only_hold_source_values_or_ignore():
    image, label = _pair(40, 70)
    allowed = set(np.unique(label)) | {IGNORE}
    for i in range(6):
        out_image, out_label = augment.random_scale_crop_flip(image, label, _seed(9, i),
                                                              CROP, IGNORE)
        assert out_image.shape == (*CROP, 3) and out_label.shape == CROP
        assert set(np.unique(out_label)) <= allowed
        assert 0 <= float(tf.reduce_min(out_image)) and float(tf.reduce_max(out_image)) <= 255


def test_eval_padding():
    image, label = _pair(20, 40)
    out_image, out_label = augment.pad_for_eval(image, label, CROP, IGNORE)
    np.testing.assert_array_equal(out_image[:20, :40], tf.cast(image, tf.float32))
    np.testing.assert_array_equal(out_label[:20, :40], label)
    assert np.all(out_image[20:] == 127.5) and np.all(out_image[:, 40:] == 127.5)
    assert np.all(out_label[20:] == IGNORE) and np.all(out_label[:, 40:] == IGNORE)


def test_eval_rejects_images_larger_than_the_crop():
    image, label = _pair(40, 40)
    with pytest.raises(tf.errors.InvalidArgumentError, match="larger than the crop size"):
        augment.pad_for_eval(image, label, CROP, IGNORE)


def test_eval_padding_runs_after_the_size_check_in_a_graph():
    """In a graph (a tf.data map runs ops in parallel) every pad depends on the
    size check, so an oversized pair fails with its message, never in a pad."""
    function = tf.function(lambda image, label: augment.pad_for_eval(image, label, CROP,
                                                                     IGNORE))
    graph = function.get_concrete_function(
        tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([None, None], tf.int32)).graph

    def upstream(op, seen):
        for parent in [t.op for t in op.inputs] + list(op.control_inputs):
            if parent.name not in seen:
                seen.add(parent.name)
                upstream(parent, seen)
        return seen

    checks = {op.name for op in graph.get_operations() if op.type == "Assert"}
    pads = [op for op in graph.get_operations() if op.type.startswith("Pad")]
    assert checks and len(pads) == 2
    for pad in pads:
        assert checks & upstream(pad, set()), pad.name


@pytest.mark.parametrize("half_pixel, crop", [(False, (641, 1025)), (True, (640, 1024))])
def test_longest_side_brings_the_longer_side_to_exactly_that_length(half_pixel, crop):
    """A 300x500 pair with longest_side 1000 and scale 1: 600x1000 (align
    corners: (1000 - 1) / (500 - 1) of the span; half pixel: 2x); portrait alike."""
    rng = np.random.default_rng(3)
    for height, width, expected in ((300, 500, (600, 1000)), (500, 300, (1000, 600))):
        image = tf.constant(rng.integers(0, 256, (height, width, 3)), tf.uint8)
        label = tf.ones((height, width), tf.int32) * 7000
        size = crop if width > height else crop[::-1]
        _, out_label = augment.random_scale_crop_flip(
            image, label, _seed(4, 2), size, IGNORE, min_scale=1.0, max_scale=1.0,
            longest_side=1000, flip_prob=0.0, half_pixel=half_pixel)
        valid = out_label.numpy() != IGNORE
        assert (int(valid.any(1).sum()), int(valid.any(0).sum())) == expected


def test_longest_side_composes_with_the_scale_range():
    image, label = _pair(20, 40)
    _, out_label = augment.random_scale_crop_flip(
        image, label, _seed(5, 1), (81, 161), IGNORE, min_scale=2.0, max_scale=2.0,
        longest_side=80, flip_prob=0.0)
    valid = out_label.numpy() != IGNORE
    # Longer side 40 -> 80 (span 39 -> 79), then x2: span 158, 159 pixels.
    assert int(valid.any(0).sum()) == 159
