"""Deformable convolution v1: against tf.nn.conv2d, shifted inputs, a numpy
oracle of the sampling rule and finite differences of that oracle."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.layers.deformable_conv import DeformableConv2D

RNG = np.random.default_rng(0)


def _random(shape):
    return RNG.standard_normal(shape).astype("float32")


def _layer(x, filters=5, kernel_size=3):
    layer = DeformableConv2D(filters, kernel_size)
    layer.build(x.shape)
    layer.kernel.assign(_random(layer.kernel.shape))
    layer.bias.assign(_random(layer.bias.shape))
    return layer


def _set_offsets(layer, bias, kernel_scale=0.0):
    """Offset conv with the given bias (2 k^2 values) and a random kernel
    of `kernel_scale` (0: the same offset at every pixel)."""
    kernel = layer.offset_conv.kernel
    layer.offset_conv.kernel.assign(_random(kernel.shape) * kernel_scale)
    layer.offset_conv.bias.assign(np.asarray(bias, np.float32))


def _oracle(x, kernel, bias, offsets):
    """Deformable conv by its definition, in float64: tap (i, j) of output
    pixel (y, x) reads the input at (y + i - k//2 + dy, x + j - k//2 + dx),
    bilinear, corners outside the map count 0."""
    x = x.astype(np.float64)
    batch, height, width, _ = x.shape
    k = kernel.shape[0]
    out = np.zeros((batch, height, width, kernel.shape[-1]))
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    for b in range(batch):
        for t in range(k * k):
            i, j = divmod(t, k)
            sy = ys + i - k // 2 + offsets[b, :, :, 2 * t]
            sx = xs + j - k // 2 + offsets[b, :, :, 2 * t + 1]
            sampled = np.zeros(x.shape[1:])
            y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
            for cy in (y0, y0 + 1):
                for cx in (x0, x0 + 1):
                    w = (1 - np.abs(sy - cy)) * (1 - np.abs(sx - cx))
                    ok = (cy >= 0) & (cy < height) & (cx >= 0) & (cx < width)
                    values = x[b, np.clip(cy, 0, height - 1), np.clip(cx, 0, width - 1)]
                    sampled += np.where(ok, w, 0.0)[..., None] * values
            out[b] += sampled @ kernel[i, j].astype(np.float64)
    return out + bias


def test_zero_offsets_equal_conv2d():
    x = _random((2, 6, 7, 4))
    layer = _layer(x)
    expected = tf.nn.conv2d(x, layer.kernel, 1, "SAME") + layer.bias
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)
    # A new layer's offsets start at zero.
    assert not np.any(layer.offset_conv.kernel.numpy())
    assert not np.any(layer.offset_conv.bias.numpy())


def test_zero_offsets_equal_conv2d_exactly_on_integer_values():
    """Small integers make every product and partial sum exact in float32, so
    any summation order gives the same bits: the sampling at zero offsets
    must read exactly the input values, with weights exactly 1 and 0."""
    x = RNG.integers(-8, 9, (2, 6, 7, 4)).astype("float32")
    layer = _layer(x)
    layer.kernel.assign(RNG.integers(-4, 5, layer.kernel.shape).astype("float32"))
    layer.bias.assign(RNG.integers(-4, 5, layer.bias.shape).astype("float32"))
    expected = tf.nn.conv2d(x, layer.kernel, 1, "SAME") + layer.bias
    np.testing.assert_array_equal(layer(x), expected)


def test_offset_of_one_row_equals_conv_of_the_input_shifted_up():
    x = _random((1, 6, 5, 3))
    layer = _layer(x)
    _set_offsets(layer, [1.0, 0.0] * 9)
    shifted = np.concatenate([x[:, 1:], np.zeros_like(x[:, :1])], axis=1)
    expected = tf.nn.conv2d(shifted, layer.kernel, 1, "SAME") + layer.bias
    # Row 0's upper taps read the input's row 0 where the shifted input's
    # convolution reads its zero padding; every other row agrees.
    np.testing.assert_allclose(layer(x)[:, 1:], expected[:, 1:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel_size", [3, 1])
def test_fractional_offsets_equal_the_oracle(kernel_size):
    x = _random((2, 5, 6, 3))
    layer = _layer(x, kernel_size=kernel_size)
    # Offsets of up to a few pixels, many of them reaching outside the map.
    _set_offsets(layer, _random((2 * kernel_size ** 2,)) * 2.0, kernel_scale=0.5)
    offsets = layer.offset_conv(x).numpy()
    assert np.abs(offsets).max() > 3.0
    np.testing.assert_allclose(layer(x), _oracle(x, layer.kernel.numpy(),
                                                 layer.bias.numpy(), offsets),
                               rtol=1e-5, atol=1e-5)


def test_gradients_equal_finite_differences_of_the_oracle():
    x = _random((1, 4, 5, 2))
    layer = _layer(x, filters=3)
    # Offsets with fractional parts away from 0 and 1, where the bilinear
    # weights (and so the finite differences) are smooth.
    offset_bias = np.where(RNG.random(18) < 0.5, 0.3, -1.6) + RNG.random(18) * 0.3
    _set_offsets(layer, offset_bias)
    weights = _random((1, 4, 5, 3))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) * weights)
    variables = [layer.kernel, layer.offset_conv.bias]
    analytic_kernel, analytic_offsets = tape.gradient(loss, variables)

    kernel = layer.kernel.numpy().astype(np.float64)
    bias = layer.bias.numpy()

    def oracle_loss(kernel, offset_bias):
        offsets = np.broadcast_to(offset_bias, (1, 4, 5, 18))
        return float(np.sum(_oracle(x, kernel, bias, offsets) * weights))

    eps = 1e-4
    numeric_offsets = np.zeros(18)
    for n in range(18):
        step = np.zeros(18)
        step[n] = eps
        numeric_offsets[n] = (oracle_loss(kernel, offset_bias + step)
                              - oracle_loss(kernel, offset_bias - step)) / (2 * eps)
    np.testing.assert_allclose(analytic_offsets, numeric_offsets, rtol=1e-3, atol=1e-3)
    numeric_kernel = np.zeros_like(kernel)
    for index in np.ndindex(kernel.shape):
        step = np.zeros_like(kernel)
        step[index] = eps
        numeric_kernel[index] = (oracle_loss(kernel + step, offset_bias)
                                 - oracle_loss(kernel - step, offset_bias)) / (2 * eps)
    np.testing.assert_allclose(analytic_kernel, numeric_kernel, rtol=1e-3, atol=1e-3)
    # And the gradient reaches the input (through the samples and the offset conv).
    x_var = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x_var) * weights)
    assert np.abs(tape.gradient(loss, x_var).numpy()).max() > 0


def test_xla_forward_and_gradient_equal_eager():
    x = _random((2, 8, 8, 4))
    layer = _layer(x)
    _set_offsets(layer, _random((18,)), kernel_scale=0.3)

    def forward_and_grads(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x)
            loss = tf.reduce_sum(out * out)
        return (out,) + tuple(tape.gradient(loss, [x, layer.kernel, layer.offset_conv.kernel]))

    eager = forward_and_grads(tf.constant(x))
    compiled = tf.function(forward_and_grads, jit_compile=True)(tf.constant(x))
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


def test_unknown_spatial_size_and_serialization():
    x = _random((1, 7, 9, 4))
    layer = _layer(x, filters=2)
    _set_offsets(layer, _random((18,)), kernel_scale=0.3)
    traced = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 4])])
    np.testing.assert_allclose(traced(x), layer(x), rtol=1e-6, atol=1e-6)
    clone = DeformableConv2D.from_config(layer.get_config())
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x), layer(x), rtol=1e-6, atol=1e-6)
    assert layer.compute_output_shape((1, 7, 9, 4)) == (1, 7, 9, 2)
    assert len(layer.weights) == 4  # kernel, bias, offset kernel, offset bias
    config = DeformableConv2D(4, recompute_min_elements=5, all_taps_max_elements=6).get_config()
    clone = DeformableConv2D.from_config(config)
    assert (clone.recompute_min_elements, clone.all_taps_max_elements) == (5, 6)
    with pytest.raises(ValueError, match="odd kernel_size"):
        DeformableConv2D(4, kernel_size=2)


def test_parameters_of_upsnet_dcn_layer():
    # 3x3, 256 -> 128 with bias, plus the 18-channel offset conv with bias:
    # the offset conv adds 41,490 parameters per 256-channel input (SPEC_TOP_DOWN.md).
    layer = DeformableConv2D(128)
    layer.build((None, None, None, 256))
    assert layer.count_params() == 9 * 256 * 128 + 128 + 9 * 256 * 18 + 18
    assert layer.offset_conv.count_params() == 41_490
    assert keras.saving.get_registered_object("deeplab2>DeformableConv2D") is DeformableConv2D


def test_small_maps_take_all_taps_at_once_large_ones_recompute_in_training(monkeypatch):
    """Maps whose k^2 samples have at most all_taps_max_elements sample every
    tap at once; larger ones tap by tap, in training under tf.recompute_grad
    (memory) from recompute_min_elements per tap. All give the same outputs
    and gradients (up to float rounding of the sums: the offset kernel's
    gradient reaches 130)."""
    x = tf.constant(_random((1, 6, 7, 3)))  # 126 elements per tap, 1134 for 9
    layer = _layer(x, filters=2)
    _set_offsets(layer, _random((18,)), kernel_scale=0.3)
    wrapped, products = [], []
    recompute_grad, matmul = tf.recompute_grad, tf.matmul

    def counting_recompute_grad(f):
        wrapped.append(f)
        return recompute_grad(f)

    def counting_matmul(a, b, **kwargs):
        products.append(b.shape[0])
        return matmul(a, b, **kwargs)

    monkeypatch.setattr(tf, "recompute_grad", counting_recompute_grad)
    monkeypatch.setattr(tf, "matmul", counting_matmul)
    results = []
    for training, max_elements, min_elements, recomputed, inner in (
            (False, 1133, 0, 0, [3] * 9), (True, 1134, 0, 0, [27]),
            (True, 1133, 127, 0, [3] * 9), (True, 1133, 126, 9, [3] * 9)):
        layer.all_taps_max_elements = max_elements
        layer.recompute_min_elements = min_elements
        wrapped.clear()
        products.clear()
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x, training=training)
            loss = tf.reduce_sum(out * out)
        # The forward products' inner sizes: 9 taps of 3 channels or one of 27.
        assert products == inner, (training, max_elements, min_elements)
        results.append([out] + tape.gradient(loss, [x, layer.kernel, layer.offset_conv.kernel]))
        assert len(wrapped) == recomputed, (training, max_elements, min_elements)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * np.abs(a).max())
