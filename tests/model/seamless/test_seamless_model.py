"""The Seamless model on a four-layer backbone: inference outputs and fusion, a
training forward pass with its losses and gradients (the MiniDL, batch and group
norms included), a batch without instances, a few SGD steps, serialization and
the XLA-compiled training step."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import strided_conv_backbone
from top_down_batches import (crowd_only_batch, losses_and_gradients, sgd_total_losses,
                               training_batch)
from deeplab2 import common
from deeplab2.data.synthetic import generate_scene
from deeplab2.model import build_model, get_meta_architecture
from deeplab2.model.panoptic_fpn import model as panoptic_fpn_model
from deeplab2.model.seamless import model as model_lib
from deeplab2.model.top_down.instance_targets import GT_VALID

SIZE = (64, 96)
# Narrow widths and few proposals, RoIs and detections: seconds per step. The
# box head keeps 128 channels: GroupNorm's 32 groups of 1 channel would make
# the fc layers constant.
SMALL = dict(fpn_channels=16, semantic_channels=8, box_fc_channels=128, mask_channels=8,
             rpn_pre_nms_top_k_train=200, rpn_pre_nms_top_k_test=100, rpn_post_nms_top_k=100,
             roi_samples=64, max_detections=20, max_instances=16)
FAMILY = get_meta_architecture("seamless")


def _model(seed):
    keras.utils.set_random_seed(seed)
    return build_model("seamless", "synthetic", crop_size=SIZE,
                       backbone=strided_conv_backbone.register(), **SMALL)


@pytest.fixture(scope="module")
def model():
    return _model(0)


def _batch(config, scenes):
    return training_batch(FAMILY, config, scenes)


@pytest.fixture(scope="module")
def batch(model):
    scenes = [generate_scene(0, "train", i, *SIZE) for i in range(2)]
    return _batch(model.model_config, [(s.image, s.panoptic) for s in scenes])


def _losses_and_gradients(model, batch):
    return losses_and_gradients(FAMILY, model, batch)


def test_the_network_is_seamless(model):
    assert isinstance(model, model_lib.Seamless)
    assert list(model.fpn.output_specs()) == ["p2", "p3", "p4", "p5", "p6"]
    assert model.fpn.extra_convs and model.fpn.normalization == "batch_norm"
    assert model.rpn_head.norm is not None and model.box_head.norm1 is not None
    assert model.box_sampling_ratio == 4
    assert len(model.semantic_head.mini_deeplabs) == 4


def test_inference_outputs_and_fusion(model, batch):
    outputs = model(batch[common.IMAGE], training=False)
    assert set(outputs) == set(panoptic_fpn_model.OUTPUT_KEYS) == set(FAMILY.output_keys)
    assert outputs[common.SEMANTIC_LOGITS].shape == (2, *SIZE, 6)  # every synthetic class
    options = dict(model.model_config.postprocess, score_threshold=0.0)
    predictions = FAMILY.postprocess(outputs, model.model_config, options)
    compiled = tf.function(lambda o: FAMILY.postprocess(o, model.model_config, options),
                           jit_compile=True)(outputs)
    for key in (common.PANOPTIC, common.INSTANCE_SCORES, common.BOXES):
        np.testing.assert_array_equal(compiled[key], predictions[key])
    panoptic = predictions[common.PANOPTIC].numpy()
    info = model.model_config.dataset
    classes = panoptic // info.label_divisor
    assert set(np.unique(classes)) <= set(range(info.num_classes)) | {info.ignore_label}
    # Pixels outside every kept instance are stuff or void, never a thing.
    no_instance = predictions[common.INSTANCE].numpy() == 0
    assert not np.isin(classes[no_instance], info.thing_ids).any()


def test_training_losses_and_gradients(model, batch):
    _, losses, gradients = _losses_and_gradients(model, batch)
    for key in ("rpn_objectness_loss", "box_classification_loss", "mask_loss",
                "semantic_loss", "total_loss"):
        values = losses[key].numpy()
        assert values.shape == (2,) and np.all(np.isfinite(values)) and np.all(values > 0), key
    for name in ("p2_minidl/pooled/kernel", "p5_minidl/fuse_norm/gamma", "fpn/extra6/kernel",
                 "rpn_head/norm/gamma", "box_head/norm2/gamma", "mask_head/upsample_norm/beta",
                 "semantic_head/predictor/kernel"):
        norms = [float(tf.norm(g)) for path, g in gradients.items() if name in path]
        assert norms and max(norms) > 0, name


def test_a_batch_without_instances_trains_with_finite_losses(model):
    batch = crowd_only_batch(FAMILY, model.model_config, SIZE)
    assert not batch[GT_VALID].numpy().any()
    _, losses, gradients = _losses_and_gradients(model, batch)
    for key, value in losses.items():
        assert np.all(np.isfinite(value.numpy())), key
    assert all(np.all(np.isfinite(g.numpy())) for g in gradients.values() if g is not None)


def test_sgd_steps_lower_the_loss(batch):
    model = _model(1)
    losses = sgd_total_losses(FAMILY, model, batch)
    assert np.mean(losses[-3:]) < 0.85 * losses[0], losses


def test_config_round_trip(model):
    with keras.saving.custom_object_scope({"StridedConvBackbone": type(model.backbone)}):
        clone = model_lib.Seamless.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.fpn_extra_levels == 1 and clone.head_normalization == "group_norm"
    assert clone.anchor_set == model.anchor_set
    # The neck's batch norm keeps the options it was built with.
    keras.utils.set_random_seed(0)
    tuned = build_model("seamless", "synthetic", crop_size=SIZE, bn_momentum=0.9,
                        bn_epsilon=1e-3, backbone=strided_conv_backbone.register(), **SMALL)
    with keras.saving.custom_object_scope({"StridedConvBackbone": type(model.backbone)}):
        clone = model_lib.Seamless.from_config(tuned.get_config())
    for built in (tuned, clone):
        backbone = {id(layer) for layer in built.backbone._flatten_layers()}
        norms = [layer for layer in built._flatten_layers()
                 if isinstance(layer, keras.layers.BatchNormalization)
                 and id(layer) not in backbone]
        assert len(norms) == 9 + 1 + 16  # FPN, RPN, four MiniDLs
        assert {(n.momentum, n.epsilon) for n in norms} == {(0.9, 1e-3)}


@pytest.mark.slow
def test_the_training_step_compiles_with_xla(model, batch):
    def losses(batch):
        loss_fn = FAMILY.training_loss(model.model_config)
        return loss_fn(batch, FAMILY.training_outputs(model, batch))

    eager = losses(batch)
    compiled = tf.function(losses, jit_compile=True)(batch)
    for key in ("semantic_loss", "mask_loss"):
        np.testing.assert_allclose(compiled[key], eager[key], rtol=2e-3, atol=1e-4,
                                   err_msg=key)
    # Synchronized batch norm's variance E[x^2] - E[x]^2, reduced in another
    # order, moves the near-zero RPN logits by ~1e-3 and proposals near NMS and
    # top-k ties, so a few sampled RoIs may differ.
    for key in ("rpn_objectness_loss", "box_classification_loss"):
        np.testing.assert_allclose(compiled[key], eager[key], rtol=1e-2, err_msg=key)


def test_anchor_sizes_must_match_the_fpn_levels(model):
    with pytest.raises(ValueError, match=r"5 anchor sizes for the 6 FPN levels"):
        model_lib.Seamless(model.backbone, 3, 6, fpn_extra_levels=2)
