"""Detection ground truth from panoptic labels: hand-made labels and a numpy loop on random ones."""
import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.model.top_down import instance_targets as it
from deeplab2.utils import graph_dtypes

INFO = get_dataset_info("cityscapes")  # things 11..18 -> detection classes 1..8, divisor 1000
ROAD, SKY, PERSON, RIDER, CAR = 0, 10, 11, 12, 13
VOID = INFO.ignore_panoptic_id
KEYS = (it.GT_CLASSES, it.GT_BOXES, it.GT_PANOPTIC_IDS, it.GT_VALID)


def _targets(label, info=INFO, **kwargs):
    return {k: v.numpy() for k, v in it.instance_targets(tf.constant(label, tf.int32), info,
                                                         **kwargs).items()}


def _reference(label, info, max_instances):
    """(classes, boxes, ids, valid, dropped) by a loop over the ids, largest first."""
    rows = []
    for segment in np.unique(label):
        category, instance = divmod(int(segment), info.label_divisor)
        if category in info.thing_ids and instance > 0:
            ys, xs = np.nonzero(label == segment)
            rows.append((-len(ys), segment, info.thing_ids.index(category) + 1,
                         [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]))
    rows.sort(key=lambda row: row[:2])
    classes = np.zeros(max_instances, np.int32)
    boxes = np.zeros((max_instances, 4), np.float32)
    ids = np.full(max_instances, -1, np.int32)
    for n, (_, segment, category, box) in enumerate(rows[:max_instances]):
        classes[n], boxes[n], ids[n] = category, box, segment
    valid = np.arange(max_instances) < len(rows)
    return classes, boxes, ids, valid, max(len(rows) - max_instances, 0)


def test_hand_made_label():
    label = np.full((24, 32), ROAD * 1000, np.int32)
    label[:8] = SKY * 1000
    label[2:6, 3:9] = CAR * 1000 + 1  # 4 x 6
    label[10:24, 28:32] = PERSON * 1000 + 7  # touches the bottom and right borders
    label[12:16, 10:14] = CAR * 1000  # crowd: no box
    label[20:22, 0:3] = VOID
    label[9, 0] = RIDER * 1000 + 2  # a single pixel at the left border
    out = _targets(label, max_instances=5)
    assert out[it.GT_CLASSES].dtype == np.int32 and out[it.GT_BOXES].dtype == np.float32
    assert out[it.GT_BOXES].shape == (5, 4)
    np.testing.assert_array_equal(out[it.GT_VALID], [True, True, True, False, False])
    np.testing.assert_array_equal(out[it.GT_CLASSES], [1, 3, 2, 0, 0])  # by area 56, 24, 1
    np.testing.assert_array_equal(out[it.GT_BOXES], [[28, 10, 32, 24], [3, 2, 9, 6],
                                                     [0, 9, 1, 10], [0] * 4, [0] * 4])
    np.testing.assert_array_equal(out[it.GT_PANOPTIC_IDS], [11007, 13001, 12002, -1, -1])
    assert out[it.NUM_DROPPED_INSTANCES] == 0
    np.testing.assert_array_equal(out[common.PANOPTIC_LABEL], label)


def test_stuff_only_image_has_no_instances():
    label = np.full((16, 16), ROAD * 1000, np.int32)
    label[:5] = SKY * 1000
    label[10:, 10:] = CAR * 1000  # crowd only
    label[0, 0] = VOID
    out = _targets(label, max_instances=3)
    assert not out[it.GT_VALID].any()
    np.testing.assert_array_equal(out[it.GT_CLASSES], 0)
    np.testing.assert_array_equal(out[it.GT_BOXES], 0)
    np.testing.assert_array_equal(out[it.GT_PANOPTIC_IDS], -1)
    assert out[it.NUM_DROPPED_INSTANCES] == 0


def test_more_instances_than_rows_keeps_the_largest():
    label = np.full((20, 40), ROAD * 1000, np.int32)
    # Instance n (1..10) is a bar of n pixels in row 2n mod 20;
    # instances 11 and 12 tie with 4 and 5 pixels at larger ids.
    for n in range(1, 11):
        label[(2 * n) % 20, :n] = CAR * 1000 + n
    label[1, 20:24] = PERSON * 1000 + 11  # 4 pixels, id 11011 < 13004
    label[3, 20:25] = CAR * 1000 + 12  # 5 pixels, id 13012 > 13005
    out = _targets(label, max_instances=7)
    assert out[it.GT_VALID].all()
    np.testing.assert_array_equal(out[it.GT_PANOPTIC_IDS],
                                  [13010, 13009, 13008, 13007, 13006, 13005, 13012])
    np.testing.assert_array_equal(out[it.GT_BOXES][:, 2] - out[it.GT_BOXES][:, 0],
                                  [10, 9, 8, 7, 6, 5, 5])
    assert out[it.NUM_DROPPED_INSTANCES] == 12 - 7


def test_class_indices_follow_the_thing_list():
    # COCO things are 1..80 (class 0 is void); the synthetic set puts its things last.
    coco = get_dataset_info("coco")
    label = np.zeros((8, 8), np.int32)
    label[0:2, 0:2] = 80 * coco.label_divisor + 1  # the last thing class
    label[4:8, 4:8] = 1 * coco.label_divisor + 3
    np.testing.assert_array_equal(_targets(label, coco, max_instances=2)[it.GT_CLASSES], [1, 80])
    synthetic = get_dataset_info("synthetic")
    first_thing = synthetic.thing_ids[0]
    label = np.full((8, 8), synthetic.label_divisor * (first_thing + 1) + 1, np.int32)
    label[:, :3] = 0
    assert _targets(label, synthetic, max_instances=1)[it.GT_CLASSES][0] == 2


def _random_label(rng, height, width):
    """Stuff background with overlapping thing, crowd and void rectangles."""
    label = np.where(rng.random((height, width)) < 0.5, ROAD, SKY).astype(np.int32) * 1000
    label[:, :width // 2] = ROAD * 1000
    for _ in range(rng.integers(0, 25)):
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        y1, x1 = y0 + rng.integers(1, 12), x0 + rng.integers(1, 12)
        category = rng.choice([PERSON, RIDER, CAR, 18, SKY, 255])
        instance = rng.integers(0, 6) if category != 255 else 0
        label[y0:y1, x0:x1] = category * 1000 + instance
    return label


def test_random_labels_equal_numpy_loop():
    rng = np.random.default_rng(0)
    dropped = []
    for trial in range(40):
        label = _random_label(rng, 32, 40)
        max_instances = 3 if trial % 4 == 0 else 20
        out = _targets(label, max_instances=max_instances)
        expected = _reference(label, INFO, max_instances)
        for key, value in zip(KEYS, expected):
            np.testing.assert_array_equal(out[key], value, err_msg=f"{key}, trial {trial}")
        assert out[it.NUM_DROPPED_INSTANCES] == expected[-1]
        boxes = out[it.GT_BOXES][out[it.GT_VALID]]
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        dropped.append(expected[-1])
    assert max(dropped) > 0


def test_runs_in_tf_data_with_unknown_sizes_and_no_float64():
    labels = [_random_label(np.random.default_rng(seed), 20 + seed, 30 - seed) for seed in (1, 2)]
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(labels), output_signature=tf.TensorSpec([None, None], tf.int32))
    dataset = dataset.map(lambda label: it.instance_targets(label, INFO, max_instances=16))
    assert dataset.element_spec[it.GT_BOXES].shape == (16, 4)
    assert dataset.element_spec[it.GT_VALID].shape == (16,)
    for label, out in zip(labels, dataset):
        expected = _reference(label, INFO, 16)
        for key, value in zip(KEYS, expected):
            np.testing.assert_array_equal(out[key].numpy(), value)
    traced = tf.function(lambda label: it.instance_targets(label, INFO)).get_concrete_function(
        tf.TensorSpec([None, None], tf.int32))
    assert graph_dtypes.ops_producing(traced, [tf.float64]) == []
