"""UPSNet's semantic head: one DCN subnet shared by P2..P5, stride-4 logits."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.top_down.semantic_fpn import upsample
from deeplab2.model.upsnet.semantic_head import UPSNetSemanticHead

RNG = np.random.default_rng(0)


def _pyramid(batch=1, height=8, width=16, channels=16):
    return {f"p{level}": tf.constant(RNG.standard_normal(
        (batch, height // 2 ** (level - 2), width // 2 ** (level - 2), channels)), tf.float32)
        for level in (2, 3, 4, 5)}


def test_levels_share_one_subnet_and_concatenate_at_stride_4():
    # Seeded: the same weights in every process. Unseeded, one CI run drew
    # weights for which a level shifted by 1 left the logits unchanged.
    keras.utils.set_random_seed(0)
    pyramid = _pyramid()
    head = UPSNetSemanticHead(7, channels=(8, 6))
    head.build({k: v.shape for k, v in pyramid.items()})
    for layer in head.dcn_layers:  # non-zero offsets, so the DCN path is exercised
        layer.offset_conv.bias.assign(RNG.uniform(-1, 1, layer.offset_conv.bias.shape))
    logits = head(pyramid)
    assert logits.shape == (1, 8, 16, 7)
    # By hand from the sub-layers: the same two DCN layers on every level.
    maps = []
    for level in (2, 3, 4, 5):
        x = pyramid[f"p{level}"]
        for layer in head.dcn_layers:
            x = tf.nn.relu(layer(x))
        maps.append(upsample(x, 2 ** (level - 2)))
    expected = head.predictor(tf.concat(maps, axis=-1))
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
    # Each P-level changes the logits (all four are read).
    for level in (3, 5):
        changed = dict(pyramid, **{f"p{level}": pyramid[f"p{level}"] + 1.0})
        assert np.abs(head(changed).numpy() - logits.numpy()).max() > 1e-4


@pytest.mark.parametrize("channels,num_classes,expected", [
    # Cityscapes: DCN 256->128 and 128->128 (kernel + bias + 18-channel offset
    # conv with bias), 1x1 predictor on 4 x 128 channels.
    ((128, 128), 19, (9 * 256 * 128 + 128 + 9 * 256 * 18 + 18)
     + (9 * 128 * 128 + 128 + 9 * 128 * 18 + 18) + (512 * 19 + 19)),
    # COCO: 256->256->128->128, 133 classes.
    ((256, 128, 128), 133, (9 * 256 * 256 + 256 + 9 * 256 * 18 + 18)
     + (9 * 256 * 128 + 128 + 9 * 256 * 18 + 18)
     + (9 * 128 * 128 + 128 + 9 * 128 * 18 + 18) + (512 * 133 + 133)),
])
def test_parameter_count(channels, num_classes, expected):
    head = UPSNetSemanticHead(num_classes, channels=channels)
    head.build({f"p{level}": (None, None, None, 256) for level in (2, 3, 4, 5)})
    assert head.count_params() == expected


def test_config_round_trip_and_bad_pyramid():
    pyramid = _pyramid()
    head = UPSNetSemanticHead(5, channels=(8,))
    out = head(pyramid)
    clone = UPSNetSemanticHead.from_config(head.get_config())
    clone.build({k: v.shape for k, v in pyramid.items()})
    clone.set_weights(head.get_weights())
    np.testing.assert_allclose(clone(pyramid), out, rtol=1e-6, atol=1e-6)
    bad = dict(pyramid, p3=tf.zeros((1, 3, 8, 16)))
    with pytest.raises(ValueError, match="p3 exactly 2 times smaller"):
        UPSNetSemanticHead(5, channels=(8,)).build({k: v.shape for k, v in bad.items()})
