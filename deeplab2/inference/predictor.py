"""Runs a model with optional test-time size and augmentation, then its family's
post-processing.

Test-time size (`shorter_side`, `max_longer_side`) resizes each image of a
batch by its own factor into one static canvas before anything else, and
brings the post-processed maps and boxes back to the image's size after
(deeplab2.inference.resizing).

Everything comes from the model's `ModelConfig`: the family (its dense outputs
and post-processing), the dataset, the output stride (valid input sizes) and
the pad value. Test-time augmentation averages, over scales and left-right
flips, the dense outputs the family declares (softmax probabilities of logits,
maps as they are, offsets with the x component negated after a flip and
rescaled after a resize), each resized to the input size with align-corners
bilinear resizing. With scales (1.0,) and no flip it is plain inference:
the family post-processes the network's outputs as they come
(`MetaArchitecture.postprocess_network_outputs`), which for Panoptic-DeepLab
upsamples them inside its compiled post-processing and never stores the
full-resolution logits. Given the size of each image inside its padded input, a scaled pass
fills what lies beyond the scaled image with the pad value, as training pads a
scaled image, so the model is not fed a band blending the last pixels with
the padding. Image sizes may be unknown when tracing (an exported model):
sizes then are scalar tensors.

No float64 and no string tensor is used: the predictor runs inside exported
models and on TPUs.
"""
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import gin
import keras
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.augment import pad_image
from deeplab2.inference.resizing import (fit_inside, resize_into_canvas, sample_back,
                                         shorter_side_size)
from deeplab2.model.meta import MEAN, OFFSET, SOFTMAX, ModelConfig, get_meta_architecture


# Per-image predictions of `Predictor.predict_image`: maps, then instance tables.
MAP_KEYS = (common.PANOPTIC, common.SEMANTIC, common.INSTANCE)
INSTANCE_KEYS = (common.INSTANCE_SCORES, common.INSTANCE_CLASSES,
                       common.INSTANCE_PANOPTIC_IDS)


def _resize(images: tf.Tensor, size) -> tf.Tensor:
    return tf.compat.v1.image.resize_bilinear(images, size, align_corners=True)


def _image_size(images: tf.Tensor):
    """(height, width) of NHWC images: ints when static, scalar tensors otherwise."""
    return tuple(images.shape[i] if images.shape[i] is not None else tf.shape(images)[i]
                 for i in (1, 2))


def _inside_images(image_sizes: tf.Tensor, out_size, source_size) -> tf.Tensor:
    """[batch, out_H, out_W] bool: whether each pixel of a batch resized from
    `source_size` to `out_size` samples the source within its image
    (`image_sizes`, [batch, 2]); with equal sizes, whether it lies in it.

    Output row r samples source row r * (H - 1) / (out_H - 1); it lies within
    an image of height h when r * (H - 1) <= (h - 1) * (out_H - 1), exactly in
    int32 (sides up to 2**15).
    """
    sizes = tf.cast(image_sizes, tf.int32)
    inside = []
    for axis in (0, 1):
        source = tf.cast(source_size[axis], tf.int32)
        out = tf.cast(out_size[axis], tf.int32)
        index = tf.range(out)[None, :]
        inside.append(index * (source - 1) <= (sizes[:, axis:axis + 1] - 1) * (out - 1))
    return tf.logical_and(inside[0][:, :, None], inside[1][:, None, :])


def _pad_beyond_images(resized: tf.Tensor, image_sizes: tf.Tensor, source_size,
                       pad_value) -> tf.Tensor:
    """Sets the pixels of a resized padded batch that sample the source beyond
    each image's last row or column (`image_sizes`, [batch, 2]) to `pad_value`."""
    mask = _inside_images(image_sizes, _image_size(resized), source_size)
    return tf.where(mask[..., None], resized, tf.constant(pad_value, resized.dtype))


def _check_rank(images) -> tf.Tensor:
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4:
        raise ValueError(f"images must be [batch, height, width, 3], got shape "
                         f"{images.shape}.")
    return images


def image_sizes_of(batch: Dict[str, tf.Tensor]) -> tf.Tensor:
    """[batch, 2] (height, width) of each image of an evaluation pipeline batch."""
    return tf.stack([tf.cast(batch[common.IMAGE_HEIGHT], tf.int32),
                     tf.cast(batch[common.IMAGE_WIDTH], tf.int32)], axis=1)


class Predictor:
    """A model with test-time augmentation and its family's post-processing.

    Args:
        model: a model built by deeplab2 (it carries `model.model_config`).
        scales: test-time scales; (1.0,) for none.
        flip: also run left-right flipped passes.
        postprocess: post-processing options overriding the model's (e.g.
            {"nms_kernel": 13}), validated by the family.
        fit_size: (height, width): `predict_image` first shrinks an image
            larger than it to fit inside (aspect ratio kept, align-corners
            bilinear) and pads it to exactly that size, as
            google-research/deeplab2 evaluates;
            None runs images at their own size (padded to a valid size).
        shorter_side, max_longer_side: resize each image so that its shorter
            side is `shorter_side` pixels, or its longer side
            `max_longer_side` when that is smaller (the top-down papers'
            test-time size, e.g. 800 and 1333 on COCO), run the model on a
            square canvas of `max_longer_side` (padded to a size the model
            takes), then bring maps and boxes back to the image's own size
            (nearest neighbour for maps). None: no resize.
        network: images -> the family's `network_outputs` (e.g. an exported
            network file run on the host); by default the model's.
    """

    def __init__(self, model: keras.Model, *, scales: Sequence[float] = (1.0,),
                 flip: bool = False, postprocess: Optional[Mapping[str, Any]] = None,
                 fit_size: Optional[Sequence[int]] = None,
                 shorter_side: Optional[int] = None,
                 max_longer_side: Optional[int] = None,
                 network: Optional[Callable[[tf.Tensor], Dict[str, tf.Tensor]]] = None):
        config = getattr(model, "model_config", None)
        if not isinstance(config, ModelConfig):
            raise ValueError(f"model {model.name} has no model_config: build it with "
                             "deeplab2.build_model or load it with deeplab2.load_model.")
        if not scales:
            raise ValueError("scales must hold at least one scale.")
        self.model = model
        self.family = get_meta_architecture(config.meta_architecture)
        if network is None:
            network = lambda images: self.family.network_outputs(model, images)  # noqa: E731
        self.network = network
        if postprocess:
            config = self.family.resolve(
                config.replace(postprocess=dict(config.postprocess, **postprocess)))
        self.config = config
        self.scales = tuple(float(s) for s in scales)
        self.flip = bool(flip)
        self.fit_size = None
        if fit_size is not None:
            self.fit_size = tuple(int(side) for side in fit_size)
            valid = tuple(self.family.padded_size(side, config) for side in self.fit_size)
            if len(self.fit_size) != 2 or valid != self.fit_size:
                raise ValueError(f"fit_size must be (height, width) the model takes "
                                 f"(e.g. {valid}), got {tuple(fit_size)}.")
        self.shorter_side = self.max_longer_side = self.canvas = None
        if shorter_side is not None or max_longer_side is not None:
            sides = (shorter_side, max_longer_side)
            if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                       for v in sides) or shorter_side > max_longer_side:
                raise ValueError(f"shorter_side and max_longer_side must be positive "
                                 f"integers with shorter_side <= max_longer_side, got "
                                 f"{sides}.")
            if self.fit_size is not None:
                raise ValueError("fit_size and shorter_side are two ways to size images "
                                 "for the model: set one of them.")
            self.shorter_side, self.max_longer_side = sides
            side = self.family.padded_size(max_longer_side, config)
            self.canvas = (side, side)
        if (self.scales != (1.0,) or self.flip) and not self.family.dense_outputs:
            raise ValueError(f"the {self.family.name} meta-architecture has no dense "
                             "outputs to average: test-time augmentation (scales, flip) "
                             "is not available for it.")

    @property
    def info(self):
        return self.config.dataset

    @property
    def compute_dtype(self) -> str:
        """The network's arithmetic: "float32", or "bfloat16" for a model
        built with Keras's mixed_bfloat16 policy."""
        policy = getattr(self.model, "dtype_policy", None)
        return getattr(policy, "compute_dtype", "float32")

    def _upsampled_outputs(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
        """The model's outputs for `images`: its network's, upsampled by the family."""
        return self.family.upsample_network_outputs(self.network(images),
                                                    _image_size(images))

    def _one_pass(self, images: tf.Tensor, scale: float, flip: bool,
                  image_sizes: Optional[tf.Tensor]) -> Dict[str, tf.Tensor]:
        height, width = _image_size(images)
        inputs = images
        if scale != 1.0:
            inputs = _resize(images, (self.family.scaled_size(height, scale, self.config),
                                      self.family.scaled_size(width, scale, self.config)))
            if image_sizes is not None:
                inputs = _pad_beyond_images(inputs, image_sizes, (height, width),
                                            self.config.pad_value)
        if flip:
            inputs = tf.reverse(inputs, axis=[2])
        outputs = self._upsampled_outputs(inputs)
        result = {}
        for key, dense in self.family.dense_outputs.items():
            if key not in outputs:
                continue
            value = tf.cast(outputs[key], tf.float32)
            if dense.kind == SOFTMAX:
                value = tf.nn.softmax(value, axis=-1)
            if flip:
                value = tf.reverse(value, axis=[2])
                if dense.kind == OFFSET:
                    value = value * tf.constant([1.0, -1.0])
            if scale != 1.0:
                value = _resize(value, (height, width))
                if dense.kind == OFFSET:
                    in_h, in_w = _image_size(inputs)
                    ratio = tf.stack([
                        tf.cast(height - 1, tf.float32) / tf.cast(tf.maximum(in_h - 1, 1),
                                                                  tf.float32),
                        tf.cast(width - 1, tf.float32) / tf.cast(tf.maximum(in_w - 1, 1),
                                                                 tf.float32)])
                    value = value * ratio
            elif dense.kind not in (SOFTMAX, MEAN, OFFSET):
                raise ValueError(f"unknown dense output kind {dense.kind!r} of {key}.")
            result[dense.key] = value
        return result

    def raw_predictions(self, images: tf.Tensor,
                        image_sizes: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
        """The dense outputs combined over test-time augmentation passes (or the
        model's raw outputs for a family without dense outputs).

        `image_sizes` ([batch, 2]) gives each image's size inside its padding;
        None treats the padding as part of the image.
        """
        images = _check_rank(images)
        if not self.family.dense_outputs:
            return dict(self._upsampled_outputs(images))
        passes = [self._one_pass(images, scale, flip, image_sizes) for scale in self.scales
                  for flip in ((False, True) if self.flip else (False,))]
        return {key: tf.add_n([p[key] for p in passes]) / len(passes) for key in passes[0]}

    def __call__(self, images: tf.Tensor,
                 image_sizes: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
        """Post-processed predictions (see deeplab2.model.meta) plus the
        family's visual outputs (e.g. the center heatmap)."""
        if self.canvas is not None:
            return self._resized_call(tf.convert_to_tensor(images), image_sizes)
        return self._predict(images, image_sizes)

    def _predict(self, images: tf.Tensor, image_sizes: Optional[tf.Tensor]
                 ) -> Dict[str, tf.Tensor]:
        if self.scales == (1.0,) and not self.flip:
            images = _check_rank(images)
            return self.family.postprocess_network_outputs(
                self.network(images), _image_size(images), self.config,
                self.config.postprocess)
        raw = self.raw_predictions(images, image_sizes)
        predictions = self.family.postprocess(raw, self.config, self.config.postprocess)
        predictions.update({k: raw[k] for k in self.family.visual_outputs if k in raw})
        return predictions

    def _resized_call(self, images: tf.Tensor, image_sizes: Optional[tf.Tensor]
                      ) -> Dict[str, tf.Tensor]:
        """Predicts each image resized by its shorter side on the canvas, then
        returns maps at the input's size and boxes in the input's pixels."""
        size = _image_size(images)
        if image_sizes is None:
            image_sizes = tf.tile(tf.stack(size)[None], [tf.shape(images)[0], 1])
        image_sizes = tf.cast(image_sizes, tf.int32)
        # A filler's size 0 is resized as 1x1; its predictions are never read.
        sizes = tf.maximum(image_sizes, 1)
        canvas_sizes = shorter_side_size(sizes, self.shorter_side, self.max_longer_side)
        canvas = resize_into_canvas(images, sizes, canvas_sizes, self.canvas,
                                    self.config.pad_value, self.config.half_pixel_resize)
        predictions = self._predict(canvas, canvas_sizes)
        for key in MAP_KEYS + tuple(self.family.visual_outputs):
            if key in predictions:
                predictions[key] = sample_back(predictions[key], canvas_sizes, sizes, size)
        if common.BOXES in predictions:
            # (x0, y0, x1, y1) pixel edges: scaled by each image's own size
            # over its canvas size.
            ratio = tf.cast(sizes, tf.float32) / tf.cast(canvas_sizes, tf.float32)
            ratio = tf.tile(tf.reverse(ratio, axis=[1]), [1, 2])
            predictions[common.BOXES] = predictions[common.BOXES] * ratio[:, None, :]
        return predictions

    def batch_function(self, compiled: bool = True) -> Callable[[Dict], Dict[str, tf.Tensor]]:
        """Predictions of an evaluation pipeline batch (its padded images and
        their sizes), through one tf.function when `compiled`."""
        call = tf.function(self.__call__, autograph=False) if compiled else self.__call__
        return lambda batch: call(batch[common.IMAGE], image_sizes_of(batch))

    def prepare_image(self, image: tf.Tensor):
        """(model input [1, H, W, 3] float32, (height, width) of the image in it)
        for one HxWx3 image: resized to fit `fit_size` if set, then padded at
        the bottom/right with the pad value to a size the model takes."""
        image = tf.cast(image, tf.float32)
        shape = tf.shape(image)
        height, width = shape[0], shape[1]
        if self.fit_size is None:
            target = (self.family.padded_size(height, self.config),
                      self.family.padded_size(width, self.config))
        else:
            target = self.fit_size
            height, width = fit_inside(height, width, self.fit_size)
            image = _resize(image[None], tf.stack([height, width]))[0]
        paddings = [[0, target[0] - height], [0, target[1] - width], [0, 0]]
        return pad_image(image, paddings, self.config.pad_value)[None], (height, width)

    @property
    def image_output_keys(self) -> Tuple[str, ...]:
        """Keys of `predict_image`'s result: the maps, the instance tables and
        the family's `instance_outputs` (e.g. BOXES)."""
        return MAP_KEYS + INSTANCE_KEYS + tuple(self.family.instance_outputs)

    def predict_batch(self, images: tf.Tensor, image_sizes: tf.Tensor
                      ) -> Dict[str, tf.Tensor]:
        """A batch of HxWx3 images (any numeric dtype, values in [0, 255]),
        image i filling the top-left `image_sizes[i]` (height, width) of its
        slot -> predictions at the batch's size (`image_output_keys`).

        Pixels beyond an image are set to the pad value before the model
        (whatever the caller padded with) and are void in the maps (semantic
        ignore label, panoptic ignore id, instance 0); boxes are clipped to
        each image. Sizes may be unknown when tracing (the exported
        `serving_batch` signature)."""
        images = tf.cast(images, tf.float32)
        sizes = tf.cast(image_sizes, tf.int32)
        height, width = _image_size(images)
        inside = _inside_images(sizes, (height, width), (height, width))
        images = tf.where(inside[..., None], images,
                          tf.constant(self.config.pad_value, images.dtype))
        target = (self.family.padded_size(height, self.config),
                  self.family.padded_size(width, self.config))
        images = pad_image(images, [[0, 0], [0, target[0] - height],
                                    [0, target[1] - width], [0, 0]], self.config.pad_value)
        predictions = self(images, image_sizes=sizes)
        void = {common.PANOPTIC: self.info.ignore_panoptic_id,
                common.SEMANTIC: self.info.ignore_label, common.INSTANCE: 0}
        outputs = {}
        for key in self.image_output_keys:
            value = predictions[key]
            if key in MAP_KEYS:
                value = value[:, :height, :width]
                value = tf.where(inside, value, tf.constant(void[key], value.dtype))
            elif key == common.BOXES:
                limit = tf.cast(tf.tile(tf.reverse(sizes, axis=[1]), [1, 2]), value.dtype)
                value = tf.minimum(value, limit[:, None, :])
            outputs[key] = value
        return outputs

    def predict_image(self, image: tf.Tensor) -> Dict[str, tf.Tensor]:
        """One HxWx3 image (any numeric dtype, values in [0, 255]) -> its
        predictions at its size (`image_output_keys`): prepared
        (`prepare_image`), predicted, maps cropped back and BOXES clipped to
        the image (padding is at the bottom/right, so nothing shifts); with
        `fit_size`, maps resized back (nearest neighbour) and boxes scaled
        back. Works with sizes unknown when tracing (the exported signature)."""
        shape = tf.shape(image)
        images, (height, width) = self.prepare_image(image)
        predictions = self(images, image_sizes=tf.stack([height, width])[None])
        outputs = {}
        for key in self.image_output_keys:
            value = predictions[key][0]
            if key in MAP_KEYS:
                value = value[:height, :width]
                if self.fit_size is not None:
                    value = tf.image.resize(value[..., None], shape[:2],
                                            method="nearest")[..., 0]
            elif key == common.BOXES:
                # (x0, y0, x1, y1) in pixel edges, clipped to the image as the
                # maps are cropped, then scaled from the fitted to its own size.
                size = tf.cast(tf.stack([width, height]), tf.float32)
                value = tf.minimum(value, tf.tile(size, [2]))
                if self.fit_size is not None:
                    own = tf.cast(tf.stack([shape[1], shape[0]]), tf.float32)
                    value = value * tf.tile(own / size, [2])
            outputs[key] = value
        return outputs


@gin.configurable(denylist=["model"])
def build_predictor(model: keras.Model, scales: Sequence[float] = (1.0,),
                    flip: bool = False, shorter_side: Optional[int] = None,
                    max_longer_side: Optional[int] = None) -> Predictor:
    """The Gin edge of evaluation's test-time augmentation
    (`build_predictor.scales = (0.5, 0.75, 1.0, 1.25, 1.5)`, `build_predictor.flip`)
    and test-time size (`build_predictor.shorter_side = 800`,
    `build_predictor.max_longer_side = 1333`).

    Post-processing options are the model's (`build_model.postprocess`).
    """
    return Predictor(model, scales=scales, flip=flip, shorter_side=shorter_side,
                     max_longer_side=max_longer_side)
