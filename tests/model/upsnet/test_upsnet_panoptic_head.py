"""UPSNet's panoptic head: hand-worked cases (SPEC_TOP_DOWN.md section 5), an
oracle built on tf.image.resize, the training targets and instance dropping,
the inference pruning and the class re-assignment, eager and under XLA."""
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.upsnet import panoptic_head as head

RNG = np.random.default_rng(0)
# Channels of the hand cases: 0 road (stuff), 1 person, 2 car (things).
STUFF, THINGS = [0], [1, 2]


def _z(logits, boxes, classes, masks, valid):
    return head.panoptic_logits(
        tf.constant(logits, tf.float32), tf.constant(boxes, tf.float32),
        tf.constant(classes, tf.int32), tf.constant(masks, tf.float32),
        tf.constant(valid), stuff_channels=STUFF, thing_channels=THINGS).numpy()


def test_hand_case_unknown_outside_boxes_instance_inside():
    logits = np.zeros((1, 6, 6, 3), np.float32)
    logits[..., 0] = 1.0  # road
    logits[..., 1] = 2.0  # person
    logits[..., 2] = -1.0  # car
    boxes = [[[1.0, 1.0, 4.0, 4.0], [0.0, 0.0, 0.0, 0.0]]]  # one person, one padding slot
    masks = np.full((1, 2, 28, 28), 3.0, np.float32)
    z = _z(logits, boxes, [[1, 0]], masks, [[True, False]])
    assert z.shape == (1, 6, 6, 1 + 1 + 2)
    inside = np.zeros((6, 6), bool)
    inside[1:4, 1:4] = True
    np.testing.assert_allclose(z[0, ..., 0], 1.0)  # stuff = X_road
    # Inside: Z_1 = X_person + Y = 2 + 3; unknown = 2 - max(0, 2) = 0.
    np.testing.assert_allclose(z[0][inside][:, 2], 5.0)
    np.testing.assert_allclose(z[0][inside][:, 1], 0.0)
    # Outside: Z_1 = 0, unknown = 2 - 0 wins (it will be void).
    np.testing.assert_allclose(z[0][~inside][:, 2], 0.0)
    np.testing.assert_allclose(z[0][~inside][:, 1], 2.0)
    assert np.all(z[0][~inside].argmax(-1) == 1)
    assert np.all(z[0][inside].argmax(-1) == 2)
    np.testing.assert_allclose(z[0, ..., 3], head.PADDING_LOGIT)


def _oracle(logits, boxes, classes, masks, valid):
    """Z by the definition, with each mask resized by tf.image.resize (bilinear,
    half-pixel, edge clamp) to its box's pixel rows floor(y0)..ceil(y1) - 1."""
    batch, height, width, _ = logits.shape
    num = boxes.shape[1]
    out = []
    for b in range(batch):
        x_mask = np.zeros((num, height, width))
        y_mask = np.zeros((num, height, width))
        for i in range(num):
            if not valid[b, i]:
                continue
            x0, y0 = int(np.floor(boxes[b, i, 0])), int(np.floor(boxes[b, i, 1]))
            x1, y1 = int(np.ceil(boxes[b, i, 2])), int(np.ceil(boxes[b, i, 3]))
            resized = tf.image.resize(masks[b, i][..., None], (y1 - y0, x1 - x0)).numpy()[..., 0]
            region = np.zeros((height, width), bool)
            region[max(y0, 0):y1, max(x0, 0):x1] = True
            full = np.zeros((height + y1 - y0, width + x1 - x0))
            full[y0:y1, x0:x1] = resized
            y_mask[i] = np.where(region, full[:height, :width], 0.0)
            x_mask[i] = np.where(region, logits[b, ..., THINGS[classes[b, i] - 1]], 0.0)
        instance = np.where(valid[b][:, None, None], x_mask + y_mask, head.PADDING_LOGIT)
        unknown = logits[b][..., THINGS].max(-1) - np.maximum(x_mask.max(0), 0.0)
        out.append(np.concatenate([logits[b][..., STUFF], unknown[..., None],
                                   instance.transpose(1, 2, 0)], axis=-1))
    return np.stack(out)


def test_panoptic_logits_equal_the_oracle_eager_and_under_xla():
    batch, height, width, num = 2, 20, 24, 5
    logits = RNG.standard_normal((batch, height, width, 3)).astype(np.float32)
    corner = RNG.uniform(0, 14, (batch, num, 2))
    size = RNG.uniform(1, 10, (batch, num, 2))
    boxes = np.concatenate([corner, np.minimum(corner + size, [width, height])],
                           -1).astype(np.float32)
    classes = RNG.integers(1, 3, (batch, num)).astype(np.int32)
    masks = RNG.standard_normal((batch, num, 28, 28)).astype(np.float32)
    valid = RNG.random((batch, num)) < 0.8
    expected = _oracle(logits, boxes, classes, masks, valid)
    np.testing.assert_allclose(_z(logits, boxes, classes, masks, valid), expected,
                               rtol=1e-5, atol=1e-5)
    compiled = tf.function(
        lambda *a: head.panoptic_logits(*a, stuff_channels=STUFF, thing_channels=THINGS),
        jit_compile=True)
    np.testing.assert_allclose(compiled(logits, boxes, classes, masks, valid), expected,
                               rtol=1e-5, atol=1e-5)


def test_keep_random_instances():
    valid = np.zeros((3, 12), bool)
    valid[0, :10] = True
    valid[1, 4] = True
    kept = head.keep_random_instances(tf.constant(valid), tf.constant([1, 2])).numpy()
    assert kept.sum(axis=1).tolist() == [7, 1, 0]  # max(floor(0.7 n), 1), 0 for n = 0
    assert not np.any(kept & ~valid)
    again = head.keep_random_instances(tf.constant(valid), tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(kept, again)
    subsets = {tuple(head.keep_random_instances(tf.constant(valid), tf.constant([s, 0]))
                     .numpy()[0]) for s in range(10)}
    assert len(subsets) > 5


def _label():
    """4x6 panoptic label (divisor 1000): road (class 0) left, person 1 and 2,
    a person crowd (instance 0), void (255)."""
    label = np.zeros((1, 4, 6), np.int32)
    label[0, :, 2:4] = 1001
    label[0, :2, 4:] = 1002
    label[0, 2, 4:] = 1000
    label[0, 3, 4:] = 255000
    return label


def test_panoptic_targets_hand_case():
    slot_ids = tf.constant([[1002, 1001, -1]])
    target = head.panoptic_targets(
        _label(), slot_ids, tf.constant([[True, False, False]]), stuff_class_ids=[0],
        thing_class_ids=[1, 2], label_divisor=1000).numpy()[0]
    # road -> stuff 0; person 1002 kept in slot 0 -> 1 + 1 + 0 = 2; person 1001
    # dropped -> unknown 1; crowd -> unknown 1; void -> -1.
    expected = np.array([[0, 0, 1, 1, 2, 2],
                         [0, 0, 1, 1, 2, 2],
                         [0, 0, 1, 1, 1, 1],
                         [0, 0, 1, 1, -1, -1]])
    np.testing.assert_array_equal(target, expected)
    # All instances dropped: every thing pixel targets unknown.
    none_kept = head.panoptic_targets(
        _label(), slot_ids, tf.constant([[False, False, False]]), stuff_class_ids=[0],
        thing_class_ids=[1, 2], label_divisor=1000).numpy()[0]
    np.testing.assert_array_equal(none_kept, np.where(expected == 2, 1, expected))


def test_prune_instances_hand_case_eager_and_under_xla():
    # Masks of logit +1 (the whole box) or -1 (empty), so each mask is its box.
    rows = [  # box, score, class, mask logit
        ([0, 0, 8, 8], 0.9, 1, 1.0),         # A: kept
        ([1, 1, 9, 9], 0.85, 2, 1.0),        # NMS: IoU 0.62 with A, class-agnostic
        ([4, 0, 12, 8], 0.8, 1, 1.0),        # half on A's canvas: dropped
        ([0, 8, 8, 16], 0.75, 1, 1.0),       # free: kept
        ([6, 6, 14, 14], 0.7, 2, 1.0),       # 4/64 on A, another class's canvas: kept
        ([10, 0, 16, 6], 0.65, 2, -1.0),     # empty mask: dropped
        ([8, 8, 16, 16], 0.5, 1, 1.0),       # score <= 0.6: dropped
        ([10, 10, 16, 16], 0.95, 1, 1.0),    # invalid row
    ]
    boxes = np.array([[r[0] for r in rows]], np.float32)
    scores = np.array([[r[1] for r in rows]], np.float32)
    classes = np.array([[r[2] for r in rows]], np.int32)
    masks = np.array([[np.full((28, 28), r[3]) for r in rows]], np.float32)
    valid = np.array([[True] * 7 + [False]])
    expected = [[True, False, False, True, True, False, False, False]]

    def prune(*args):
        return head.prune_instances(*args, 16, 16)

    np.testing.assert_array_equal(prune(boxes, scores, classes, valid, masks), expected)
    compiled = tf.function(prune, jit_compile=True)
    np.testing.assert_array_equal(compiled(boxes, scores, classes, valid, masks), expected)
    # A second image in the batch is pruned on its own.
    both = prune(*(np.concatenate([a, a[:, ::-1]]) for a in (boxes, scores, classes, valid,
                                                             masks)))
    np.testing.assert_array_equal(both[0], expected[0])
    # Overlap of exactly 0.3 is not more than 0.3: kept.
    tie = prune(np.array([[[0, 0, 7, 1], [4, 0, 14, 1]]], np.float32),
                np.array([[0.9, 0.8]], np.float32), np.array([[1, 1]], np.int32),
                np.array([[True, True]]), np.ones((1, 2, 28, 28), np.float32))
    np.testing.assert_array_equal(tie, [[True, True]])


def test_panoptic_argmax_equals_the_argmax_of_the_logits():
    batch, height, width, num = 2, 18, 26, 6
    logits = RNG.standard_normal((batch, height, width, 3)).astype(np.float32) * 2
    corner = RNG.uniform(0, 16, (batch, num, 2))
    size = RNG.uniform(1, 12, (batch, num, 2))
    boxes = np.concatenate([corner, np.minimum(corner + size, [width, height])],
                           -1).astype(np.float32)
    classes = RNG.integers(1, 3, (batch, num)).astype(np.int32)
    masks = RNG.standard_normal((batch, num, 28, 28)).astype(np.float32) * 3
    valid = RNG.random((batch, num)) < 0.7
    expected = np.argmax(_z(logits, boxes, classes, masks, valid), axis=-1)
    assert len(np.unique(expected)) > 4  # stuff, unknown and several instances win somewhere

    def argmax(*args):
        return head.panoptic_argmax(*args, stuff_channels=STUFF, thing_channels=THINGS)

    np.testing.assert_array_equal(argmax(logits, boxes, classes, masks, valid), expected)
    compiled = tf.function(argmax, jit_compile=True)
    np.testing.assert_array_equal(compiled(logits, boxes, classes, masks, valid), expected)


def test_reassign_classes_hand_cases():
    # Classes: 0 road (stuff), 1 sky (stuff), 2 person, 3 car. Four instances of
    # person, ten pixels each, in a 4 x 10 map; slots start at num_stuff + 1 = 3.
    semantic = np.zeros((1, 4, 10), np.int32)
    semantic[0, 0, :6] = 0; semantic[0, 0, 6:] = 2   # road 60%
    semantic[0, 1, :6] = 3; semantic[0, 1, 6:] = 0   # car 60%
    semantic[0, 2, :4] = 0; semantic[0, 2, 4:7] = 2; semantic[0, 2, 7:] = 1  # road 40%
    semantic[0, 3, :5] = 1; semantic[0, 3, 5:] = 2   # sky 50%: not more than half
    assignment = np.broadcast_to(np.arange(3, 7)[None, :, None], (1, 4, 10)).astype(np.int32)
    classes = np.full((1, 5), 2, np.int32)  # a fifth slot without pixels
    merged = head.reassign_classes(tf.constant(assignment), tf.constant(semantic),
                                   tf.constant(classes), num_stuff=2, stuff_class_ids=[0, 1],
                                   num_classes=4).numpy()
    np.testing.assert_array_equal(merged, [[0, -1, -1, -1, -1]])
    # An instance whose mode is its own class keeps it, even if stuff is second.
    semantic[0, 0] = [2] * 6 + [0] * 4
    merged = head.reassign_classes(tf.constant(assignment), tf.constant(semantic),
                                   tf.constant(classes), num_stuff=2, stuff_class_ids=[0, 1],
                                   num_classes=4).numpy()
    np.testing.assert_array_equal(merged, [[-1, -1, -1, -1, -1]])


@pytest.mark.parametrize("size", [1, 3])
def test_region_of_a_ground_truth_box_is_its_pixels(size):
    # A GT box (min x, min y, max x + 1, max y + 1) covers exactly its rows.
    indicator = head.region_indicators(tf.constant([[2.0, 2.0 + size]]), 8).numpy()[0]
    np.testing.assert_array_equal(np.flatnonzero(indicator), np.arange(2, 2 + size))
