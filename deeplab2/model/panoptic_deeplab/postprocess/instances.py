"""One pass over the tiles holding thing pixels: grouping and per-instance statistics.

For each tile (tiles.py): group its thing pixels (grouping.py), write their
instance ids, and add to each instance its pixel count per thing class (for the
majority vote) and the sum of each thing class's probability (for the score).
Instances in a tile are few, so the sums run over the tile's candidate centers
instead of a scatter per pixel.
"""
from typing import Tuple

import tensorflow as tf

from deeplab2.model.layers import resize
from deeplab2.model.panoptic_deeplab.postprocess import grouping
from deeplab2.model.panoptic_deeplab.postprocess import tiles as tiles_lib
from deeplab2.model.panoptic_deeplab.postprocess.centers import Centers


def group_and_count(semantic: tf.Tensor, class_scores: tf.Tensor, use_logits: bool,
                    offset: tf.Tensor, centers: Centers, *, thing_class_ids: Tuple[int, ...],
                    tile_size: int, upsample_scores: bool = False
                    ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Groups thing pixels and accumulates per-instance class statistics.

    Args:
        semantic: [B, H, W] int32 semantic prediction.
        class_scores: [B, H, W, C] logits (`use_logits`) or probabilities; with
            `upsample_scores`, [B, h, w, C] at a lower resolution, each tile
            reading its pixels of their align-corners upsampling to (H, W).
        offset: [B, H, W, 2] float32 (y, x) offsets to the centers.
        centers: the batch's centers.
        thing_class_ids: in increasing order (T of them).
        tile_size: side of the visited tiles (performance only).

    Returns:
        instance: [B, H, W] int32 instance id map.
        votes: [B, K, T] int32 pixels of each instance per thing class.
        probability_sums: [B, K, T] float32 summed probability of each thing
            class over each instance's pixels.
    """
    shape = tiles_lib.shape_of(semantic)
    batch, height, width = shape
    keep_k = centers.scores.shape[1]
    num_things = len(thing_class_ids)
    num_classes = class_scores.shape[-1]
    thing_index = tf.constant([thing_class_ids.index(c) if c in thing_class_ids else 0
                               for c in range(num_classes)], tf.int32)
    thing_mask = tf.gather(tf.constant([c in thing_class_ids for c in range(num_classes)]),
                           semantic)
    # An image without centers has nothing to group or score: none of its tiles.
    tiles = tiles_lib.list_tiles(
        tf.logical_and(thing_mask, (centers.count > 0)[:, None, None]), tile_size)

    def read(tensor, window):
        """The window's [h, w, ...] part of a [B, H, W, ...] tensor.

        Gathers, not tf.slice: a data-dependent slice start would make XLA treat
        the inputs it depends on as compile-time constants (one compilation per
        input value).
        """
        rows = tf.gather(tf.gather(tensor, window.image), window.y[:, 0])
        return tf.gather(rows, window.x[0], axis=1)

    def step(index, instance, votes, probability_sums):
        window = tiles_lib.window(tf.gather(tiles.ids, index), shape, tile_size)
        is_thing = tf.logical_and(window.own, read(thing_mask, window))
        pixel_offset = read(offset, window)
        grouping_args = (window.y, window.x, pixel_offset[..., 0], pixel_offset[..., 1])
        points = tf.gather(centers.points, window.image)
        order, num = grouping.candidate_centers(
            *grouping_args, is_thing, points, tf.gather(centers.count, window.image))
        nearest = grouping.nearest_center(*grouping_args, points, order, num)
        nearest = tf.reshape(tf.where(is_thing, nearest, 0), [-1])
        flat = tf.reshape((window.image * height + window.y) * width + window.x, [-1, 1])
        instance = tf.tensor_scatter_nd_add(instance, flat, nearest)
        classes = tf.one_hot(tf.gather(thing_index, tf.reshape(read(semantic, window), [-1])),
                             num_things, dtype=tf.int32)
        if upsample_scores:
            scores = resize.sample_window(class_scores, window.image, window.y[:, 0],
                                          window.x[0], (height, width))
        else:
            scores = read(class_scores, window)
        probabilities = _thing_probabilities(scores, use_logits, thing_class_ids)

        def add_instance(candidate, votes, probability_sums):
            """Adds the pixels of one candidate center to its rows."""
            center = tf.gather(order, candidate)
            member = (nearest == center + 1)[:, None]
            row = [[window.image * keep_k + center]]
            votes = tf.tensor_scatter_nd_add(
                votes, row, [tf.reduce_sum(tf.where(member, classes, 0), axis=0)])
            probability_sums = tf.tensor_scatter_nd_add(
                probability_sums, row,
                [tf.reduce_sum(tf.where(member, probabilities, 0.0), axis=0)])
            return candidate + 1, votes, probability_sums

        _, votes, probability_sums = tf.while_loop(
            lambda candidate, *_: candidate < num, add_instance,
            (tf.constant(0), votes, probability_sums))
        return index + 1, instance, votes, probability_sums

    _, instance, votes, probability_sums = tf.while_loop(
        lambda index, *_: index < tiles.count, step,
        (tf.constant(0), tf.zeros([batch * height * width], tf.int32),
         tf.zeros([batch * keep_k, num_things], tf.int32),
         tf.zeros([batch * keep_k, num_things], tf.float32)))
    return (tf.reshape(instance, shape), tf.reshape(votes, [batch, keep_k, num_things]),
            tf.reshape(probability_sums, [batch, keep_k, num_things]))


def _thing_probabilities(scores, use_logits, thing_class_ids):
    """[h, w, C] logits or probabilities -> [h * w, T] float32 thing-class probabilities."""
    scores = tf.reshape(tf.cast(scores, tf.float32), [-1, scores.shape[-1]])
    things = tf.gather(scores, thing_class_ids, axis=1)
    if not use_logits:
        return things
    top = tf.reduce_max(scores, axis=1, keepdims=True)
    return tf.exp(things - top) / tf.reduce_sum(tf.exp(scores - top), axis=1, keepdims=True)
