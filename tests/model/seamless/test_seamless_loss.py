"""Seamless's semantic loss: the worst 25% pixels per image against a numpy
sort, unlabeled pixels counting as zero, the fraction's edge values."""
import math

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.seamless import loss as loss_lib


def _numpy_top_loss(target, logits, fraction):
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    losses = []
    for t, lp in zip(target, log_probs):
        pixel = np.where(t >= 0, -np.take_along_axis(lp, np.maximum(t, 0)[..., None],
                                                     axis=-1)[..., 0], 0.0).ravel()
        count = math.ceil(fraction * pixel.size)
        losses.append(np.sort(pixel)[::-1][:count].sum() / count)
    return np.array(losses)


@pytest.mark.parametrize("fraction", [0.25, 0.1, 1.0])
def test_matches_a_numpy_sort(fraction):
    rng = np.random.default_rng(0)
    target = rng.integers(-1, 5, (3, 13, 17))
    target[2] = -1  # an image without labels: every pixel counts 0
    logits = rng.normal(size=(3, 13, 17, 5)).astype("float32") * 3
    expected = _numpy_top_loss(target, logits, fraction)
    np.testing.assert_allclose(loss_lib.top_pixel_cross_entropy(target, logits, fraction),
                               expected, rtol=1e-5)
    assert expected[2] == 0
    compiled = tf.function(lambda t, l: loss_lib.top_pixel_cross_entropy(t, l, fraction),
                           jit_compile=True)(target, logits)
    np.testing.assert_allclose(compiled, expected, rtol=1e-5)
    unknown = tf.function(lambda t, l: loss_lib.top_pixel_cross_entropy(t, l, fraction),
                          input_signature=[tf.TensorSpec([None, None, None], tf.int64),
                                           tf.TensorSpec([None, None, None, 5])])
    np.testing.assert_allclose(unknown(target, logits), expected, rtol=1e-5)


def test_the_worst_quarter_is_harder_than_the_mean():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 4, (2, 16, 16))
    logits = rng.normal(size=(2, 16, 16, 4)).astype("float32")
    quarter = loss_lib.top_pixel_cross_entropy(target, logits, 0.25).numpy()
    everything = loss_lib.top_pixel_cross_entropy(target, logits, 1.0).numpy()
    mean = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(target, logits),
                          axis=[1, 2]).numpy()
    np.testing.assert_allclose(everything, mean, rtol=1e-6)
    assert np.all(quarter > 1.5 * everything)


@pytest.mark.parametrize("fraction", [0.0, 1.5])
def test_a_fraction_outside_0_1_is_rejected(fraction):
    with pytest.raises(ValueError, match=r"top_fraction must be in \(0, 1\]"):
        loss_lib.top_pixel_cross_entropy(np.zeros((1, 4, 4), np.int32),
                                         np.zeros((1, 4, 4, 2), np.float32), fraction)
