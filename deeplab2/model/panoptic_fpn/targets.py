"""Panoptic FPN training targets of one panoptic label, and the model's sampling seeds.

The input pipeline adds, per example (after augmentation, in tf.data):
- the detection ground truth of `top_down.instance_targets` (classes, boxes,
  panoptic ids and validity of up to `max_instances` thing instances, the
  label itself for the mask targets);
- SEMANTIC_TARGET: int32 [H, W] channel of each pixel in the semantic branch's
  label space (`semantic_classes`), -1 for void.
"""
from typing import Dict, NamedTuple

import tensorflow as tf

from deeplab2 import common
from deeplab2.data.dataset_info import DatasetInfo
from deeplab2.model.panoptic_fpn import semantic_classes
from deeplab2.model.top_down import instance_targets as instance_targets_lib

# What the model reads from a training batch (beside the images).
MODEL_TARGET_KEYS = (instance_targets_lib.GT_CLASSES, instance_targets_lib.GT_BOXES,
                     instance_targets_lib.GT_PANOPTIC_IDS, instance_targets_lib.GT_VALID,
                     common.PANOPTIC_LABEL, common.SAMPLE_SEED)


def semantic_target(panoptic_label: tf.Tensor, info: DatasetInfo,
                    other_class: bool) -> tf.Tensor:
    """int32 [H, W] semantic channel of each pixel of a panoptic label, -1 for void."""
    table = tf.constant(semantic_classes.target_table(info, other_class))
    classes = tf.cast(panoptic_label, tf.int32) // info.label_divisor
    return tf.gather(table, tf.clip_by_value(classes, 0, table.shape[0] - 1))


class PanopticFPNTargets:
    """The targets the input pipeline adds for Panoptic FPN training (see above)."""

    def __init__(self, dataset_info: DatasetInfo, *, semantic_other_class: bool,
                 max_instances: int):
        self.dataset_info = dataset_info
        self.semantic_other_class = semantic_other_class
        self.max_instances = max_instances

    def __call__(self, panoptic_label: tf.Tensor) -> Dict[str, tf.Tensor]:
        targets = instance_targets_lib.instance_targets(
            panoptic_label, self.dataset_info, max_instances=self.max_instances)
        targets[common.SEMANTIC_TARGET] = semantic_target(
            panoptic_label, self.dataset_info, self.semantic_other_class)
        return targets


class SamplingSeeds(NamedTuple):
    """Stateless [2] int32 seeds of one training step: RPN anchors, RoIs."""
    rpn: tf.Tensor
    roi: tf.Tensor


def sampling_seeds(sample_seeds: tf.Tensor) -> SamplingSeeds:
    """The step's seeds from the batch's SAMPLE_SEED [B, 2]: split from the
    first example's, which differs between steps and between replicas, and is
    the same when a resumed run replays the step."""
    seeds = tf.random.experimental.stateless_split(tf.cast(sample_seeds[0], tf.int32), 2)
    return SamplingSeeds(rpn=seeds[0], roi=seeds[1])
