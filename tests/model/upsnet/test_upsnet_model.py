"""The UPSNet model on a four-layer backbone: inference outputs and fusion, a
training forward pass with its losses and gradients, a batch without
instances, a few SGD steps, and the post-processing under XLA."""
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
from deeplab2.model.top_down.instance_targets import GT_VALID
from deeplab2.model.upsnet import loss as loss_lib
from deeplab2.model.upsnet import model as model_lib

SIZE = (64, 96)
# Narrow widths and few proposals, RoIs and detections: seconds per step.
SMALL = dict(fpn_channels=16, semantic_dcn_channels=[8, 8], box_fc_channels=32,
             mask_channels=8, rpn_pre_nms_top_k_train=200, rpn_pre_nms_top_k_test=100,
             rpn_post_nms_top_k=100, roi_samples=64, max_detections=20, max_instances=16)
FAMILY = get_meta_architecture("upsnet")


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return build_model("upsnet", "synthetic", crop_size=SIZE,
                       backbone=strided_conv_backbone.register(), **SMALL)


def _batch(config, scenes):
    return training_batch(FAMILY, config, scenes)


@pytest.fixture(scope="module")
def batch(model):
    scenes = [generate_scene(0, "train", i, *SIZE) for i in range(2)]
    return _batch(model.model_config, [(s.image, s.panoptic) for s in scenes])


def _losses_and_gradients(model, batch):
    return losses_and_gradients(FAMILY, model, batch)


def test_inference_outputs_and_fusion(model, batch):
    outputs = model(batch[common.IMAGE], training=False)
    assert set(outputs) == set(model_lib.OUTPUT_KEYS) == set(FAMILY.output_keys)
    assert outputs[common.SEMANTIC_LOGITS].shape == (2, *SIZE, 6)  # every synthetic class
    logits = outputs[model_lib.DETECTION_MASK_LOGITS].numpy()
    valid = outputs[common.DETECTION_VALID].numpy() > 0
    assert logits.shape == (2, 20, 28, 28) and np.all(logits[~valid] == 0)
    np.testing.assert_allclose(tf.sigmoid(logits[valid]),
                               outputs[common.MASK_PROBABILITIES].numpy()[valid], atol=1e-6)
    options = dict(model.model_config.postprocess, score_threshold=0.0)
    predictions = FAMILY.postprocess(outputs, model.model_config, options)
    compiled = tf.function(lambda o: FAMILY.postprocess(o, model.model_config, options),
                           jit_compile=True)(outputs)
    for key in (common.PANOPTIC, common.INSTANCE_SCORES, common.BOXES):
        np.testing.assert_array_equal(compiled[key], predictions[key])
    panoptic = predictions[common.PANOPTIC].numpy()
    assert panoptic.shape == (2, *SIZE)
    info = model.model_config.dataset
    classes = panoptic // info.label_divisor
    assert set(np.unique(classes)) <= set(range(info.num_classes)) | {info.ignore_label}


def test_training_losses_and_gradients(model, batch):
    outputs, losses, gradients = _losses_and_gradients(model, batch)
    num_stuff = len(model.model_config.dataset.stuff_ids)
    z = outputs[model_lib.PANOPTIC_LOGITS]
    assert z.shape == (2, SIZE[0] // 4, SIZE[1] // 4, num_stuff + 1 + 16)
    kept = outputs[model_lib.PANOPTIC_KEPT].numpy()
    count = batch[GT_VALID].numpy().sum(axis=1)
    np.testing.assert_array_equal(kept.sum(axis=1), np.maximum(np.floor(0.7 * count), 1))
    for key in (loss_lib.ROI_SEMANTIC_LOSS, loss_lib.PANOPTIC_LOSS, "semantic_loss",
                "mask_loss", "total_loss"):
        values = losses[key].numpy()
        assert values.shape == (2,) and np.all(np.isfinite(values)) and np.all(values > 0), key
    weights = model.model_config.architecture
    # Synthetic data takes Cityscapes' weights: lambda_sem 1, lambda_pan 0.5.
    assert (weights["semantic_loss_weight"], weights["panoptic_loss_weight"]) == (1.0, 0.5)
    for name in ("dcn1/kernel", "dcn1/offset_conv/kernel", "mask_head", "predictor/kernel"):
        norms = [float(tf.norm(g)) for path, g in gradients.items() if name in path]
        assert norms and max(norms) > 0, name


@pytest.mark.parametrize("valid_rows", [(3, 5), (3, 16)])
def test_the_ground_truth_mask_head_skips_only_the_padding_tail(model, valid_rows):
    """Eagerly the mask head of the panoptic head's slots stops after the
    batch's last valid row (row 5, or none when an image fills all 16): those
    rows equal the head on every row, the others are 0. Under XLA it runs on
    every row."""
    rng = np.random.default_rng(0)
    levels = {level: tf.constant(rng.normal(size=(2, SIZE[0] >> level, SIZE[1] >> level, 16)),
                                 tf.float32) for level in (2, 3, 4, 5)}
    corner = rng.uniform(0, 40, size=(2, 16, 2))
    boxes = tf.constant(np.concatenate([corner, corner + rng.uniform(8, 24, (2, 16, 2))], -1),
                        tf.float32)
    classes = tf.constant(rng.integers(1, model.num_thing_classes + 1, (2, 16)), tf.int32)
    valid = tf.constant(np.arange(16) < np.array(valid_rows)[:, None])
    every_row = tf.gather(model._mask_head_on(levels, boxes), classes - 1, axis=4,
                          batch_dims=2).numpy()
    eager = model._ground_truth_mask_logits(levels, boxes, classes, valid).numpy()
    used = max(valid_rows)
    assert eager.shape == every_row.shape == (2, 16, 28, 28)
    np.testing.assert_allclose(eager[:, :used], every_row[:, :used], rtol=1e-5, atol=1e-5)
    assert not eager[:, used:].any()
    if used < 16:  # the skipped rows are not zeros of the head itself
        assert np.abs(every_row[:, used:]).max() > 0
    compiled = tf.function(model._ground_truth_mask_logits, jit_compile=True)(
        levels, boxes, classes, valid)
    np.testing.assert_allclose(compiled, every_row, rtol=1e-4, atol=1e-4)


def test_a_batch_without_instances_trains_with_finite_losses(model):
    # Only stuff (class 0) and a crowd of a thing class (instance 0): no GT
    # instance, every thing pixel targets unknown.
    batch = crowd_only_batch(FAMILY, model.model_config, SIZE)
    assert not batch[GT_VALID].numpy().any()
    outputs, losses, gradients = _losses_and_gradients(model, batch)
    assert not outputs[model_lib.PANOPTIC_KEPT].numpy().any()
    for key, value in losses.items():
        assert np.all(np.isfinite(value.numpy())), key
    assert all(np.all(np.isfinite(g.numpy())) for g in gradients.values() if g is not None)


def test_sgd_steps_lower_the_loss(batch):
    keras.utils.set_random_seed(1)
    model = build_model("upsnet", "synthetic", crop_size=SIZE,
                        backbone=strided_conv_backbone.register(), **SMALL)
    losses = sgd_total_losses(FAMILY, model, batch)
    assert np.mean(losses[-3:]) < 0.85 * losses[0], losses


def test_config_round_trip(model):
    # The test backbone is not registered with Keras; name it for the lookup.
    with keras.saving.custom_object_scope({"StridedConvBackbone": type(model.backbone)}):
        clone = model_lib.UPSNet.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.semantic_dcn_channels == (8, 8) and not clone.global_context
    info = model.model_config.dataset
    assert clone.stuff_channels == tuple(info.stuff_ids)
    assert clone.thing_channels == tuple(info.thing_ids)


@pytest.mark.slow
def test_the_training_step_compiles_with_xla(model, batch):
    def losses(batch):
        loss_fn = FAMILY.training_loss(model.model_config)
        return loss_fn(batch, FAMILY.training_outputs(model, batch))

    eager = losses(batch)
    compiled = tf.function(losses, jit_compile=True)(batch)
    for key in (loss_lib.PANOPTIC_LOSS, loss_lib.ROI_SEMANTIC_LOSS, "semantic_loss",
                "mask_loss"):
        np.testing.assert_allclose(compiled[key], eager[key], rtol=2e-3, atol=1e-4,
                                   err_msg=key)
