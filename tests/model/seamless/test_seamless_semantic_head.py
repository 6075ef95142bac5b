"""Seamless's semantic head: the MiniDL pooling against a numpy reference (maps
larger and smaller than the 64 x 64 window, under XLA and with sizes unknown
when tracing), the MiniDL and head parameters of the paper's count, shapes,
serialization and checkpointing."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model import profile
from deeplab2.model.seamless import semantic_head


def _numpy_pooled_mean(x, window):
    """Average pooling of a window clamped to the map, stride 1, no padding, then
    edge replication (before (k - 1) // 2, after k // 2), by explicit loops."""
    x = np.asarray(x, np.float64)
    batch, height, width, channels = x.shape
    kh, kw = min(window, height), min(window, width)
    pooled = np.zeros((batch, height - kh + 1, width - kw + 1, channels))
    for i in range(pooled.shape[1]):
        for j in range(pooled.shape[2]):
            pooled[:, i, j] = x[:, i:i + kh, j:j + kw].mean(axis=(1, 2))
    return np.pad(pooled, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)),
                  mode="edge")


@pytest.mark.parametrize("height, width, window", [
    (70, 90, 64),  # larger than the window on both axes
    (20, 100, 64),  # smaller along H (the window is global there), larger along W
    (1, 3, 64),  # one row
    (9, 8, 4),  # even window: 1 before, 2 after
])
def test_pooling_matches_numpy_and_keeps_the_shape(height, width, window):
    x = np.random.default_rng(height).normal(size=(2, height, width, 3)).astype("float32")
    expected = _numpy_pooled_mean(x, window)
    pooled = semantic_head.replicate_pooled_mean(x, window)
    assert pooled.shape == x.shape
    np.testing.assert_allclose(pooled, expected, atol=2e-6)
    compiled = tf.function(lambda v: semantic_head.replicate_pooled_mean(v, window),
                           jit_compile=True)(x)
    np.testing.assert_allclose(compiled, expected, atol=2e-6)
    unknown = tf.function(lambda v: semantic_head.replicate_pooled_mean(v, window),
                          input_signature=[tf.TensorSpec([None, None, None, 3])])
    np.testing.assert_allclose(unknown(x), expected, atol=2e-6)


def test_pooling_a_map_of_the_window_size_is_the_global_mean():
    x = np.random.default_rng(1).normal(size=(1, 64, 64, 2)).astype("float32")
    pooled = semantic_head.replicate_pooled_mean(x).numpy()
    np.testing.assert_allclose(pooled, np.broadcast_to(x.mean(axis=(1, 2), keepdims=True),
                                                       x.shape), atol=1e-6)


def _count_params(layer, input_shape):
    with keras.StatelessScope(initialize_variables=False):
        layer.build(input_shape)
    profile._forget_deferred_variables(layer.weights)  # noqa: SLF001, as profile_builder
    return profile.count_model_params(layer)


def test_parameters_match_the_papers_count():
    # Per MiniDL on 256 channels: two 3x3 convs, a 1x1 on the pooled map and
    # the 1x1 fuse of 384 channels, each 128 wide, without bias, + batch norm.
    minidl = 2 * 9 * 256 * 128 + 256 * 128 + 384 * 128 + 4 * 2 * 128
    assert minidl == 672_768
    assert _count_params(semantic_head.MiniDL(), (1, 32, 32, 256)) == minidl
    pyramid = {f"p{level}": (1, 128 // 2 ** level, 256 // 2 ** level, 256)
               for level in (2, 3, 4, 5)}
    head = semantic_head.SeamlessSemanticHead(19)
    assert _count_params(head, pyramid) == 4 * minidl + 512 * 19 + 19 == 2_700_819


def test_head_outputs_logits_at_the_input_resolution():
    rng = np.random.default_rng(0)
    pyramid = {f"p{level}": rng.normal(size=(2, 64 // 2 ** level, 96 // 2 ** level, 8))
               .astype("float32") for level in (2, 3, 4, 5, 6)}
    head = semantic_head.SeamlessSemanticHead(5, channels=4, name="semantic")
    logits = head(pyramid, training=False)
    assert logits.shape == (2, 64, 96, 5)
    assert head.compute_output_shape({k: v.shape for k, v in pyramid.items()}) == (2, 64, 96, 5)
    # The p5 MiniDL sees a 2 x 3 map: its pooled branch is the global mean.
    minidl = head.mini_deeplabs[3]
    assert minidl.name == "p5_minidl" and minidl.pool_size == 64
    clone = semantic_head.SeamlessSemanticHead.from_config(head.get_config())
    assert clone.get_config() == head.get_config()
    clone.build({k: v.shape for k, v in pyramid.items()})
    clone.set_weights(head.get_weights())
    np.testing.assert_array_equal(clone(pyramid, training=False), logits)
    checkpoint = tf.train.Checkpoint(root=head)
    saved = {id(obj) for obj in tf.train.TrackableView(checkpoint).descendants()}
    assert [w.path for w in head.weights if id(w) not in saved] == []


def test_minidl_branches_are_normalized_and_activated():
    x = np.random.default_rng(2).normal(size=(1, 12, 10, 4)).astype("float32")
    layer = semantic_head.MiniDL(channels=4, dilation_rate=2, pool_size=8)
    out = layer(x, training=False)

    def abn(v):  # fresh batch norm at inference, LeakyReLU 0.01
        v = np.asarray(v, np.float64) / np.sqrt(1 + 1e-5)
        return np.where(v > 0, v, 0.01 * v)

    pooled = _numpy_pooled_mean(x, 8).astype("float32")
    branches = [abn(layer.local_conv(x)), abn(layer.dilated_conv(x)),
                abn(layer.pooled_conv(pooled))]
    fused = abn(layer.fuse_conv(np.concatenate(branches, axis=-1).astype("float32")))
    np.testing.assert_allclose(out, fused, rtol=1e-4, atol=1e-5)
    assert layer.dilated_conv.dilation_rate == (2, 2) and layer.fuse_conv.kernel_size == (1, 1)
