"""Panoptic-DeepLab post-processing: model outputs -> semantic, instance and panoptic maps.

Paper 000 sections 3.2-3.3 and SPEC section 6, batched and compiled with XLA:
1. semantic = argmax of the logits (or of given probabilities, e.g. TTA averages);
2. centers = top-k keypoint-NMS peaks of the thresholded heatmap (centers.py);
3. each thing pixel joins the center nearest to pixel + offset; instance id =
   center index + 1; stuff pixels, and every pixel of an image without centers,
   get instance 0 (grouping.py);
4. majority vote, stuff area limit and per-class renumbering (merge.py);
5. instance score = heatmap value at the center x mean probability of the
   instance's class over its pixels.
Steps 3-5 only visit the image tiles that hold thing pixels (instances.py).

Given an `output_size`, the inputs are the network's heads at a lower
resolution (stride 4) and are upsampled inside, as the model's own upsampling
does (align-corners bilinear, offsets rescaled): the heatmap and offsets at
full resolution, while the class logits are only read through their argmax
and through the tiles of step 5, so no full-resolution [H, W, classes] tensor
is ever stored.
"""
from typing import Dict, Optional, Sequence

import tensorflow as tf

from deeplab2 import common
from deeplab2.model.layers import resize
from deeplab2.model.panoptic_deeplab.postprocess import centers as centers_lib
from deeplab2.model.panoptic_deeplab.postprocess import instances
from deeplab2.model.panoptic_deeplab.postprocess import merge


def panoptic_deeplab(semantic_logits: Optional[tf.Tensor], center_heatmap: tf.Tensor,
                     offset: tf.Tensor, *, thing_class_ids: Sequence[int],
                     label_divisor: int, ignore_label: int, stuff_area_limit: int,
                     center_threshold: float = 0.1, nms_kernel: int = 7,
                     keep_k_centers: int = 200,
                     semantic_probabilities: Optional[tf.Tensor] = None,
                     output_size: Optional[Sequence] = None,
                     tile_size: int = 32) -> Dict[str, tf.Tensor]:
    """Turns batched Panoptic-DeepLab outputs into panoptic predictions (XLA-compiled).

    Args:
        semantic_logits: [B, H, W, C]; None when `semantic_probabilities` is given.
        center_heatmap: [B, H, W, 1].
        offset: [B, H, W, 2] (y, x), pixel + offset = predicted center.
        thing_class_ids: class ids that have instances.
        label_divisor, ignore_label: panoptic id = class * label_divisor + k;
            void = ignore_label * label_divisor.
        stuff_area_limit: a stuff class covering at most this many pixels of an
            image becomes void there.
        center_threshold, nms_kernel (odd), keep_k_centers: center selection.
        semantic_probabilities: [B, H, W, C] softmax probabilities used instead of
            the logits (test-time augmentation averages probabilities).
        output_size: (H, W), ints or int32 scalars: the three inputs are at a
            lower resolution [B, h, w, ...] and are upsampled to it inside
            (see the module's docstring); needs the logits.
        tile_size: side of the tiles that grouping and scoring visit; changes
            speed only (and the float summation order of scores).

    Returns:
        A dict of int32 [B, H, W] maps `common.SEMANTIC`, `common.INSTANCE`
        (center index + 1 for grouped thing pixels, else 0) and `common.PANOPTIC`,
        and per-instance [B, K] tensors (K = keep_k_centers; row i describes
        instance id i + 1): `common.INSTANCE_SCORES` float32 (objectness x mean
        class probability; 0 for instances without pixels or centers),
        `INSTANCE_CLASSES` (ignore_label when the instance does not exist),
        `INSTANCE_PANOPTIC_IDS` (void when it does not exist), and
        `INSTANCE_CENTERS` [B, K, 2] int32 (y, x) of each center, -1 padded.
        With `output_size`, also the upsampled `CENTER_HEATMAP` [B, H, W, 1]
        and `OFFSET` [B, H, W, 2] float32.
    """
    if (semantic_logits is None) == (semantic_probabilities is None):
        raise ValueError("Pass exactly one of semantic_logits and semantic_probabilities.")
    if nms_kernel < 1 or nms_kernel % 2 == 0:
        raise ValueError(f"nms_kernel must be a positive odd number, got {nms_kernel}.")
    if not 0 < keep_k_centers < label_divisor:
        raise ValueError(f"keep_k_centers ({keep_k_centers}) must be in "
                         f"[1, label_divisor={label_divisor}) to keep ids unique.")
    if not thing_class_ids:
        raise ValueError("thing_class_ids is empty: there is nothing to group.")
    static_size = None
    if output_size is not None:
        if semantic_logits is None:
            raise ValueError("output_size needs semantic_logits: upsampled class "
                             "probabilities would be stored at full resolution.")
        if len(output_size) != 2:
            raise ValueError(f"output_size must be (height, width), got {output_size!r}.")
        if all(isinstance(side, int) for side in output_size):
            if min(output_size) < 1:
                raise ValueError(f"output_size must be positive, got {output_size!r}.")
            static_size = tuple(output_size)
        sizes = {tuple(t.shape[1:3]) for t in (semantic_logits, center_heatmap, offset)}
        if len(sizes) > 1 and all(None not in size for size in sizes):
            raise ValueError(f"the heads must share one height and width, got {sorted(sizes)}.")
        output_size = tf.cast(tf.stack(output_size), tf.int32)
    result = _compiled_postprocess(
        semantic_logits, semantic_probabilities, center_heatmap, offset, output_size,
        thing_class_ids=tuple(sorted(int(c) for c in thing_class_ids)),
        label_divisor=int(label_divisor), ignore_label=int(ignore_label),
        stuff_area_limit=int(stuff_area_limit),
        center_threshold=float(center_threshold), nms_kernel=int(nms_kernel),
        keep_k_centers=int(keep_k_centers), tile_size=int(tile_size))
    if static_size is not None:  # the size went in as a tensor
        for key in (common.SEMANTIC, common.INSTANCE, common.PANOPTIC, common.CENTER_HEATMAP,
                    common.OFFSET):
            value = result[key]
            value.set_shape(value.shape[:1].concatenate(static_size)
                            .concatenate(value.shape[3:]))
    return result


def upsampled_argmax(logits: tf.Tensor, size) -> tf.Tensor:
    """[B, H, W] int32 argmax over classes of [B, h, w, C] logits upsampled to
    `size` (align-corners bilinear); under XLA the upsampled logits are
    computed pixel by pixel inside the argmax, never stored."""
    return tf.argmax(resize.resize_by_sampling(tf.cast(logits, tf.float32), size),
                     axis=-1, output_type=tf.int32)


def upsample_heads(center_heatmap: tf.Tensor, offset: tf.Tensor, size):
    """The heatmap and offsets at stride 4 -> at `size`, as the model upsamples
    them (PanopticDeepLab.upsample_outputs): offsets are rescaled per axis."""
    heat = resize.resize_by_sampling(tf.cast(center_heatmap, tf.float32), size)
    offset = tf.cast(offset, tf.float32)
    scale = resize.scale_align_corners(tf.shape(offset)[1:3], size)
    return heat, resize.resize_by_sampling(offset, size) * scale


def _postprocess(semantic_logits, semantic_probabilities, center_heatmap, offset,
                 output_size, *, thing_class_ids, label_divisor, ignore_label,
                 stuff_area_limit, center_threshold, nms_kernel, keep_k_centers,
                 tile_size):
    """The graph of `panoptic_deeplab`; static options are Python values."""
    use_logits = semantic_probabilities is None
    class_scores = semantic_logits if use_logits else semantic_probabilities
    for tensor in (class_scores, center_heatmap, offset):
        if tensor.shape.rank != 4 or tensor.shape[-1] is None:
            raise ValueError(f"Post-processing needs [batch, height, width, channels] "
                             f"inputs with static channels, got {tensor.shape}.")
    num_classes = class_scores.shape[-1]
    upsampled = {}
    if output_size is None:
        semantic = tf.argmax(class_scores, axis=-1, output_type=tf.int32)
        offset = tf.cast(offset, tf.float32)
    else:
        size = (output_size[0], output_size[1])
        class_scores = tf.cast(class_scores, tf.float32)
        semantic = upsampled_argmax(class_scores, size)
        center_heatmap, offset = upsample_heads(center_heatmap, offset, size)
        upsampled = {common.CENTER_HEATMAP: center_heatmap, common.OFFSET: offset}
    centers = centers_lib.find_centers(center_heatmap, threshold=center_threshold,
                                       nms_kernel=nms_kernel, keep_k=keep_k_centers)
    instance, votes, probability_sums = instances.group_and_count(
        semantic, class_scores, use_logits, offset, centers,
        thing_class_ids=thing_class_ids, tile_size=tile_size,
        upsample_scores=output_size is not None)
    table = merge.instance_table(votes, probability_sums, centers.scores,
                                 thing_class_ids=thing_class_ids,
                                 label_divisor=label_divisor, ignore_label=ignore_label)
    stuff_table = merge.stuff_ids(semantic, num_classes=num_classes,
                                  thing_class_ids=thing_class_ids,
                                  label_divisor=label_divisor, ignore_label=ignore_label,
                                  stuff_area_limit=stuff_area_limit)
    return {
        common.SEMANTIC: semantic,
        common.INSTANCE: instance,
        common.PANOPTIC: merge.panoptic_map(semantic, instance, table.panoptic_ids,
                                            stuff_table),
        common.INSTANCE_SCORES: table.scores,
        common.INSTANCE_CLASSES: table.classes,
        common.INSTANCE_PANOPTIC_IDS: table.panoptic_ids,
        common.INSTANCE_CENTERS: centers.points,
        **upsampled,
    }


_compiled_postprocess = tf.function(_postprocess, jit_compile=True, autograph=False)
