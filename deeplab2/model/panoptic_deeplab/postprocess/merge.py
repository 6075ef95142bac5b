"""Merging semantic and class-agnostic instance maps into panoptic ids (majority vote).

Works on small per-image tables, then one gather per pixel:
- an instance exists when at least one thing pixel was grouped to it; its class
  is the most frequent semantic class among its pixels (ties to the smaller
  class id) and its panoptic id is class * label_divisor + k, with k counting the
  existing instances of that class from 1 in instance id order;
- a pixel of a stuff class keeps class * label_divisor when that class covers
  more than `stuff_area_limit` pixels of the image, else it is void;
- a thing pixel without instance (the image has no center) is void.
Void is ignore_label * label_divisor.
"""
from typing import NamedTuple, Sequence

import tensorflow as tf

from deeplab2.model.panoptic_deeplab.postprocess.tiles import shape_of


class InstanceTable(NamedTuple):
    """Per-instance results, row i for instance id i + 1: [B, K] tensors.

    Rows of instances that do not exist (no center, or no pixel) hold class
    ignore_label, panoptic id void and score 0.
    """
    classes: tf.Tensor
    panoptic_ids: tf.Tensor
    scores: tf.Tensor


def instance_table(votes: tf.Tensor, probability_sums: tf.Tensor,
                   center_scores: tf.Tensor, *, thing_class_ids: Sequence[int],
                   label_divisor: int, ignore_label: int) -> InstanceTable:
    """Votes classes, renumbers instances and scores them.

    Args:
        votes: [B, K, T] int32 pixel count of each instance per thing class
            (thing classes in increasing id order).
        probability_sums: [B, K, T] float32 sum over each instance's pixels of
            the semantic probability of each thing class.
        center_scores: [B, K] float32 heatmap value at each center (objectness).
    """
    keep_k = center_scores.shape[1]
    area = tf.reduce_sum(votes, axis=-1)
    exists = area > 0
    winner = tf.argmax(votes, axis=-1, output_type=tf.int32)  # ties: lower index
    classes = tf.gather(tf.constant(thing_class_ids, tf.int32), winner)
    mean_probability = (tf.gather(probability_sums, winner, batch_dims=2)
                        / tf.cast(tf.maximum(area, 1), tf.float32))
    scores = tf.where(exists, center_scores * mean_probability, 0.0)
    # k = number of existing instances of the same class with id <= this one.
    same_class = tf.logical_and(tf.equal(classes[:, :, None], classes[:, None, :]),
                                exists[:, None, :])
    not_after = tf.range(keep_k)[None, :] <= tf.range(keep_k)[:, None]
    rank = tf.reduce_sum(tf.cast(tf.logical_and(same_class, not_after), tf.int32), -1)
    void = ignore_label * label_divisor
    return InstanceTable(
        classes=tf.where(exists, classes, ignore_label),
        panoptic_ids=tf.where(exists, classes * label_divisor + rank, void),
        scores=scores)


def stuff_ids(semantic: tf.Tensor, *, num_classes: int, thing_class_ids: Sequence[int],
              label_divisor: int, ignore_label: int,
              stuff_area_limit: int) -> tf.Tensor:
    """[B, H, W] semantic -> [B, C] panoptic id of a pixel of each class without instance.

    class * label_divisor for stuff classes larger than the area limit, void for
    the others and for thing classes.
    """
    batch = shape_of(semantic)[0]
    image = tf.range(batch)[:, None, None] * num_classes
    area = tf.math.unsorted_segment_sum(tf.ones_like(semantic), image + semantic,
                                        batch * num_classes)
    area = tf.reshape(area, [batch, num_classes])
    is_stuff = tf.logical_not(tf.reduce_any(
        tf.range(num_classes)[:, None] == tf.constant(thing_class_ids, tf.int32), -1))
    kept = tf.logical_and(is_stuff[None, :], area > stuff_area_limit)
    return tf.where(kept, tf.range(num_classes) * label_divisor,
                    ignore_label * label_divisor)


def panoptic_map(semantic: tf.Tensor, instance: tf.Tensor, instance_ids: tf.Tensor,
                 stuff_table: tf.Tensor) -> tf.Tensor:
    """Panoptic id of each pixel: its instance's id if it has one, else its class's.

    Args:
        semantic, instance: [B, H, W] int32.
        instance_ids: [B, K] panoptic id of instance i + 1.
        stuff_table: [B, C] from `stuff_ids`.
    """
    batch, height, width = shape_of(semantic)
    keep_k = instance_ids.shape[1]
    # Column 0 is never read (instance 0 reads the stuff part).
    table = tf.concat([instance_ids[:, :1], instance_ids, stuff_table], axis=1)
    index = tf.where(instance > 0, instance, keep_k + 1 + semantic)
    index = tf.reshape(index, [batch, height * width])
    return tf.reshape(tf.gather(table, index, batch_dims=1), [batch, height, width])
