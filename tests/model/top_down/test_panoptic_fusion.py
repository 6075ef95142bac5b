"""Panoptic FPN fusion: the spec's hand-worked case, a plain-loop numpy oracle on
random batches (eager and XLA), and edge cases."""
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.model.top_down import panoptic_fusion

DIVISOR, IGNORE = 1000, 255
ROAD, SKY, OTHER, PERSON, CAR = 0, 10, 12, 11, 13
VOID = IGNORE * DIVISOR
KEYS = (common.SEMANTIC, common.INSTANCE, common.PANOPTIC, common.INSTANCE_SCORES,
        common.INSTANCE_CLASSES, common.INSTANCE_PANOPTIC_IDS)

_fuse_xla = tf.function(panoptic_fusion.fuse_panoptic, jit_compile=True)


def _fuse(compiled, *args, **options):
    fuse = _fuse_xla if compiled else panoptic_fusion.fuse_panoptic
    options = {"label_divisor": DIVISOR, "ignore_label": IGNORE, **options}
    return {key: np.asarray(value) for key, value in fuse(*args, **options).items()}


def fusion_oracle(masks, scores, classes, valid, semantic, *, stuff_class_ids,
                  score_threshold, overlap_threshold, stuff_area_limit):
    """One image, straight from the rule: instances by score (stable: ties to the
    lower index), then stuff classes, then void."""
    num, height, width = masks.shape
    instance = np.zeros((height, width), np.int32)
    semantic_out = np.full((height, width), IGNORE, np.int32)
    panoptic = np.full((height, width), VOID, np.int32)
    table_scores = np.zeros(num, np.float32)
    table_classes = np.full(num, IGNORE, np.int32)
    table_ids = np.full(num, VOID, np.int32)
    count = 0
    for i in sorted(range(num), key=lambda i: -scores[i]):
        if not valid[i] or not scores[i] >= score_threshold:
            continue
        mask = masks[i] != 0
        area = mask.sum()
        if area == 0:
            continue
        overlap = np.float32((mask & (instance > 0)).sum()) / np.float32(area)
        if overlap > np.float32(overlap_threshold):
            continue
        segment = mask & (instance == 0)
        if not segment.any():
            continue
        count += 1
        instance[segment] = count
        semantic_out[segment] = classes[i]
        panoptic[segment] = classes[i] * DIVISOR + count
        table_scores[count - 1] = scores[i]
        table_classes[count - 1] = classes[i]
        table_ids[count - 1] = classes[i] * DIVISOR + count
    free = instance == 0
    for c in stuff_class_ids:
        region = free & (semantic == c)
        if region.sum() >= stuff_area_limit:
            semantic_out[region] = c
            panoptic[region] = c * DIVISOR
    return dict(zip(KEYS, (semantic_out, instance, panoptic, table_scores, table_classes,
                           table_ids)))


def _box_mask(height, width, rows, cols):
    mask = np.zeros((height, width), bool)
    mask[rows[0]:rows[1], cols[0]:cols[1]] = True
    return mask


def _hand_case():
    """SPEC_TOP_DOWN section 5, "fusion (hand)", instances in shuffled order plus
    an invalid row that would otherwise win."""
    boxes = {"C": ((0, 4), (1, 5)), "D": ((6, 8), (0, 8)), "A": ((0, 4), (0, 4)),
             "E": ((0, 8), (0, 8)), "B": ((2, 6), (2, 6))}
    masks = np.stack([_box_mask(8, 8, *box) for box in boxes.values()])
    scores = np.float32([0.7, 0.4, 0.9, 0.95, 0.8])
    classes = np.int32([PERSON, CAR, PERSON, CAR, CAR])
    valid = np.array([True, True, True, False, True])
    semantic = np.zeros((8, 8), np.int32)
    semantic[:, :4], semantic[:, 4:] = ROAD, SKY
    return masks, scores, classes, valid, semantic


def _batched(*arrays):
    return [array[None] for array in arrays]


_HAND_OPTIONS = {"stuff_class_ids": [ROAD, SKY], "stuff_area_limit": 4}


@pytest.mark.parametrize("compiled", [False, True])
def test_hand_worked_case(compiled):
    result = _fuse(compiled, *_batched(*_hand_case()), **_HAND_OPTIONS)
    r, s, p, c = ROAD, SKY, PERSON, CAR
    expected_semantic = np.int32([
        [p, p, p, p, s, s, s, s],
        [p, p, p, p, s, s, s, s],
        [p, p, p, p, c, c, s, s],
        [p, p, p, p, c, c, s, s],
        [r, r, c, c, c, c, s, s],
        [r, r, c, c, c, c, s, s],
        [r, r, r, r, s, s, s, s],
        [r, r, r, r, s, s, s, s]])
    expected_instance = np.int32([
        [1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 2, 2, 0, 0],
        [1, 1, 1, 1, 2, 2, 0, 0],
        [0, 0, 2, 2, 2, 2, 0, 0],
        [0, 0, 2, 2, 2, 2, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(result[common.SEMANTIC][0], expected_semantic)
    np.testing.assert_array_equal(result[common.INSTANCE][0], expected_instance)
    np.testing.assert_array_equal(result[common.PANOPTIC][0],
                                  expected_semantic * DIVISOR + expected_instance)
    assert (expected_instance == 2).sum() == 12  # B keeps its 12 free pixels
    np.testing.assert_array_equal(result[common.INSTANCE_SCORES][0],
                                  np.float32([0.9, 0.8, 0, 0, 0]))
    np.testing.assert_array_equal(result[common.INSTANCE_CLASSES][0],
                                  [PERSON, CAR, IGNORE, IGNORE, IGNORE])
    np.testing.assert_array_equal(result[common.INSTANCE_PANOPTIC_IDS][0],
                                  [PERSON * DIVISOR + 1, CAR * DIVISOR + 2, VOID, VOID, VOID])
    assert all(result[key].dtype == np.int32 for key in KEYS
               if key != common.INSTANCE_SCORES)
    assert result[common.INSTANCE_SCORES].dtype == np.float32


def _random_batch(rng, batch, num, height, width):
    """Masks of random boxes (some empty, some covering everything), scores from a
    few values (ties and scores equal to the threshold), a blocky semantic map of
    stuff, thing, 'other' and ignore pixels. Images have from none to all rows valid."""
    masks = np.zeros((batch, num, height, width), np.float32)
    for b in range(batch):
        for n in range(num):
            y0, x0 = rng.integers(0, height, 2)
            y1, x1 = y0 + rng.integers(0, height, 2)
            masks[b, n, y0:y1, x0:x1] = 1
    scores = rng.choice(np.float32([0.3, 0.5, 0.6, 0.8, 0.9]), (batch, num))
    classes = rng.choice(np.int32([PERSON, CAR]), (batch, num))
    valid = rng.random((batch, num)) < np.linspace(0, 1.5, batch)[:, None]
    blocks = rng.choice(np.int32([ROAD, SKY, 3, OTHER, PERSON, IGNORE]),
                        (batch, height // 2, width // 2))
    semantic = blocks.repeat(2, axis=1).repeat(2, axis=2)
    return masks, scores, classes, valid, semantic


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("overlap_threshold, stuff_area_limit", [(0.5, 12), (0.25, 4), (0.75, 30)])
def test_matches_oracle_on_random_batches(compiled, overlap_threshold, stuff_area_limit):
    rng = np.random.default_rng(int(100 * overlap_threshold) + int(compiled))
    inputs = _random_batch(rng, batch=12, num=7, height=12, width=10)
    options = {"stuff_class_ids": [SKY, ROAD, 3], "score_threshold": 0.5,
               "overlap_threshold": overlap_threshold, "stuff_area_limit": stuff_area_limit}
    result = _fuse(compiled, *inputs, **options)
    kept_counts = []
    for b in range(len(inputs[0])):
        expected = fusion_oracle(*(x[b] for x in inputs), **options)
        for key in KEYS:
            np.testing.assert_array_equal(result[key][b], expected[key], err_msg=key)
        kept_counts.append(expected[common.INSTANCE].max())
    # The random images keep anywhere from no instance to several.
    assert min(kept_counts) == 0 and max(kept_counts) >= 3


@pytest.mark.parametrize("compiled", [False, True])
def test_score_ties_go_to_the_lower_index(compiled):
    masks = np.stack([_box_mask(4, 4, (0, 4), (0, 4))] * 3)
    result = _fuse(compiled, *_batched(masks, np.float32([0.6, 0.7, 0.7]),
                                       np.int32([PERSON, PERSON, CAR]), np.ones(3, bool),
                                       np.zeros((4, 4), np.int32)),
                   stuff_class_ids=[ROAD])
    # Row 1 and row 2 tie; row 1 wins and occupies everything.
    np.testing.assert_array_equal(result[common.INSTANCE_CLASSES][0], [PERSON, IGNORE, IGNORE])
    np.testing.assert_array_equal(result[common.INSTANCE][0], np.ones((4, 4)))


def _stuff_only_expected(semantic, limit):
    expected = np.where(semantic == ROAD, ROAD, IGNORE)
    if (semantic == ROAD).sum() < limit:
        expected[:] = IGNORE
    return expected


@pytest.mark.parametrize("case", ["no_valid", "below_threshold"])
def test_images_without_kept_instances_are_stuff_and_void(case):
    masks, scores, classes, valid, semantic = _hand_case()
    if case == "no_valid":
        valid[:] = False
    else:
        scores = np.minimum(scores, 0.49)
    result = _fuse(True, *_batched(masks, scores, classes, valid, semantic),
                   stuff_class_ids=[ROAD], stuff_area_limit=4)
    expected = np.where(semantic == ROAD, ROAD, IGNORE)  # sky is not a stuff class here
    np.testing.assert_array_equal(result[common.SEMANTIC][0], expected)
    np.testing.assert_array_equal(result[common.INSTANCE][0], 0)
    np.testing.assert_array_equal(result[common.PANOPTIC][0], expected * DIVISOR)
    np.testing.assert_array_equal(result[common.INSTANCE_SCORES][0], 0)
    np.testing.assert_array_equal(result[common.INSTANCE_CLASSES][0], IGNORE)
    np.testing.assert_array_equal(result[common.INSTANCE_PANOPTIC_IDS][0], VOID)


def test_an_empty_mask_is_skipped():
    masks, scores, classes, valid, semantic = _hand_case()
    masks[2] = False  # A, the best valid instance
    result = _fuse(True, *_batched(masks, scores, classes, valid, semantic), **_HAND_OPTIONS)
    # B comes first now, whole; C overlaps it by 6/16 and keeps its other 10 pixels.
    np.testing.assert_array_equal(result[common.INSTANCE_CLASSES][0],
                                  [CAR, PERSON, IGNORE, IGNORE, IGNORE])
    np.testing.assert_array_equal(result[common.INSTANCE_SCORES][0],
                                  np.float32([0.8, 0.7, 0, 0, 0]))
    assert (result[common.INSTANCE][0] == 1).sum() == 16
    assert (result[common.INSTANCE][0] == 2).sum() == 10


@pytest.mark.parametrize("limit, road_kept", [(12, True), (13, False)])
def test_a_stuff_class_below_the_area_limit_is_void(limit, road_kept):
    # The hand case leaves road 12 free pixels and sky 24.
    result = _fuse(False, *_batched(*_hand_case()), stuff_class_ids=[ROAD, SKY],
                   stuff_area_limit=limit)
    semantic, instance = result[common.SEMANTIC][0], result[common.INSTANCE][0]
    free_road = (instance == 0) & (np.arange(8) < 4)[None, :]
    assert free_road.sum() == 12
    np.testing.assert_array_equal(semantic[free_road], ROAD if road_kept else IGNORE)
    np.testing.assert_array_equal(result[common.PANOPTIC][0][free_road],
                                  ROAD * DIVISOR if road_kept else VOID)
    assert np.all(semantic[(instance == 0) & ~free_road] == SKY)


def test_float_and_bool_masks_agree_and_images_are_independent():
    hand = _hand_case()
    other = list(_hand_case())
    other[3] = np.zeros(5, bool)
    inputs = [np.stack(pair) for pair in zip(hand, other)]
    as_bool = _fuse(False, *inputs, **_HAND_OPTIONS)
    inputs[0] = inputs[0].astype(np.float32)
    as_float = _fuse(False, *inputs, **_HAND_OPTIONS)
    single = _fuse(False, *_batched(*hand), **_HAND_OPTIONS)
    for key in KEYS:
        np.testing.assert_array_equal(as_bool[key], as_float[key])
        np.testing.assert_array_equal(as_bool[key][:1], single[key])
    np.testing.assert_array_equal(as_bool[common.INSTANCE][1], 0)


def test_instance_ids_must_fit_the_label_divisor():
    masks, scores, classes, valid, semantic = _batched(*_hand_case())
    with pytest.raises(ValueError, match="label_divisor"):
        panoptic_fusion.fuse_panoptic(masks, scores, classes, valid, semantic,
                                      stuff_class_ids=[ROAD], label_divisor=5,
                                      ignore_label=IGNORE)
