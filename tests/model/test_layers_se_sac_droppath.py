"""Squeeze-excite, switchable atrous convolution and drop path layers."""
import keras
import numpy as np
import pytest

from deeplab2.model.layers.drop_path import DropPath
from deeplab2.model.layers.drop_path import survival_rate
from deeplab2.model.layers.squeeze_excite import SqueezeExcite
from deeplab2.model.layers.switchable_atrous import GlobalContext
from deeplab2.model.layers.switchable_atrous import SwitchableAtrousConv

RNG = np.random.default_rng(0)


def _random(shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype("float32")


def _hard_sigmoid(x):
    return np.clip(x + 3.0, 0.0, 6.0) / 6.0


def _round_trip(layer, x):
    clone = type(layer).from_config(layer.get_config())
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x)), np.asarray(layer(x)),
                               rtol=1e-6, atol=1e-6)


def test_simplified_se_equals_hand_computation():
    x = _random((2, 5, 7, 8))
    layer = SqueezeExcite()
    layer.build(x.shape)
    kernel, bias = _random((1, 1, 8, 8)), _random((8,))
    layer.expand.set_weights([kernel, bias])
    gate = _hard_sigmoid(x.mean(axis=(1, 2)) @ kernel[0, 0] + bias)
    expected = x * gate[:, None, None, :]
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5,
                               atol=1e-6)
    assert len(layer.weights) == 2  # one fully connected layer with bias
    _round_trip(layer, x)


def test_two_layer_se_equals_hand_computation():
    x = _random((2, 4, 4, 8))
    layer = SqueezeExcite(squeeze_channels=3)
    layer.build(x.shape)
    k1, b1, k2, b2 = (_random((1, 1, 8, 3)), _random((3,)),
                      _random((1, 1, 3, 8)), _random((8,)))
    layer.reduce.set_weights([k1, b1])
    layer.expand.set_weights([k2, b2])
    hidden = np.maximum(x.mean(axis=(1, 2)) @ k1[0, 0] + b1, 0.0)
    expected = x * _hard_sigmoid(hidden @ k2[0, 0] + b2)[:, None, None, :]
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5,
                               atol=1e-6)
    _round_trip(layer, x)


def _plain_conv(kernel, rate, x):
    conv = keras.layers.Conv2D(kernel.shape[-1], kernel.shape[0],
                               padding="same", dilation_rate=rate,
                               use_bias=False)
    conv.build(x.shape)
    conv.set_weights([kernel])
    return np.asarray(conv(x))


@pytest.mark.parametrize("use_global_context", [False, True])
@pytest.mark.parametrize("rate", [1, 2])
def test_new_sac_equals_plain_conv_at_rate_r(use_global_context, rate):
    x = _random((2, 13, 11, 4))
    layer = SwitchableAtrousConv(6, 3, rate,
                                 use_global_context=use_global_context)
    layer.build(x.shape)
    expected = _plain_conv(np.asarray(layer.kernel), rate, x)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5,
                               atol=1e-5)


def test_sac_mixes_rates_r_and_3r_with_the_switch():
    x = _random((1, 15, 15, 3))
    layer = SwitchableAtrousConv(5, 3, 1, use_global_context=False)
    layer.build(x.shape)
    layer.switch.set_weights([np.zeros((1, 1, 3, 1), "float32"),
                              np.array([0.3], "float32")])
    kernel = np.asarray(layer.kernel)
    expected = 0.7 * _plain_conv(kernel, 1, x) + 0.3 * _plain_conv(kernel, 3,
                                                                   x)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5,
                               atol=1e-5)
    _round_trip(layer, x)


def test_global_context_starts_as_identity_and_adds_the_mean():
    x = _random((2, 6, 5, 4))
    layer = GlobalContext()
    layer.build(x.shape)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
    kernel, bias = _random((1, 1, 4, 4)), _random((4,))
    layer.conv.set_weights([kernel, bias])
    expected = x + (x.mean(axis=(1, 2)) @ kernel[0, 0] + bias)[:, None, None]
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5,
                               atol=1e-5)


def test_drop_path_is_identity_at_inference():
    x = _random((4, 3, 3, 2))
    layer = DropPath(0.5, seed=1)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    np.testing.assert_array_equal(
        np.asarray(DropPath(1.0)(x, training=True)), x)


def test_drop_path_survival_statistics_in_training():
    rate, batch = 0.8, 4000
    out = np.asarray(DropPath(rate, seed=3)(np.ones((batch, 2, 2, 3),
                                                    "float32"),
                                            training=True))
    per_example = out.reshape(batch, -1)
    # A whole example is kept (scaled by 1/rate) or dropped.
    assert np.all(per_example.min(axis=1) == per_example.max(axis=1))
    assert set(np.unique(per_example).round(5)) <= {0.0, round(1 / rate, 5)}
    kept = (per_example[:, 0] > 0).mean()
    assert abs(kept - rate) < 4 * np.sqrt(rate * (1 - rate) / batch)
    assert abs(per_example.mean() - 1.0) < 0.05


def test_survival_rate_schedules():
    assert survival_rate(0.8, "constant", 1, 4) == 0.8
    linear = [survival_rate(0.8, "linear", s, 4) for s in range(1, 5)]
    np.testing.assert_allclose(linear, [0.95, 0.9, 0.85, 0.8])
    with pytest.raises(ValueError, match="schedule"):
        survival_rate(0.8, "cosine", 1, 4)
    with pytest.raises(ValueError, match="survival rate"):
        DropPath(0.0)


def test_drop_path_config_round_trip():
    layer = DropPath(0.7, seed=5, name="dp")
    clone = DropPath.from_config(layer.get_config())
    assert (clone.survival_rate, clone.seed, clone.name) == (0.7, 5, "dp")
