"""UPSNet's panoptic head against numpy oracles written from its rules (paper 001
sections 3.1-3.2, SPEC_TOP_DOWN.md section 3), plus hand-worked cases: the
inference pruning, the class re-assignment, the random instance dropping, the
RoI and panoptic losses, and unknown pixels turning void in post-processing."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.model.meta import TOTAL_LOSS
from deeplab2.model.top_down import instance_targets as gt
from deeplab2.model.upsnet import loss as loss_lib
from deeplab2.model.upsnet import model as model_lib
from deeplab2.model.upsnet import panoptic_head as head
from deeplab2.model.upsnet.postprocess import upsnet_predictions

TOLERANCE = 1e-5


def _resize_axis(size, start, end, grid=28):
    """[size, grid] bilinear (half-pixel, edge clamp) weights of `grid` cells
    stretched over pixels floor(start)..ceil(end) - 1, zero rows elsewhere."""
    first, stop = int(np.floor(start)), int(np.ceil(end))
    weights = np.zeros((size, grid))
    for pixel in range(max(first, 0), min(stop, size)):
        u = min(max((pixel - first + 0.5) * grid / (stop - first) - 0.5, 0.0), grid - 1.0)
        low = int(np.floor(u))
        weights[pixel, low] += 1.0 - (u - low)
        weights[pixel, min(low + 1, grid - 1)] += u - low
    return weights


def _mask(logits, box, height, width):
    """The 28 x 28 mask logits pasted into the box, thresholded at 0."""
    x0, y0, x1, y1 = box
    return _resize_axis(height, y0, y1) @ logits @ _resize_axis(width, x0, x1).T > 0


def _iou(a, b):
    """IoU of two (x0, y0, x1, y1) boxes, areas without +1."""
    width = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    height = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _prune_oracle(boxes, scores, classes, valid, masks, height, width):
    """Paper 001 section 3.2 for one image: (kept [N], why each was dropped).

    Score > 0.6, greedy class-agnostic NMS (drop at IoU > 0.5 with a kept,
    better box), then by decreasing score one canvas per class: drop an empty
    mask or one whose intersection with its class's canvas is > 0.3 of its
    area, else paste it.
    """
    num = len(scores)
    kept, reason = np.zeros(num, bool), [""] * num
    order = sorted(range(num), key=lambda i: -scores[i])
    survivors = []
    for i in order:
        if not valid[i]:
            reason[i] = "invalid"
        elif scores[i] <= 0.6:
            reason[i] = "score"
        elif any(_iou(boxes[i], boxes[j]) > 0.5 for j in survivors):
            reason[i] = "nms"
        else:
            survivors.append(i)
    canvases = {}
    for i in survivors:
        mask = _mask(masks[i], boxes[i], height, width)
        canvas = canvases.setdefault(classes[i], np.zeros((height, width), bool))
        area, covered = mask.sum(), (mask & canvas).sum()
        if area == 0:
            reason[i] = "empty"
        elif 10 * covered > 3 * area:
            reason[i] = "covered"
        else:
            kept[i] = True
            canvas |= mask
    return kept, reason


def test_prune_instances_equals_the_numpy_oracle():
    """Random clustered detections on a 16 x 16 canvas: every way to be dropped
    occurs."""
    rng = np.random.default_rng(9)
    batch, num, size = 6, 8, 16
    corner = rng.uniform(0, 8, (batch, num, 2))
    boxes = np.concatenate([corner, np.minimum(corner + rng.uniform(3, 8, (batch, num, 2)),
                                               size)], -1).astype(np.float32)
    scores = rng.uniform(0.4, 1.0, (batch, num)).astype(np.float32)
    classes = rng.integers(1, 3, (batch, num)).astype(np.int32)
    bias = rng.choice([-6.0, 0.0, 1.0], (batch, num, 1, 1), p=[0.15, 0.35, 0.5])
    masks = (rng.standard_normal((batch, num, 28, 28)) + bias).astype(np.float32)
    valid = rng.random((batch, num)) < 0.9
    expected, reasons = zip(*(_prune_oracle(boxes[b], scores[b], classes[b], valid[b],
                                            masks[b], size, size) for b in range(batch)))
    assert {"", "invalid", "score", "nms", "empty", "covered"} <= set(sum(reasons, []))
    kept = head.prune_instances(boxes, scores, classes, valid, masks, size, size)
    np.testing.assert_array_equal(kept, np.stack(expected))


def _reassign_oracle(assignment, semantic, classes, num_stuff, stuff_class_ids, num_classes):
    """Paper 001 section 3.2, instance by instance over its argmax-of-Z pixels."""
    merged = np.full(classes.shape, -1)
    for b, i in np.ndindex(classes.shape):
        pixels = semantic[b][assignment[b] == num_stuff + 1 + i]
        if pixels.size == 0:
            continue
        counts = np.bincount(pixels, minlength=num_classes)
        mode = int(np.argmax(counts))  # the lowest id among ties
        if mode != classes[b, i] and mode in stuff_class_ids and counts[mode] > pixels.size / 2:
            merged[b, i] = mode
    return merged


def test_reassign_classes_equals_the_numpy_oracle():
    """Random assignments whose instances each lean towards one random class
    (classes 0-2 stuff, 3-5 things): merged and kept instances both occur."""
    rng = np.random.default_rng(2)
    batch, height, width, num, num_stuff, num_classes = 3, 12, 14, 6, 3, 6
    stuff = [0, 1, 2]
    assignment = rng.integers(0, num_stuff + 1 + num, (batch, height, width)).astype(np.int32)
    lean = rng.integers(0, num_classes, (batch, num_stuff + 1 + num))
    strength = rng.uniform(0.2, 0.9, (batch, num_stuff + 1 + num))
    classes = rng.integers(3, 6, (batch, num)).astype(np.int32)
    # Slot 0 leans strongly to stuff 1 and has class 1: only the m = C_i clause keeps it.
    lean[:, num_stuff + 1], strength[:, num_stuff + 1], classes[:, 0] = 1, 0.9, 1
    image = np.arange(batch)[:, None, None]
    semantic = np.where(rng.random(assignment.shape) < strength[image, assignment],
                        lean[image, assignment],
                        rng.integers(0, num_classes, assignment.shape)).astype(np.int32)
    expected = _reassign_oracle(assignment, semantic, classes, num_stuff, stuff, num_classes)
    assert (expected >= 0).sum() >= 3 and (expected < 0).sum() >= 3
    merged = head.reassign_classes(tf.constant(assignment), tf.constant(semantic),
                                   tf.constant(classes), num_stuff=num_stuff,
                                   stuff_class_ids=stuff, num_classes=num_classes)
    np.testing.assert_array_equal(merged, expected)


def test_keep_random_instances_keeps_the_lowest_stateless_draws():
    """With its seed, the kept instances are the max(floor(0.7 n), 1) valid ones
    with the lowest tf.random.stateless_uniform draws: a training run replays."""
    valid = np.array([[1, 0, 1, 1, 0, 1, 1, 1],   # n = 6: keep 4
                      [0, 0, 0, 1, 0, 0, 1, 0],   # n = 2: keep 1
                      [0, 0, 0, 0, 0, 0, 0, 0]], bool)
    seed = tf.constant([5, 7])
    draws = tf.random.stateless_uniform(valid.shape, seed).numpy()
    expected = np.zeros_like(valid)
    for b, keep in enumerate([4, 1, 0]):
        index = np.flatnonzero(valid[b])
        expected[b, index[np.argsort(draws[b, index])[:keep]]] = True
    np.testing.assert_array_equal(head.keep_random_instances(tf.constant(valid), seed),
                                  expected)


def test_keep_random_instances_keeps_the_documented_count_of_valid_ones():
    """Row n has n valid slots at random places: it keeps max(floor(7n / 10), 1)
    of them (0 if n = 0), never an invalid slot, for fraction 0.7 and 0.5."""
    rng = np.random.default_rng(3)
    num = 12
    valid = np.stack([rng.permutation(num) < n for n in range(num + 1)])
    for fraction, tenths in ((0.7, 7), (0.5, 5)):
        kept = head.keep_random_instances(tf.constant(valid), tf.constant([0, 1]),
                                          keep_fraction=fraction).numpy()
        counts = [max(tenths * n // 10, 1) if n else 0 for n in range(num + 1)]
        np.testing.assert_array_equal(kept.sum(axis=1), counts)
        assert not np.any(kept & ~valid)


def test_keep_random_instances_is_uniform_over_seeds():
    """Over 400 seeds, 3 of 5 valid slots: each slot is kept with probability 3/5
    and each of the 10 subsets drawn with probability 1/10 (within 5 sigma)."""
    valid = tf.constant([[True, True, False, True, True, True]])
    keep = tf.function(head.keep_random_instances)
    trials = 400
    kept = np.concatenate([keep(valid, tf.constant([seed, 11])).numpy()
                           for seed in range(trials)])
    assert np.all(kept.sum(axis=1) == 3) and not kept[:, 2].any()

    def within_five_sigma(count, p):
        return abs(count - trials * p) <= 5 * np.sqrt(trials * p * (1 - p))

    for slot in (0, 1, 3, 4, 5):
        assert within_five_sigma(kept[:, slot].sum(), 0.6), slot
    subsets = [tuple(np.flatnonzero(row)) for row in kept]
    for subset in itertools.combinations((0, 1, 3, 4, 5), 3):
        assert within_five_sigma(subsets.count(subset), 0.1), subset


def test_roi_semantic_targets_hand_case():
    """Size-4 bins: centres at x0 + (j + 0.5)(x1 - x0) / 4, floored, clipped to the image."""
    target = np.arange(16, dtype=np.int32).reshape(1, 4, 4)  # pixel (r, c) holds 4r + c
    boxes = np.array([[[0, 0, 4, 4],      # every pixel once
                       [1, 0, 3, 2],      # centres x 1.25 1.75 2.25 2.75, y .25 .75 1.25 1.75
                       [2, 3, 6, 5]]],    # x 2.5 3.5 4.5 5.5 -> 2 3 3 3; y 3.25.. -> 3
                     np.float32)
    bins = loss_lib.roi_semantic_targets(tf.constant(target), tf.constant(boxes), size=4)
    np.testing.assert_array_equal(bins[0, 0], target[0])
    np.testing.assert_array_equal(bins[0, 1], [[1, 1, 2, 2], [1, 1, 2, 2],
                                               [5, 5, 6, 6], [5, 5, 6, 6]])
    np.testing.assert_array_equal(bins[0, 2], np.full((4, 4), [14, 15, 15, 15]))


def test_roi_semantic_loss_hand_case():
    """Constant stride-4 logits (ln 3, 0) pool to (ln 3, 0) in every bin: p = 3/4
    for class 0 and 1/4 for class 1. The box (0, 0, 8, 8) has 28 bin columns
    centred at (j + 0.5) 8/28: j 0-13 on pixel columns 0-3 (class 0), 14-20 on
    4-5 (void), 21-27 on 6-7 (class 1). Per bin row: 14 x ln(4/3) + 7 x ln 4
    over 21 bins. An invalid box and an image without boxes add nothing."""
    logits = np.zeros((2, 4, 4, 2), np.float32)
    logits[..., 0] = np.log(3.0)
    target = np.zeros((2, 16, 16), np.int32)
    target[:, :, 4:6] = -1
    target[:, :, 6:] = 1
    boxes = np.array([[[0, 0, 8, 8], [6, 0, 16, 16]]] * 2, np.float32)
    valid = np.array([[True, False], [False, False]])
    loss = loss_lib.roi_semantic_loss(tf.constant(logits), tf.constant(target),
                                      tf.constant(boxes), tf.constant(valid))
    expected = (14 * np.log(4 / 3) + 7 * np.log(4)) / 21
    np.testing.assert_allclose(loss, [expected, 0.0], rtol=TOLERANCE)


def _roi_align_axis(start, end, size, bins=28, samples=2):
    """Per sample point of one box axis (feature coordinates): the two pixels,
    their weights and validity, under the spec's aligned-RoIAlign boundary rule."""
    points = start + (np.arange(bins * samples) + 0.5) * (end - start) / (bins * samples)
    valid = (points >= -1) & (points <= size)
    points = np.maximum(points, 0.0)
    low = np.floor(points).astype(int)
    edge = low >= size - 1
    low = np.where(edge, size - 1, low)
    fraction = np.where(edge, 0.0, points - low)
    return low, np.where(edge, low, low + 1), 1 - fraction, fraction, valid


def _roi_align_oracle(feature, box, stride=4, bins=28, samples=2):
    """[bins, bins, C] aligned RoIAlign of one image-pixel box: the mean of
    samples x samples bilinear samples per bin."""
    x0, y0, x1, y1 = box / stride - 0.5
    rows = _roi_align_axis(y0, y1, feature.shape[0], bins, samples)
    columns = _roi_align_axis(x0, x1, feature.shape[1], bins, samples)
    points = sum(wy[:, None, None] * wx[None, :, None] * feature[np.ix_(iy, ix)]
                 for iy, wy in ((rows[0], rows[2]), (rows[1], rows[3]))
                 for ix, wx in ((columns[0], columns[2]), (columns[1], columns[3])))
    points = points * (rows[4][:, None] & columns[4][None, :])[..., None]
    return points.reshape(bins, samples, bins, samples, -1).mean(axis=(1, 3))


def _roi_loss_oracle(logits, target, boxes, valid, bins=28):
    """[B] roi_semantic_loss by the rule: the RoIAlign of the stride-4 logits
    against the target at the pixel of each bin centre, log-softmax
    cross-entropy averaged over the labeled bins of the valid boxes."""
    height, width = target.shape[1:]
    centre = (np.arange(bins) + 0.5) / bins
    out = []
    for b in range(len(logits)):
        total, count = 0.0, 0
        for box in boxes[b][valid[b]].astype(np.float64):
            pooled = _roi_align_oracle(logits[b].astype(np.float64), box, bins=bins)
            rows = np.clip(np.floor(box[1] + centre * (box[3] - box[1])), 0, height - 1)
            columns = np.clip(np.floor(box[0] + centre * (box[2] - box[0])), 0, width - 1)
            labels = target[b][np.ix_(rows.astype(int), columns.astype(int))]
            log_p = pooled - np.log(np.exp(pooled).sum(-1, keepdims=True))
            labeled = labels >= 0
            picked = np.take_along_axis(log_p, np.maximum(labels, 0)[..., None], -1)[..., 0]
            total -= picked[labeled].sum()
            count += labeled.sum()
        out.append(total / count if count else 0.0)
    return np.array(out)


@pytest.mark.parametrize("valid", [
    [[True, True, False, True], [True, True, False, True]],
    # A padded tail, which the eager form cuts after row 2 and XLA keeps.
    [[True, False, False, False], [True, True, False, False]],
])
def test_roi_semantic_loss_equals_the_numpy_oracle(valid):
    """Random logits and void-holed targets on a 24 x 32 image; boxes inside,
    partly or wholly off the image, sub-pixel, and invalid rows; eager and
    under XLA."""
    rng = np.random.default_rng(4)
    batch, height, width, channels = 2, 24, 32, 4
    logits = rng.standard_normal((batch, height // 4, width // 4, channels)) * 2
    logits = logits.astype(np.float32)
    target = rng.integers(-1, channels, (batch, height, width)).astype(np.int32)
    boxes = np.array([[[3.3, 2.1, 17.8, 13.6], [-3.5, -2.2, 6.4, 5.1],
                       [0, 0, 32, 24], [9.2, 7.6, 9.9, 8.3]],
                      [[25.1, 17.3, 35.7, 27.9], [36.0, 2.0, 44.0, 9.0],
                       [1, 1, 5, 5], [0.7, 1.4, 30.2, 22.9]]], np.float32)
    valid = np.array(valid)
    args = [tf.constant(a) for a in (logits, target, boxes, valid)]
    expected = _roi_loss_oracle(logits, target, boxes, valid)
    np.testing.assert_allclose(loss_lib.roi_semantic_loss(*args), expected, rtol=TOLERANCE)
    compiled = tf.function(loss_lib.roi_semantic_loss, jit_compile=True)(*args)
    np.testing.assert_allclose(compiled, expected, rtol=TOLERANCE)


def _upsnet_losses(targets, outputs, stub_total):
    """UPSNetLoss (lambda_sem 1, lambda_pan 0.5; stuff 0 and 3, things 1 and 2)
    with its Mask R-CNN and semantic terms replaced by a stub total."""
    losses = loss_lib.UPSNetLoss(semantic_weight=1.0, panoptic_weight=0.5,
                                 stuff_class_ids=[0, 3], thing_class_ids=[1, 2],
                                 label_divisor=1000)
    losses.mask_rcnn_and_semantic = lambda *_: {TOTAL_LOSS: tf.constant(stub_total, tf.float32)}
    return losses({key: tf.constant(value) for key, value in targets.items()},
                  {key: tf.constant(value) for key, value in outputs.items()})


def test_panoptic_loss_hand_case():
    """Z is 2 x 2 over [road, sky, unknown, slot 0, slot 1]; the 8 x 8 label is
    read at pixels (4i + 2, 4j + 2), everything else void:
    (2, 2) road, Z (0, 0, 0, 0, 0) -> ln 5;
    (2, 6) person 1001 in dropped slot 0 -> unknown, Z (0, 0, ln 4, 0, 0) -> ln 2;
    (6, 2) person 1002 in kept slot 1, Z (0, 0, 0, 0, ln 5) -> ln(9 / 5);
    (6, 6) void: ignored. Mean ln(18) / 3; the total adds 0.5 x it."""
    label = np.full((1, 8, 8), 255000, np.int32)
    label[0, 2, 2], label[0, 2, 6], label[0, 6, 2] = 0, 1001, 1002
    z = np.zeros((1, 2, 2, 5), np.float32)
    z[0, 0, 1, 2] = np.log(4.0)
    z[0, 1, 0, 4] = np.log(5.0)
    z[0, 1, 1] = [9, -9, 9, -9, 9]
    targets = {common.PANOPTIC_LABEL: label, gt.GT_PANOPTIC_IDS: np.array([[1001, 1002]], np.int32),
               common.SEMANTIC_TARGET: np.full((1, 8, 8), -1, np.int32),  # no RoI term
               gt.GT_BOXES: np.array([[[0, 0, 4, 4], [0, 4, 4, 8]]], np.float32),
               gt.GT_VALID: np.array([[True, True]])}
    outputs = {model_lib.PANOPTIC_LOGITS: z,
               model_lib.PANOPTIC_KEPT: np.array([[False, True]]),
               model_lib.SEMANTIC_LOGITS_STRIDE4: np.zeros((1, 2, 2, 4), np.float32)}
    losses = _upsnet_losses(targets, outputs, [1.0])
    expected = np.log(18.0) / 3
    np.testing.assert_allclose(losses[loss_lib.PANOPTIC_LOSS], [expected], rtol=TOLERANCE)
    np.testing.assert_allclose(losses[loss_lib.ROI_SEMANTIC_LOSS], [0.0])
    np.testing.assert_allclose(losses[TOTAL_LOSS], [1.0 + 0.5 * expected], rtol=TOLERANCE)


def _panoptic_loss_oracle(z, label, slot_ids, kept, stuff=(0, 3), things=(1, 2)):
    """[B] softmax cross-entropy of Z against the label at pixel (4i + 2, 4j + 2):
    stuff -> its stuff index, the id of a kept slot i -> S + 1 + i, any other
    thing -> unknown S, void ignored; mean over labeled pixels."""
    z = z.astype(np.float64)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    out = []
    for b in range(len(z)):
        terms = []
        for i, j in np.ndindex(z.shape[1:3]):
            value = label[b, 4 * i + 2, 4 * j + 2]
            cls = value // 1000
            if cls in stuff:
                target = stuff.index(cls)
            elif cls in things:
                slots = [s for s in range(len(kept[b])) if kept[b, s] and slot_ids[b, s] == value]
                target = len(stuff) + 1 + slots[0] if slots else len(stuff)
            else:
                continue
            terms.append(-log_p[b, i, j, target])
        out.append(np.mean(terms) if terms else 0.0)
    return np.array(out)


def test_panoptic_and_total_loss_equal_the_numpy_oracle():
    """Random Z and labels of stuff, kept, dropped and crowd things and void; the
    total adds lambda_sem / 5 x the RoI term and lambda_pan x the panoptic term."""
    rng = np.random.default_rng(5)
    batch, height, width, num = 2, 5, 6, 3
    ids = np.array([0, 3000, 1000, 1001, 1002, 2001, 255000])
    label = rng.choice(ids, (batch, 4 * height, 4 * width)).astype(np.int32)
    slot_ids = np.array([[1002, 2001, -1], [2001, 1001, 1002]], np.int32)
    kept = np.array([[True, True, False], [True, False, True]])
    z = (rng.standard_normal((batch, height, width, 2 + 1 + num)) * 2).astype(np.float32)
    targets = {common.PANOPTIC_LABEL: label, gt.GT_PANOPTIC_IDS: slot_ids,
               common.SEMANTIC_TARGET: rng.integers(-1, 4, label.shape).astype(np.int32),
               gt.GT_BOXES: np.tile(np.array([[[2, 3, 14, 17]]], np.float32), (batch, num, 1)),
               gt.GT_VALID: slot_ids >= 0}
    outputs = {model_lib.PANOPTIC_LOGITS: z, model_lib.PANOPTIC_KEPT: kept,
               model_lib.SEMANTIC_LOGITS_STRIDE4:
                   rng.standard_normal((batch, height, width, 4)).astype(np.float32)}
    losses = _upsnet_losses(targets, outputs, [1.0, 2.0])
    expected = _panoptic_loss_oracle(z, label, slot_ids, kept)
    np.testing.assert_allclose(losses[loss_lib.PANOPTIC_LOSS], expected, rtol=TOLERANCE)
    roi = losses[loss_lib.ROI_SEMANTIC_LOSS].numpy()
    assert np.all(roi > 0)
    np.testing.assert_allclose(losses[TOTAL_LOSS], [1.0, 2.0] + roi / 5 + 0.5 * expected,
                               rtol=TOLERANCE)


def test_unknown_pixels_become_void_in_postprocessing():
    """Synthetic classes (0-2 stuff sky, building, ground; 3-5 things disc, box,
    triangle), 8 x 8. Left half: sky 4 beats unknown (best thing 1). Right half:
    building 2, disc 5. One disc detection on the top-right quadrant with mask
    logits 10: its Z = 5 + 10 beats unknown 5 - 5, so it is instance 1. In the
    bottom-right quadrant, outside every kept box, unknown = 5 beats building 2:
    void, although the semantic argmax there is a thing and building is the
    best stuff. A higher-scored but invalid detection there changes nothing."""
    info = get_dataset_info("synthetic")
    logits = np.zeros((1, 8, 8, 6), np.float32)
    logits[0, :, :4, 0], logits[0, :, :4, 3] = 4.0, 1.0
    logits[0, :, 4:, 1], logits[0, :, 4:, 3] = 2.0, 5.0
    outputs = {common.SEMANTIC_LOGITS: logits,
               common.DETECTION_BOXES: np.array([[[4, 0, 8, 4], [4, 4, 8, 8]]], np.float32),
               common.DETECTION_SCORES: np.array([[0.9, 0.95]], np.float32),
               common.DETECTION_CLASSES: np.array([[1, 1]], np.int32),
               common.DETECTION_VALID: np.array([[1, 0]], np.int32),
               model_lib.DETECTION_MASK_LOGITS: np.full((1, 2, 28, 28), 10.0, np.float32)}
    predictions = upsnet_predictions({k: tf.constant(v) for k, v in outputs.items()}, info,
                                     score_threshold=0.6, nms_threshold=0.5,
                                     overlap_threshold=0.3, stuff_area_limit=0)
    void = info.ignore_label * info.label_divisor
    expected = np.zeros((8, 8), np.int32)  # sky: 0 * 1000 + 0
    expected[:4, 4:] = 3 * info.label_divisor + 1
    expected[4:, 4:] = void
    np.testing.assert_array_equal(predictions[common.PANOPTIC][0], expected)
    np.testing.assert_array_equal(predictions[common.SEMANTIC][0, 4:, 4:], info.ignore_label)
    np.testing.assert_array_equal(predictions[common.INSTANCE][0, 4:, 4:], 0)
