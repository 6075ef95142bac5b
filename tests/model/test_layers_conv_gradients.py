"""Atrous and 1x1 convolutions with their own gradients: values and gradients
against TensorFlow's convolutions, eagerly, traced with unknown sizes and under
XLA, and the blocks that train through them."""
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.layers.conv_gradients import atrous_conv2d, pointwise_conv2d
from deeplab2.model.layers.convolutions import ConvBNAct

RNG = np.random.default_rng(0)


def _random(shape):
    return tf.constant(RNG.standard_normal(shape).astype("float32"))


def _value_and_gradients(convolve, inputs, kernel, weights):
    with tf.GradientTape() as tape:
        tape.watch([inputs, kernel])
        outputs = convolve(inputs, kernel)
        loss = tf.reduce_sum(outputs * weights)
    return [outputs] + tape.gradient(loss, [inputs, kernel])


def _tensorflow(rate):
    return lambda inputs, kernel: tf.nn.convolution(inputs, kernel, padding="SAME",
                                                    dilations=rate)


def _ours(rate):
    return lambda inputs, kernel: atrous_conv2d(inputs, kernel, rate)


def _pointwise(inputs, kernel):
    return pointwise_conv2d(inputs, kernel)


@pytest.mark.parametrize("shape, size, rate", [
    ((2, 9, 11, 3), 3, 2),
    ((1, 8, 13, 4), 3, 3),
    ((2, 10, 7, 2), 5, 2),
    ((1, 5, 7, 3), 3, 9),  # every off-centre tap outside the map
    ((1, 6, 6, 2), 1, 4),
])
def test_values_and_gradients_equal_tensorflows(shape, size, rate):
    inputs = _random(shape)
    kernel = _random((size, size, shape[-1], 5))
    weights = _random(shape[:3] + (5,))
    expected = _value_and_gradients(_tensorflow(rate), inputs, kernel, weights)
    actual = _value_and_gradients(_ours(rate), inputs, kernel, weights)
    for name, a, b in zip(("outputs", "input gradient", "kernel gradient"), expected, actual):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("shape, filters", [((2, 9, 11, 3), 5), ((1, 4, 6, 7), 2)])
def test_pointwise_values_and_gradients_equal_tensorflows(shape, filters):
    inputs = _random(shape)
    kernel = _random((1, 1, shape[-1], filters))
    weights = _random(shape[:3] + (filters,))
    expected = _value_and_gradients(_tensorflow(1), inputs, kernel, weights)
    actual = _value_and_gradients(_pointwise, inputs, kernel, weights)
    for name, a, b in zip(("outputs", "input gradient", "kernel gradient"), expected, actual):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-4, err_msg=name)


def test_unknown_sizes_and_xla_equal_eager():
    inputs = _random((2, 7, 10, 3))
    kernel = _random((3, 3, 3, 4))
    weights = _random((2, 7, 10, 4))
    for convolve, kernel in ((_ours(3), kernel), (_pointwise, kernel[1:2, 1:2])):
        eager = _value_and_gradients(convolve, inputs, kernel, weights)
        traced = tf.function(
            lambda x, w: _value_and_gradients(convolve, x, kernel, w),
            input_signature=[tf.TensorSpec([None, None, None, 3]),
                             tf.TensorSpec([None, None, None, 4])])(inputs, weights)
        compiled = tf.function(lambda x, w: _value_and_gradients(convolve, x, kernel, w),
                               jit_compile=True)(inputs, weights)
        for a, b, c in zip(eager, traced, compiled):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-4)


def _gradient_op_types(function, *args):
    graph = tf.function(function).get_concrete_function(*args).graph
    return {op.type for op in graph.get_operations()}


def test_the_gradient_uses_forward_convolutions_and_products():
    inputs = _random((1, 9, 9, 2))
    kernel = _random((3, 3, 2, 3))
    weights = _random((1, 9, 9, 3))
    theirs = _gradient_op_types(lambda x: _value_and_gradients(_tensorflow(2), x, kernel,
                                                               weights), inputs)
    ours = _gradient_op_types(lambda x: _value_and_gradients(_ours(2), x, kernel, weights),
                              inputs)
    pointwise = _gradient_op_types(
        lambda x: _value_and_gradients(_pointwise, x, kernel[1:2, 1:2], weights), inputs)
    assert {"Conv2DBackpropInput", "Conv2DBackpropFilter"} <= theirs
    for graph in (ours, pointwise):
        assert not {"Conv2DBackpropInput", "Conv2DBackpropFilter"} & graph
        assert "MatMul" in graph


@pytest.mark.parametrize("size, rate", [(3, 2), (1, 1)])
def test_dilated_and_1x1_blocks_train_through_them_with_the_same_gradients(size, rate):
    inputs = _random((2, 9, 9, 4))
    block = ConvBNAct(6, size, dilation_rate=rate, use_bias=True, use_bn=False,
                      activation=None)
    block.build(inputs.shape)
    block.conv.bias.assign(RNG.standard_normal(6).astype("float32"))
    weights = _random((2, 9, 9, 6))

    def loss_and_gradients(call):
        with tf.GradientTape() as tape:
            outputs = call(inputs)
            loss = tf.reduce_sum(outputs * weights)
        return [outputs] + tape.gradient(loss, [block.conv.kernel, block.conv.bias])

    expected = loss_and_gradients(block.conv)  # Keras's Conv2D, TensorFlow's gradient
    actual = loss_and_gradients(lambda x: block(x, training=True))
    for a, b in zip(expected, actual):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-4)
    ops = _gradient_op_types(lambda x: loss_and_gradients(lambda _: block(x, training=True)),
                             inputs)
    assert "Conv2DBackpropFilter" not in ops


def test_bfloat16_inputs_stay_bfloat16_and_close():
    inputs = _random((1, 8, 8, 4))
    kernel = _random((3, 3, 4, 4))
    weights = _random((1, 8, 8, 4))
    full = _value_and_gradients(_ours(2), inputs, kernel, weights)
    half = _value_and_gradients(_ours(2), tf.cast(inputs, tf.bfloat16),
                                tf.cast(kernel, tf.bfloat16), tf.cast(weights, tf.bfloat16))
    for a, b in zip(full, half):
        assert b.dtype == tf.bfloat16
        scale = float(tf.reduce_max(tf.abs(a)))
        np.testing.assert_allclose(tf.cast(b, tf.float32), a, atol=0.05 * scale)


def test_even_and_wider_kernels_are_refused():
    with pytest.raises(ValueError, match="odd size"):
        atrous_conv2d(_random((1, 4, 4, 1)), _random((2, 2, 1, 1)), 2)
    with pytest.raises(ValueError, match="1x1 kernel"):
        pointwise_conv2d(_random((1, 4, 4, 1)), _random((3, 3, 1, 1)))
