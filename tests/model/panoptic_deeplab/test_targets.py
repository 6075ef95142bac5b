"""Training targets: hand-worked golden values, crowd/ignore, overlaps, flips,
a loop-based numpy reference on random labels, and their Gin edge."""
import math

import gin
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.model.meta import get_meta_architecture, make_config
from deeplab2.model.panoptic_deeplab.targets import PanopticDeepLabTargets, make_targets
from deeplab2.training.config import ConfigError, parse_gin

INFO = get_dataset_info("cityscapes")  # things 11..18, ignore 255, divisor 1000
ROAD, CAR, PERSON = 0, 13, 11
IGNORE = INFO.ignore_panoptic_id
H, W = 33, 65


def _targets(label, **kwargs):
    return {k: v.numpy() for k, v in make_targets(tf.constant(label, tf.int32), INFO,
                                                   **kwargs).items()}


def _gauss(d2):
    return np.float32(math.exp(-d2 / (2 * 8.0 ** 2)))


def _square_label():
    label = np.full((H, W), ROAD * 1000, np.int32)
    label[10:21, 20:31] = CAR * 1000 + 1  # 11x11, area 121, center (15, 25)
    return label


def test_single_square_instance_golden_values():
    label = _square_label()
    out = _targets(label)
    heat = out[common.CENTER_HEATMAP_TARGET]
    assert heat.shape == (H, W) and heat.dtype == np.float32
    assert heat[15, 25] == 1.0 and heat.max() == 1.0
    assert heat[15, 26] == pytest.approx(math.exp(-1 / 128), rel=1e-6)
    assert heat[18, 29] == pytest.approx(math.exp(-25 / 128), rel=1e-6)
    # The 51x51 window reaches 25 pixels from the center and no further.
    assert heat[15, 50] == pytest.approx(math.exp(-625 / 128), rel=1e-5)
    assert heat[0, 50] == pytest.approx(math.exp(-(225 + 625) / 128), rel=1e-5)
    assert np.all(heat[:, 51:] == 0) and np.all(heat[:, :0] == 0)

    offsets = out[common.OFFSET_TARGET]
    assert offsets.shape == (H, W, 2)
    np.testing.assert_array_equal(offsets[10, 20], [5, 5])
    np.testing.assert_array_equal(offsets[10, 30], [5, -5])
    np.testing.assert_array_equal(offsets[20, 20], [-5, 5])
    np.testing.assert_array_equal(offsets[20, 30], [-5, -5])
    np.testing.assert_array_equal(offsets[15, 25], [0, 0])
    inside = label == CAR * 1000 + 1
    assert np.all(offsets[~inside] == 0)

    semantic = np.where(inside, CAR, ROAD)
    np.testing.assert_array_equal(out[common.SEMANTIC_TARGET], semantic)
    np.testing.assert_array_equal(out[common.SEMANTIC_WEIGHTS], np.where(inside, 3.0, 1.0))
    np.testing.assert_array_equal(out[common.CENTER_WEIGHTS], np.ones((H, W)))
    np.testing.assert_array_equal(out[common.OFFSET_WEIGHTS], inside.astype(np.float32))
    assert out[common.NUM_INSTANCES] == 1
    points = out[common.CENTER_POINTS]
    assert points.shape == (256, 2) and points.dtype == np.int32
    np.testing.assert_array_equal(points[0], [15, 25])
    assert np.all(points[1:] == -1)


def test_center_rounds_half_to_even():
    label = np.zeros((H, W), np.int32)
    label[10:20, 21:31] = CAR * 1000 + 1  # mean (14.5, 25.5) -> (14, 26)
    out = _targets(label)
    np.testing.assert_array_equal(out[common.CENTER_POINTS][0], [14, 26])
    assert out[common.CENTER_HEATMAP_TARGET][14, 26] == 1.0


def test_crowd_and_ignore_weights():
    label = np.full((H, W), ROAD * 1000, np.int32)
    label[:, :10] = IGNORE
    label[5:15, 40:60] = CAR * 1000  # crowd: thing class, instance 0
    label[20:25, 20:25] = PERSON * 1000 + 3
    out = _targets(label, small_instance_area=10)
    ignore, crowd = label == IGNORE, label == CAR * 1000
    person = label == PERSON * 1000 + 3

    np.testing.assert_array_equal(out[common.SEMANTIC_TARGET][ignore], 255)
    np.testing.assert_array_equal(out[common.SEMANTIC_TARGET][crowd], CAR)
    np.testing.assert_array_equal(out[common.SEMANTIC_WEIGHTS],
                                  np.where(ignore, 0.0, 1.0))  # person area 25 >= 10
    np.testing.assert_array_equal(out[common.CENTER_WEIGHTS],
                                  np.where(ignore | crowd, 0.0, 1.0))
    np.testing.assert_array_equal(out[common.OFFSET_WEIGHTS], person.astype(np.float32))
    assert np.all(out[common.OFFSET_TARGET][crowd] == 0)
    assert out[common.NUM_INSTANCES] == 1
    heat = out[common.CENTER_HEATMAP_TARGET]
    assert heat[22, 22] == 1.0 and np.count_nonzero(heat == 1.0) == 1


def test_small_instance_threshold_is_strict():
    label = np.zeros((H, W), np.int32)
    label[0:10, 0:10] = CAR * 1000 + 1  # area 100
    label[20:30, 40:49] = CAR * 1000 + 2  # area 90
    out = _targets(label, small_instance_area=100, small_instance_weight=5.0)
    weights = out[common.SEMANTIC_WEIGHTS]
    assert weights[5, 5] == 1.0 and weights[25, 45] == 5.0 and weights[15, 20] == 1.0


def test_overlapping_gaussians_take_the_max():
    label = np.zeros((H, W), np.int32)
    label[15, 20] = CAR * 1000 + 1
    label[15, 26] = CAR * 1000 + 2
    heat = _targets(label)[common.CENTER_HEATMAP_TARGET]
    assert heat[15, 20] == 1.0 and heat[15, 26] == 1.0
    assert heat[15, 22] == _gauss(4) and heat[15, 24] == _gauss(4)
    assert heat[15, 23] == _gauss(9)
    yy, xx = np.mgrid[:H, :W]
    expected = np.maximum(*[np.where((abs(yy - 15) <= 25) & (abs(xx - cx) <= 25),
                                     np.exp(-((yy - 15) ** 2 + (xx - cx) ** 2) / 128.0), 0)
                            for cx in (20, 26)])
    np.testing.assert_allclose(heat, expected, rtol=1e-6, atol=1e-7)


def test_points_truncated_but_every_instance_has_a_peak():
    label = np.zeros((H, W), np.int32)
    for k in range(5):
        label[3 + 5 * k, 4 + 12 * k] = PERSON * 1000 + 5 - k  # ids sorted reversed
    out = _targets(label, max_instances=3)
    assert out[common.NUM_INSTANCES] == 3
    np.testing.assert_array_equal(out[common.CENTER_POINTS], [[23, 52], [18, 40], [13, 28]])
    assert np.count_nonzero(out[common.CENTER_HEATMAP_TARGET] == 1.0) == 5
    assert np.count_nonzero(out[common.OFFSET_WEIGHTS]) == 5


def test_no_instances():
    label = np.full((H, W), ROAD * 1000, np.int32)
    label[:3] = IGNORE
    out = _targets(label, max_instances=4)
    assert np.all(out[common.CENTER_HEATMAP_TARGET] == 0)
    assert out[common.NUM_INSTANCES] == 0 and np.all(out[common.CENTER_POINTS] == -1)
    assert np.all(out[common.OFFSET_TARGET] == 0) and np.all(out[common.OFFSET_WEIGHTS] == 0)


def _flip_friendly_label():
    """Instances with odd widths, so their mean x is an integer (no rounding tie)."""
    label = np.full((H, W), ROAD * 1000, np.int32)
    label[:, 60:] = 8 * 1000  # vegetation
    label[30:] = IGNORE
    label[2:12, 3:16] = CAR * 1000 + 1
    label[8:20, 10:13] = PERSON * 1000 + 1  # occludes the car
    label[14:26, 33:60] = CAR * 1000 + 2
    label[0:5, 40:45] = CAR * 1000  # crowd
    label[20:29, 1:6] = PERSON * 1000 + 2
    return label


def test_flip_consistency():
    label = _flip_friendly_label()
    out = _targets(label)
    flipped = _targets(label[:, ::-1])
    for key in (common.SEMANTIC_TARGET, common.CENTER_HEATMAP_TARGET,
                common.SEMANTIC_WEIGHTS, common.CENTER_WEIGHTS, common.OFFSET_WEIGHTS):
        np.testing.assert_array_equal(flipped[key], out[key][:, ::-1], err_msg=key)
    expected_offsets = out[common.OFFSET_TARGET][:, ::-1] * np.array([1, -1], np.float32)
    np.testing.assert_array_equal(flipped[common.OFFSET_TARGET], expected_offsets)
    n = out[common.NUM_INSTANCES]
    assert n == flipped[common.NUM_INSTANCES] == 4
    points = out[common.CENTER_POINTS][:n]
    np.testing.assert_array_equal(flipped[common.CENTER_POINTS][:n],
                                  np.stack([points[:, 0], W - 1 - points[:, 1]], 1))


def _reference(label, sigma=8, small_area=4096, small_weight=3.0):
    """Loop-based numpy targets, written from the definitions."""
    semantic, instance = label // 1000, label % 1000
    thing = np.isin(semantic, INFO.thing_ids)
    ignore = semantic == INFO.ignore_label
    heat = np.zeros(label.shape, np.float64)
    offsets = np.zeros(label.shape + (2,), np.float32)
    sem_w = np.where(ignore, 0.0, 1.0)
    yy, xx = np.mgrid[:label.shape[0], :label.shape[1]]
    centers = []
    for pid in np.unique(label[thing & (instance > 0)]):
        mask = label == pid
        cy, cx = int(np.round(yy[mask].mean())), int(np.round(xx[mask].mean()))
        centers.append((cy, cx))
        window = (abs(yy - cy) <= 3 * sigma + 1) & (abs(xx - cx) <= 3 * sigma + 1)
        gauss = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
        heat = np.maximum(heat, np.where(window, gauss, 0))
        offsets[mask] = np.stack([cy - yy[mask], cx - xx[mask]], 1)
        if mask.sum() < small_area:
            sem_w[mask] = small_weight
    center_w = np.where(ignore | (thing & (instance == 0)), 0.0, 1.0)
    offset_w = (thing & (instance > 0)).astype(np.float32)
    return semantic, heat, offsets, sem_w, center_w, offset_w, centers


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_reference_on_random_labels(seed):
    rng = np.random.default_rng(seed)
    label = rng.choice([0, 2000, 8000], size=(H, W)).astype(np.int32)
    yy, xx = np.mgrid[:H, :W]
    for k in range(12):
        cls = int(rng.choice([PERSON, CAR, 18]))
        pid = cls * 1000 + (0 if k == 11 else k + 1)
        cy, cx, ry, rx = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(1, 9), rng.uniform(1, 15)
        label[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1] = pid
    label[rng.uniform(size=(H, W)) < 0.03] = IGNORE
    out = _targets(label, small_instance_area=60)
    semantic, heat, offsets, sem_w, center_w, offset_w, centers = _reference(
        label, small_area=60)
    np.testing.assert_array_equal(out[common.SEMANTIC_TARGET], semantic)
    np.testing.assert_allclose(out[common.CENTER_HEATMAP_TARGET], heat, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(out[common.OFFSET_TARGET], offsets)
    np.testing.assert_array_equal(out[common.SEMANTIC_WEIGHTS], sem_w)
    np.testing.assert_array_equal(out[common.CENTER_WEIGHTS], center_w)
    np.testing.assert_array_equal(out[common.OFFSET_WEIGHTS], offset_w)
    assert out[common.NUM_INSTANCES] == len(centers)
    np.testing.assert_array_equal(out[common.CENTER_POINTS][:len(centers)], centers)


def test_dynamic_shapes_in_tf_function():
    fn = tf.function(lambda x: make_targets(x, INFO),
                     input_signature=[tf.TensorSpec([None, None], tf.int32)])
    label = _square_label()
    out = fn(tf.constant(label))
    assert out[common.OFFSET_TARGET].shape == (H, W, 2)
    expected = _targets(label)
    for key, value in out.items():
        np.testing.assert_array_equal(value.numpy(), expected[key], err_msg=key)


def test_static_shapes_are_kept():
    fn = tf.function(lambda x: make_targets(x, INFO, max_instances=7))
    graph_out = fn.get_concrete_function(tf.TensorSpec([H, W], tf.int32)).structured_outputs
    assert graph_out[common.CENTER_HEATMAP_TARGET].shape == (H, W)
    assert graph_out[common.OFFSET_TARGET].shape == (H, W, 2)
    assert graph_out[common.SEMANTIC_WEIGHTS].shape == (H, W)
    assert graph_out[common.CENTER_POINTS].shape == (7, 2)


def test_gin_options_reach_the_family_targets():
    """`PanopticDeepLabTargets.*` bindings reach the targets the family gives the
    pipeline, with the model's dataset."""
    label = np.zeros((H, W), np.int32)
    label[0:10, 0:10] = CAR * 1000 + 1  # area 100
    config = make_config("panoptic_deeplab", INFO, output_stride=32, crop_size=None,
                         pixel_mean=127.5, pixel_std=127.5, architecture={},
                         postprocess={})
    gin.clear_config()
    try:
        parse_gin([], ["PanopticDeepLabTargets.small_instance_area = 101",
                       "PanopticDeepLabTargets.small_instance_weight = 5.0",
                       "PanopticDeepLabTargets.max_instances = 2"])
        targets = get_meta_architecture("panoptic_deeplab").training_targets(config)
    finally:
        gin.clear_config()
    assert isinstance(targets, PanopticDeepLabTargets)
    out = {k: v.numpy() for k, v in targets(tf.constant(label)).items()}
    expected = _targets(label, small_instance_area=101, small_instance_weight=5.0,
                        max_instances=2)
    assert out.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(out[key], value, err_msg=key)
    assert out[common.SEMANTIC_WEIGHTS][5, 5] == 5.0
    assert out[common.CENTER_POINTS].shape == (2, 2)


def test_dataset_cannot_be_bound():
    gin.clear_config()
    try:
        with pytest.raises(ConfigError, match="build_model.dataset"):
            parse_gin([], ["PanopticDeepLabTargets.dataset_info = 'coco'"])
    finally:
        gin.clear_config()
