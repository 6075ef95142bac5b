"""Panoptic FPN post-processing on hand-made outputs: pasted masks, fusion, class
mapping, boxes of the kept instances, and the 'other' semantic channel."""
import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.model import get_meta_architecture
from deeplab2.model.meta import make_config

FAMILY = get_meta_architecture("panoptic_fpn")
HEIGHT, WIDTH = 32, 64


def _config(dataset, **architecture):
    return make_config("panoptic_fpn", get_dataset_info(dataset), output_stride=32,
                       crop_size=None, pixel_mean=127.5, pixel_std=127.5,
                       architecture=architecture, postprocess={"stuff_area_limit": 64})


def _outputs(channels, left, right, detections):
    """Semantic logits favouring channel `left` / `right` in the left / right
    half; `detections` rows (box, score, class), all masks full."""
    logits = np.zeros((1, HEIGHT, WIDTH, channels), np.float32)
    logits[:, :, :WIDTH // 2, left] = 5.0
    logits[:, :, WIDTH // 2:, right] = 5.0
    rows = 6
    boxes = np.zeros((1, rows, 4), np.float32)
    scores = np.zeros((1, rows), np.float32)
    classes = np.zeros((1, rows), np.int32)
    for i, (box, score, cls) in enumerate(detections):
        boxes[0, i], scores[0, i], classes[0, i] = box, score, cls
    valid = (classes > 0).astype(np.int32)
    masks = np.where(valid[..., None, None] > 0, 1.0, 0.0) * np.ones((1, rows, 28, 28))
    return {common.SEMANTIC_LOGITS: tf.constant(logits),
            common.DETECTION_BOXES: tf.constant(boxes),
            common.DETECTION_SCORES: tf.constant(scores),
            common.DETECTION_CLASSES: tf.constant(classes),
            common.DETECTION_VALID: tf.constant(valid),
            common.MASK_PROBABILITIES: tf.constant(masks, tf.float32)}


def test_instances_are_pasted_fused_and_described_row_by_row():
    config = _config("synthetic")
    # Out of score order on purpose: fusion sorts; the tables follow the kept order.
    detections = [((8, 8, 24, 24), 0.8, 2),  # 'box' (id 4), a quarter covered: kept
                  ((0, 0, 16, 16), 0.9, 1),  # 'disc' (id 3), best
                  ((2, 2, 14, 14), 0.7, 3),  # inside the disc: skipped
                  ((40, 4, 56, 20), 0.3, 1)]  # below the 0.5 score threshold
    result = {k: np.asarray(v) for k, v in FAMILY.postprocess(
        _outputs(6, 0, 2, detections), config, config.postprocess).items()}
    assert set(result) == {common.SEMANTIC, common.INSTANCE, common.PANOPTIC,
                           common.INSTANCE_SCORES, common.INSTANCE_CLASSES,
                           common.INSTANCE_PANOPTIC_IDS, common.BOXES}
    expected = np.zeros((HEIGHT, WIDTH), np.int32)
    expected[8:24, 8:24] = 2
    expected[0:16, 0:16] = 1
    np.testing.assert_array_equal(result[common.INSTANCE][0], expected)
    np.testing.assert_allclose(result[common.INSTANCE_SCORES][0], [0.9, 0.8, 0, 0, 0, 0])
    assert list(result[common.INSTANCE_CLASSES][0]) == [3, 4] + [255] * 4
    assert list(result[common.INSTANCE_PANOPTIC_IDS][0]) == [3001, 4002] + [255000] * 4
    np.testing.assert_array_equal(result[common.BOXES][0],
                                  [[0, 0, 16, 16], [8, 8, 24, 24]] + [[0, 0, 0, 0]] * 4)
    panoptic = result[common.PANOPTIC][0]
    sky = (expected == 0)[:, :WIDTH // 2]
    np.testing.assert_array_equal(panoptic[:, :WIDTH // 2][sky], 0)
    np.testing.assert_array_equal(panoptic[:, WIDTH // 2:], 2000)  # ground
    np.testing.assert_array_equal(panoptic[expected == 1], 3001)
    np.testing.assert_array_equal(result[common.SEMANTIC][0][expected == 2], 4)


def test_the_other_channel_is_void_and_stuff_channels_map_to_dataset_ids():
    config = _config("coco")
    assert config.architecture["semantic_other_class"]
    info = config.dataset
    result = FAMILY.postprocess(_outputs(54, 0, 1, []), config, config.postprocess)
    panoptic = np.asarray(result[common.PANOPTIC][0])
    semantic = np.asarray(result[common.SEMANTIC][0])
    np.testing.assert_array_equal(panoptic[:, :WIDTH // 2], info.ignore_panoptic_id)
    np.testing.assert_array_equal(semantic[:, :WIDTH // 2], info.ignore_label)
    first_stuff = info.stuff_ids[0]
    np.testing.assert_array_equal(semantic[:, WIDTH // 2:], first_stuff)
    np.testing.assert_array_equal(panoptic[:, WIDTH // 2:], first_stuff * info.label_divisor)
    assert np.all(np.asarray(result[common.INSTANCE]) == 0)
