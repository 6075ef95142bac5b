"""The top-down families under Keras's mixed_bfloat16 policy (what
`Trainer.mixed_precision = "bfloat16"` sets): they build, train with finite
losses and a finite gradient for every trainable variable, and predict; the
semantic branch's logits stay within 10% (relative norm) of float32's.
tf.image.resize returns float32 for bfloat16 maps and crop_and_resize takes
no bfloat16: both broke these models before."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import strided_conv_backbone
from top_down_batches import losses_and_gradients, training_batch
from deeplab2 import common
from deeplab2.data.synthetic import generate_scene
from deeplab2.model import build_model, get_meta_architecture

SIZE = (64, 96)
SMALL = dict(fpn_channels=16, box_fc_channels=32, mask_channels=8,
             rpn_pre_nms_top_k_train=200, rpn_pre_nms_top_k_test=100, rpn_post_nms_top_k=100,
             roi_samples=64, max_detections=20, max_instances=16)
FAMILY_OPTIONS = {"panoptic_fpn": {}, "upsnet": dict(semantic_dcn_channels=[8, 8]),
                  "seamless": dict(semantic_channels=8, box_fc_channels=128)}


def _model(name, policy):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        return build_model(name, "synthetic", crop_size=SIZE,
                           backbone=strided_conv_backbone.register(),
                           **{**SMALL, **FAMILY_OPTIONS[name]})
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("name", sorted(FAMILY_OPTIONS))
def test_a_family_trains_and_predicts_in_mixed_bfloat16(name):
    family = get_meta_architecture(name)
    mixed, full = _model(name, "mixed_bfloat16"), _model(name, "float32")
    assert mixed.compute_dtype == "bfloat16"
    scenes = [generate_scene(0, "train", i, *SIZE) for i in range(2)]
    batch = training_batch(family, mixed.model_config,
                           [(scene.image, scene.panoptic) for scene in scenes])
    _, losses, gradients = losses_and_gradients(family, mixed, batch)
    assert np.all(np.isfinite(losses["total_loss"].numpy()))
    assert len(gradients) == len(mixed.trainable_variables) > 0
    for path, gradient in gradients.items():
        assert gradient is not None, path
        assert np.all(np.isfinite(tf.convert_to_tensor(gradient).numpy())), path
    got = mixed(batch[common.IMAGE], training=False)
    want = full(batch[common.IMAGE], training=False)
    assert set(got) == set(family.output_keys)
    semantic = got[common.SEMANTIC_LOGITS].numpy()
    assert semantic.dtype == np.float32
    reference = want[common.SEMANTIC_LOGITS].numpy()
    # Near initialization the logits are small differences of larger maps, so
    # the tensor as a whole is compared (bfloat16 keeps 8 bits of mantissa;
    # measured: 6.8% for Seamless, whose semantic branch is the deepest).
    assert np.linalg.norm(semantic - reference) < 0.1 * np.linalg.norm(reference)
