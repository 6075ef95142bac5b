"""The Panoptic-DeepLab loss: its weighted sum checked by hand on one 1x5 image,
its Gin edge, and the loss the family builds from a model's config."""
import math

import gin
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.model.meta import TOTAL_LOSS, get_meta_architecture, make_config
from deeplab2.model.panoptic_deeplab.loss import (CENTER_LOSS, OFFSET_LOSS, SEMANTIC_LOSS,
                                                  PanopticDeepLabLoss)
from deeplab2.training.config import ConfigError, parse_gin

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)

# One image of 1x5 pixels, two classes. Cross-entropies by hand:
#   logits (0, 0)       -> ln 2 whatever the label
#   logits (ln 3, 0)    -> label 0: ln(4/3); label 1: ln 4
LABELS = [[[0, 1, 0, 1, 255]]]
LOGITS = [[[[0, 0], [LN3, 0], [LN3, 0], [0, 0], [0, 0]]]]
WEIGHTS = [[[1, 3, 1, 1, 1]]]
PIXEL = [LN2, 3 * LN4, math.log(4 / 3), LN2, 0.0]  # weighted; the last is ignored
SEMANTIC = sum(PIXEL) / 4  # four non-zero pixels
CENTER = 0.25  # (1 - 0.5)^2, the one non-zero squared error (one pixel)
OFFSET = (1.0 + 3.0) / 2  # |(2, 0)| and |(0, -6)| averaged over channels, 2 pixels


def _targets_and_outputs(labels=LABELS):
    targets = {
        common.SEMANTIC_TARGET: tf.constant(labels),
        common.SEMANTIC_WEIGHTS: tf.constant(WEIGHTS, tf.float32),
        common.CENTER_HEATMAP_TARGET: tf.constant([[[1.0, 0, 0, 0, 0]]]),
        common.CENTER_WEIGHTS: tf.ones([1, 1, 5]),
        common.OFFSET_TARGET: tf.zeros([1, 1, 5, 2]),
        common.OFFSET_WEIGHTS: tf.constant([[[1.0, 1, 0, 0, 0]]]),
    }
    outputs = {
        common.SEMANTIC_LOGITS: tf.constant(LOGITS, tf.float32),
        common.CENTER_HEATMAP: tf.constant([[[[0.5], [0], [0], [0], [0]]]]),
        common.OFFSET: tf.constant([[[[2.0, 0.0], [0.0, -6.0], [9, 9], [9, 9], [9, 9]]]]),
    }
    return targets, outputs


def _values(losses):
    return {name: value.numpy() for name, value in losses.items()}


def test_total_loss_uses_weights_1_200_001():
    targets, outputs = _targets_and_outputs()
    losses = _values(PanopticDeepLabLoss(ignore_label=255, top_k_percent=1.0)(targets, outputs))
    np.testing.assert_allclose(losses[SEMANTIC_LOSS], [SEMANTIC], rtol=1e-6)
    np.testing.assert_allclose(losses[CENTER_LOSS], [CENTER], rtol=1e-6)
    np.testing.assert_allclose(losses[OFFSET_LOSS], [OFFSET], rtol=1e-6)
    np.testing.assert_allclose(losses[TOTAL_LOSS],
                               [SEMANTIC + 200 * CENTER + 0.01 * OFFSET], rtol=1e-6)


def test_semantic_only_counts_the_semantic_loss_alone():
    targets, outputs = _targets_and_outputs()
    losses = _values(PanopticDeepLabLoss(ignore_label=255, top_k_percent=1.0,
                                         semantic_only=True)(targets, outputs))
    assert set(losses) == {SEMANTIC_LOSS, TOTAL_LOSS}
    np.testing.assert_allclose(losses[TOTAL_LOSS], [SEMANTIC], rtol=1e-6)


def test_weights_and_bootstrapping_are_bound_with_gin():
    targets, outputs = _targets_and_outputs()
    gin.clear_config()
    try:
        parse_gin([], ["PanopticDeepLabLoss.top_k_percent = 0.2",
                       "PanopticDeepLabLoss.semantic_weight = 2.0",
                       "PanopticDeepLabLoss.center_weight = 10.0",
                       "PanopticDeepLabLoss.offset_weight = 0.5"])
        losses = _values(PanopticDeepLabLoss(ignore_label=255)(targets, outputs))
    finally:
        gin.clear_config()
    # Top 20% of 5 pixels: the hardest one, 3 ln 4.
    np.testing.assert_allclose(losses[SEMANTIC_LOSS], [3 * LN4], rtol=1e-6)
    np.testing.assert_allclose(losses[TOTAL_LOSS],
                               [2 * 3 * LN4 + 10 * CENTER + 0.5 * OFFSET], rtol=1e-6)


@pytest.mark.parametrize("binding", ["PanopticDeepLabLoss.ignore_label = 0",
                                     "PanopticDeepLabLoss.semantic_only = True"])
def test_model_owned_options_cannot_be_bound(binding):
    gin.clear_config()
    try:
        with pytest.raises(ConfigError, match=binding.split(" =")[0]):
            parse_gin([], [binding])
    finally:
        gin.clear_config()


def test_family_loss_takes_the_datasets_ignore_label_and_semantic_only():
    # COCO ignores class 0: pixels 0 and 2 drop out of the semantic loss, which
    # averages 3 ln 4, ln 2 and ln 2 over the three others (all pixels kept).
    family = get_meta_architecture("panoptic_deeplab")
    config = make_config("panoptic_deeplab", get_dataset_info("coco"), output_stride=32,
                         crop_size=None, pixel_mean=127.5, pixel_std=127.5,
                         architecture={"semantic_only": True}, postprocess={})
    targets, outputs = _targets_and_outputs(labels=[[[0, 1, 0, 1, 1]]])
    gin.clear_config()
    try:
        parse_gin([], ["PanopticDeepLabLoss.top_k_percent = 1.0"])
        semantic_only = _values(family.training_loss(config)(targets, outputs))
        full = _values(family.training_loss(config.replace(
            architecture=dict(config.architecture, semantic_only=False)))(targets, outputs))
    finally:
        gin.clear_config()
    assert set(semantic_only) == {SEMANTIC_LOSS, TOTAL_LOSS}
    np.testing.assert_allclose(semantic_only[TOTAL_LOSS], [(3 * LN4 + 2 * LN2) / 3],
                               rtol=1e-6)
    assert set(full) == {SEMANTIC_LOSS, CENTER_LOSS, OFFSET_LOSS, TOTAL_LOSS}
    np.testing.assert_allclose(full[TOTAL_LOSS],
                               [(3 * LN4 + 2 * LN2) / 3 + 200 * CENTER + 0.01 * OFFSET],
                               rtol=1e-6)
