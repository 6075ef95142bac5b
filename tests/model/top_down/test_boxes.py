"""Box arithmetic vs hand-worked numbers and numpy loops: IoU, clipping, coder, RoI levels."""
import math

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.top_down import boxes
from deeplab2.utils import graph_dtypes


def _random_boxes(rng, count, extent=50.0):
    """[count, 4] float32 boxes, some of them empty or inverted."""
    corner = rng.uniform(0, extent, (count, 2))
    size = rng.uniform(-2, extent / 2, (count, 2))
    size[rng.random(count) < 0.2] = 0.0
    return np.concatenate([corner, corner + size], axis=1).astype(np.float32)


def _numpy_iou(first, second):
    """IoU by a double loop in float64; 0 when the union is empty."""
    result = np.zeros((len(first), len(second)))
    for i, (ax0, ay0, ax1, ay1) in enumerate(first.astype(np.float64)):
        for j, (bx0, by0, bx1, by1) in enumerate(second.astype(np.float64)):
            inter = max(min(ax1, bx1) - max(ax0, bx0), 0) * max(min(ay1, by1) - max(ay0, by0), 0)
            union = (max(ax1 - ax0, 0) * max(ay1 - ay0, 0)
                     + max(bx1 - bx0, 0) * max(by1 - by0, 0) - inter)
            result[i, j] = inter / union if union > 0 else 0.0
    return result


def test_area_has_no_plus_one_and_empty_boxes_have_none():
    areas = boxes.area(tf.constant([[0, 0, 10, 20], [3, 3, 4, 4], [5, 5, 5, 9], [4, 4, 2, 9.]]))
    np.testing.assert_array_equal(areas.numpy(), [200, 1, 0, 0])


def test_pairwise_iou_matches_numpy_double_loop():
    rng = np.random.default_rng(0)
    first, second = _random_boxes(rng, 23), _random_boxes(rng, 17)
    second[3] = first[5]  # an identical pair: IoU 1 unless empty
    iou = boxes.pairwise_iou(tf.constant(first), tf.constant(second)).numpy()
    assert iou.shape == (23, 17)
    np.testing.assert_allclose(iou, _numpy_iou(first, second), atol=1e-6)
    assert (iou > 0).any() and (iou == 0).any()


def test_pairwise_iou_broadcasts_over_a_batch():
    rng = np.random.default_rng(1)
    first = np.stack([_random_boxes(rng, 6) for _ in range(3)])
    second = np.stack([_random_boxes(rng, 4) for _ in range(3)])
    iou = boxes.pairwise_iou(tf.constant(first), tf.constant(second)).numpy()
    for b in range(3):
        np.testing.assert_allclose(iou[b], _numpy_iou(first[b], second[b]), atol=1e-6)


def test_iou_of_empty_boxes_is_zero_not_nan():
    empty = tf.constant([[5, 5, 5, 5], [2, 2, 2, 8.]])
    iou = boxes.pairwise_iou(empty, tf.concat([empty, [[0, 0, 10, 10.]]], axis=0)).numpy()
    np.testing.assert_array_equal(iou, np.zeros((2, 3)))


def test_clip_to_image_height_and_width():
    clipped = boxes.clip(tf.constant([[-5, -3, 120, 70], [10, 20, 30, 40.]]), (64, 96))
    np.testing.assert_array_equal(clipped.numpy(), [[0, 0, 96, 64], [10, 20, 30, 40]])


def test_coder_golden_numbers_in_dx_dy_dw_dh_order():
    # anchor: w 10, h 20, centre (5, 10); GT: w 12, h 20, centre (7, 12).
    deltas = boxes.encode(tf.constant([1, 2, 13, 22.]), tf.constant([0, 0, 10, 20.]),
                          boxes.BOX_HEAD_WEIGHTS)
    np.testing.assert_allclose(deltas.numpy(), [2, 1, 5 * math.log(1.2), 0], atol=1e-6)
    np.testing.assert_allclose(deltas.numpy()[2], 0.9116, atol=1e-4)
    decoded = boxes.decode(deltas, tf.constant([0, 0, 10, 20.]), boxes.BOX_HEAD_WEIGHTS)
    np.testing.assert_allclose(decoded.numpy(), [1, 2, 13, 22], atol=1e-5)


@pytest.mark.parametrize("weights", [boxes.RPN_WEIGHTS, boxes.BOX_HEAD_WEIGHTS])
def test_decode_inverts_encode_on_random_boxes(weights):
    rng = np.random.default_rng(2)
    corner = rng.uniform(-100, 500, (2, 200, 2))
    size = rng.uniform(5, 300, (2, 200, 2))  # size ratios below the clamp, 1000 / 16
    target, reference = np.concatenate([corner, corner + size], axis=-1).astype(np.float32)
    deltas = boxes.encode(tf.constant(target), tf.constant(reference), weights)
    decoded = boxes.decode(deltas, tf.constant(reference), weights)
    np.testing.assert_allclose(decoded.numpy(), target, atol=2e-3)


@pytest.mark.parametrize("weights", [boxes.RPN_WEIGHTS, boxes.BOX_HEAD_WEIGHTS])
def test_decode_clamps_the_size_ratio_at_1000_over_16(weights):
    deltas = tf.constant([[0, 0, 1e6, 1e6], [0, 0, 10.0, -1e6]])
    decoded = boxes.decode(deltas, tf.constant([[0, 0, 16, 32.]]), weights).numpy()
    assert np.isfinite(decoded).all()
    width, height = decoded[:, 2] - decoded[:, 0], decoded[:, 3] - decoded[:, 1]
    np.testing.assert_allclose(width, [1000, 16 * min(math.exp(10.0 / weights[2]), 62.5)],
                               rtol=1e-5)
    np.testing.assert_allclose(height, [2000, 0], rtol=1e-5)
    np.testing.assert_allclose(decoded[:, :2] + decoded[:, 2:], [[16, 32]] * 2, atol=1e-3)


def test_roi_levels_golden():
    sides = tf.constant([224, 112, 20, 2000, 448, 56, 223.9, 111.9, 447.9])
    rois = tf.stack([tf.zeros_like(sides), tf.zeros_like(sides), sides, sides], axis=-1)
    np.testing.assert_array_equal(boxes.roi_levels(rois).numpy(), [4, 3, 2, 5, 5, 2, 3, 2, 4])


def test_roi_levels_match_the_log2_formula():
    rng = np.random.default_rng(3)
    rois = _random_boxes(rng, 500, extent=1500.0)
    side = np.sqrt(np.maximum(rois[:, 2] - rois[:, 0], 0) * np.maximum(rois[:, 3] - rois[:, 1], 0))
    exact = 4 + np.log2(side.astype(np.float64) / 224 + 1e-8)
    away_from_edges = np.abs(exact - np.round(exact)) > 1e-4
    expected = np.clip(np.floor(exact), 2, 5)
    levels = boxes.roi_levels(tf.constant(rois)).numpy()
    np.testing.assert_array_equal(levels[away_from_edges], expected[away_from_edges])
    assert set(levels) == {2, 3, 4, 5}


def test_all_functions_compile_with_xla_without_float64():
    rng = np.random.default_rng(4)
    first, second = tf.constant(_random_boxes(rng, 12)), tf.constant(_random_boxes(rng, 12))

    def run(first, second):
        deltas = boxes.encode(second + [0, 0, 30, 30], first + [0, 0, 30, 30],
                              boxes.BOX_HEAD_WEIGHTS)
        return (boxes.area(first), boxes.pairwise_iou(first, second), boxes.clip(first, (40, 30)),
                deltas, boxes.decode(deltas, first, boxes.RPN_WEIGHTS), boxes.roi_levels(first))

    compiled = tf.function(run, jit_compile=True)
    for got, expected in zip(compiled(first, second), run(first, second)):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    traced = compiled.get_concrete_function(first, second)
    assert graph_dtypes.ops_producing(traced, [tf.float64]) == []
