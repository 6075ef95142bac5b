"""Exports a Predictor as a SavedModel: one uint8 image of any size in, panoptic maps out.

The serving function (signature "serving_default", also the `serve` attribute)
takes `image`, a uint8 [height, width, 3] tensor of any size. It pads the image
at the bottom and right to the next `k * output_stride + 1` size with 127.5 (0
after the model's x / 127.5 - 1 normalization), runs the Predictor (model,
test-time augmentation and XLA post-processing, with the options it was built
with) and crops the maps back to the image size. The graph is traced once with
unknown sizes; XLA compiles the post-processing for each new padded size on
first use and caches it.

Outputs: `panoptic`, `semantic`, `instance` int32 [height, width];
`instance_scores` float32, `instance_classes` and `instance_panoptic_ids`
int32 [K] (row i describes instance id i + 1; see deeplab2.postprocess).
"""
import os
from typing import Dict, Union

import tensorflow as tf

from deeplab2 import common
from deeplab2.data.augment import IMAGE_PAD_VALUE
from deeplab2.inference import Predictor, build_predictor
from deeplab2.training.experiment import Experiment, resolve_checkpoint

PAD_VALUE = IMAGE_PAD_VALUE  # as the evaluation pipeline pads
INPUT_KEY = "image"
MAP_KEYS = (common.PANOPTIC, common.SEMANTIC, common.INSTANCE)
INSTANCE_KEYS = (common.INSTANCE_SCORES, common.INSTANCE_CLASSES,
                 common.INSTANCE_PANOPTIC_IDS)
INPUT_SIGNATURE = (tf.TensorSpec([None, None, 3], tf.uint8, name=INPUT_KEY),)


def padded_size(size: Union[int, tf.Tensor], output_stride: int) -> Union[int, tf.Tensor]:
    """Smallest `k * output_stride + 1` (k >= 1) not below `size` (int or int32 tensor)."""
    k = (size - 2) // output_stride + 1
    if isinstance(k, int):
        return max(k, 1) * output_stride + 1
    return tf.maximum(k, 1) * output_stride + 1


def predict_image(predictor: Predictor, image: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The exported computation: pad one HxWx3 image, predict, crop back.

    Works for static sizes (eagerly or in a tf.function) and for sizes unknown
    at tracing time (the exported signature).
    """
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    pad_height = padded_size(height, predictor.output_stride) - height
    pad_width = padded_size(width, predictor.output_stride) - width
    images = tf.pad(tf.cast(image, tf.float32)[None],
                    [[0, 0], [0, pad_height], [0, pad_width], [0, 0]],
                    constant_values=PAD_VALUE)
    predictions = predictor(images, image_sizes=tf.stack([height, width])[None])
    if common.PANOPTIC not in predictions:
        raise ValueError("Export needs a panoptic model (center and offset outputs); "
                         "this one predicts semantics only.")
    outputs = {key: predictions[key][0, :height, :width] for key in MAP_KEYS}
    outputs.update({key: predictions[key][0] for key in INSTANCE_KEYS})
    return outputs


class ExportModule(tf.Module):
    """The SavedModel root: the model's variables and the serving function.

    Args:
        predictor: model, test-time augmentation and post-processing options.
        jit_compile: compile the whole serving function with XLA, once per
            input size (by default only the post-processing is, per padded size).
    """

    def __init__(self, predictor: Predictor, jit_compile: bool = False):
        super().__init__(name="panoptic_deeplab_export")
        self.model = predictor.model
        self._predictor = predictor
        self.serve = tf.function(self._serve, input_signature=INPUT_SIGNATURE,
                                 jit_compile=jit_compile)

    def _serve(self, image: tf.Tensor) -> Dict[str, tf.Tensor]:
        # Signature calls skip the shape check of tf.function calls: check at run time.
        image = tf.ensure_shape(image, INPUT_SIGNATURE[0].shape, name="check_image_shape")
        return predict_image(self._predictor, image)


def export_saved_model(predictor: Predictor, output_dir: str,
                       jit_compile: bool = False) -> None:
    """Writes the SavedModel of `predictor` (see the module docstring) to `output_dir`."""
    module = ExportModule(predictor, jit_compile=jit_compile)
    tf.saved_model.save(module, output_dir, signatures={"serving_default": module.serve})


def restore_predictor(checkpoint: str) -> Predictor:
    """The Gin-bound experiment's model restored from `checkpoint`, in the Gin-bound Predictor.

    Args:
        checkpoint: a checkpoint prefix, or a directory (its latest checkpoint),
            as written by the trainer.
    """
    try:
        path = resolve_checkpoint(checkpoint)
    except FileNotFoundError as error:
        raise ValueError(str(error)) from None
    experiment = Experiment(os.path.dirname(path))
    model, _, _ = experiment.load_model(path)
    return build_predictor(model, experiment.info)
