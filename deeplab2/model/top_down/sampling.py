"""Training targets of the RPN and the RoI heads: IoU matching and balanced sampling.

Ground truth comes padded: [..., G, 4] boxes with a [..., G] validity mask, and
invalid rows never match. Every function takes any leading batch dimensions
(none for one image, [B] for a batch), with static output shapes. Sampling uses
stateless random ops, so the same seed gives the same samples, also under XLA.
"""
from typing import NamedTuple, Optional, Tuple

import tensorflow as tf

from deeplab2.model.top_down import boxes as boxes_lib
from deeplab2.model.top_down import xla_context

POSITIVE = 1
NEGATIVE = 0
IGNORED = -1


class MatchRule(NamedTuple):
    """IoU >= positive_iou is positive, < negative_iou negative, in between ignored.

    best_gt_positive: each valid GT's best boxes (all ties) are positive too,
        whatever their IoU, when it is above 0 (the RPN rule).
    """
    positive_iou: float
    negative_iou: float
    best_gt_positive: bool


class SampleRule(NamedTuple):
    """`num_samples` per image, at most floor(num_samples * positive_fraction) positive."""
    num_samples: int
    positive_fraction: float


RPN_MATCH = MatchRule(positive_iou=0.7, negative_iou=0.3, best_gt_positive=True)
ROI_MATCH = MatchRule(positive_iou=0.5, negative_iou=0.5, best_gt_positive=False)
RPN_SAMPLE = SampleRule(num_samples=256, positive_fraction=0.5)
ROI_SAMPLE = SampleRule(num_samples=512, positive_fraction=0.25)


class Match(NamedTuple):
    """The matching of N boxes (anchors or proposals) to the ground truth.

    gt_index: [..., N] int32 row of a valid GT box of highest IoU (tf.argmax:
        which of equal ones is unspecified, the first on CPU and XLA); only
        meaningful where labels == POSITIVE. A box
        made positive by `best_gt_positive` keeps this row, as in detectron2,
        even when the GT it is best for is another one.
    labels: [..., N] int32 POSITIVE, NEGATIVE or IGNORED.
    """
    gt_index: tf.Tensor
    labels: tf.Tensor


class Sample(NamedTuple):
    """Fixed-size sample of box indices: positives first, then negatives, then padding.

    indices: [..., num_samples] int32 rows of the sampled boxes; 0 in padding slots.
    valid: [..., num_samples] bool, False in padding slots (too few candidates).
    """
    indices: tf.Tensor
    valid: tf.Tensor


def match_boxes(boxes: tf.Tensor, gt_boxes: tf.Tensor, gt_valid: tf.Tensor, rule: MatchRule,
                box_valid: Optional[tf.Tensor] = None) -> Match:
    """Labels [..., N, 4] `boxes` against [..., G, 4] `gt_boxes` by IoU with `rule`.

    Invalid GT rows count as IoU -1, so they are never matched; without any valid
    GT every box is negative. Boxes with `box_valid` False (padding proposals)
    are ignored. `boxes` may lack the batch dimensions (anchors shared by a batch).
    Outside XLA the GT columns after the batch's last valid row are dropped
    first: they could never match, and the padding is most of the [..., N, G]
    IoU work when N is every anchor.
    """
    used = rows_in_use(gt_valid)
    gt_boxes, gt_valid = gt_boxes[..., :used, :], gt_valid[..., :used]
    iou = boxes_lib.pairwise_iou(boxes, gt_boxes)
    iou = tf.where(gt_valid[..., None, :], iou, -1.0)
    if box_valid is not None:
        iou = tf.where(box_valid[..., :, None], iou, -1.0)
    gt_index = tf.argmax(iou, axis=-1, output_type=tf.int32)
    best_iou = tf.reduce_max(iou, axis=-1)
    labels = tf.where(best_iou >= rule.positive_iou, POSITIVE,
                      tf.where(best_iou < rule.negative_iou, NEGATIVE, IGNORED))
    if rule.best_gt_positive:
        best_per_gt = tf.reduce_max(iou, axis=-2, keepdims=True)
        # The argmax keeps one best box per GT even if XLA recomputes `iou` in two
        # fusions and rounds them differently (fused multiply-adds), breaking equality.
        box_rows = tf.range(tf.shape(iou)[-2], dtype=tf.int32)[:, None]
        best_box = tf.argmax(iou, axis=-2, output_type=tf.int32)[..., None, :]
        is_best = tf.logical_or(iou == best_per_gt, box_rows == best_box)
        is_best = tf.logical_and(is_best, best_per_gt > 0.0)
        labels = tf.where(tf.reduce_any(is_best, axis=-1), POSITIVE, labels)
    if box_valid is not None:
        labels = tf.where(box_valid, labels, IGNORED)
    return Match(gt_index, labels)


def rows_in_use(valid: tf.Tensor):
    """How many leading rows of [..., G] `valid` padding-free work needs: one
    past the last row valid in any image, at least 1, as a scalar tensor.
    Under XLA, which needs static shapes, G itself."""
    if xla_context.traced_for_xla():
        return valid.shape[-1]
    rows = tf.range(1, tf.shape(valid)[-1] + 1)
    return tf.maximum(tf.reduce_max(tf.where(valid, rows, 0)), 1)


def sample_balanced(labels: tf.Tensor, rule: SampleRule, seed: tf.Tensor) -> Sample:
    """Draws up to `rule.num_samples` of the [..., N] labelled boxes, never IGNORED ones.

    Takes min(#positives, floor(num_samples * positive_fraction)) positives and
    fills the rest with negatives, each uniformly at random without replacement.
    seed: shape [2] integer tensor of tf.random.stateless_uniform; one draw covers
    the whole batch, so images get different samples.
    """
    num_boxes = labels.shape[-1]
    max_positives = int(rule.num_samples * rule.positive_fraction)
    is_positive = labels == POSITIVE
    is_negative = labels == NEGATIVE
    num_positives = tf.minimum(_count(is_positive), max_positives)
    num_negatives = tf.minimum(_count(is_negative), rule.num_samples - num_positives)
    keys = tf.random.stateless_uniform(tf.shape(labels), seed)
    positives = _random_order(is_positive, keys, max(1, min(max_positives, num_boxes)))
    negatives = _random_order(is_negative, keys, min(rule.num_samples, num_boxes))
    slot = tf.range(rule.num_samples, dtype=tf.int32) + tf.zeros_like(num_positives)
    batch_dims = labels.shape.rank - 1
    positive_index = tf.gather(positives, tf.minimum(slot, positives.shape[-1] - 1),
                               batch_dims=batch_dims)
    negative_index = tf.gather(
        negatives, tf.clip_by_value(slot - num_positives, 0, negatives.shape[-1] - 1),
        batch_dims=batch_dims)
    indices = tf.where(slot < num_positives, positive_index, negative_index)
    valid = slot < num_positives + num_negatives
    return Sample(tf.where(valid, indices, 0), valid)


def append_gt_boxes(proposals: tf.Tensor, proposal_valid: tf.Tensor, gt_boxes: tf.Tensor,
                    gt_valid: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Training proposals with the GT boxes after them: ([..., P + G, 4], [..., P + G] valid).

    The GT boxes then match themselves with IoU 1, so every GT has foreground RoIs.
    """
    return (tf.concat([proposals, gt_boxes], axis=-2),
            tf.concat([proposal_valid, gt_valid], axis=-1))


def _count(mask: tf.Tensor) -> tf.Tensor:
    """[..., N] bool -> [..., 1] int32 number of True values."""
    return tf.reduce_sum(tf.cast(mask, tf.int32), axis=-1, keepdims=True)


def _random_order(member: tf.Tensor, keys: tf.Tensor, k: int) -> tf.Tensor:
    """[..., k] int32 indices of the members, in the random order of their keys in [0, 1).

    Non-members (key -1) come after all members.
    """
    return tf.math.top_k(tf.where(member, keys, -1.0), k=k, sorted=True).indices
