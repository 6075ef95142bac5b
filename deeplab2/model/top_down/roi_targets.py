"""Training targets of the box and mask heads (SPEC_TOP_DOWN.md section 1).

- `sample_rois`: proposals plus the GT boxes, matched with ROI_MATCH and sampled
  with ROI_SAMPLE (512 per image, <= 25% foreground), with each RoI's class,
  box-regression target and matched GT panoptic id.
- `mask_targets`: the 28 x 28 binary target of each foreground RoI, sampled
  from the panoptic label.

Everything is batched ([B, ...]), static-shaped and compiles with XLA.
"""
from typing import NamedTuple

import tensorflow as tf

from deeplab2.model.top_down import boxes as boxes_lib
from deeplab2.model.top_down import sampling
from deeplab2.model.top_down.instance_targets import PADDING_ID
# Private to roi_align; shared so that mask targets follow RoIAlign's sample rule exactly.
from deeplab2.model.top_down.roi_align import axis_samples

MASK_SIZE = 28
MASK_SAMPLING_RATIO = 2
# Stands in for boxes that are not encoded, so `encode` never sees an empty box.
_UNIT_BOX = (0.0, 0.0, 1.0, 1.0)


class RoITargets(NamedTuple):
    """Sampled RoIs of a batch: foreground first, then background, then padding.

    Foreground RoIs occupy at most the first int(num_samples * positive_fraction)
    slots (128 of 512), so the mask head only needs those slots (`foreground_slots`).

    boxes: [B, S, 4] RoIs, no gradient; 0 in padding slots.
    valid: [B, S] bool, False in padding slots (fewer candidates than S).
    classes: [B, S] int32 target class, 1..K foreground, 0 background and padding.
    box_targets: [B, S, 4] deltas of the matched GT box relative to the RoI,
        coder weights BOX_HEAD_WEIGHTS; 0 where not foreground.
    gt_panoptic_ids: [B, S] int32 panoptic id of the matched GT, -1 where not foreground.
    foreground: [B, S] bool.
    """
    boxes: tf.Tensor
    valid: tf.Tensor
    classes: tf.Tensor
    box_targets: tf.Tensor
    gt_panoptic_ids: tf.Tensor
    foreground: tf.Tensor


def _where_rows(condition: tf.Tensor, boxes: tf.Tensor, other) -> tf.Tensor:
    """[..., 4] `boxes` where `condition` [...] holds, else the box `other`."""
    return tf.where(condition[..., None], boxes, tf.constant(other, boxes.dtype))


def encode_targets(gt_boxes: tf.Tensor, reference: tf.Tensor, is_target: tf.Tensor,
                   weights) -> tf.Tensor:
    """`boxes.encode` of [..., 4] boxes where `is_target` [...] holds, 0 elsewhere.

    Rows that are not targets may hold empty boxes (padding GT, degenerate
    proposals); they are swapped for a unit box before encoding, so neither
    the values nor the gradients see an inf or a NaN.
    """
    deltas = boxes_lib.encode(_where_rows(is_target, gt_boxes, _UNIT_BOX),
                              _where_rows(is_target, reference, _UNIT_BOX), weights)
    return tf.where(is_target[..., None], deltas, 0.0)


def sample_rois(proposals: tf.Tensor, proposal_valid: tf.Tensor, gt_boxes: tf.Tensor,
                gt_classes: tf.Tensor, gt_panoptic_ids: tf.Tensor, gt_valid: tf.Tensor,
                seed: tf.Tensor, *, match_rule: sampling.MatchRule = sampling.ROI_MATCH,
                sample_rule: sampling.SampleRule = sampling.ROI_SAMPLE) -> RoITargets:
    """Samples the training RoIs of the box head and their targets.

    The GT boxes are appended to the proposals (so every valid GT has a
    foreground RoI), the union is matched to the GT (IoU >= 0.5 foreground,
    < 0.5 background) and `sample_rule.num_samples` RoIs are drawn.

    Args:
        proposals: [B, P, 4] proposal boxes (gradients are stopped).
        proposal_valid: [B, P] bool.
        gt_boxes: [B, G, 4]; gt_classes, gt_panoptic_ids: [B, G] int32;
            gt_valid: [B, G] bool (the `instance_targets` fields, batched).
        seed: [2] int32 seed of the stateless sampling; pass a new one every
            step (e.g. derived from the step counter), one per batch.
        match_rule, sample_rule: the matching and sampling rules.
    """
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    rois, roi_valid = sampling.append_gt_boxes(tf.stop_gradient(proposals), proposal_valid,
                                               gt_boxes, gt_valid)
    match = sampling.match_boxes(rois, gt_boxes, gt_valid, match_rule, box_valid=roi_valid)
    sample = sampling.sample_balanced(match.labels, sample_rule, seed)
    boxes = tf.gather(rois, sample.indices, batch_dims=1)
    foreground = sample.valid & (tf.gather(match.labels, sample.indices, batch_dims=1)
                                 == sampling.POSITIVE)
    gt_index = tf.gather(match.gt_index, sample.indices, batch_dims=1)
    matched_boxes = tf.gather(gt_boxes, gt_index, batch_dims=1)
    return RoITargets(
        boxes=_where_rows(sample.valid, boxes, (0.0,) * 4),
        valid=sample.valid,
        classes=tf.where(foreground, tf.gather(gt_classes, gt_index, batch_dims=1), 0),
        box_targets=encode_targets(matched_boxes, boxes, foreground,
                                   boxes_lib.BOX_HEAD_WEIGHTS),
        gt_panoptic_ids=tf.where(foreground, tf.gather(gt_panoptic_ids, gt_index, batch_dims=1),
                                 PADDING_ID),
        foreground=foreground)


def foreground_slots(targets: RoITargets,
                     sample_rule: sampling.SampleRule = sampling.ROI_SAMPLE) -> RoITargets:
    """The first int(num_samples * positive_fraction) slots, which hold every foreground RoI."""
    count = int(sample_rule.num_samples * sample_rule.positive_fraction)
    return RoITargets(*(field[:, :count] for field in targets))


def mask_targets(panoptic_label: tf.Tensor, boxes: tf.Tensor, panoptic_ids: tf.Tensor, *,
                 size: int = MASK_SIZE, sampling_ratio: int = MASK_SAMPLING_RATIO) -> tf.Tensor:
    """[B, R, size, size] float32 0/1 mask targets of RoIs on their GT segment.

    The target is aligned RoIAlign (roi_align.py's sample rule at stride 1,
    `sampling_ratio` samples per bin per axis) of the binary mask
    `panoptic_label == panoptic_id` over the RoI box, thresholded at >= 0.5.
    Instead of one mask channel per RoI, each sample point reads the ids of its
    4 bilinear neighbours from the label and weights those equal to the RoI's
    id: 4 int32 gathers of [B, R, M, M] with M = size * sampling_ratio. An id
    of -1 (not foreground) gives an all-zero target.

    Args:
        panoptic_label: [B, H, W] int32.
        boxes: [B, R, 4] RoIs (x0, y0, x1, y1) in label pixels.
        panoptic_ids: [B, R] int32 matched GT panoptic ids.
        size, sampling_ratio: bins per axis and samples per bin per axis.
    """
    batch, height, width = tf.unstack(tf.shape(panoptic_label))
    num_rois = tf.shape(boxes)[1]
    samples = size * sampling_ratio
    # Pixel centres sit at integer coordinates: c = x - 0.5 (stride 1).
    corners = tf.cast(boxes, tf.float32) - 0.5
    rows = axis_samples(corners[..., 1], corners[..., 3], height, samples)
    columns = axis_samples(corners[..., 0], corners[..., 2], width, samples)
    flat = tf.reshape(panoptic_label, [-1])
    base = tf.reshape(tf.range(batch) * height * width, [-1, 1, 1, 1])
    ids = panoptic_ids[:, :, None, None]
    total = 0.0
    for row_index, row_weight in rows:
        for column_index, column_weight in columns:
            index = base + row_index[..., :, None] * width + column_index[..., None, :]
            weight = row_weight[..., :, None] * column_weight[..., None, :]
            total += tf.where(tf.gather(flat, index) == ids, weight, 0.0)
    bins = tf.reshape(total, [batch, num_rois, size, sampling_ratio, size, sampling_ratio])
    return tf.cast(tf.reduce_mean(bins, axis=[3, 5]) >= 0.5, tf.float32)
