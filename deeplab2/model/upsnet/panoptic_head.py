"""UPSNet's parameter-free panoptic head (paper 001 section 3.1, Fig. 3;
SPEC_TOP_DOWN.md section 3).

From the semantic logits X [B, H, W, C] (every class, stuff and things) and N
instance slots (box, class, 28 x 28 mask logits of that class), per pixel:
- stuff logits Z_stuff = X at the stuff channels;
- instance i: Z_i = Xmask_i + Ymask_i, where R_i are the pixels its box
  covers, Xmask_i = X at the channel of its class on R_i, Ymask_i its mask
  logits resized bilinearly (half-pixel, edge clamp) to R_i, both 0 outside R_i;
- unknown: Z_unk = max over thing channels of X - max(0, max_i Xmask_i).
Layout [stuff..., unknown, instance slots...]; invalid slots get PADDING_LOGIT.

Decisions:
- R_i is rows floor(y0)..ceil(y1) - 1 and the same for columns: the pixels a
  (x0, y0, x1, y1) box with exclusive x1, y1 covers (a ground-truth box spans
  exactly its instance's rows and columns). The spec's floor(y0)..floor(y1)
  assumes Detectron's inclusive corners; this is the same set in our convention.
- The max over instances always includes 0 (pixels outside a box have Xmask 0),
  so Z_unk does not depend on how many slots are padding; with no instance
  Z_unk is the best thing logit (the authors' code uses -10 there).
Training (`keep_random_instances`, `panoptic_targets`) and inference
(`prune_instances`, `panoptic_argmax`, `reassign_classes`) live here too; the model and the
post-processing call them. Static N; H and W may be unknown when tracing;
compiles with XLA.
"""
from typing import Sequence

import numpy as np
import tensorflow as tf

from deeplab2.model.top_down.nms import nms_padded

# Logit of an invalid instance slot: never the argmax, ~0 probability.
PADDING_LOGIT = -1e4
# Panoptic target of void pixels.
NO_TARGET = -1


def region_indicators(boxes: tf.Tensor, size) -> tf.Tensor:
    """[..., size] float32, 1 on the pixels of one axis that [..., 2] (start,
    end) box sides cover: floor(start)..ceil(end) - 1, clipped to the axis."""
    pixel = tf.range(size, dtype=tf.float32)
    first = tf.floor(boxes[..., 0:1])
    last = tf.math.ceil(boxes[..., 1:2]) - 1.0
    return tf.cast((pixel >= first) & (pixel <= last), tf.float32)


def box_regions(boxes: tf.Tensor, height, width) -> tf.Tensor:
    """[..., height, width] bool: the pixels R_i each [..., 4] (x0, y0, x1, y1) box covers."""
    rows = region_indicators(tf.gather(boxes, [1, 3], axis=-1), height)
    columns = region_indicators(tf.gather(boxes, [0, 2], axis=-1), width)
    return (rows[..., :, None] * columns[..., None, :]) > 0


def _resize_weights(boxes: tf.Tensor, size, grid: int) -> tf.Tensor:
    """[..., size, grid] bilinear weights (half-pixel, edge clamp) resizing `grid`
    cells onto the pixels each box side pair covers; zero rows outside."""
    pixel = tf.range(size, dtype=tf.float32)
    first = tf.floor(boxes[..., 0:1])
    length = tf.maximum(tf.math.ceil(boxes[..., 1:2]) - first, 1.0)
    u = tf.clip_by_value((pixel - first + 0.5) * grid / length - 0.5, 0.0, grid - 1.0)
    low = tf.floor(u)
    fraction = (u - low)[..., None]
    index = tf.cast(low, tf.int32)
    weights = (tf.one_hot(index, grid) * (1.0 - fraction)
               + tf.one_hot(tf.minimum(index + 1, grid - 1), grid) * fraction)
    return weights * region_indicators(boxes, size)[..., None]


def paste_region_logits(mask_logits: tf.Tensor, boxes: tf.Tensor, height, width) -> tf.Tensor:
    """Ymask: [B, N, M, M] logits resized onto each box's pixels R_i, 0 elsewhere:
    [B, N, height, width] float32. Boxes [B, N, 4] (x0, y0, x1, y1) in pixels."""
    grid = mask_logits.shape[-1]
    rows = _resize_weights(tf.gather(boxes, [1, 3], axis=-1), height, grid)
    columns = _resize_weights(tf.gather(boxes, [0, 2], axis=-1), width, grid)
    return tf.einsum("bnhi,bnij,bnwj->bnhw", rows, tf.cast(mask_logits, tf.float32), columns)


def panoptic_logits(semantic_logits: tf.Tensor, boxes: tf.Tensor, classes: tf.Tensor,
                    mask_logits: tf.Tensor, valid: tf.Tensor, *,
                    stuff_channels: Sequence[int], thing_channels: Sequence[int]) -> tf.Tensor:
    """Z [B, H, W, S + 1 + N]: stuff, unknown, then the N instance slots.

    Args:
        semantic_logits: X [B, H, W, C] on the canvas the boxes are given in.
        boxes: [B, N, 4] (x0, y0, x1, y1) in canvas pixels.
        classes: [B, N] int32 detection class 1..K of each slot.
        mask_logits: [B, N, M, M] mask logits of each slot's class.
        valid: [B, N] bool.
        stuff_channels: the S channels of X of the stuff classes, in stuff order.
        thing_channels: the channel of X of detection class k + 1, for each k.
    """
    logits = tf.cast(semantic_logits, tf.float32)
    height, width = tf.shape(logits)[1], tf.shape(logits)[2]
    boxes = tf.cast(boxes, tf.float32)
    inside = box_regions(boxes, height, width)
    channel = tf.gather(tf.constant(thing_channels, tf.int32),
                        tf.clip_by_value(classes - 1, 0, len(thing_channels) - 1))
    class_logits = tf.gather(tf.transpose(logits, [0, 3, 1, 2]), channel, batch_dims=1)
    valid_inside = inside & valid[:, :, None, None]
    x_mask = tf.where(valid_inside, class_logits, 0.0)
    y_mask = paste_region_logits(mask_logits, boxes, height, width)
    instance = tf.where(valid[:, :, None, None], x_mask + y_mask, PADDING_LOGIT)
    best_instance = tf.maximum(tf.reduce_max(x_mask, axis=1), 0.0)
    unknown = tf.reduce_max(tf.gather(logits, list(thing_channels), axis=-1), axis=-1)
    unknown = unknown - best_instance
    return tf.concat([tf.gather(logits, list(stuff_channels), axis=-1), unknown[..., None],
                      tf.transpose(instance, [0, 2, 3, 1])], axis=-1)


def keep_random_instances(valid: tf.Tensor, seed: tf.Tensor,
                          keep_fraction: float = 0.7) -> tf.Tensor:
    """[B, N] bool: per image, max(floor(keep_fraction * n), 1) of its n valid
    instances chosen uniformly at random (none if n = 0). The others become
    unknown in training: the head learns to predict it (paper 001: "30%")."""
    count = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
    keep = tf.where(count > 0, tf.maximum(
        tf.cast(tf.floor(keep_fraction * tf.cast(count, tf.float32)), tf.int32), 1), 0)
    draw = tf.random.stateless_uniform(tf.shape(valid), seed)
    # Valid instances first, in random order: keep the first `keep`.
    rank = tf.argsort(tf.argsort(tf.where(valid, draw, 2.0), axis=1), axis=1)
    return valid & (rank < keep[:, None])


def panoptic_targets(panoptic_label: tf.Tensor, slot_ids: tf.Tensor, kept: tf.Tensor, *,
                     stuff_class_ids: Sequence[int], thing_class_ids: Sequence[int],
                     label_divisor: int) -> tf.Tensor:
    """int32 [B, H, W] target index into Z's layout of each label pixel.

    A stuff pixel targets its stuff index, a pixel of a kept slot (its panoptic
    id in `slot_ids` [B, N], `kept` [B, N]) its slot S + 1 + i, any other thing
    pixel (dropped or crowd) the unknown class S, and void NO_TARGET.
    """
    label = tf.cast(panoptic_label, tf.int32)
    num_stuff = len(stuff_class_ids)
    table_size = max(list(stuff_class_ids) + list(thing_class_ids)) + 1
    table = np.full([table_size + 1], NO_TARGET, np.int32)
    table[list(thing_class_ids)] = num_stuff
    table[list(stuff_class_ids)] = np.arange(num_stuff)
    classes = label // label_divisor
    per_class = tf.gather(table, tf.where((classes >= 0) & (classes < table_size),
                                          classes, table_size))
    match = (label[..., None] == slot_ids[:, None, None, :]) & kept[:, None, None, :]
    slot = tf.argmax(tf.cast(match, tf.int32), axis=-1, output_type=tf.int32)
    return tf.where((per_class == num_stuff) & tf.reduce_any(match, axis=-1),
                    num_stuff + 1 + slot, per_class)


def _instance_at(values: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """Row `index[b]` of each image's [B, N, ...] `values`, kept as [B, 1, ...]."""
    return tf.gather(values, index[:, None], batch_dims=1)


def prune_instances(boxes: tf.Tensor, scores: tf.Tensor, classes: tf.Tensor,
                    valid: tf.Tensor, mask_logits: tf.Tensor, height, width, *,
                    score_threshold: float = 0.6, nms_threshold: float = 0.5,
                    overlap_threshold: float = 0.3) -> tf.Tensor:
    """Inference pruning (paper 001 section 3.2): [B, N] bool, the detections kept.

    Detections scoring > `score_threshold` go through class-agnostic NMS at
    `nms_threshold`; the survivors are visited by score with one canvas per
    class: a detection whose mask (its pasted logits > 0 on a `height` x
    `width` image, `paste_region_logits`) is empty, or covered by its class's
    canvas for more than `overlap_threshold` of its area, is dropped;
    otherwise its mask joins the canvas. Classes never share a canvas, so the
    survivors are visited class by class (by score within a class) with one
    [B, H, W] canvas cleared when the class changes, and each mask is pasted
    when visited: memory stays at a few image-size maps.
    """
    num = boxes.shape[1]
    boxes = tf.cast(boxes, tf.float32)
    candidates = valid & (scores > score_threshold)

    def nms_one(element):
        selection = nms_padded(element[0], element[1], element[2], max_output=num,
                               iou_threshold=nms_threshold)
        return selection.indices, selection.valid

    order, order_valid = tf.map_fn(nms_one, (boxes, tf.cast(scores, tf.float32), candidates),
                                   fn_output_signature=(tf.int32, tf.bool))
    # Survivors by (class, score), the others last.
    ordered_classes = tf.gather(classes, order, batch_dims=1)
    last = tf.reduce_max(classes) + 1
    by_class = tf.argsort(tf.where(order_valid, ordered_classes, last) * num + tf.range(num),
                          axis=1, stable=True)
    order = tf.gather(order, by_class, batch_dims=1)
    order_valid = tf.gather(order_valid, by_class, batch_dims=1)
    batch = tf.shape(boxes)[0]

    # Column i is read with tf.gather (x[:, i] with the loop counter
    # miscompiles under XLA in TF 2.21).
    def step(i, canvas, previous_class, kept):
        index = tf.gather(order, i, axis=1)
        mask = paste_region_logits(_instance_at(mask_logits, index),
                                   _instance_at(boxes, index), height, width)[:, 0] > 0
        cls = tf.gather(classes, index, batch_dims=1)
        canvas = canvas & (cls == previous_class)[:, None, None]
        area = tf.reduce_sum(tf.cast(mask, tf.int32), axis=[1, 2])
        covered = tf.reduce_sum(tf.cast(mask & canvas, tf.int32), axis=[1, 2])
        keep = (tf.gather(order_valid, i, axis=1) & (area > 0)
                & ~(tf.cast(covered, tf.float32)
                    > overlap_threshold * tf.cast(area, tf.float32)))
        canvas = canvas | (mask & keep[:, None, None])
        kept = kept | (tf.one_hot(index, num, on_value=True, off_value=False) & keep[:, None])
        return i + 1, canvas, cls, kept

    canvas = tf.zeros(tf.stack([batch, height, width]), tf.bool)
    _, _, _, kept = tf.while_loop(
        lambda i, *_: i < num, step,
        (tf.constant(0), canvas, tf.fill([batch], -1), tf.zeros_like(valid)))
    return kept


def panoptic_argmax(semantic_logits: tf.Tensor, boxes: tf.Tensor, classes: tf.Tensor,
                    mask_logits: tf.Tensor, valid: tf.Tensor, *,
                    stuff_channels: Sequence[int], thing_channels: Sequence[int]) -> tf.Tensor:
    """int32 [B, H, W]: the argmax of `panoptic_logits` (same arguments, ties to
    the lower index) without its [B, H, W, S + 1 + N] logits: the instances
    are visited one at a time keeping the running best, so memory stays at a
    few [B, H, W] maps (inference runs it at input resolution)."""
    logits = tf.cast(semantic_logits, tf.float32)
    height, width = tf.shape(logits)[1], tf.shape(logits)[2]
    boxes = tf.cast(boxes, tf.float32)
    num = boxes.shape[1]
    stuff = tf.gather(logits, list(stuff_channels), axis=-1)
    best_thing = tf.reduce_max(tf.gather(logits, list(thing_channels), axis=-1), axis=-1)
    channels = tf.gather(tf.constant(thing_channels, tf.int32),
                         tf.clip_by_value(classes - 1, 0, len(thing_channels) - 1))

    def step(i, best, best_slot, best_x_mask):
        index = tf.fill([tf.shape(boxes)[0]], i)
        box = _instance_at(boxes, index)
        inside = box_regions(box, height, width)[:, 0]
        is_valid = tf.gather(valid, i, axis=1)[:, None, None]
        class_logits = tf.gather(logits, tf.gather(channels, [i], axis=1), axis=3,
                                 batch_dims=1)[..., 0]
        x_mask = tf.where(inside & is_valid, class_logits, 0.0)
        z = x_mask + paste_region_logits(_instance_at(mask_logits, index), box,
                                         height, width)[:, 0]
        better = is_valid & (z > best)
        return (i + 1, tf.where(better, z, best), tf.where(better, i, best_slot),
                tf.maximum(best_x_mask, x_mask))

    zeros = tf.zeros_like(best_thing)
    _, best_instance, slot, best_x_mask = tf.while_loop(
        lambda i, *_: i < num, step,
        (tf.constant(0), zeros + PADDING_LOGIT, tf.zeros_like(best_thing, tf.int32), zeros))
    num_stuff = len(stuff_channels)
    unknown = best_thing - best_x_mask
    best = tf.reduce_max(stuff, axis=-1)
    result = tf.argmax(stuff, axis=-1, output_type=tf.int32)
    result = tf.where(unknown > best, num_stuff, result)
    best = tf.maximum(best, unknown)
    return tf.where(best_instance > best, num_stuff + 1 + slot, result)


def reassign_classes(assignment: tf.Tensor, semantic: tf.Tensor, classes: tf.Tensor, *,
                     num_stuff: int, stuff_class_ids: Sequence[int],
                     num_classes: int) -> tf.Tensor:
    """Instance class re-assignment (paper 001 section 3.2): [B, N] int32, the
    stuff class each instance's pixels merge into, -1 if it stays an instance.

    Args:
        assignment: [B, H, W] argmax of Z (instance slot i is num_stuff + 1 + i).
        semantic: [B, H, W] int32 argmax of the semantic logits (class ids
            0..num_classes - 1).
        classes: [B, N] int32 class id C_i of each slot.

    With m the most frequent semantic class over instance i's pixels (ties to
    the lower id): if m is C_i, or m is not stuff, or m covers at most half of
    the pixels, the instance keeps C_i; otherwise it merges into stuff m.
    """
    num = classes.shape[1]
    slot = assignment - (num_stuff + 1)
    is_instance = slot >= 0
    batch = tf.shape(assignment)[0]
    segment = ((tf.range(batch)[:, None, None] * num + tf.where(is_instance, slot, 0))
               * num_classes + tf.clip_by_value(semantic, 0, num_classes - 1))
    histogram = tf.math.unsorted_segment_sum(tf.cast(is_instance, tf.int32), segment,
                                             batch * num * num_classes)
    histogram = tf.reshape(histogram, [batch, num, num_classes])
    mode = tf.argmax(histogram, axis=-1, output_type=tf.int32)
    mode_count = tf.reduce_max(histogram, axis=-1)
    area = tf.reduce_sum(histogram, axis=-1)
    stuff = np.zeros([num_classes], bool)
    stuff[list(stuff_class_ids)] = True
    merge = (tf.gather(stuff, mode) & (mode != classes) & (2 * mode_count > area))
    return tf.where(merge, mode, -1)
