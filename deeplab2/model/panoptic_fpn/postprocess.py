"""Panoptic FPN outputs -> the common currency (deeplab2.model.meta.architecture).

1. Semantic: argmax of the logits, mapped to dataset class ids
   (`semantic_classes.prediction_table`; 'other' becomes the ignore label).
2. Instances: each detection's 28 x 28 mask probabilities pasted into the
   input-size image and thresholded at 0.5 (`top_down.paste`); its class
   1..K mapped to the dataset's thing id.
3. `top_down.panoptic_fusion.fuse_panoptic`: instances by score, overlap
   test, stuff segments of at least `stuff_area_limit` pixels. The instance
   tables (row i = instance id i + 1) and the instance map come from the same
   fusion, so mask AP reads exactly the pasted, de-overlapped masks. Also
   returns BOXES [B, N, 4], the detected box of each kept instance.
Static shapes but for H and W, which may be unknown when tracing (an
exported model); no float64; compiles with XLA.
"""
from typing import Dict

import tensorflow as tf

from deeplab2 import common
from deeplab2.data.dataset_info import DatasetInfo
from deeplab2.model.panoptic_fpn import semantic_classes
from deeplab2.model.top_down.panoptic_fusion import fuse_panoptic
from deeplab2.model.top_down.paste import paste_binary_masks


def panoptic_fpn_predictions(outputs: Dict[str, tf.Tensor], info: DatasetInfo, *,
                             semantic_other_class: bool, score_threshold: float,
                             overlap_threshold: float,
                             stuff_area_limit: int) -> Dict[str, tf.Tensor]:
    """The common currency plus BOXES of a batch of inference outputs."""
    logits = outputs[common.SEMANTIC_LOGITS]
    height, width = (logits.shape[i] if logits.shape[i] is not None
                     else tf.shape(logits)[i] for i in (1, 2))
    channel = tf.argmax(logits, axis=-1, output_type=tf.int32)
    semantic = tf.gather(semantic_classes.prediction_table(info, semantic_other_class), channel)

    boxes = tf.cast(outputs[common.DETECTION_BOXES], tf.float32)
    masks = tf.map_fn(
        lambda element: paste_binary_masks(element[0], element[1], height, width),
        (tf.cast(outputs[common.MASK_PROBABILITIES], tf.float32), boxes),
        fn_output_signature=tf.bool)
    valid = outputs[common.DETECTION_VALID] > 0
    thing_ids = tf.constant(info.thing_ids, tf.int32)
    classes = tf.where(valid, tf.gather(thing_ids, tf.clip_by_value(
        outputs[common.DETECTION_CLASSES] - 1, 0, len(info.thing_ids) - 1)), info.ignore_label)
    return fuse_panoptic(
        masks, outputs[common.DETECTION_SCORES], classes, valid, semantic,
        stuff_class_ids=info.stuff_ids, label_divisor=info.label_divisor,
        ignore_label=info.ignore_label, score_threshold=score_threshold,
        overlap_threshold=overlap_threshold, stuff_area_limit=stuff_area_limit, boxes=boxes)
