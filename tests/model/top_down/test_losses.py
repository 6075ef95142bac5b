"""Mask R-CNN losses: hand-computed values, empty images, sampling bounds, head output
layouts, and a whole training step under XLA with finite gradients."""
import math

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.model.top_down import anchors as anchors_lib
from deeplab2.model.top_down import boxes as boxes_lib
from deeplab2.model.top_down import instance_targets as it
from deeplab2.model.top_down import losses
from deeplab2.model.top_down import roi_targets
from deeplab2.model.top_down.roi_targets import RoITargets
from deeplab2.utils import graph_dtypes

SEED = tf.constant([3, 4])


def _softplus(x):
    return np.log1p(np.exp(x))


def _smooth_l1(d, beta):
    d = np.abs(d)
    return d if beta == 0 else np.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_rpn_losses_hand_worked(beta):
    anchors = tf.constant([[0, 0, 10, 20],  # IoU 0.58 with the GT, its best: positive
                           [100, 100, 110, 110],  # no overlap: negative
                           [0, 0, 8, 16.]])  # IoU 0.36: ignored
    gt_boxes = tf.constant([[[1, 2, 13, 22], [0, 0, 0, 0]]] * 2, tf.float32)
    gt_valid = tf.constant([[True, False], [False, False]])  # image 1 has no GT
    logits = np.array([[0.3, -1.2, 2.0], [0.5, 0.1, -0.7]], np.float32)
    deltas = np.array([[[0.5, -0.5, 0.1, 0.2], [9, 9, 9, 9], [9, 9, 9, 9]]] * 2, np.float32)
    out = losses.rpn_losses(tf.constant(logits), tf.constant(deltas), anchors, gt_boxes, gt_valid,
                            SEED, beta=beta)
    assert set(out) == {losses.RPN_OBJECTNESS_LOSS, losses.RPN_BOX_LOSS}
    objectness = [_softplus(-0.3) + _softplus(-1.2),  # positive anchor 0, negative anchor 1
                  _softplus(0.5) + _softplus(0.1) + _softplus(-0.7)]  # all negative
    np.testing.assert_allclose(out[losses.RPN_OBJECTNESS_LOSS].numpy(),
                               np.array(objectness) / 256, rtol=1e-6)
    # Anchor centre (5, 10), size (10, 20); GT centre (7, 12), size (12, 20); weights 1.
    target = np.array([0.2, 0.1, math.log(1.2), 0.0])
    expected_box = _smooth_l1(deltas[0, 0] - target, beta).sum() / 256
    np.testing.assert_allclose(out[losses.RPN_BOX_LOSS].numpy(), [expected_box, 0.0], rtol=1e-5)


def _per_level(flat, image_size):
    """Splits [B, A, ...] into RPNHead's {"p<l>": [B, A_l, ...]}, listed highest level first."""
    parts = tf.split(flat, anchors_lib.anchor_counts(*image_size), axis=1)
    return {f"p{level}": part for level, part in reversed(list(enumerate(parts, start=2)))}


def test_rpn_sampling_bounds_and_level_outputs():
    image_size = (64, 64)
    anchors = anchors_lib.fpn_anchors(*image_size)
    rng = np.random.default_rng(0)
    # 150 GT boxes equal to P2 anchors (size 32): more than 128 positive anchors, and
    # the large anchors of P4..P6 are negative.
    num_p2 = anchors_lib.anchor_counts(*image_size)[0]
    gt_boxes = tf.gather(anchors, rng.choice(num_p2, 150, replace=False))[None]
    gt_valid = tf.ones([1, 150], bool)
    logits = tf.zeros([1, anchors.shape[0]])
    deltas = tf.constant(rng.normal(size=(1, anchors.shape[0], 4)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        out = losses.rpn_losses(logits, deltas, anchors, gt_boxes, gt_valid, SEED)
    gradient = tape.gradient(out[losses.RPN_OBJECTNESS_LOSS], logits).numpy()[0]
    # At logit 0 the BCE gradient is (0.5 - label) / 256 for a sampled anchor, 0 otherwise.
    assert (gradient != 0).sum() == 256
    assert (gradient < 0).sum() == 128
    np.testing.assert_allclose(out[losses.RPN_OBJECTNESS_LOSS].numpy(), [math.log(2.0)],
                               rtol=1e-6)
    by_level = losses.rpn_losses(_per_level(logits, image_size), _per_level(deltas, image_size),
                                 anchors, gt_boxes, gt_valid, SEED)
    for key, value in out.items():
        np.testing.assert_array_equal(by_level[key].numpy(), value.numpy())
    with pytest.raises(ValueError):
        losses.rpn_losses(logits[:, 1:], deltas[:, 1:], anchors, gt_boxes, gt_valid, SEED)


def test_smooth_l1():
    d = tf.constant([-2.0, -0.5, 0.0, 0.25, 3.0])
    np.testing.assert_allclose(losses.smooth_l1(d, 0.0).numpy(), [2, 0.5, 0, 0.25, 3])
    np.testing.assert_allclose(losses.smooth_l1(d, 1.0).numpy(), [1.5, 0.125, 0, 0.03125, 2.5])


def _hand_roi_targets(rng):
    """3 images x 4 slots: image 0 foreground and background, 1 only background, 2 nothing."""
    classes = np.array([[2, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], np.int32)
    valid = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]], bool)
    foreground = classes > 0
    box_targets = np.where(foreground[..., None], rng.normal(size=(3, 4, 4)), 0.0)
    ids = np.where(foreground, 13000 + classes, -1)
    return RoITargets(tf.zeros([3, 4, 4]), tf.constant(valid), tf.constant(classes),
                      tf.constant(box_targets, tf.float32), tf.constant(ids, tf.int32),
                      tf.constant(foreground))


def test_box_head_losses_hand_worked():
    rng = np.random.default_rng(1)
    num_classes = 3
    targets = _hand_roi_targets(rng)
    logits = rng.normal(size=(3, 4, num_classes + 1)).astype(np.float32)
    deltas = rng.normal(size=(3, 4, 4 * num_classes)).astype(np.float32)
    out = losses.box_head_losses(tf.constant(logits), tf.constant(deltas), targets, beta=0.0)
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    classes, box_targets = targets.classes.numpy(), targets.box_targets.numpy()
    expected_ce = [-(log_softmax[0, 0, 2] + log_softmax[0, 1, 1] + log_softmax[0, 2, 0]) / 3,
                   -(log_softmax[1, 0, 0] + log_softmax[1, 1, 0]) / 2, 0.0]
    regression = sum(np.abs(deltas[0, s, 4 * (c - 1):4 * c] - box_targets[0, s]).sum()
                     for s, c in enumerate(classes[0][:2]))
    np.testing.assert_allclose(out[losses.BOX_CLASSIFICATION_LOSS].numpy(), expected_ce,
                               rtol=1e-5)
    np.testing.assert_allclose(out[losses.BOX_REGRESSION_LOSS].numpy(), [regression / 3, 0, 0],
                               rtol=1e-5)
    # BoxHead's flat [B * S, ...] outputs give the same.
    flat = losses.box_head_losses(tf.constant(logits.reshape(12, -1)),
                                  tf.constant(deltas.reshape(12, -1)), targets)
    half = losses.box_head_losses(tf.constant(logits, tf.bfloat16),
                                  tf.constant(deltas, tf.bfloat16), targets)
    for key, value in out.items():
        np.testing.assert_array_equal(flat[key].numpy(), value.numpy())
        assert half[key].dtype == tf.float32
        np.testing.assert_allclose(half[key].numpy(), value.numpy(), rtol=0.02, atol=0.02)


def test_mask_loss_hand_worked():
    rng = np.random.default_rng(2)
    num_classes = 3
    classes = np.array([[2, 1, 0], [0, 0, 0]], np.int32)
    foreground = classes > 0  # image 1 has no foreground RoI
    logits = rng.normal(size=(2, 3, 28, 28, num_classes)).astype(np.float32)
    targets = (rng.random((2, 3, 28, 28)) < 0.4).astype(np.float32)

    def loss(logits):
        return losses.mask_loss(tf.constant(logits), tf.constant(targets), tf.constant(classes),
                                tf.constant(foreground)).numpy()

    selected = np.stack([logits[0, 0, ..., 1], logits[0, 1, ..., 0]])
    bce = _softplus(selected) - selected * targets[0, :2]
    np.testing.assert_allclose(loss(logits), [bce.mean(), 0.0], rtol=1e-5)
    other = logits.copy()
    other[0, 0, ..., 0] = 50.0  # not the GT class
    other[0, 2] = 50.0  # not a foreground RoI
    other[1] = np.nan  # an image without foreground ignores its logits
    np.testing.assert_allclose(loss(other), loss(logits), rtol=1e-6)
    np.testing.assert_array_equal(loss(logits.reshape(6, 28, 28, num_classes)), loss(logits))


def _scene(batch_gt_boxes, size=64):
    """Panoptic labels [B, size, size] painting cars on road, and their instance targets."""
    info = get_dataset_info("cityscapes")
    labels = np.zeros((len(batch_gt_boxes), size, size), np.int32)
    for b, boxes in enumerate(batch_gt_boxes):
        for n, (x0, y0, x1, y1) in enumerate(boxes):
            labels[b, y0:y1, x0:x1] = 13000 + n + 1
    gt = [it.instance_targets(label, info, max_instances=8) for label in labels]
    return labels, {key: tf.stack([g[key] for g in gt]) for key in gt[0]}


def test_training_step_compiles_with_xla_and_gradients_are_finite():
    num_classes, size = 8, 64
    labels, gt = _scene([[(4, 6, 30, 40), (36, 10, 60, 28), (40, 40, 50, 64)], []], size)
    anchors = anchors_lib.fpn_anchors(size, size)
    rng = np.random.default_rng(3)
    boxes = gt[it.GT_BOXES].numpy()[0]
    jittered = boxes[rng.integers(0, 3, (2, 200))] + rng.normal(0, 2, (2, 200, 4))
    proposals = tf.constant(jittered, tf.float32)
    outputs = {  # stand-ins for the heads' outputs, at 0
        "objectness": tf.Variable(tf.zeros([2, anchors.shape[0]])),
        "rpn_deltas": tf.Variable(tf.zeros([2, anchors.shape[0], 4])),
        "class_logits": tf.Variable(tf.zeros([2 * 512, num_classes + 1])),
        "box_deltas": tf.Variable(tf.zeros([2 * 512, 4 * num_classes])),
        "mask_logits": tf.Variable(tf.zeros([2 * 128, 28, 28, num_classes])),
    }

    @tf.function(jit_compile=True)
    def step(label, gt_boxes, gt_classes, gt_ids, gt_valid, proposals, seed):
        with tf.GradientTape() as tape:
            values = losses.rpn_losses(outputs["objectness"], outputs["rpn_deltas"], anchors,
                                       gt_boxes, gt_valid, seed)
            rois = roi_targets.sample_rois(proposals, tf.ones([2, 200], bool), gt_boxes,
                                           gt_classes, gt_ids, gt_valid, seed + 1)
            values.update(losses.box_head_losses(outputs["class_logits"],
                                                 outputs["box_deltas"], rois))
            head = roi_targets.foreground_slots(rois)
            masks = roi_targets.mask_targets(label, head.boxes, head.gt_panoptic_ids)
            values[losses.MASK_LOSS] = losses.mask_loss(outputs["mask_logits"], masks,
                                                        head.classes, head.foreground)
            total = tf.reduce_mean(tf.add_n(list(values.values())))
        return values, tape.gradient(total, outputs), rois, masks

    inputs = (tf.constant(labels), gt[it.GT_BOXES], gt[it.GT_CLASSES], gt[it.GT_PANOPTIC_IDS],
              gt[it.GT_VALID], proposals, tf.constant([5, 6]))
    values, gradients, rois, masks = step(*inputs)
    values = {key: value.numpy() for key, value in values.items()}
    for gradient in gradients.values():
        assert np.isfinite(gradient.numpy()).all()
    assert np.abs(gradients["mask_logits"].numpy()).sum() > 0
    # All outputs at 0: BCE ln 2 per sampled anchor or mask pixel, CE ln(K + 1) per RoI.
    np.testing.assert_allclose(values[losses.RPN_OBJECTNESS_LOSS], [math.log(2)] * 2, rtol=1e-5)
    np.testing.assert_allclose(values[losses.BOX_CLASSIFICATION_LOSS],
                               [math.log(num_classes + 1)] * 2, rtol=1e-5)
    np.testing.assert_allclose(values[losses.MASK_LOSS], [math.log(2), 0.0], rtol=1e-4)
    for key in (losses.RPN_BOX_LOSS, losses.BOX_REGRESSION_LOSS):
        assert values[key][0] > 0 and values[key][1] == 0  # image 1 has no GT
    # The compiled targets agree with eager TF on the RoIs XLA sampled.
    head = roi_targets.foreground_slots(rois)
    np.testing.assert_array_equal(masks.numpy(), roi_targets.mask_targets(
        inputs[0], head.boxes, head.gt_panoptic_ids).numpy())
    assert 0.3 < masks.numpy()[head.foreground.numpy()].mean() < 1.0
    b, s = np.nonzero(rois.foreground.numpy())
    assert len(b) > 0 and (b == 0).all()
    decoded = boxes_lib.decode(rois.box_targets, rois.boxes, boxes_lib.BOX_HEAD_WEIGHTS).numpy()
    ids = rois.gt_panoptic_ids.numpy()[b, s]
    row = (ids[:, None] == gt[it.GT_PANOPTIC_IDS].numpy()[0][None, :]).argmax(1)
    np.testing.assert_allclose(decoded[b, s], boxes[row], atol=1e-3)
    traced = step.get_concrete_function(*inputs)
    assert graph_dtypes.ops_producing(traced, [tf.float64]) == []
