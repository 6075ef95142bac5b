"""Detection post-processing and RPN proposals: hand-worked cases and numpy oracles."""
import math

import numpy as np
import tensorflow as tf

from greedy_nms_oracle import greedy_nms
from deeplab2.model.top_down import detections

_postprocess = tf.function(detections.postprocess_detections, jit_compile=True)
_proposals = tf.function(detections.generate_proposals, jit_compile=True)


# ---- numpy oracle ----

def _decode(deltas, boxes, weights):
    """float64 coder of SPEC_TOP_DOWN section 1, dw and dh clamped at ln(1000 / 16)."""
    deltas, boxes = np.float64(deltas), np.float64(boxes)
    deltas = deltas / np.array(weights)
    size = boxes[..., 2:] - boxes[..., :2]
    center = boxes[..., :2] + size / 2 + deltas[..., :2] * size
    size = np.exp(np.minimum(deltas[..., 2:], math.log(1000 / 16))) * size
    return np.concatenate([center - size / 2, center + size / 2], axis=-1)


def _clip(boxes, height, width):
    return np.clip(boxes, 0, [width, height, width, height])


def reference_detections(probabilities, deltas, rois, roi_valid, height, width, *,
                         num_candidates, max_detections, score_threshold=0.05,
                         iou_threshold=0.5):
    """(boxes, scores, classes, roi indices) of the kept detections, best first."""
    num_rois, num_classes = probabilities.shape[0], probabilities.shape[1] - 1
    rows, classes, scores, boxes = [], [], [], []
    for r in range(num_rois):
        for c in range(1, num_classes + 1):
            if roi_valid[r] and probabilities[r, c] > score_threshold:
                rows.append(r)
                classes.append(c)
                scores.append(probabilities[r, c])
                box = _decode(deltas[r, 4 * (c - 1):4 * c], rois[r], (10, 10, 5, 5))
                boxes.append(_clip(box, height, width))
    rows, classes, scores, boxes = map(np.array, (rows, classes, scores, boxes))
    top = np.argsort(-scores, kind="stable")[:num_candidates]
    kept = []
    for c in np.unique(classes[top]):
        members = top[classes[top] == c]
        kept.extend(members[greedy_nms(boxes[members], scores[members], iou_threshold)])
    kept = np.array(sorted(kept))
    kept = kept[np.argsort(-scores[kept], kind="stable")][:max_detections]
    return boxes[kept], scores[kept], classes[kept], rows[kept]


def reference_proposals(objectness, deltas, anchors, height, width, *, pre_nms_top_k,
                        post_nms_top_k, iou_threshold=0.7):
    """(boxes, logits) of the kept proposals, best first."""
    boxes, logits = [], []
    for level_logits, level_deltas, level_anchors in zip(objectness, deltas, anchors):
        top = np.argsort(-level_logits, kind="stable")[:pre_nms_top_k]
        level_boxes = _clip(_decode(level_deltas[top], level_anchors[top], (1, 1, 1, 1)),
                            height, width)
        level_logits = level_logits[top]
        nonempty = np.all(level_boxes[:, 2:] > level_boxes[:, :2], axis=1)
        level_boxes, level_logits = level_boxes[nonempty], level_logits[nonempty]
        kept = greedy_nms(level_boxes, level_logits, iou_threshold)
        boxes.append(level_boxes[kept])
        logits.append(level_logits[kept])
    boxes, logits = np.concatenate(boxes), np.concatenate(logits)
    order = np.argsort(-logits, kind="stable")[:post_nms_top_k]
    return boxes[order], logits[order]


def _random_boxes(rng, num, size, low, high):
    centers = rng.uniform(low, high, (4, 2))[rng.integers(0, 4, num)]
    centers += rng.normal(0, size / 4, (num, 2))
    sizes = size * rng.uniform(0.5, 2, (num, 2))
    return np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1).astype(np.float32)


def _valid_rows(result):
    """The count of valid rows, after checking they come first and the rest is zero."""
    valid = np.asarray(result.valid)
    count = valid.sum()
    np.testing.assert_array_equal(valid, np.arange(valid.size) < count)
    for field in result._fields:
        np.testing.assert_array_equal(np.asarray(getattr(result, field))[count:], 0, field)
    return count


# ---- detections ----

# Image 100 x 120 (height x width); 3 RoIs, 2 classes. Per (RoI, class), worked by hand:
#   (0, 1) p 0.7, zero deltas:              box (10, 10, 30, 50)
#   (0, 2) p 0.2, dx = 5 / 10 * w 20 = 10:  box (20, 10, 40, 50)
#   (1, 1) p 0.05: not > 0.05, dropped
#   (1, 2) p 0.95, dw = 5 ln 2 / 5 -> w 40: box (50, 20, 90, 40)
#   (2, 1) p 0.3, dx = 1 * w 40, dy = -1.5 * h 20: (92, -8, 132, 12) clipped to (92, 0, 120, 12)
#   (2, 2) p 0.5, zero deltas: box (52, 22, 92, 42), IoU 684 / 916 with (1, 2): suppressed
_HAND_PROBABILITIES = np.array([[0.1, 0.7, 0.2], [0.0, 0.05, 0.95], [0.2, 0.3, 0.5]],
                               np.float32)
_HAND_DELTAS = np.array([[0, 0, 0, 0, 5, 0, 0, 0],
                         [0, 0, 0, 0, 0, 0, 5 * math.log(2), 0],
                         [10, -15, 0, 0, 0, 0, 0, 0]], np.float32)
_HAND_ROIS = np.array([[10, 10, 30, 50], [60, 20, 80, 40], [52, 22, 92, 42]], np.float32)
_HAND_BOXES = {(0, 1): [10, 10, 30, 50], (0, 2): [20, 10, 40, 50], (1, 2): [50, 20, 90, 40],
               (2, 1): [92, 0, 120, 12], (2, 2): [52, 22, 92, 42]}
_HAND_SCORES = {(0, 1): 0.7, (0, 2): 0.2, (1, 2): 0.95, (2, 1): 0.3, (2, 2): 0.5}


def _check_hand_case(result, expected_pairs):
    assert _valid_rows(result) == len(expected_pairs)
    count = len(expected_pairs)
    np.testing.assert_allclose(np.asarray(result.boxes)[:count],
                               [_HAND_BOXES[p] for p in expected_pairs], atol=1e-4)
    np.testing.assert_array_equal(np.asarray(result.scores)[:count],
                                  np.float32([_HAND_SCORES[p] for p in expected_pairs]))
    np.testing.assert_array_equal(np.asarray(result.roi_indices)[:count],
                                  [p[0] for p in expected_pairs])
    np.testing.assert_array_equal(np.asarray(result.classes)[:count],
                                  [p[1] for p in expected_pairs])


def test_detections_hand_case():
    result = detections.postprocess_detections(_HAND_PROBABILITIES, _HAND_DELTAS, _HAND_ROIS,
                                               (100, 120))
    assert result.boxes.shape == (100, 4) and result.valid.shape == (100,)
    _check_hand_case(result, [(1, 2), (0, 1), (2, 1), (0, 2)])


def test_detections_thresholds_and_limits():
    def run(**options):
        return detections.postprocess_detections(
            _HAND_PROBABILITIES, _HAND_DELTAS, _HAND_ROIS, (100, 120), **options)

    _check_hand_case(run(score_threshold=0.25), [(1, 2), (0, 1), (2, 1)])
    # The 3 best candidates: (1, 2), (0, 1) and (2, 2), which (1, 2) suppresses.
    _check_hand_case(run(num_candidates=3), [(1, 2), (0, 1)])
    _check_hand_case(run(max_detections=3), [(1, 2), (0, 1), (2, 1)])
    # Without RoI 1, nothing suppresses (2, 2).
    _check_hand_case(run(roi_valid=np.array([True, False, True])),
                     [(0, 1), (2, 2), (2, 1), (0, 2)])
    _check_hand_case(run(iou_threshold=0.8), [(1, 2), (0, 1), (2, 2), (2, 1), (0, 2)])


def test_detections_clamp_box_growth():
    # dw = 50 / 5 = 10 is clamped at ln(62.5): width 10 -> 625 around x = 5, then clipped.
    result = detections.postprocess_detections(
        np.float32([[0.1, 0.9]]), np.float32([[0, 0, 50, 0]]), np.float32([[0, 0, 10, 10]]),
        (1000, 1000))
    np.testing.assert_allclose(np.asarray(result.boxes)[0], [0, 0, 317.5, 10], rtol=1e-5)


def test_detections_match_numpy_reference():
    rng = np.random.default_rng(3)
    num_rois, num_classes, height, width = 40, 3, 64, 80
    options = dict(num_candidates=50, max_detections=20)
    for _ in range(3):
        logits = rng.normal(0, 2, (num_rois, num_classes + 1))
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        probabilities = probabilities.astype(np.float32)
        deltas = rng.normal(0, 2, (num_rois, 4 * num_classes)).astype(np.float32)
        rois = _random_boxes(rng, num_rois, 20, -10, 90)
        roi_valid = rng.random(num_rois) < 0.9
        result = _postprocess(probabilities, deltas, rois, (height, width),
                              roi_valid=roi_valid, **options)
        boxes, scores, classes, rows = reference_detections(
            probabilities, deltas, rois, roi_valid, height, width, **options)
        count = _valid_rows(result)
        assert count == len(scores)
        np.testing.assert_allclose(np.asarray(result.boxes)[:count], boxes, atol=1e-4)
        np.testing.assert_array_equal(np.asarray(result.scores)[:count], scores)
        np.testing.assert_array_equal(np.asarray(result.classes)[:count], classes)
        np.testing.assert_array_equal(np.asarray(result.roi_indices)[:count], rows)


# ---- proposals ----

def _random_rpn_outputs(rng, sizes=(150, 40, 9)):
    objectness, deltas, anchors = [], [], []
    for level, size in enumerate(sizes):
        objectness.append(rng.normal(0, 2, size).astype(np.float32))
        deltas.append(rng.normal(0, 0.2, (size, 4)).astype(np.float32))
        anchors.append(_random_boxes(rng, size, 8 * 2 ** level, -10, 90))
    return objectness, deltas, anchors


def test_proposals_match_numpy_reference():
    rng = np.random.default_rng(4)
    height, width, pre_nms_top_k = 64, 80, 30
    for post_nms_top_k, run in [(25, _proposals), (200, detections.generate_proposals)]:
        for _ in range(2):
            objectness, deltas, anchors = _random_rpn_outputs(rng)
            result = run(objectness, deltas, anchors, (height, width),
                         pre_nms_top_k=pre_nms_top_k, post_nms_top_k=post_nms_top_k)
            boxes, logits = reference_proposals(
                objectness, deltas, anchors, height, width, pre_nms_top_k=pre_nms_top_k,
                post_nms_top_k=post_nms_top_k)
            count = _valid_rows(result)
            assert count == len(logits) and result.valid.shape == (post_nms_top_k,)
            np.testing.assert_allclose(np.asarray(result.boxes)[:count], boxes, atol=1e-4)
            np.testing.assert_array_equal(np.asarray(result.logits)[:count], logits)


def test_proposals_hand_case():
    # Level 0: a duplicate, suppressed within the level. Level 1: the same box, kept
    # (levels do not suppress each other), and a box outside the image, empty once clipped.
    box = [0, 0, 10, 10]
    anchors = [np.float32([box, box]), np.float32([box, [60, 60, 70, 70]])]
    objectness = [np.float32([2.0, 1.0]), np.float32([1.5, 3.0])]
    deltas = [tf.zeros([2, 4]), tf.zeros([2, 4])]
    with tf.GradientTape() as tape:
        tape.watch(deltas)
        result = detections.generate_proposals(objectness, deltas, anchors, (50, 50),
                                               post_nms_top_k=4)
    assert _valid_rows(result) == 2
    np.testing.assert_array_equal(np.asarray(result.boxes)[:2], [box, box])
    np.testing.assert_array_equal(np.asarray(result.logits)[:2], [2.0, 1.5])
    assert tape.gradient(result.boxes, deltas) == [None, None]


def test_proposals_of_levels_of_unknown_size_equal_those_of_known_size():
    # An exported model traces any image size: each level keeps a static top 30,
    # the 9-anchor level padded with rows that are not real.
    objectness, deltas, anchors = _random_rpn_outputs(np.random.default_rng(5))
    options = dict(pre_nms_top_k=30, post_nms_top_k=60)
    signature = [[tf.TensorSpec([None], tf.float32)] * 3,
                 [tf.TensorSpec([None, 4], tf.float32)] * 3,
                 [tf.TensorSpec([None, 4], tf.float32)] * 3]
    traced = tf.function(
        lambda o, d, a: tuple(detections.generate_proposals(o, d, a, (64, 80), **options)),
        input_signature=signature)
    expected = detections.generate_proposals(objectness, deltas, anchors, (64, 80), **options)
    result = detections.Proposals(*traced(objectness, deltas, anchors))
    assert _valid_rows(result) == _valid_rows(expected) > 0
    # Graph-mode rewrites may round the decoded boxes differently.
    np.testing.assert_allclose(result.boxes, expected.boxes, atol=1e-4)
    np.testing.assert_array_equal(result.logits, expected.logits)
