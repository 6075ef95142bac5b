"""Tests of the FPN neck: parameters, strides, odd sizes, a numpy reference of
the top-down pathway, serialization, a real backbone, XLA."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model import profile
from deeplab2.model.backbones import get_backbone
from deeplab2.model.top_down import fpn

R50_CHANNELS = (256, 512, 1024, 2048)


def _feature_shapes(height, width, channels, batch=1):
    """Backbone feature shapes of an H x W image: res<l> at ceil(H / 2**l)."""
    return {f"res{level}": (batch, math.ceil(height / 2 ** level),
                            math.ceil(width / 2 ** level), c)
            for level, c in zip(fpn.INPUT_LEVELS, channels)}


def _features(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {key: rng.normal(size=shape).astype("float32") for key, shape in shapes.items()}


def _count_params(layer, input_shape):
    """Parameters of `layer` built for `input_shape`, allocating no weight."""
    with keras.StatelessScope(initialize_variables=False):
        layer.build(input_shape)
    profile._forget_deferred_variables(layer.weights)  # noqa: SLF001, as profile_builder
    return profile.count_params(layer)


def _count_paper_params(layer, input_shape):
    """As `_count_params`, without batch norm statistics (as the papers count)."""
    _count_params(layer, input_shape)
    return profile.count_model_params(layer)


def _conv_same(x, kernel, bias):
    """Numpy stride-1 convolution with zero "same" padding (odd kernels)."""
    pad = (kernel.shape[0] - 1) // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    height, width = x.shape[1:3]
    out = np.zeros(x.shape[:3] + kernel.shape[3:], np.float64)
    for i in range(kernel.shape[0]):
        for j in range(kernel.shape[1]):
            out += padded[:, i:i + height, j:j + width] @ kernel[i, j]
    return out + bias


def _numpy_fpn(features, weights, context=None):
    """Reference pyramid: `weights[l]` = (lateral kernel, bias, output kernel, bias);
    `context` (kernel, bias) of the global-context layer added to the P5 lateral."""
    outputs, merged = {}, None
    for level in reversed(fpn.INPUT_LEVELS):
        lateral_kernel, lateral_bias, output_kernel, output_bias = weights[level]
        x = _conv_same(features[f"res{level}"], lateral_kernel, lateral_bias)
        if context is not None and level == 5:
            pooled = features["res5"].astype(np.float64).mean(axis=(1, 2))
            x = x + (pooled @ context[0] + context[1])[:, None, None, :]
        if merged is not None:
            rows = np.arange(x.shape[1]) // 2
            cols = np.arange(x.shape[2]) // 2
            x = x + merged[:, rows][:, :, cols]
        merged = x
        outputs[f"p{level}"] = _conv_same(x, output_kernel, output_bias)
    outputs["p6"] = outputs["p5"][:, ::2, ::2]
    return outputs


def _unsaved_weights(layer):
    """Weights of `layer` that tf.train.Checkpoint would not save."""
    checkpoint = tf.train.Checkpoint(root=layer)  # the view holds it weakly
    view = tf.train.TrackableView(checkpoint)
    saved = {id(obj) for obj in view.descendants()}
    return [w.path for w in layer.weights if id(w) not in saved]


def test_parameters_on_resnet50_channels_match_the_spec():
    layer = fpn.FPN()
    assert _count_params(layer, _feature_shapes(64, 64, R50_CHANNELS)) == 3_344_384


def test_output_specs_give_channels_and_strides():
    specs = fpn.FPN(channels=16).output_specs()
    assert list(specs) == ["p2", "p3", "p4", "p5", "p6"]
    assert [spec.stride for spec in specs.values()] == [4, 8, 16, 32, 64]
    assert {spec.channels for spec in specs.values()} == {16}


@pytest.mark.parametrize("height, width", [(64, 128), (65, 97), (33, 33)])
def test_levels_have_the_strides_of_their_specs(height, width):
    layer = fpn.FPN(channels=8)
    shapes = _feature_shapes(height, width, (4, 5, 6, 7), batch=2)
    outputs = layer(_features(shapes))
    expected = {level: (2, math.ceil(height / spec.stride), math.ceil(width / spec.stride), 8)
                for level, spec in layer.output_specs().items()}
    assert {level: tuple(x.shape) for level, x in outputs.items()} == expected
    assert layer.compute_output_shape(shapes) == expected
    if (height, width) == (64, 128):  # the 1024 x 2048 analogue: P2 16 x 32 ... P6 1 x 2
        assert expected["p2"][1:3] == (16, 32) and expected["p6"][1:3] == (1, 2)


def test_parameters_with_global_context_add_the_fc_of_upsnet():
    # UPSNet on COCO: GAP(res5) -> fc 2048 -> 256, 524,544 parameters (SPEC_TOP_DOWN.md).
    layer = fpn.FPN(global_context=True)
    assert _count_params(layer, _feature_shapes(64, 64, R50_CHANNELS)) == 3_344_384 + 524_544


@pytest.mark.parametrize("height, width, global_context",
                         [(25, 19, False), (32, 24, False), (32, 24, True)])
def test_top_down_pathway_matches_numpy(height, width, global_context):
    layer = fpn.FPN(channels=4, global_context=global_context)
    shapes = _feature_shapes(height, width, (3, 4, 5, 6))
    layer.build(shapes)
    rng = np.random.default_rng(1)
    weights = {}
    for level, lateral, output in zip(fpn.INPUT_LEVELS, layer.lateral_convs,
                                      layer.output_convs):
        weights[level] = tuple(rng.normal(size=w.shape).astype("float32")
                               for w in (lateral.kernel, lateral.bias,
                                         output.kernel, output.bias))
        for variable, value in zip((lateral.kernel, lateral.bias, output.kernel, output.bias),
                                   weights[level]):
            variable.assign(value)
    context = None
    if global_context:
        context = tuple(rng.normal(size=w.shape).astype("float32")
                        for w in (layer.context_fc.kernel, layer.context_fc.bias))
        layer.context_fc.kernel.assign(context[0])
        layer.context_fc.bias.assign(context[1])
    features = _features(shapes, seed=2)
    outputs = layer(features)
    expected = _numpy_fpn(features, weights, context)
    for level in expected:
        np.testing.assert_allclose(outputs[level], expected[level], rtol=1e-4, atol=1e-4)


def test_upsampling_crops_nearest_neighbours():
    x = np.arange(6, dtype="float32").reshape(1, 2, 3, 1)
    up = fpn.upsample_like(x, np.zeros((1, 3, 5, 1), "float32"))
    np.testing.assert_array_equal(up[0, ..., 0], [[0, 0, 1, 1, 2],
                                                  [0, 0, 1, 1, 2],
                                                  [3, 3, 4, 4, 5]])


def test_features_not_halving_in_size_are_rejected():
    shapes = _feature_shapes(64, 64, (4, 4, 4, 4))
    shapes["res5"] = shapes["res4"]  # output_stride 16
    with pytest.raises(ValueError, match="res4"):
        fpn.FPN(channels=4).build(shapes)


def test_config_round_trip_gives_the_same_outputs():
    layer = fpn.FPN(channels=6, name="neck")
    features = _features(_feature_shapes(40, 24, (3, 4, 5, 6)))
    expected = layer(features)
    clone = fpn.FPN.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone.build({key: x.shape for key, x in features.items()})
    clone.set_weights(layer.get_weights())
    outputs = clone(features)
    for level in expected:
        np.testing.assert_array_equal(outputs[level], expected[level])
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, fpn.FPN) and restored.channels == 6


def test_every_weight_is_checkpointed():
    layer = fpn.FPN(channels=4)
    layer.build(_feature_shapes(32, 32, (3, 4, 5, 6)))
    assert len(layer.weights) == 16
    assert _unsaved_weights(layer) == []


@pytest.fixture(scope="module")
def mobilenet_features():
    """mobilenet_v3_small features of an odd-sized 65 x 97 image."""
    backbone = get_backbone("mobilenet_v3_small")
    images = np.random.default_rng(3).uniform(-1, 1, (1, 65, 97, 3)).astype("float32")
    return backbone(images, training=False), backbone.feature_channels


def test_a_registered_backbone_feeds_the_fpn(mobilenet_features):
    features, channels = mobilenet_features
    layer = fpn.FPN(channels=8)
    outputs = layer(features)
    for level, spec in layer.output_specs().items():
        assert tuple(outputs[level].shape) == (
            1, math.ceil(65 / spec.stride), math.ceil(97 / spec.stride), 8)
    assert layer.lateral_convs[-1].kernel.shape == (1, 1, channels["res5"], 8)


def test_compiles_with_xla(mobilenet_features):
    features, _ = mobilenet_features
    layer = fpn.FPN(channels=8)
    expected = layer(features)
    outputs = tf.function(layer, jit_compile=True)(features)
    for level in expected:
        np.testing.assert_allclose(outputs[level], expected[level], rtol=1e-5, atol=1e-5)


def test_seamless_normalized_fpn_with_p6_matches_the_spec_count():
    # In-place ABN after every conv (no biases): 3,346,432; P6 as a stride-2
    # 3x3 conv on C5 with its batch norm: 4,719,104 (SPEC_TOP_DOWN.md section 5).
    layer = fpn.FPN(normalization="batch_norm", activation="leaky_relu", extra_levels=1)
    assert _count_paper_params(layer, _feature_shapes(64, 64, R50_CHANNELS)) == (
        3_346_432 + 4_719_104)


@pytest.mark.parametrize("height, width", [(64, 128), (65, 97)])
def test_extra_levels_are_strided_convs_from_c5(height, width):
    layer = fpn.FPN(channels=8, normalization="batch_norm", activation="leaky_relu",
                    extra_levels=2)
    assert list(layer.output_specs()) == ["p2", "p3", "p4", "p5", "p6", "p7"]
    assert layer.output_specs()["p7"].stride == 128
    shapes = _feature_shapes(height, width, (4, 5, 6, 7), batch=2)
    features = _features(shapes)
    outputs = layer(features, training=False)
    expected = {level: (2, math.ceil(height / spec.stride), math.ceil(width / spec.stride), 8)
                for level, spec in layer.output_specs().items()}
    assert {level: tuple(x.shape) for level, x in outputs.items()} == expected
    assert layer.compute_output_shape(shapes) == expected

    # Fresh batch norm at inference divides by sqrt(1 + 1e-5); LeakyReLU slope 0.01.
    def abn(x):
        x = np.asarray(x, np.float64) / np.sqrt(1 + 1e-5)
        return np.where(x > 0, x, 0.01 * x)

    def strided(x, kernel):
        # One pixel of zeros on every side: output j is centred on input 2j, on
        # the anchor grid (TF's "SAME" pads only after an even map).
        x = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)))
        return tf.nn.conv2d(x, kernel, 2, "VALID")

    p6 = abn(strided(features["res5"], layer.extra_convs[0].kernel))
    np.testing.assert_allclose(outputs["p6"], p6, rtol=1e-5, atol=1e-5)
    p7 = abn(strided(outputs["p6"], layer.extra_convs[1].kernel))
    np.testing.assert_allclose(outputs["p7"], p7, rtol=1e-5, atol=1e-5)
    p5 = abn(_conv_same(abn(_conv_same(features["res5"], layer.lateral_convs[3].kernel.numpy(),
                                       0.0)), layer.output_convs[3].kernel.numpy(), 0.0))
    np.testing.assert_allclose(outputs["p5"], p5, rtol=1e-5, atol=1e-5)
    assert all(conv.bias is None for conv in layer.lateral_convs + layer.extra_convs)
    assert _unsaved_weights(layer) == []
    clone = fpn.FPN.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    momentum = fpn.FPN(channels=8, normalization="batch_norm", bn_momentum=0.9, bn_epsilon=1e-3)
    clone = fpn.FPN.from_config(momentum.get_config())
    assert {(n.momentum, n.epsilon) for n in clone._norm_of.values()} == {(0.9, 1e-3)}


def test_unknown_normalization_and_negative_extra_levels_are_rejected():
    with pytest.raises(ValueError, match="normalization must be one of"):
        fpn.FPN(normalization="layer_norm")
    with pytest.raises(ValueError, match="extra_levels must be an integer >= 0"):
        fpn.FPN(extra_levels=-1)
