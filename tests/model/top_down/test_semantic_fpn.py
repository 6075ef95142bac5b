"""Tests of the Panoptic FPN semantic branch: the spec's parameter counts, a numpy
reference of the whole branch, shapes from a real FPN, serialization, XLA."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model import profile
from deeplab2.model.top_down import fpn
from deeplab2.model.top_down import semantic_fpn


def _count_params(layer, input_shape):
    """Parameters of `layer` built for `input_shape`, allocating no weight."""
    with keras.StatelessScope(initialize_variables=False):
        layer.build(input_shape)
    profile._forget_deferred_variables(layer.weights)  # noqa: SLF001, as profile_builder
    return profile.count_params(layer)


def _pyramid_shapes(height, width, channels, batch=1):
    """FPN level shapes of an H x W image (H, W multiples of 32), P6 included."""
    return {f"p{level}": (batch, height // 2 ** level, width // 2 ** level, channels)
            for level in fpn.FPN().output_levels()}


def _pyramid(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {key: rng.normal(size=shape).astype("float32") for key, shape in shapes.items()}


def _conv_same(x, kernel):
    """Numpy stride-1 convolution with zero "same" padding (odd kernels), float64."""
    pad = (kernel.shape[0] - 1) // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    height, width = x.shape[1:3]
    out = np.zeros(x.shape[:3] + kernel.shape[3:])
    for i in range(kernel.shape[0]):
        for j in range(kernel.shape[1]):
            out += padded[:, i:i + height, j:j + width] @ kernel[i, j]
    return out


def _group_norm(x, gamma, beta, groups, epsilon=1e-5):
    batch, height, width, channels = x.shape
    grouped = x.reshape(batch, height, width, groups, channels // groups)
    mean = grouped.mean(axis=(1, 2, 4), keepdims=True)
    variance = grouped.var(axis=(1, 2, 4), keepdims=True)
    normalized = ((grouped - mean) / np.sqrt(variance + epsilon)).reshape(x.shape)
    return normalized * gamma + beta


def _resize_axis(x, factor, axis):
    """Half-pixel bilinear x`factor` along `axis` (PyTorch align_corners=False)."""
    size = x.shape[axis]
    source = np.maximum((np.arange(factor * size) + 0.5) / factor - 0.5, 0.0)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, size - 1)
    shape = [1] * x.ndim
    shape[axis] = -1
    fraction = (source - low).reshape(shape)
    return np.take(x, low, axis) * (1 - fraction) + np.take(x, high, axis) * fraction


def _upsample(x, factor):
    return _resize_axis(_resize_axis(x, factor, 1), factor, 2)


def _numpy_branch(features, layer):
    """Reference of the branch from the layer's weights."""
    total = 0
    convs, norms = iter(layer.convs), iter(layer.norms)
    for level in (2, 3, 4, 5):
        x = features[f"p{level}"].astype(np.float64)
        for _ in range(max(level - 2, 1)):
            conv, norm = next(convs), next(norms)
            assert conv.bias is None
            x = _conv_same(x, np.asarray(conv.kernel))
            x = np.maximum(_group_norm(x, np.asarray(norm.gamma), np.asarray(norm.beta),
                                       layer.groups), 0)
            if level > 2:
                x = _upsample(x, 2)
        total = total + x
    logits = _conv_same(total, np.asarray(layer.predictor.kernel)) + layer.predictor.bias
    return _upsample(logits, 4)


@pytest.mark.parametrize("num_classes, expected", [(54, 1_630_774), (19, 1_626_259)])
def test_parameters_match_the_spec(num_classes, expected):
    layer = semantic_fpn.SemanticFPN(num_classes)
    assert _count_params(layer, _pyramid_shapes(512, 1024, 256)) == expected


def test_branch_matches_numpy():
    layer = semantic_fpn.SemanticFPN(5, channels=8, groups=4)
    features = _pyramid(_pyramid_shapes(64, 96, 6, batch=2))
    layer.build({key: x.shape for key, x in features.items()})
    rng = np.random.default_rng(1)
    for weight in layer.weights:  # random affine and bias, so that they are checked
        weight.assign(rng.normal(0.5, 0.5, weight.shape).astype("float32"))
    logits = layer(features)
    assert logits.shape == (2, 64, 96, 5)
    np.testing.assert_allclose(logits, _numpy_branch(features, layer), rtol=1e-4, atol=1e-4)


def test_upsampling_is_half_pixel_bilinear():
    x = np.float32([0, 1]).reshape(1, 1, 2, 1)
    up = semantic_fpn.upsample(x, 2)
    np.testing.assert_allclose(up[0, 0, :, 0], [0, 0.25, 0.75, 1])
    assert up.shape == (1, 2, 4, 1)


def test_layers_and_init_follow_the_spec():
    layer = semantic_fpn.SemanticFPN(7)
    layer.build(_pyramid_shapes(64, 64, 256))
    assert semantic_fpn.STAGE_LEVELS == (2, 3, 4, 4, 5, 5, 5)
    assert [conv.name for conv in layer.convs] == [
        "p2_stage1_conv", "p3_stage1_conv", "p4_stage1_conv", "p4_stage2_conv",
        "p5_stage1_conv", "p5_stage2_conv", "p5_stage3_conv"]
    assert all(not conv.use_bias for conv in layer.convs)
    assert all(norm.groups == 32 and norm.epsilon == 1e-5 for norm in layer.norms)
    kernel = np.asarray(layer.predictor.kernel)
    assert kernel.shape == (1, 1, 128, 7)
    assert 0.0007 < kernel.std() < 0.0013
    np.testing.assert_array_equal(layer.predictor.bias, 0)


def test_fpn_outputs_feed_the_branch():
    features = _pyramid({f"res{level}": (1, 96 // 2 ** level, 64 // 2 ** level, 4)
                         for level in fpn.INPUT_LEVELS})
    pyramid = fpn.FPN(channels=8)(features)
    layer = semantic_fpn.SemanticFPN(3, channels=8, groups=2)
    shapes = {key: tuple(x.shape) for key, x in pyramid.items()}
    assert layer.compute_output_shape(shapes) == (1, 96, 64, 3)
    assert layer(pyramid).shape == (1, 96, 64, 3)


def test_levels_not_halving_exactly_are_rejected():
    shapes = _pyramid_shapes(64, 64, 8)
    shapes["p5"] = (1, 3, 2, 8)  # an input not padded to a multiple of 32
    with pytest.raises(ValueError, match="p5"):
        semantic_fpn.SemanticFPN(3, channels=8, groups=2).build(shapes)


def test_config_round_trip_and_checkpoint():
    layer = semantic_fpn.SemanticFPN(4, channels=8, groups=2, name="semantic")
    features = _pyramid(_pyramid_shapes(32, 64, 6))
    expected = layer(features)
    clone = semantic_fpn.SemanticFPN.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone.build({key: x.shape for key, x in features.items()})
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(features), expected)
    # Every weight (7 kernels, 7 GN pairs, the predictor's two) is in a checkpoint.
    checkpoint = tf.train.Checkpoint(root=layer)
    saved = {id(obj) for obj in tf.train.TrackableView(checkpoint).descendants()}
    assert len(layer.weights) == 23
    assert all(id(w) in saved for w in layer.weights)


def test_compiles_with_xla():
    layer = semantic_fpn.SemanticFPN(5, channels=8, groups=4)
    features = _pyramid(_pyramid_shapes(64, 32, 8, batch=2))
    expected = layer(features)
    logits = tf.function(layer, jit_compile=True)(features)
    assert logits.shape == (2, 64, 32, 5)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
