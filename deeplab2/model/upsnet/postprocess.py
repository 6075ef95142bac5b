"""UPSNet outputs -> the common currency (deeplab2.model.meta.architecture).

Paper 001 section 3.2, at input resolution (SPEC_TOP_DOWN.md section 3):
1. `panoptic_head.prune_instances`: score > `score_threshold`, class-agnostic
   NMS, per-class canvases dropping masks covered beyond `overlap_threshold`;
2. `panoptic_head.panoptic_argmax` of the panoptic logits Z of the kept
   detections: each pixel becomes a stuff class, unknown or an instance;
3. `panoptic_head.reassign_classes`: an instance whose pixels are mostly one
   stuff class in the semantic argmax merges into that stuff class;
4. `top_down.panoptic_fusion.fuse_panoptic` turns this (disjoint) assignment
   into the maps and instance tables: instance ids by score, unknown pixels
   void, a stuff class with fewer than `stuff_area_limit` pixels void.
Also returns BOXES, the detected box of each kept instance. Static shapes but
for H and W; compiles with XLA.
"""
from typing import Dict

import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.dataset_info import DatasetInfo
from deeplab2.model.panoptic_fpn import semantic_classes
from deeplab2.model.top_down.panoptic_fusion import fuse_panoptic
from deeplab2.model.upsnet import panoptic_head
from deeplab2.model.upsnet.model import DETECTION_MASK_LOGITS


def upsnet_predictions(outputs: Dict[str, tf.Tensor], info: DatasetInfo, *,
                       score_threshold: float, nms_threshold: float,
                       overlap_threshold: float, stuff_area_limit: int) -> Dict[str, tf.Tensor]:
    """The common currency plus BOXES of a batch of inference outputs; the
    semantic channels are the dataset's classes but void
    (`semantic_classes.channel_classes` without 'other')."""
    logits = tf.cast(outputs[common.SEMANTIC_LOGITS], tf.float32)
    height, width = (logits.shape[i] if logits.shape[i] is not None
                     else tf.shape(logits)[i] for i in (1, 2))
    boxes = tf.cast(outputs[common.DETECTION_BOXES], tf.float32)
    scores = tf.cast(outputs[common.DETECTION_SCORES], tf.float32)
    classes = outputs[common.DETECTION_CLASSES]
    mask_logits = outputs[DETECTION_MASK_LOGITS]
    stuff_ids, thing_ids = list(info.stuff_ids), list(info.thing_ids)
    channels = semantic_classes.channel_classes(info, other_class=False)
    kept = panoptic_head.prune_instances(
        boxes, scores, classes, outputs[common.DETECTION_VALID] > 0, mask_logits,
        height, width, score_threshold=score_threshold,
        nms_threshold=nms_threshold, overlap_threshold=overlap_threshold)
    assignment = panoptic_head.panoptic_argmax(
        logits, boxes, classes, mask_logits, kept,
        stuff_channels=[channels.index(c) for c in stuff_ids],
        thing_channels=[channels.index(c) for c in thing_ids])
    semantic = tf.gather(semantic_classes.prediction_table(info, other_class=False),
                         tf.argmax(logits, axis=-1, output_type=tf.int32))
    class_ids = tf.gather(tf.constant(thing_ids, tf.int32),
                          tf.clip_by_value(classes - 1, 0, len(thing_ids) - 1))
    num_stuff = len(stuff_ids)
    merged = panoptic_head.reassign_classes(assignment, semantic, class_ids,
                                            num_stuff=num_stuff, stuff_class_ids=stuff_ids,
                                            num_classes=info.num_classes)
    num = boxes.shape[1]
    slot = assignment - (num_stuff + 1)
    is_instance = slot >= 0
    pixel_merged = tf.gather(merged, tf.maximum(slot, 0), batch_dims=1)
    # Semantic map the fusion reads off the free pixels: the stuff class of a
    # stuff slot, the merged-into class of a merged instance, void otherwise
    # (unknown, and instances, whose pixels are their masks below).
    stuff_classes = np.array(stuff_ids + [info.ignore_label], np.int32)
    fused_semantic = tf.where(
        is_instance, tf.where(pixel_merged >= 0, pixel_merged, info.ignore_label),
        tf.gather(stuff_classes, tf.minimum(assignment, num_stuff)))
    masks = (slot[:, None] == tf.range(num)[None, :, None, None]) & is_instance[:, None]
    return fuse_panoptic(
        masks, scores, class_ids, kept & (merged < 0), fused_semantic,
        stuff_class_ids=stuff_ids, label_divisor=info.label_divisor,
        ignore_label=info.ignore_label, score_threshold=0.0, overlap_threshold=1.0,
        stuff_area_limit=stuff_area_limit, boxes=boxes)
