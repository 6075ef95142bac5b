"""Runs a model with optional test-time augmentation, then post-processes.

Test-time augmentation averages, over scales and left-right flips, the
semantic probabilities, the center heatmaps and the offsets (the x-offset of a
flipped pass is negated after flipping back), each resized to the input size
with align-corners bilinear resizing; offsets are rescaled to input pixels.
With scales (1.0,) and no flip it is exactly plain inference. Given the size
of each image inside its padded input, a scaled pass fills what lies beyond
the scaled image with the pad value, as training pads a scaled image, so
the model is not fed a band blending the last pixels with the padding. Image
sizes may be unknown when tracing (an exported model): sizes then are scalar
tensors.
"""
from typing import Callable, Dict, Optional, Sequence

import gin
import keras
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.augment import IMAGE_PAD_VALUE
from deeplab2.data.dataset_info import DatasetInfo
from deeplab2.postprocess import panoptic_deeplab

SEMANTIC_PROBABILITIES = "semantic_probabilities"


def _resize(images: tf.Tensor, size) -> tf.Tensor:
    return tf.compat.v1.image.resize_bilinear(images, size, align_corners=True)


def scaled_size(size, scale: float, output_stride: int):
    """`k * output_stride + 1` closest to a `scale` resize of a size of that form.

    `size` is an int or a scalar int32 tensor; both round half to even in float64.
    """
    if isinstance(size, int):
        return max(1, round((size - 1) * scale / output_stride)) * output_stride + 1
    k = tf.round(tf.cast(size - 1, tf.float64) * scale / output_stride)
    return tf.maximum(tf.cast(k, tf.int32), 1) * output_stride + 1


def _image_size(images: tf.Tensor):
    """(height, width) of NHWC images: ints when static, scalar tensors otherwise."""
    return tuple(images.shape[i] if images.shape[i] is not None else tf.shape(images)[i]
                 for i in (1, 2))


def _pad_beyond_images(resized: tf.Tensor, image_sizes: tf.Tensor, source_size) -> tf.Tensor:
    """Sets the pixels of a resized padded batch that sample the source beyond
    each image's last row or column (`image_sizes`, [batch, 2]) to the pad value.

    Output row r samples source row r * (H - 1) / (out_H - 1); it lies within
    an image of height h when r * (H - 1) <= (h - 1) * (out_H - 1), exactly in
    integers.
    """
    out_size = _image_size(resized)
    sizes = tf.cast(image_sizes, tf.int64)
    inside = []
    for axis in (0, 1):
        source = tf.cast(source_size[axis], tf.int64)
        out = tf.cast(out_size[axis], tf.int64)
        index = tf.range(out)[None, :]
        inside.append(index * (source - 1) <= (sizes[:, axis:axis + 1] - 1) * (out - 1))
    mask = tf.logical_and(inside[0][:, :, None], inside[1][:, None, :])
    return tf.where(mask[..., None], resized, tf.constant(IMAGE_PAD_VALUE, resized.dtype))


def image_sizes_of(batch: Dict[str, tf.Tensor]) -> tf.Tensor:
    """[batch, 2] (height, width) of each image of an evaluation pipeline batch."""
    return tf.stack([tf.cast(batch[common.IMAGE_HEIGHT], tf.int32),
                     tf.cast(batch[common.IMAGE_WIDTH], tf.int32)], axis=1)


class Predictor:
    """Model + TTA + Panoptic-DeepLab post-processing for one dataset."""

    def __init__(self, model: keras.Model, info: DatasetInfo, *,
                 output_stride: int = 32, scales: Sequence[float] = (1.0,),
                 flip: bool = False, center_threshold: float = 0.1,
                 nms_kernel: int = 7, keep_k_centers: int = 200,
                 stuff_area_limit: Optional[int] = None):
        if not scales:
            raise ValueError("scales must hold at least one scale.")
        self.model = model
        self.info = info
        self.output_stride = output_stride
        self.scales = tuple(float(s) for s in scales)
        self.flip = flip
        self.postprocess_options = dict(
            thing_class_ids=info.thing_ids, label_divisor=info.label_divisor,
            ignore_label=info.ignore_label,
            stuff_area_limit=(info.stuff_area_limit if stuff_area_limit is None
                              else stuff_area_limit),
            center_threshold=center_threshold, nms_kernel=nms_kernel,
            keep_k_centers=keep_k_centers)

    def _one_pass(self, images: tf.Tensor, scale: float, flip: bool,
                  image_sizes: Optional[tf.Tensor]) -> Dict[str, tf.Tensor]:
        height, width = _image_size(images)
        inputs = images
        if scale != 1.0:
            inputs = _resize(images, (scaled_size(height, scale, self.output_stride),
                                      scaled_size(width, scale, self.output_stride)))
            if image_sizes is not None:
                inputs = _pad_beyond_images(inputs, image_sizes, (height, width))
        if flip:
            inputs = tf.reverse(inputs, axis=[2])
        outputs = self.model(inputs, training=False)
        result = {SEMANTIC_PROBABILITIES: tf.nn.softmax(
            tf.cast(outputs[common.SEMANTIC_LOGITS], tf.float32), axis=-1)}
        if common.CENTER_HEATMAP in outputs:
            result[common.CENTER_HEATMAP] = tf.cast(outputs[common.CENTER_HEATMAP], tf.float32)
            result[common.OFFSET] = tf.cast(outputs[common.OFFSET], tf.float32)
        if flip:
            result = {k: tf.reverse(v, axis=[2]) for k, v in result.items()}
            if common.OFFSET in result:
                result[common.OFFSET] = result[common.OFFSET] * tf.constant([1.0, -1.0])
        if scale != 1.0:
            in_h, in_w = _image_size(inputs)
            result = {k: _resize(v, (height, width)) for k, v in result.items()}
            if common.OFFSET in result:
                ratio = tf.cast(tf.stack([(height - 1) / tf.maximum(in_h - 1, 1),
                                          (width - 1) / tf.maximum(in_w - 1, 1)]),
                                tf.float32)
                result[common.OFFSET] = result[common.OFFSET] * ratio
        return result

    def raw_predictions(self, images: tf.Tensor,
                        image_sizes: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
        """Semantic probabilities, center heatmap and offsets averaged over TTA
        passes; `image_sizes` ([batch, 2]) gives each image's size inside its
        padding, None treats the padding as part of the image."""
        images = tf.convert_to_tensor(images)
        if images.shape.rank != 4:
            raise ValueError(f"images must be [batch, height, width, 3], got shape "
                             f"{images.shape}.")
        passes = [self._one_pass(images, scale, flip, image_sizes) for scale in self.scales
                  for flip in ((False, True) if self.flip else (False,))]
        return {key: tf.add_n([p[key] for p in passes]) / len(passes) for key in passes[0]}

    def __call__(self, images: tf.Tensor,
                 image_sizes: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
        """Post-processed predictions plus the averaged raw outputs."""
        raw = self.raw_predictions(images, image_sizes)
        if common.CENTER_HEATMAP not in raw:
            return dict(raw, **{common.SEMANTIC: tf.argmax(
                raw[SEMANTIC_PROBABILITIES], axis=-1, output_type=tf.int32)})
        probabilities = raw[SEMANTIC_PROBABILITIES]
        predictions = panoptic_deeplab(
            None, raw[common.CENTER_HEATMAP], raw[common.OFFSET],
            semantic_probabilities=probabilities, **self.postprocess_options)
        predictions.update(raw)
        return predictions

    def batch_function(self, compiled: bool = True) -> Callable[[Dict], Dict[str, tf.Tensor]]:
        """Predictions of an evaluation pipeline batch (its padded images and
        their sizes), through one tf.function when `compiled`."""
        call = tf.function(self.__call__) if compiled else self.__call__
        return lambda batch: call(batch[common.IMAGE], image_sizes_of(batch))


@gin.configurable
def build_predictor(model: keras.Model, info: DatasetInfo, output_stride: int = 32,
                    scales: Sequence[float] = (1.0,), flip: bool = False,
                    center_threshold: float = 0.1, nms_kernel: int = 7,
                    keep_k_centers: int = 200,
                    stuff_area_limit: Optional[int] = None) -> Predictor:
    """The Gin-configurable entry: post-processing and TTA options of evaluation
    and export (`build_predictor.scales = (0.5, 0.75, 1.0, 1.25, 1.5)` etc.)."""
    return Predictor(model, info, output_stride=output_stride, scales=scales, flip=flip,
                     center_threshold=center_threshold, nms_kernel=nms_kernel,
                     keep_k_centers=keep_k_centers, stuff_area_limit=stuff_area_limit)
