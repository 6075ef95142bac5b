"""Align-corners resizing: the gather formulation against TensorFlow's kernel,
and what XLA stores when it fuses into an argmax (deeplab2.utils.xla_buffers,
checked both ways)."""
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.layers import resize
from deeplab2.utils.xla_buffers import compiled_stored_shapes, elements

SIZES = [  # (input height, width) -> (output height, width)
    ((5, 7), (17, 25)), ((9, 13), (33, 49)), ((4, 4), (4, 4)), ((3, 5), (4, 13)),
    ((6, 2), (1, 9)), ((1, 1), (5, 3))]


def _images(size, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.normal(size=(2, *size, channels)).astype(np.float32))


@pytest.mark.parametrize("source, target", SIZES)
def test_resize_by_sampling_equals_tensorflows_kernel_bit_for_bit(source, target):
    images = _images(source)
    np.testing.assert_array_equal(resize.resize_by_sampling(images, target),
                                  resize.resize_align_corners(images, target))


def test_sampled_rows_and_columns_are_those_of_the_full_resize():
    images = _images((9, 13))
    full = resize.resize_align_corners(images, (33, 49)).numpy()
    rows, cols = np.array([32, 0, 7, 7, 20]), np.array([5, 48, 6])
    sampled = resize.sample_align_corners(images, tf.constant(rows, tf.int32),
                                          tf.constant(cols, tf.int32), (33, 49))
    np.testing.assert_array_equal(sampled, full[:, rows][:, :, cols])


def test_under_xla_only_fused_rounding_differs_and_sizes_may_be_tensors():
    images = _images((9, 13))
    compiled = tf.function(resize.resize_by_sampling, jit_compile=True)
    result = compiled(images, tf.constant([33, 49]))
    expected = resize.resize_align_corners(images, (33, 49))
    np.testing.assert_allclose(result, expected, rtol=0, atol=4 * np.finfo(np.float32).eps
                               * np.abs(expected).max())


def test_an_argmax_of_the_upsampled_logits_stores_no_upsampled_logits():
    logits = _images((9, 13), channels=7)

    def argmax(x):
        return tf.argmax(resize.resize_by_sampling(x, (33, 49)), axis=-1)

    def argmax_and_probabilities(x):  # the control: these must be stored
        upsampled = resize.resize_by_sampling(x, (33, 49))
        return tf.argmax(upsampled, axis=-1), tf.nn.softmax(upsampled)

    for function, stores in ((argmax, False), (argmax_and_probabilities, True)):
        shapes = compiled_stored_shapes(tf.function(function, jit_compile=True), logits)
        assert "s64[2,33,49]" in shapes
        # Any float buffer as large as the upsampled logits, whatever its shape.
        assert (max(elements(s) for s in shapes if s.startswith("f32"))
                >= 2 * 33 * 49 * 7) == stores, shapes


@pytest.mark.parametrize("source, target", [((9, 13), (33, 49)), ((5, 7), (17, 25)),
                                            ((33, 49), (33, 49)), ((7, 4), (50, 31)),
                                            ((50, 31), (7, 4)), ((10, 13), (33, 40))])
def test_a_window_from_its_source_block_equals_the_resize(source, target):
    """Windows anywhere, the last ones against the bottom and right edges, of
    one row or column too; compiled with sizes known only to XLA."""
    images = _images(source, channels=5)
    full = resize.resize_align_corners(images, target).numpy()
    compiled = tf.function(resize.sample_window, jit_compile=True)
    height, width = target
    rows, cols = min(8, height), min(8, width)
    for image, top, left, rows, cols in [(0, 0, 0, rows, cols),
                                         (1, height - rows, width - cols, rows, cols),
                                         (1, height // 2, width // 3, 1, cols - 1),
                                         (0, height - 1, 3, 1, 1), (0, 0, 0, height, width)]:
        args = (images, tf.constant(image), tf.range(top, top + rows),
                tf.range(left, left + cols))
        expected = full[image, top:top + rows, left:left + cols]
        for window in (resize.sample_window(*args, target),
                       compiled(*args, tf.constant(target))):
            np.testing.assert_allclose(window, expected, rtol=0,
                                       atol=4e-7 * np.abs(full).max())
