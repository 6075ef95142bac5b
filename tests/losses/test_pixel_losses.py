"""Losses checked against values worked out by hand on tiny tensors."""
import math

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.losses import (CenterHeatmapMSE, OffsetL1, WeightedBootstrappedCrossEntropy,
                             weighted_top_k_mean)

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)

# One image of 1x5 pixels, two classes. Cross-entropies by hand:
#   logits (0, 0)       -> ln 2 whatever the label
#   logits (ln 3, 0)    -> label 0: ln(4/3); label 1: ln 4
LABELS = [[[0, 1, 0, 1, 255]]]
LOGITS = [[[[0, 0], [LN3, 0], [LN3, 0], [0, 0], [0, 0]]]]
WEIGHTS = [[[1, 3, 1, 1, 1]]]
PIXEL = [LN2, 3 * LN4, math.log(4 / 3), LN2, 0.0]  # weighted; the last is ignored


@pytest.mark.parametrize("top_k_percent, expected", [
    (1.0, sum(PIXEL) / 4),  # four non-zero pixels
    (0.4, (3 * LN4 + LN2) / 2),  # round(0.4 * 5) = 2 hardest; ln 2 is a tie of two
    (0.2, 3 * LN4),  # one pixel
    (0.01, 3 * LN4),  # rounds to 0 pixels: at least one is kept
])
def test_bootstrapped_cross_entropy(top_k_percent, expected):
    loss = WeightedBootstrappedCrossEntropy(ignore_label=255, top_k_percent=top_k_percent)
    value = loss(tf.constant(LABELS), tf.constant(LOGITS, tf.float32),
                 tf.constant(WEIGHTS, tf.float32))
    np.testing.assert_allclose(value.numpy(), [expected], rtol=1e-6)


def test_top_k_with_ties_and_all_ignored_image():
    # Image 0: all losses tie at 2.0 -> mean 2.0 whichever pixels top-k keeps.
    # Image 1: every pixel ignored -> 0, not NaN.
    loss = WeightedBootstrappedCrossEntropy(ignore_label=255, top_k_percent=0.5)
    labels = tf.constant([[[0, 0, 0, 0]], [[255, 255, 255, 255]]])
    logits = tf.constant([[[[0.0, 0.0]] * 4]] * 2)
    weights = tf.constant([[[2 / LN2] * 4], [[1.0] * 4]])
    np.testing.assert_allclose(loss(labels, logits, weights).numpy(), [2.0, 0.0], rtol=1e-6)


def test_ignore_label_overrides_weights():
    loss = WeightedBootstrappedCrossEntropy(ignore_label=0, top_k_percent=1.0)
    labels = tf.constant([[[0, 1]]])
    logits = tf.constant([[[[5.0, -5.0], [0.0, 0.0]]]])
    np.testing.assert_allclose(loss(labels, logits, tf.ones([1, 1, 2])).numpy(), [LN2],
                               rtol=1e-6)


def test_center_mse_counts_only_nonzero_weighted_pixels():
    target = tf.constant([[[1.0, 0.5, 0.0, 0.2]]])
    prediction = tf.constant([[[[0.5], [0.5], [1.0], [0.0]]]])
    weights = tf.constant([[[1.0, 1.0, 0.0, 2.0]]])
    # (0.25 + 0 + 0 + 2 * 0.04) / 2 non-zero pixels.
    np.testing.assert_allclose(CenterHeatmapMSE()(target, prediction, weights).numpy(),
                               [(0.25 + 0.08) / 2], rtol=1e-6)


def test_offset_l1_averages_channels_and_handles_zero_instances():
    target = tf.constant([[[[2.0, -4.0], [0.0, 0.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    prediction = tf.constant([[[[1.0, 0.0], [3.0, 3.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    weights = tf.constant([[[1.0, 0.0]], [[0.0, 0.0]]])  # image 1: no instances
    np.testing.assert_allclose(OffsetL1()(target, prediction, weights).numpy(),
                               [(1 + 4) / 2, 0.0], rtol=1e-6)


def test_weighted_top_k_mean_rejects_bad_percent():
    with pytest.raises(ValueError, match="top_k_percent"):
        weighted_top_k_mean(tf.ones([1, 4]), 0.0)
