"""The per-image steps of a top-down model (proposals, detections) over a batch.

`top_down.detections` works on one image with static shapes; these map it over
the images of a batch with `tf.map_fn` (a while loop under XLA), so the batch
size may be unknown when tracing. Outputs are the same named tuples, batched.
"""
from typing import Mapping, Sequence

import tensorflow as tf

from deeplab2.model.top_down.detections import (Detections, Proposals, generate_proposals,
                                                postprocess_detections)


def _levels(per_level: Mapping[str, tf.Tensor]) -> Sequence[str]:
    """RPNHead level names ("p2".."p6"), lowest level first."""
    return sorted(per_level, key=lambda level: int(level.lstrip("p")))


def batch_proposals(objectness: Mapping[str, tf.Tensor], deltas: Mapping[str, tf.Tensor],
                    anchors: Sequence[tf.Tensor], image_size, **options) -> Proposals:
    """`generate_proposals` of each image: boxes [B, P, 4], logits [B, P], valid [B, P].

    Args:
        objectness, deltas: RPNHead outputs {level: [B, N_l]}, {level: [B, N_l, 4]}.
        anchors: per level, lowest first, [N_l, 4].
        image_size: (height, width) boxes are clipped to.
        **options: `generate_proposals` options (top-k, NMS threshold).
    """
    levels = _levels(objectness)
    elements = ([tf.cast(objectness[level], tf.float32) for level in levels],
                [tf.cast(deltas[level], tf.float32) for level in levels])

    def one_image(element):
        proposals = generate_proposals(element[0], element[1], anchors, image_size, **options)
        return tuple(proposals)

    return Proposals(*tf.map_fn(one_image, elements,
                                fn_output_signature=(tf.float32, tf.float32, tf.bool)))


def batch_detections(class_probabilities: tf.Tensor, box_deltas: tf.Tensor, rois: tf.Tensor,
                     roi_valid: tf.Tensor, image_size, **options) -> Detections:
    """`postprocess_detections` of each image: boxes [B, D, 4], scores, classes,
    roi_indices and valid [B, D].

    Args:
        class_probabilities: [B, R, K + 1]; box_deltas: [B, R, 4K]; rois: [B, R, 4];
            roi_valid: [B, R] bool.
        image_size: (height, width) boxes are clipped to.
        **options: `postprocess_detections` options (thresholds, counts).
    """
    def one_image(element):
        probabilities, deltas, boxes, valid = element
        return tuple(postprocess_detections(probabilities, deltas, boxes, image_size,
                                            roi_valid=valid, **options))

    return Detections(*tf.map_fn(
        one_image, (tf.cast(class_probabilities, tf.float32), tf.cast(box_deltas, tf.float32),
                    rois, roi_valid),
        fn_output_signature=(tf.float32, tf.float32, tf.int32, tf.int32, tf.bool)))
