"""Matching and balanced sampling vs hand-worked cases and a numpy loop of the rules."""
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.top_down import anchors
from deeplab2.model.top_down import boxes as boxes_lib
from deeplab2.model.top_down import sampling
from deeplab2.utils import graph_dtypes


def _reference_match(iou, gt_valid, box_valid, rule):
    """(best IoU over valid GT, labels) of one image by loops."""
    num_boxes, num_gt = iou.shape
    positive, negative = np.float32(rule.positive_iou), np.float32(rule.negative_iou)
    best_iou = np.full(num_boxes, -1.0, np.float32)
    labels = np.zeros(num_boxes, np.int32)
    for i in range(num_boxes):
        candidates = [j for j in range(num_gt) if gt_valid[j]]
        if not box_valid[i]:
            labels[i] = -1
        elif candidates:
            best = best_iou[i] = max(iou[i, j] for j in candidates)
            labels[i] = 1 if best >= positive else 0 if best < negative else -1
    if rule.best_gt_positive:
        for j in range(num_gt):
            column = [iou[i, j] for i in range(num_boxes) if box_valid[i]]
            if gt_valid[j] and column and max(column) > 0:
                for i in range(num_boxes):
                    if box_valid[i] and iou[i, j] == max(column):
                        labels[i] = 1
    return best_iou, labels


def _grid_boxes(rng, shape):
    """Integer boxes on a small grid: equal IoUs (ties) are common."""
    corner = rng.integers(0, 12, shape + (2,))
    size = rng.integers(1, 8, shape + (2,))
    return np.concatenate([corner, corner + size], axis=-1).astype(np.float32)


def _labels(rng, positives, negatives, ignored):
    labels = np.array([1] * positives + [0] * negatives + [-1] * ignored, np.int32)
    return rng.permutation(labels)


@pytest.mark.parametrize("rule", [sampling.RPN_MATCH, sampling.ROI_MATCH])
def test_match_equals_numpy_loop_with_ties_and_padding(rule):
    rng = np.random.default_rng(0)
    batch, num_boxes, num_gt = 4, 40, 6
    boxes, gt_boxes = _grid_boxes(rng, (batch, num_boxes)), _grid_boxes(rng, (batch, num_gt))
    gt_valid = rng.random((batch, num_gt)) < 0.6
    gt_valid[3] = False  # an image without ground truth
    box_valid = rng.random((batch, num_boxes)) < 0.9
    match = sampling.match_boxes(tf.constant(boxes), tf.constant(gt_boxes), tf.constant(gt_valid),
                                 rule, box_valid=tf.constant(box_valid))
    iou = boxes_lib.pairwise_iou(tf.constant(boxes), tf.constant(gt_boxes)).numpy()
    for b in range(batch):
        best_iou, labels = _reference_match(iou[b], gt_valid[b], box_valid[b], rule)
        np.testing.assert_array_equal(match.labels[b].numpy(), labels)
        positive = labels == 1
        gt_index = match.gt_index[b].numpy()[positive]
        assert gt_valid[b][gt_index].all()
        np.testing.assert_array_equal(iou[b][positive, gt_index], best_iou[positive])
    assert (match.labels[3].numpy() <= 0).all()
    assert {-1, 0, 1} <= set(match.labels.numpy().ravel())


@pytest.mark.parametrize("valid_rows", [([0, 1, 2], []), ([], []), ([0, 1, 2, 3, 4], [0, 1, 7])],
                         ids=["tail", "none", "row_after_padding"])
def test_dropping_the_padded_gt_tail_outside_xla_changes_no_match(valid_rows):
    """Eagerly, match_boxes cuts the GT columns after the last valid row of the
    batch; the XLA form keeps all 30. Labels and matched rows are equal (ties
    included), also when no image has ground truth or a valid row follows padding."""
    rng = np.random.default_rng(1)
    boxes, gt_boxes = _grid_boxes(rng, (60,)), _grid_boxes(rng, (2, 30))
    gt_valid = np.zeros((2, 30), bool)
    for image, rows in enumerate(valid_rows):
        gt_valid[image, rows] = True
    args = [tf.constant(a) for a in (boxes, gt_boxes, gt_valid)]
    for rule in (sampling.RPN_MATCH, sampling.ROI_MATCH):
        eager = sampling.match_boxes(*args, rule)
        compiled = tf.function(lambda *a: sampling.match_boxes(*a, rule), jit_compile=True)(*args)
        np.testing.assert_array_equal(eager.labels.numpy(), compiled.labels.numpy())
        positive = eager.labels.numpy() == sampling.POSITIVE
        np.testing.assert_array_equal(eager.gt_index.numpy()[positive],
                                      compiled.gt_index.numpy()[positive])
        assert gt_valid[np.nonzero(positive)[0], eager.gt_index.numpy()[positive]].all()
        assert positive.any() == gt_valid.any()


@pytest.mark.parametrize("valid, expected", [
    ([[1, 0, 0, 0], [1, 1, 0, 0]], 2),
    ([[1, 0, 0, 0], [1, 0, 0, 1]], 4),  # a valid row after padding counts
    ([[0, 0, 0, 0], [0, 0, 0, 0]], 1),  # at least one row
])
def test_rows_in_use_ends_after_the_last_valid_row_except_under_xla(valid, expected):
    valid = tf.constant(np.array(valid, bool))
    assert int(sampling.rows_in_use(valid)) == expected
    assert tf.function(sampling.rows_in_use, jit_compile=True)(valid) == 4


def test_rpn_rule_hand_worked():
    gt_boxes = tf.constant([[0, 0, 10, 25], [50, 0, 60, 10], [200, 200, 210, 210.]])
    gt_valid = tf.constant([True, True, False])
    boxes = tf.constant([
        [0, 0, 10, 10],  # IoU 0.4 with GT 0, its best: positive below 0.7
        [0, 15, 10, 25],  # IoU 0.4 with GT 0, a tie for best: positive
        [0, 0, 10, 5],  # IoU 0.2: negative
        [100, 100, 110, 110],  # no overlap: negative
        [200, 200, 210, 210],  # IoU 1 with the invalid GT 2: negative
        [50, 0, 60, 10],  # IoU 1 with GT 1: positive
        [50, 0, 60, 16.],  # IoU 0.625 with GT 1, not its best: ignored
    ])
    match = sampling.match_boxes(boxes, gt_boxes, gt_valid, sampling.RPN_MATCH)
    np.testing.assert_array_equal(match.labels.numpy(), [1, 1, 0, 0, 0, 1, -1])
    np.testing.assert_array_equal(match.gt_index.numpy()[[0, 1, 5]], [0, 0, 1])
    roi_match = sampling.match_boxes(boxes, gt_boxes, gt_valid, sampling.ROI_MATCH)
    np.testing.assert_array_equal(roi_match.labels.numpy(), [0, 0, 0, 0, 0, 1, 1])


@pytest.mark.parametrize("rule, expected", [
    (sampling.RPN_MATCH, [1, 1, -1, -1, 0]),
    (sampling.ROI_MATCH, [1, 1, 1, 0, 0]),
])
def test_thresholds_are_inclusive_at_the_positive_end(rule, expected):
    gt_boxes = tf.constant([[0, 0, 10, 20.]])
    # IoU 1, 0.7, 0.5, 0.3, 0.25
    boxes = tf.constant([[0, 0, 10, 20], [0, 0, 10, 14], [0, 0, 10, 10], [0, 0, 10, 6],
                         [0, 0, 10, 5.]])
    match = sampling.match_boxes(boxes, gt_boxes, tf.constant([True]), rule)
    np.testing.assert_array_equal(match.labels.numpy(), expected)


def test_without_valid_ground_truth_everything_is_negative():
    gt_boxes = tf.constant([[0, 0, 32, 32], [0, 0, 0, 0.]])
    match = sampling.match_boxes(anchors.fpn_anchors(64, 64), gt_boxes,
                                 tf.constant([False, False]), sampling.RPN_MATCH)
    assert (match.labels.numpy() == 0).all()


def _check_sample(sample, labels, expected_positives, expected_negatives):
    indices, valid = sample.indices.numpy(), sample.valid.numpy()
    num_valid = expected_positives + expected_negatives
    np.testing.assert_array_equal(valid, np.arange(len(valid)) < num_valid)
    picked = labels[indices[valid]]
    np.testing.assert_array_equal(picked, [1] * expected_positives + [0] * expected_negatives)
    assert len(set(indices[valid])) == num_valid
    assert (indices[~valid] == 0).all()


@pytest.mark.parametrize("rule, counts, expected", [
    (sampling.RPN_SAMPLE, (400, 1000, 600), (128, 128)),
    (sampling.RPN_SAMPLE, (10, 1000, 0), (10, 246)),
    (sampling.RPN_SAMPLE, (5, 20, 100), (5, 20)),
    (sampling.ROI_SAMPLE, (300, 1000, 50), (128, 384)),
    (sampling.ROI_SAMPLE, (10, 30, 0), (10, 30)),  # fewer boxes than samples
    (sampling.ROI_SAMPLE, (0, 0, 30), (0, 0)),
])
def test_sample_sizes_and_positive_fraction(rule, counts, expected):
    labels = _labels(np.random.default_rng(1), *counts)
    sample = sampling.sample_balanced(tf.constant(labels), rule, tf.constant([3, 4]))
    assert sample.indices.shape == sample.valid.shape == (rule.num_samples,)
    assert sample.indices.dtype == tf.int32
    _check_sample(sample, labels, *expected)


def test_same_seed_same_sample_other_seed_other_sample():
    labels = tf.constant(_labels(np.random.default_rng(2), 300, 1000, 100))
    first = sampling.sample_balanced(labels, sampling.RPN_SAMPLE, tf.constant([5, 6]))
    again = sampling.sample_balanced(labels, sampling.RPN_SAMPLE, tf.constant([5, 6]))
    other = sampling.sample_balanced(labels, sampling.RPN_SAMPLE, tf.constant([5, 7]))
    np.testing.assert_array_equal(first.indices.numpy(), again.indices.numpy())
    assert set(first.indices.numpy()) != set(other.indices.numpy())


def test_batch_rows_are_sampled_separately_and_cover_all_candidates():
    rule = sampling.SampleRule(num_samples=8, positive_fraction=0.5)
    labels = np.tile(_labels(np.random.default_rng(3), 10, 10, 5), (60, 1))
    sample = sampling.sample_balanced(tf.constant(labels), rule, tf.constant([7, 8]))
    assert sample.indices.shape == (60, 8)
    for row in range(60):
        _check_sample(sampling.Sample(sample.indices[row], sample.valid[row]), labels[row], 4, 4)
    assert len({tuple(sorted(row)) for row in sample.indices.numpy()}) > 50
    chosen = np.zeros_like(labels, bool)
    np.put_along_axis(chosen, sample.indices.numpy(), True, axis=1)
    # 4 of 10 per row: each candidate misses all 60 rows with probability 0.6**60.
    frequency = chosen.mean(axis=0)
    assert (frequency[labels[0] >= 0] > 0).all() and (frequency[labels[0] == -1] == 0).all()


def test_append_gt_boxes_makes_every_valid_gt_a_foreground_roi():
    proposals = tf.constant([[100, 100, 120, 130], [0, 0, 0, 0.]])
    gt_boxes = tf.constant([[10, 10, 40, 30], [50, 60, 70, 90], [0, 0, 0, 0.]])
    gt_valid = tf.constant([True, True, False])
    rois, roi_valid = sampling.append_gt_boxes(proposals, tf.constant([True, False]), gt_boxes,
                                               gt_valid)
    np.testing.assert_array_equal(rois.numpy()[2:], gt_boxes.numpy())
    np.testing.assert_array_equal(roi_valid.numpy(), [True, False, True, True, False])
    match = sampling.match_boxes(rois, gt_boxes, gt_valid, sampling.ROI_MATCH, box_valid=roi_valid)
    np.testing.assert_array_equal(match.labels.numpy(), [0, -1, 1, 1, -1])
    np.testing.assert_array_equal(match.gt_index.numpy()[2:4], [0, 1])


def test_training_targets_compile_with_xla_batched():
    """RPN and RoI targets of a batch of 2 in one XLA function, reproducible by seed."""
    all_anchors = anchors.fpn_anchors(64, 96)
    gt_boxes = tf.constant([[[10, 10, 40, 50], [60, 5, 70, 12], [0, 0, 0, 0]],
                            [[0, 0, 96, 64], [30, 20, 33, 24], [5, 5, 9, 9]]], tf.float32)
    gt_valid = tf.constant([[True, True, False], [True, True, True]])
    proposals = tf.random.stateless_uniform([2, 600, 2], [0, 1], maxval=60.0)
    proposals = tf.concat([proposals, proposals + 3 + proposals[..., ::-1] / 2], axis=-1)
    proposal_valid = tf.range(600)[None, :] < tf.constant([[500], [600]])

    @tf.function(jit_compile=True)
    def targets(gt_boxes, gt_valid, proposals, proposal_valid, seed):
        rpn_match = sampling.match_boxes(all_anchors, gt_boxes, gt_valid, sampling.RPN_MATCH)
        rpn_sample = sampling.sample_balanced(rpn_match.labels, sampling.RPN_SAMPLE, seed)
        rois, roi_valid = sampling.append_gt_boxes(proposals, proposal_valid, gt_boxes,
                                                   gt_valid)
        roi_match = sampling.match_boxes(rois, gt_boxes, gt_valid, sampling.ROI_MATCH,
                                         box_valid=roi_valid)
        roi_sample = sampling.sample_balanced(roi_match.labels, sampling.ROI_SAMPLE, seed + 1)
        return rpn_match, rpn_sample, roi_match, roi_sample

    inputs = (gt_boxes, gt_valid, proposals, proposal_valid, tf.constant([9, 9]))
    rpn_match, rpn_sample, roi_match, roi_sample = targets(*inputs)
    for match, sample, rule in ((rpn_match, rpn_sample, sampling.RPN_SAMPLE),
                                (roi_match, roi_sample, sampling.ROI_SAMPLE)):
        assert sample.indices.shape == (2, rule.num_samples)
        labels = match.labels.numpy()
        picked = np.take_along_axis(labels, sample.indices.numpy(), axis=1)
        valid = sample.valid.numpy()
        assert (picked[valid] >= 0).all()
        positives = np.minimum((labels == 1).sum(axis=1),
                               int(rule.num_samples * rule.positive_fraction))
        negatives = np.minimum((labels == 0).sum(axis=1), rule.num_samples - positives)
        np.testing.assert_array_equal(((picked == 1) & valid).sum(axis=1), positives)
        np.testing.assert_array_equal(valid.sum(axis=1), positives + negatives)
    assert rpn_sample.valid.numpy().all()
    # Each valid GT's best anchor is positive, however small the GT (3 x 4 and 4 x 4 in
    # image 1), and positives match valid GT rows only.
    iou = boxes_lib.pairwise_iou(all_anchors, gt_boxes).numpy()
    rpn_labels = rpn_match.labels.numpy()
    for image, gt in ((0, 0), (0, 1), (1, 0), (1, 1), (1, 2)):
        assert rpn_labels[image, iou[image, :, gt].argmax()] == 1
    assert iou[1, :, 1].max() < 0.3 and iou[1, :, 2].max() < 0.3
    assert 2 not in set(rpn_match.gt_index.numpy()[0][rpn_labels[0] == 1])
    # Padding proposals (image 0, rows 500..599) are never sampled.
    picked_rows = roi_sample.indices.numpy()[0][roi_sample.valid.numpy()[0]]
    assert not ((picked_rows >= 500) & (picked_rows < 600)).any()
    again = targets(*inputs)
    for first, second in zip(tf.nest.flatten((rpn_sample, roi_sample)),
                             tf.nest.flatten(again[1::2])):
        np.testing.assert_array_equal(first.numpy(), second.numpy())
    traced = targets.get_concrete_function(*inputs)
    assert graph_dtypes.ops_producing(traced, [tf.float64]) == []
