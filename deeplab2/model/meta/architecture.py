"""The contract between a model family and the rest of the library.

A meta-architecture (Panoptic-DeepLab, Panoptic FPN, ...) is one object that
the trainer, the evaluator, the predictor, the exporter and the profiler talk
to; none of them branches on a family's name. It says:

- `resolve`: which architecture and post-processing options the family takes,
  with their defaults, and which output strides and crops it accepts,
  validated (a typo is an error naming the option);
- `build`: the Keras model for a `ModelConfig`: float images in [0, 255]
  `[B, H, W, 3]` in, a dict of named float32 tensors out (the family's
  `output_keys`); H and W may be unknown when the model is traced (an
  exported model serves images of any size, padded to `padded_size`);
- `training_targets`: what the input pipeline adds to each example for
  training, computed from the panoptic label;
- `training_outputs`: the model's forward pass on a training batch (by
  default on its images alone; a family whose model needs the ground truth,
  e.g. to sample RoIs, passes it too);
- `training_loss`: per-image losses of a batch (targets, outputs), one of them
  `TOTAL_LOSS`;
- `postprocess`: raw outputs (test-time augmented when the family declares
  `dense_outputs`) to the common currency of predictions, below;
  `postprocess_network_outputs` the same for a plain pass, from the network's
  outputs before any upsampling.

The common currency, batched, int32 unless said otherwise:
    SEMANTIC, INSTANCE, PANOPTIC: [B, H, W] maps
        (panoptic id = class * label_divisor + k, void = ignore * divisor);
    INSTANCE_SCORES (float32), INSTANCE_CLASSES, INSTANCE_PANOPTIC_IDS: [B, K]
        tables, row i describing instance id i + 1 (void rows for none);
plus the family's `instance_outputs`, further [B, K, ...] tables (e.g.
BOXES) that prediction and export pass through.
"""
import abc
from typing import Any, Callable, Dict, Mapping, NamedTuple, Tuple

import keras
import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.augment import validate_crop_size

TOTAL_LOSS = "total_loss"

# How test-time augmentation combines one dense output over passes.
SOFTMAX = "softmax"  # class logits: the softmax probabilities are averaged
MEAN = "mean"  # a map averaged as it is (e.g. a center heatmap)
OFFSET = "offset"  # (y, x) displacements in pixels: a flip negates x, a
                   # scale multiplies them by the size ratio, then averaged


class DenseOutput(NamedTuple):
    """One raw output at input resolution and how TTA combines it.

    kind: SOFTMAX, MEAN or OFFSET.
    key: the key of the combined value given to `postprocess` (for SOFTMAX the
        probabilities, e.g. "semantic_probabilities").
    """
    kind: str
    key: str


class MetaArchitecture(abc.ABC):
    """A model family. Subclasses set the class attributes and implement the methods."""

    #: Registry name, e.g. "panoptic_deeplab".
    name: str = ""
    #: Keys of the dict the model returns.
    output_keys: Tuple[str, ...] = ()
    #: Raw outputs that test-time augmentation combines, by output key. A
    #: family whose post-processing reads other outputs (e.g. boxes) leaves
    #: this empty and gets no test-time augmentation.
    dense_outputs: Mapping[str, DenseOutput] = {}
    #: Per-instance tables `postprocess` returns besides the common currency,
    #: [B, K, ...] with row i describing instance id i + 1, e.g. BOXES (a
    #: common key, whose boxes a Predictor rescales with a `fit_size`
    #: resize). `Predictor.predict_image` and exported models return them too.
    instance_outputs: Tuple[str, ...] = ()
    #: Combined outputs worth drawing in prediction pictures (besides the
    #: semantic and panoptic maps), e.g. a center heatmap.
    visual_outputs: Tuple[str, ...] = ()
    #: Whether training resizes use the half-pixel convention (align_corners
    #: False, sides `round(size * scale)`, as detectron2) instead of align
    #: corners with `k * stride + 1` sizes (deeplab2.data.augment).
    half_pixel_resize: bool = False
    #: Names of the model's layers an int8 export keeps float: those the
    #: thresholded and compared outputs come from (deeplab2.export.tflite).
    int8_float_layers: Tuple[str, ...] = ()
    #: Checkpoint formats of other code bases the family's models initialize
    #: from (`deeplab2.model.checkpoints.ForeignFormat`), e.g. deeplab2's.
    foreign_checkpoint_formats: Tuple[Callable, ...] = ()

    def complete_options(self, given: Mapping[str, Any], defaults: Mapping[str, Any],
                         what: str) -> Dict[str, Any]:
        """`defaults` updated with `given`; an option not in `defaults` is an
        error naming the family, `what` (e.g. "architecture") and the options."""
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ValueError(f"unknown {self.name} {what} option(s) {unknown}; the "
                             f"options are: {', '.join(sorted(defaults))}.")
        return dict(defaults, **given)

    @abc.abstractmethod
    def resolve(self, config):
        """Validates a `ModelConfig` and fills in the family's defaults.

        Returns the complete config (architecture and post-processing dicts
        of JSON values), such that resolving it again returns it unchanged.

        Raises:
            ValueError naming an unknown option or an invalid value.
        """

    @abc.abstractmethod
    def build(self, config, pretrained: bool = True) -> keras.Model:
        """The model of a `ModelConfig` (variables not created yet).

        `pretrained=False`: skip initial weights the config names (e.g. an
        ImageNet backbone download) because a checkpoint will replace them.
        """

    @abc.abstractmethod
    def training_targets(self, config) -> Callable[[tf.Tensor], Dict[str, tf.Tensor]]:
        """A function from one augmented int32 [H, W] panoptic label to the
        targets the loss reads (Gin-configured here, at the edge)."""

    @abc.abstractmethod
    def training_loss(self, config) -> Callable[[Dict, Dict], Dict[str, tf.Tensor]]:
        """A function (targets, outputs) -> {name: [batch] per-image loss},
        with `TOTAL_LOSS` the one to minimize (Gin-configured here). The
        training step traces it and `training_outputs` without autograph:
        control flow on tensors is tf.cond / tf.while_loop."""

    def training_outputs(self, model: keras.Model, batch: Dict[str, tf.Tensor]
                         ) -> Dict[str, tf.Tensor]:
        """The outputs `training_loss` reads, from a training batch (images,
        labels and `training_targets`): by default the model on the images."""
        return model(batch[common.IMAGE], training=True)

    def network_outputs(self, model: keras.Model, images: tf.Tensor) -> Dict[str, tf.Tensor]:
        """The raw outputs an exported network file returns for `images`
        (deeplab2.export.network): by default the model's. A family whose
        model ends by upsampling its outputs returns them before that, and
        `upsample_network_outputs` does the rest on the host."""
        return model(images, training=False)

    def upsample_network_outputs(self, outputs: Dict[str, tf.Tensor], size
                                 ) -> Dict[str, tf.Tensor]:
        """`network_outputs` for inputs of `size` (height, width) -> the
        model's outputs; by default they are those already."""
        del size
        return outputs

    def postprocess_network_outputs(self, outputs: Dict[str, tf.Tensor], size, config,
                                    options: Mapping[str, Any]) -> Dict[str, tf.Tensor]:
        """The predictions of a plain pass (no test-time augmentation) from the
        `network_outputs` of images of `size` (height, width): `postprocess`
        of the upsampled outputs (dense ones converted, SOFTMAX to
        probabilities), plus the `visual_outputs`. A family may fuse the
        upsampling into its post-processing instead, never storing what it
        only reads once (Panoptic-DeepLab's full-resolution logits)."""
        outputs = self.upsample_network_outputs(outputs, size)
        raw = dict(outputs)
        if self.dense_outputs:
            raw = {}
            for key, dense in self.dense_outputs.items():
                if key in outputs:
                    value = tf.cast(outputs[key], tf.float32)
                    raw[dense.key] = (tf.nn.softmax(value, axis=-1) if dense.kind == SOFTMAX
                                      else value)
        predictions = self.postprocess(raw, config, options)
        predictions.update({key: raw[key] for key in self.visual_outputs if key in raw})
        return predictions

    def bfloat16_float_layers(self, config) -> Tuple[str, ...]:
        """Names of the layers a bfloat16 model of `config` keeps computing in
        float32 (deeplab2.model.builder.model_from_config): those whose
        outputs are compared for exact ties or thresholded. None by default."""
        del config
        return ()

    def check_input_size(self, size, config) -> Tuple[int, int]:
        """`size` (height, width) as ints if the model takes inputs of that
        size (`padded_size` of each side is itself), else a ValueError naming
        the rule: `k * output_stride + 1` unless a family overrides it."""
        return validate_crop_size(size, config.output_stride)

    def padded_size(self, size, config):
        """The smallest input side the model takes that is >= `size` (an int
        or an int32 scalar tensor): `k * output_stride + 1` (k >= 1), the
        align-corners convention of dense models, unless a family overrides it."""
        stride = config.output_stride
        k = (size - 2) // stride + 1
        if isinstance(k, int):
            return max(k, 1) * stride + 1
        return tf.maximum(k, 1) * stride + 1

    def scaled_size(self, size, scale: float, config):
        """The valid input side nearest to `size` resized by `scale` (test-time
        augmentation), `size` being valid itself; int or int32 tensor.

        Computed in float32 either way (half to even), so that a traced model
        and a Python caller agree.
        """
        stride = config.output_stride
        factor = np.float32(scale / stride)
        if isinstance(size, int):
            k = int(np.round(np.float32(size - 1) * factor))
            return max(k, 1) * stride + 1
        k = tf.cast(tf.round(tf.cast(size - 1, tf.float32) * factor), tf.int32)
        return tf.maximum(k, 1) * stride + 1

    @abc.abstractmethod
    def postprocess(self, outputs: Dict[str, tf.Tensor], config,
                    options: Mapping[str, Any]) -> Dict[str, tf.Tensor]:
        """Raw (or TTA-combined) outputs -> the common currency above.

        Must compile with XLA, use no float64 and accept H and W unknown
        when traced, so that it runs inside an exported model on any device.
        """
