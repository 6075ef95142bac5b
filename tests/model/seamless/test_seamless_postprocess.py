"""Seamless's fusion (paper 002 section 3.5) through the family's post-processing:
the spec's hand-worked case and a numpy oracle of the paper's four steps on
random outputs, eager and XLA-compiled; the defaults by dataset."""
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.model import get_meta_architecture
from deeplab2.model.meta import make_config

FAMILY = get_meta_architecture("seamless")
INFO = get_dataset_info("synthetic")  # stuff sky 0, building 1, ground 2; things 3, 4, 5
SKY, GROUND, DISC, BOX = 0, 2, 3, 4
VOID = INFO.ignore_label * INFO.label_divisor


def _config(dataset="synthetic", **postprocess):
    return make_config("seamless", get_dataset_info(dataset), output_stride=32,
                       crop_size=None, pixel_mean=127.5, pixel_std=127.5,
                       architecture={}, postprocess=postprocess)


def _outputs(semantic, boxes, scores, classes):
    """Network outputs whose argmax is `semantic` [H, W] and whose detections
    are full-probability masks of `boxes` (class 1..K), one image."""
    logits = np.eye(INFO.num_classes, dtype=np.float32)[semantic] * 5.0
    num = len(boxes)
    return {
        common.SEMANTIC_LOGITS: tf.constant(logits[None]),
        common.DETECTION_BOXES: tf.constant(np.asarray(boxes, np.float32).reshape(1, num, 4)),
        common.DETECTION_SCORES: tf.constant(np.asarray(scores, np.float32)[None]),
        common.DETECTION_CLASSES: tf.constant(np.asarray(classes, np.int32)[None]),
        common.DETECTION_VALID: tf.ones((1, num), tf.int32),
        common.MASK_PROBABILITIES: tf.ones((1, num, 28, 28)),
    }


def _postprocess(outputs, config, compiled):
    run = lambda o: FAMILY.postprocess(o, config, config.postprocess)  # noqa: E731
    if compiled:
        run = tf.function(run, jit_compile=True)
    return {key: np.asarray(value) for key, value in run(outputs).items()}


@pytest.mark.parametrize("compiled", [False, True])
def test_the_specs_hand_worked_case(compiled):
    # 8 x 8, ground left / sky right, stuff limit 4. A (0.9) rows 0-3 x cols
    # 0-3 kept; B (0.8) rows 2-5 x cols 2-5 overlaps A on 4 of 16 pixels: kept
    # as 12; C (0.7) rows 0-3 x cols 1-4 has 2 of 16 free: dropped; D (0.4)
    # is below the 0.5 score. A semantic 'disc' (a thing) patch left over at
    # rows 6-7 x cols 6-7 becomes void; the rest is ground or sky.
    semantic = np.where(np.arange(8)[None, :] < 4, GROUND, SKY) * np.ones((8, 1), np.int64)
    semantic[6:, 6:] = DISC
    boxes = [(0, 0, 4, 4), (2, 2, 6, 6), (1, 0, 5, 4), (5, 5, 8, 8)]  # (x0, y0, x1, y1)
    outputs = _outputs(semantic, boxes, [0.9, 0.8, 0.7, 0.4], [1, 2, 1, 1])
    fused = _postprocess(outputs, _config(stuff_area_limit=4), compiled)
    expected = np.where(semantic == GROUND, GROUND * 1000, SKY * 1000)
    expected[6:, 6:] = VOID
    expected[2:6, 2:6] = BOX * 1000 + 2
    expected[0:4, 0:4] = DISC * 1000 + 1
    np.testing.assert_array_equal(fused[common.PANOPTIC][0], expected)
    np.testing.assert_allclose(fused[common.INSTANCE_SCORES][0], [0.9, 0.8, 0, 0])
    # Ground keeps 12 free pixels and sky 20: a limit of 13 voids the ground only.
    fused = _postprocess(outputs, _config(stuff_area_limit=13), compiled)
    assert not np.any(fused[common.PANOPTIC][0] == GROUND * 1000)
    assert np.sum(fused[common.PANOPTIC][0] == SKY * 1000) == 20


def seamless_fusion_oracle(masks, scores, classes, semantic, *, stuff_ids, thing_ids,
                           score_threshold, stuff_area_limit, divisor, void):
    """Paper 002 section 3.5, one image, written from the text: 1. drop scores
    below the threshold; 2. by descending score, keep an instance's unassigned
    pixels if they are at least half of it, else drop it; 3. leftover pixels
    take the semantic class, void for a thing class; 4. a stuff class with
    fewer than the limit's pixels becomes void."""
    panoptic = np.full(semantic.shape, void, np.int64)
    assigned = np.zeros(semantic.shape, bool)
    kept = 0
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        area = masks[i].sum()
        if scores[i] < score_threshold or area == 0:
            continue
        unassigned = masks[i] & ~assigned
        if unassigned.sum() < 0.5 * area:
            continue
        kept += 1
        panoptic[unassigned] = classes[i] * divisor + kept
        assigned |= unassigned
    for c in np.unique(semantic):
        region = ~assigned & (semantic == c)
        if c in thing_ids or region.sum() < stuff_area_limit:
            continue
        assert c in stuff_ids
        panoptic[region] = c * divisor
    return panoptic


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_outputs_match_the_papers_procedure(seed):
    rng = np.random.default_rng(seed)
    height, width, num = 24, 32, 12
    semantic = rng.integers(0, INFO.num_classes, (height // 4, width // 4))
    semantic = np.kron(semantic, np.ones((4, 4), np.int64))  # blocks of 16 pixels
    x0 = rng.integers(0, width - 4, num)
    y0 = rng.integers(0, height - 4, num)
    boxes = np.stack([x0, y0, x0 + rng.integers(2, 14, num), y0 + rng.integers(2, 12, num)], 1)
    boxes = np.minimum(boxes, [width, height, width, height])
    scores = rng.permutation(np.linspace(0.3, 0.95, num)).astype(np.float32)
    classes = rng.integers(1, len(INFO.thing_ids) + 1, num)
    masks = np.zeros((num, height, width), bool)
    for i, (a, b, c, d) in enumerate(boxes):
        masks[i, b:d, a:c] = True
    config = _config(stuff_area_limit=40)
    expected = seamless_fusion_oracle(
        masks, scores, np.asarray(INFO.thing_ids)[classes - 1], semantic,
        stuff_ids=INFO.stuff_ids, thing_ids=INFO.thing_ids, score_threshold=0.5,
        stuff_area_limit=40, divisor=INFO.label_divisor, void=VOID)
    outputs = _outputs(semantic, boxes, scores, classes)
    for compiled in (False, True):
        fused = _postprocess(outputs, config, compiled)
        np.testing.assert_array_equal(fused[common.PANOPTIC][0], expected)


def test_fusion_defaults_follow_the_paper():
    for dataset in ("cityscapes", "mapillary_vistas", "coco"):
        assert _config(dataset).postprocess == {"score_threshold": 0.5,
                                                "overlap_threshold": 0.5,
                                                "stuff_area_limit": 4096}, dataset
    # The 192 x 256 synthetic scenes keep their dataset's limit.
    assert _config().postprocess["stuff_area_limit"] == INFO.stuff_area_limit == 64
