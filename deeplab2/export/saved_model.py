"""Exports a Predictor as a SavedModel that serves images of any size and says what it predicts.

Signatures (each also a function of the loaded object):
- "serving_default" (`serve`): `image`, one uint8 [height, width, 3] image of
  any size. It is padded at the bottom and right to the next size the model
  takes with the model's pad value, run through the Predictor (model,
  test-time augmentation and post-processing, with the options it was built
  with) and the maps are cropped back to the image size.
- "serving_batch": `images`, uint8 [batch, height, width, 3],
  and `image_sizes`, int32 [batch, 2]: image i fills the top-left
  (height, width) of its slot (Predictor.predict_batch); outputs have a
  leading batch axis and are void beyond each image.
- "metadata": no input; `metadata`, the JSON document of
  deeplab2.export.metadata (configuration, dataset and labels, test-time
  options), also written as `assets.extra/deeplab2_metadata.json`.

The graphs are traced once with unknown sizes (every family's model and
post-processing accept them, see deeplab2.model.meta); post-processing that a
family compiles with XLA (Panoptic-DeepLab's) is compiled for each new padded
size on first use and cached. Images with a side longer than `max_side` are
refused at run time.

Written with Keras' `ExportArchive`, so that the SavedModel loads both with
`tf.saved_model.load` and with the graph-mode loader of TF Serving and
`saved_model_cli run` (a Keras 3 model saved with `tf.saved_model.save` does
not: its batch-norm statistics are not restored there). The directory is
written under a temporary name and renamed when complete.

Outputs (`Predictor.image_output_keys`): `panoptic`, `semantic`, `instance`
int32 [height, width]; `instance_scores` float32, `instance_classes` and
`instance_panoptic_ids` int32 [K] (row i describes instance id i + 1; see
deeplab2.model.meta); then the family's `instance_outputs`, e.g. Panoptic
FPN's `boxes` float32 [K, 4] (x0, y0, x1, y1) in image pixels, 0 for rows
without instance.
"""
import os
import shutil
import tempfile
from typing import Dict

import keras
import tensorflow as tf

from deeplab2.export import metadata as metadata_lib
from deeplab2.inference import Predictor
# The maps and instance tables every signature returns (re-exported).
from deeplab2.inference.predictor import INSTANCE_KEYS, MAP_KEYS  # noqa: F401
from deeplab2.utils.paths import (OutputPathError, prepare_output_dir,
                                  remove_stale_temporaries, temporary_prefix)

INPUT_KEY = "image"
BATCH_INPUT_KEY = "images"
SIZES_KEY = "image_sizes"
ENDPOINT = "serve"
BATCH_SIGNATURE = "serving_batch"
DEFAULT_MAX_SIDE = 4096
INPUT_SIGNATURE = (tf.TensorSpec([None, None, 3], tf.uint8, name=INPUT_KEY),)
BATCH_INPUT_SIGNATURE = (tf.TensorSpec([None, None, None, 3], tf.uint8, name=BATCH_INPUT_KEY),
                         tf.TensorSpec([None, 2], tf.int32, name=SIZES_KEY))
SIGNATURE_INPUTS = {
    "serving_default": {INPUT_KEY: "uint8 [height, width, 3]"},
    BATCH_SIGNATURE: {BATCH_INPUT_KEY: "uint8 [batch, height, width, 3]",
                      SIZES_KEY: "int32 [batch, 2]: (height, width) of each image, at "
                                 "the top left of its slot"},
    metadata_lib.SIGNATURE: {},
}


def serving_function(predictor: Predictor, jit_compile: bool = False,
                     max_side: int = DEFAULT_MAX_SIDE) -> tf.types.experimental.GenericFunction:
    """The exported computation as a tf.function of one uint8 image; images
    with a side longer than `max_side` are refused with InvalidArgumentError
    (memory grows with the image: 4000x4000 took 2.3 GB with a tiny model)."""
    _check_max_side(max_side)
    compute = tf.function(predictor.predict_image, jit_compile=jit_compile, autograph=False)

    def serve(image: tf.Tensor) -> Dict[str, tf.Tensor]:
        # Signature calls skip the shape check of tf.function calls: check at run time.
        image = tf.ensure_shape(image, INPUT_SIGNATURE[0].shape, name="check_image_shape")
        _assert_sides(tf.shape(image)[:2], max_side)
        return compute(image)
    return tf.function(serve, input_signature=INPUT_SIGNATURE, autograph=False)


def batch_serving_function(predictor: Predictor, jit_compile: bool = False,
                           max_side: int = DEFAULT_MAX_SIDE
                           ) -> tf.types.experimental.GenericFunction:
    """The exported computation as a tf.function of a uint8 batch and the
    size of each image in it (Predictor.predict_batch); sizes outside
    [1, batch side] and sides longer than `max_side` are refused with
    InvalidArgumentError."""
    _check_max_side(max_side)
    compute = tf.function(predictor.predict_batch, jit_compile=jit_compile,
                          autograph=False)

    def serve_batch(images: tf.Tensor, image_sizes: tf.Tensor) -> Dict[str, tf.Tensor]:
        images = tf.ensure_shape(images, BATCH_INPUT_SIGNATURE[0].shape,
                                 name="check_images_shape")
        image_sizes = tf.ensure_shape(image_sizes, BATCH_INPUT_SIGNATURE[1].shape,
                                      name="check_image_sizes_shape")
        shape = tf.shape(images)
        _assert_sides(shape[1:3], max_side)
        with tf.name_scope("check_image_sizes"):
            tf.debugging.assert_equal(
                tf.shape(image_sizes)[0], shape[0],
                message=f"{SIZES_KEY} must have one row per image of {BATCH_INPUT_KEY}")
            tf.debugging.assert_greater_equal(
                image_sizes, 1, message=f"{SIZES_KEY} must be at least 1")
            tf.debugging.assert_less_equal(
                image_sizes, shape[None, 1:3],
                message=f"{SIZES_KEY} must fit in the height and width of "
                f"{BATCH_INPUT_KEY}")
        return compute(images, image_sizes)
    return tf.function(serve_batch, input_signature=BATCH_INPUT_SIGNATURE, autograph=False)


def _check_max_side(max_side: int) -> None:
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")


def _assert_sides(sides: tf.Tensor, max_side: int) -> None:
    # Outside the compiled part: XLA drops assertions (whose messages are
    # the only string tensors of the graph).
    with tf.name_scope("check_image_side"):
        tf.debugging.assert_less_equal(
            tf.reduce_max(sides), max_side,
            message=f"image side exceeds the maximum of {max_side} pixels this model "
            "was exported with (export_model.py --max_side)")


def export_saved_model(predictor: Predictor, output_dir: str, jit_compile: bool = False,
                       max_side: int = DEFAULT_MAX_SIDE) -> None:
    """Writes the SavedModel of `predictor` (see the module docstring) to
    `output_dir`, replacing what is there only once the new one is complete.

    Args:
        predictor: model, test-time augmentation and post-processing options.
        jit_compile: compile the whole serving function with XLA, once per
            input size (by default only the post-processing is, per padded size).
        max_side: longest image side served; longer ones are refused.
    """
    metadata = metadata_lib.export_metadata(predictor, SIGNATURE_INPUTS)
    # Not `archive.track(model)`: the endpoints' variables are saved anyway,
    # and tracking the model's Keras variables saved every weight twice.
    archive = keras.export.ExportArchive()
    # The first endpoint is also "serving_default".
    archive.add_endpoint(ENDPOINT, serving_function(predictor, jit_compile, max_side))
    archive.add_endpoint(BATCH_SIGNATURE,
                         batch_serving_function(predictor, jit_compile, max_side))
    archive.add_endpoint(metadata_lib.SIGNATURE, metadata_lib.metadata_function(metadata))
    output_dir = output_dir.rstrip("/")
    if "://" in output_dir:  # object stores have no atomic rename of folders
        archive.write_out(output_dir, verbose=False)
        metadata_lib.write_metadata(metadata, output_dir)
        return
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise OutputPathError(f"output_dir {output_dir} is a file; expected a SavedModel "
                              "folder")
    parent = prepare_output_dir(os.path.dirname(os.path.abspath(output_dir)), "output_dir")
    name = os.path.basename(output_dir)
    remove_stale_temporaries(parent, name)
    temporary = tempfile.mkdtemp(prefix=temporary_prefix(name), dir=parent)
    try:
        archive.write_out(temporary, verbose=False)
        metadata_lib.write_metadata(metadata, temporary)
        previous = None
        if os.path.exists(output_dir):
            previous = temporary + ".previous"
            os.replace(output_dir, previous)
        os.replace(temporary, output_dir)
        if previous:
            shutil.rmtree(previous)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
