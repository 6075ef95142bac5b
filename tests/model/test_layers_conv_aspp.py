"""Tests of ConvBNAct, DepthwiseConvBNAct, SeparableConvBNAct and ASPP."""
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.layers import aspp
from deeplab2.model.layers import convolutions


def _images(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _round_trip(layer, inputs):
    """Rebuilds `layer` from config and weights; returns both outputs."""
    expected = layer(inputs)
    clone = type(layer).from_config(layer.get_config())
    clone.build(inputs.shape)
    clone.set_weights(layer.get_weights())
    return expected, clone(inputs)


def test_batch_norm_defaults():
    conv = convolutions.ConvBNAct(4, 3)
    conv.build((1, 5, 5, 3))
    assert conv.bn.momentum == 0.99
    assert conv.bn.epsilon == 1e-3
    assert conv.bn.synchronized


@pytest.mark.parametrize("size", [9, 10])
def test_strided_conv_pads_symmetrically(size):
    conv = convolutions.ConvBNAct(4, 3, strides=2, use_bn=False,
                                  activation=None)
    x = _images((1, size, size, 3))
    y = conv(x)
    assert y.shape == (1, (size + 1) // 2, (size + 1) // 2, 4)
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    expected = tf.nn.conv2d(padded, conv.conv.kernel, 2, "VALID")
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_conv_grouped_dilated_and_activation():
    x = _images((2, 7, 7, 4))
    conv = convolutions.ConvBNAct(6, 3, dilation_rate=2, groups=2,
                                  activation="relu6")
    y = conv(x, training=True)
    assert y.shape == (2, 7, 7, 6)
    assert float(tf.reduce_min(y)) >= 0.0 and float(tf.reduce_max(y)) <= 6.0
    assert conv.conv.kernel.shape == (3, 3, 2, 6)
    with pytest.raises(ValueError):
        convolutions.ConvBNAct(6, 3, strides=2, dilation_rate=2)


def test_zero_gamma_and_no_bn():
    conv = convolutions.ConvBNAct(4, 1, bn_gamma_initializer="zeros",
                                  activation=None)
    assert np.allclose(conv(_images((1, 3, 3, 2)), training=True), 0.0)
    plain = convolutions.ConvBNAct(4, 1, use_bn=False, use_bias=True,
                                   activation=None)
    plain.build((1, 3, 3, 2))
    assert plain.bn is None and len(plain.weights) == 2


def test_separable_conv_structure():
    sep = convolutions.SeparableConvBNAct(8, 5, dilation_rate=2)
    x = _images((1, 9, 9, 4))
    assert sep(x).shape == (1, 9, 9, 8)
    params = sum(int(np.prod(w.shape)) for w in sep.trainable_weights)
    # depthwise 5x5x4 + BN(4) + pointwise 4x8 + BN(8): gamma and beta only.
    assert params == 25 * 4 + 2 * 4 + 4 * 8 + 2 * 8
    strided = convolutions.DepthwiseConvBNAct(3, strides=2,
                                              activation="hard_swish")
    assert strided(x).shape == (1, 5, 5, 4)


@pytest.mark.parametrize("layer", [
    convolutions.ConvBNAct(5, 3, strides=2, activation="swish"),
    convolutions.DepthwiseConvBNAct(3, dilation_rate=2, activation=None),
    convolutions.SeparableConvBNAct(5, 5, use_bn=False),
    aspp.ASPP(8, (1, 2, 3), pool_size=(2, 2), sep_conv=False),
])
def test_config_round_trip(layer):
    expected, actual = _round_trip(layer, _images((1, 9, 9, 4)))
    np.testing.assert_allclose(expected, actual, atol=1e-6)


def test_atrous_rates_and_pool_size():
    assert aspp.atrous_rates_for(16) == (6, 12, 18)
    assert aspp.atrous_rates_for(32) == (3, 6, 9)
    assert aspp.atrous_rates_for(8) == (12, 24, 36)
    assert aspp.pool_size_for((1025, 2049), 32) == (33, 65)
    assert aspp.pool_size_for((513, 1025), 16) == (33, 65)
    assert aspp.pool_size_for(None, 16) is None


def test_aspp_shapes_and_parameter_count():
    x = _images((2, 9, 11, 16))
    standard = aspp.ASPP(8, (1, 2, 3), sep_conv=False)
    separable = aspp.ASPP(8, (1, 2, 3), sep_conv=True)
    assert standard(x).shape == separable(x).shape == (2, 9, 11, 8)

    def kernels(layer):
        return sum(int(np.prod(w.shape)) for w in layer.trainable_weights
                   if len(w.shape) == 4)

    # 1x1, pooling 1x1 and projection are shared by both designs.
    shared = 2 * 16 * 8 + 5 * 8 * 8
    assert kernels(standard) == shared + 3 * 9 * 16 * 8
    assert kernels(separable) == shared + 3 * (9 * 16 + 16 * 8)


def test_aspp_pooling_window_in_training_global_at_inference():
    pooling = aspp.ASPPPooling(4, pool_size=(3, 3))
    x = _images((1, 9, 9, 6))
    local = pooling(x, training=True).numpy()
    assert local.shape == (1, 9, 9, 4)
    assert not np.allclose(local, local[:, :1, :1, :])
    pooled = pooling(x, training=False).numpy()
    np.testing.assert_allclose(pooled, np.broadcast_to(pooled[:, :1, :1, :],
                                                       pooled.shape))
    # A window covering the whole feature map is a global pool.
    whole = aspp.ASPPPooling(4, pool_size=(9, 9))
    trained = whole(x, training=True).numpy()
    np.testing.assert_allclose(trained, np.broadcast_to(
        trained[:, :1, :1, :], trained.shape), atol=1e-6)


@pytest.mark.parametrize("layer", [
    convolutions.ConvBNAct(6, 3, strides=2, use_bias=True),
    convolutions.ConvBNAct(6, 3, dilation_rate=2, groups=2),
    convolutions.DepthwiseConvBNAct(3, depth_multiplier=2,
                                    activation="hard_swish"),
    convolutions.DepthwiseConvBNAct(5, strides=2, activation=None),
])
def test_inference_folds_batch_norm(layer):
    x = _images((2, 9, 9, 4))
    layer(x, training=True)  # moves the statistics away from 0 / 1
    for _ in range(3):
        layer(x * 2.0 + 1.0, training=True)
    folded = layer(x, training=False)
    x_padded = x
    if layer._padding is not None:
        x_padded = tf.pad(x, ((0, 0),) + layer._padding + ((0, 0),))
    reference = layer.bn(layer.conv(x_padded), training=False)
    if layer.activation is not None:
        reference = layer._act(reference)
    np.testing.assert_allclose(folded, reference, atol=1e-4, rtol=1e-4)
    layer.bn.trainable = False  # frozen batch norm also folds
    np.testing.assert_allclose(layer(x, training=True), reference, atol=1e-4,
                               rtol=1e-4)


def _pooling_variance(model):
    return np.concatenate([aspp_layer.pooling.conv.bn.moving_variance.numpy()
                           for aspp_layer in (model.semantic_aspp, model.instance_aspp)])


@pytest.mark.parametrize("batch", [1, 2])
def test_one_image_per_batch_norm_group_keeps_the_pooling_statistics_sane(batch):
    """Training forward passes on one image at a time (no synchronized batch
    norm) leave the image-pooling branch's moving variance alone: a single
    pooled sample has variance 0, which would decay it to ~0 and blow up
    inference. With two images the statistics are learned as usual."""
    from deeplab2.model import build_model

    model = build_model(dataset="synthetic", backbone="mobilenet_v3_small",
                        crop_size=(65, 97), bn_momentum=0.5, synchronized_bn=False,
                        semantic_aspp_channels=8, semantic_decoder_channels=8,
                        semantic_low_level_channels=(8, 8), semantic_head_channels=8,
                        instance_aspp_channels=8, instance_decoder_channels=8,
                        instance_low_level_channels=(8, 8), instance_head_channels=8)
    for aspp_layer in (model.semantic_aspp, model.instance_aspp):
        aspp_layer.dropout.rate = 0.0
    images = np.random.default_rng(0).uniform(0, 255, (batch, 65, 97, 3)).astype(np.float32)
    forward = tf.function(lambda x: model(x, training=True))
    for _ in range(40):  # momentum 0.5: 1e-12 of the initial statistics are left
        train_outputs = forward(images)
    variance = _pooling_variance(model)
    if batch == 1:
        np.testing.assert_array_equal(variance, 1.0)  # untouched, within 1e-3..1e3
    else:
        assert not np.allclose(variance, 1.0)  # learned from the two pooled samples
    eval_outputs = model(images, training=False)
    for key, value in eval_outputs.items():
        value, reference = value.numpy(), train_outputs[key].numpy()
        assert np.all(np.isfinite(value)), key
        scale = np.max(np.abs(reference))
        assert np.max(np.abs(value - reference)) <= 0.05 * scale, key
