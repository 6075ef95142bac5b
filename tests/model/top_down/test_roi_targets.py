"""RoI sampling targets and mask targets: hand-worked cases, sampling bounds and RoIAlign
of a float mask as the oracle (test_losses.py runs them under XLA)."""
import math

import numpy as np
import tensorflow as tf

from deeplab2.model.top_down import boxes as boxes_lib
from deeplab2.model.top_down import roi_targets
from deeplab2.model.top_down import sampling
from deeplab2.model.top_down.roi_align import roi_align

SEED = tf.constant([1, 2])


def _sample(proposals, proposal_valid, gt_boxes, gt_classes, gt_ids, gt_valid, **kwargs):
    targets = roi_targets.sample_rois(*(tf.constant(x) for x in (
        proposals, proposal_valid, gt_boxes, gt_classes, gt_ids, gt_valid)), SEED, **kwargs)
    return roi_targets.RoITargets(*(field.numpy() for field in targets))


def test_hand_worked_sample():
    proposals = np.array([[[10, 10, 30, 34], [40, 40, 50, 50], [10, 10, 30, 30]]], np.float32)
    gt_boxes = np.array([[[10, 10, 30, 30], [0, 0, 0, 0]]], np.float32)
    targets = _sample(proposals, [[True, True, False]], gt_boxes, [[3, 0]], [[13002, -1]],
                      [[True, False]], sample_rule=sampling.SampleRule(8, 0.5))
    # Foreground: proposal 0 (IoU 20 * 20 / (20 * 24) = 0.83) and the appended GT 0;
    # background: proposal 1; proposal 2 is padding.
    np.testing.assert_array_equal(targets.valid[0], [True] * 3 + [False] * 5)
    np.testing.assert_array_equal(targets.foreground[0], [True, True] + [False] * 6)
    np.testing.assert_array_equal(targets.classes[0], [3, 3] + [0] * 6)
    np.testing.assert_array_equal(targets.gt_panoptic_ids[0], [13002, 13002] + [-1] * 6)
    order = np.argsort(targets.boxes[0, :2, 3])  # the GT (y1 = 30) before the proposal (34)
    np.testing.assert_array_equal(targets.boxes[0, :2][order], [[10, 10, 30, 30], [10, 10, 30, 34]])
    np.testing.assert_array_equal(targets.boxes[0, 2], [40, 40, 50, 50])
    np.testing.assert_array_equal(targets.boxes[0, 3:], 0)
    # Proposal (10, 10, 30, 34): centre (20, 22), size (20, 24); GT centre (20, 20), size (20, 20).
    expected = [0.0, 10 * (20 - 22) / 24, 0.0, 5 * math.log(20 / 24)]
    np.testing.assert_allclose(targets.box_targets[0, :2][order], [[0] * 4, expected], atol=1e-6)
    np.testing.assert_array_equal(targets.box_targets[0, 2:], 0)


def _random_gt(rng, batch, num_gt, size):
    corner = rng.uniform(0, size - 20, (batch, num_gt, 2))
    extent = rng.uniform(4, 40, (batch, num_gt, 2))
    gt_boxes = np.concatenate([corner, np.minimum(corner + extent, size)], -1).astype(np.float32)
    gt_valid = rng.random((batch, num_gt)) < 0.8
    gt_valid[-1] = False  # the last image has no ground truth
    gt_classes = np.where(gt_valid, rng.integers(1, 9, (batch, num_gt)), 0).astype(np.int32)
    gt_ids = np.where(gt_valid, (gt_classes + 10) * 1000 + np.arange(num_gt) + 1, -1)
    return gt_boxes, gt_classes, gt_ids.astype(np.int32), gt_valid


def _jittered_proposals(rng, gt_boxes, count):
    """`count` proposals per image: jittered GT boxes (many foreground) and random boxes."""
    batch, num_gt, _ = gt_boxes.shape
    source = gt_boxes[np.arange(batch)[:, None], rng.integers(0, num_gt, (batch, count))]
    jitter = rng.normal(0, 3, (batch, count, 4))
    random = rng.uniform(0, 80, (batch, count, 2))
    random = np.concatenate([random, random + rng.uniform(0, 30, (batch, count, 2))], -1)
    proposals = np.where(rng.random((batch, count, 1)) < 0.6, source + jitter, random)
    return proposals.astype(np.float32)


def _matched_gt(targets, gt_ids):
    """[B, S] GT row of each foreground RoI, found by its panoptic id (0 elsewhere)."""
    equal = targets.gt_panoptic_ids[:, :, None] == gt_ids[:, None, :]
    return np.where(targets.foreground, equal.argmax(-1), 0)


def _check_box_targets(targets, gt_boxes, matched):
    """Decoding a foreground RoI's target gives its matched GT box."""
    decoded = boxes_lib.decode(targets.box_targets, targets.boxes,
                               boxes_lib.BOX_HEAD_WEIGHTS).numpy()
    b, s = np.nonzero(targets.foreground)
    np.testing.assert_allclose(decoded[b, s], gt_boxes[b, matched[b, s]], atol=1e-3)


def test_sampling_bounds_and_target_consistency():
    rng = np.random.default_rng(0)
    batch, num_proposals = 3, 1000
    gt_boxes, gt_classes, gt_ids, gt_valid = _random_gt(rng, batch, 12, 96)
    proposals = _jittered_proposals(rng, gt_boxes, num_proposals)
    proposals[:, 900:] = -7.0  # padding rows, recognisable if sampled
    proposal_valid = np.arange(num_proposals)[None, :] < 900
    proposal_valid = np.repeat(proposal_valid, batch, axis=0)
    targets = _sample(proposals, proposal_valid, gt_boxes, gt_classes, gt_ids, gt_valid)
    assert targets.boxes.shape == (batch, 512, 4) and targets.classes.dtype == np.int32
    valid, foreground = targets.valid, targets.foreground
    assert (valid.sum(1) == 512).all()
    assert (foreground.sum(1)[:2] == 128).all()  # many foreground candidates: capped at 25%
    assert not foreground[:, 128:].any()
    assert not foreground[-1].any() and (targets.classes[-1] == 0).all()
    assert not (targets.boxes == -7.0).any()
    matched = _matched_gt(targets, gt_ids)
    b, s = np.nonzero(foreground)
    np.testing.assert_array_equal(targets.classes[b, s], gt_classes[b, matched[b, s]])
    iou = boxes_lib.pairwise_iou(targets.boxes, gt_boxes).numpy()
    assert (iou[b, s, matched[b, s]] >= 0.5).all()
    _check_box_targets(targets, gt_boxes, matched)
    background = ~foreground
    assert (targets.classes[background] == 0).all()
    assert (targets.gt_panoptic_ids[background] == -1).all()
    assert (targets.box_targets[background] == 0).all()
    head = roi_targets.foreground_slots(roi_targets.RoITargets(*map(tf.constant, targets)))
    assert head.boxes.shape == (batch, 128, 4)
    np.testing.assert_array_equal(head.foreground.numpy().sum(1), foreground.sum(1))


def test_degenerate_proposals_give_finite_targets():
    proposals = np.array([[[5, 5, 5, 9], [0, 0, 0, 0], [3, 3, 3, 3]]], np.float32)
    targets = _sample(proposals, [[True] * 3], np.array([[[4, 4, 8, 8]]], np.float32), [[1]],
                      [[11001]], [[True]], sample_rule=sampling.SampleRule(4, 0.5))
    assert np.isfinite(targets.box_targets).all()
    np.testing.assert_array_equal(targets.valid[0], [True] * 4)
    assert targets.foreground[0].sum() == 1


def _rectangle_label(height=64, width=64):
    label = np.zeros((height, width), np.int32)
    label[8:40, 12:26] = 13001  # 14 wide, 32 high
    label[30:50, 40:64] = 11002  # touches the right border
    return label


def _mask_targets(label, boxes, ids):
    return roi_targets.mask_targets(tf.constant(label[None]), tf.constant(boxes, tf.float32)[None],
                                    tf.constant(ids, tf.int32)[None]).numpy()[0]


def test_mask_target_of_the_gt_box_is_all_ones_and_half_box_is_half():
    label = _rectangle_label()
    boxes = [[12, 8, 26, 40],  # the GT box
             [12, 8, 40, 40],  # twice as wide: the object fills the left half
             [12, 24, 26, 56],  # shifted down by half: the top half
             [40, 30, 64, 50],  # the GT box at the border
             [12, 8, 26, 40]]  # no foreground (id -1)
    targets = _mask_targets(label, boxes, [13001, 13001, 13001, 11002, -1])
    assert targets.shape == (5, 28, 28) and targets.dtype == np.float32
    np.testing.assert_array_equal(targets[0], 1)
    np.testing.assert_array_equal(targets[1][:, :14], 1)
    np.testing.assert_array_equal(targets[1][:, 14:], 0)
    np.testing.assert_array_equal(targets[2][:14], 1)
    np.testing.assert_array_equal(targets[2][14:], 0)
    np.testing.assert_array_equal(targets[3], 1)
    np.testing.assert_array_equal(targets[4], 0)


def test_mask_targets_equal_roi_align_of_the_binary_mask():
    rng = np.random.default_rng(1)
    label = _rectangle_label()
    label[rng.random(label.shape) < 0.1] = 11002  # ragged pixels
    ids = np.where(rng.random(24) < 0.5, 13001, 11002).astype(np.int32)
    corner = rng.uniform(-10, 60, (24, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(0.5, 40, (24, 2))], -1)
    boxes[-1] = [70, 70, 80, 80]  # off the image
    targets = _mask_targets(label, boxes, ids)
    masks = np.stack([label == i for i in ids], -1).astype(np.float32)  # one channel per RoI
    pooled = roi_align(tf.constant(masks), tf.constant(boxes, tf.float32), 28, 1).numpy()
    reference = np.stack([pooled[n, :, :, n] for n in range(24)])
    undecided = np.abs(reference - 0.5) < 1e-5
    np.testing.assert_array_equal(targets[~undecided], (reference >= 0.5)[~undecided])
    assert undecided.mean() < 0.01
    assert 0.05 < targets.mean() < 0.95
