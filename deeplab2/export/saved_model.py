"""Exports a Predictor as a SavedModel: one uint8 image of any size in, panoptic maps out.

The serving function (signature "serving_default", also the `serve` endpoint)
takes `image`, a uint8 [height, width, 3] tensor of any size. It pads the image
at the bottom and right to the next size the model takes with the model's pad
value, runs the Predictor (model, test-time augmentation and post-processing,
with the options it was built with) and crops the maps back to the image size.
The graph is traced once with unknown sizes (every family's model and
post-processing accept them, see deeplab2.model.meta); post-processing that a
family compiles with XLA (Panoptic-DeepLab's) is compiled for each new padded
size on first use and cached.

Written with Keras' `ExportArchive`, so that the SavedModel loads both with
`tf.saved_model.load` and with the graph-mode loader of TF Serving and
`saved_model_cli run` (a Keras 3 model saved with `tf.saved_model.save` does
not: its batch-norm statistics are not restored there). The directory is
written under a temporary name and renamed when complete.

The model's configuration (dataset, post-processing, ...) is written beside
it as `assets.extra/model_config.json` (TF Serving's folder for files it
does not load), so tools reading the predictions know the label space.

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

from deeplab2.inference import Predictor
# The maps and instance tables every signature returns (re-exported).
from deeplab2.inference.predictor import INSTANCE_KEYS, MAP_KEYS  # noqa: F401
from deeplab2.model.meta import CONFIG_FILE
from deeplab2.utils.paths import (OutputPathError, prepare_output_dir,
                                  remove_stale_temporaries, temporary_prefix)

INPUT_KEY = "image"
EXTRA_DIR = "assets.extra"
ENDPOINT = "serve"
DEFAULT_MAX_SIDE = 4096
INPUT_SIGNATURE = (tf.TensorSpec([None, None, 3], tf.uint8, name=INPUT_KEY),)


def serving_function(predictor: Predictor, jit_compile: bool = False,
                     max_side: int = DEFAULT_MAX_SIDE) -> tf.types.experimental.GenericFunction:
    """The exported computation as a tf.function of one uint8 image; images
    with a side longer than `max_side` are refused with InvalidArgumentError
    (memory grows with the image: 4000x4000 took 2.3 GB with a tiny model)."""
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")

    compute = tf.function(predictor.predict_image, jit_compile=jit_compile)

    def serve(image: tf.Tensor) -> Dict[str, tf.Tensor]:
        # Signature calls skip the shape check of tf.function calls: check at run time.
        image = tf.ensure_shape(image, INPUT_SIGNATURE[0].shape, name="check_image_shape")
        # Outside the compiled part: XLA drops assertions (whose message is
        # the only string tensor of the graph).
        with tf.name_scope("check_image_side"):
            tf.debugging.assert_less_equal(
                tf.reduce_max(tf.shape(image)[:2]), max_side,
                message=f"image side exceeds the maximum of {max_side} pixels this model "
                "was exported with (export_model.py --max_side)")
        return compute(image)
    return tf.function(serve, input_signature=INPUT_SIGNATURE)


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
    archive = keras.export.ExportArchive()
    archive.track(predictor.model)
    archive.add_endpoint(ENDPOINT, serving_function(predictor, jit_compile, max_side))
    output_dir = output_dir.rstrip("/")
    if "://" in output_dir:  # object stores have no atomic rename of folders
        archive.write_out(output_dir, verbose=False)
        _write_config(predictor, output_dir)
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
        _write_config(predictor, temporary)
        previous = None
        if os.path.exists(output_dir):
            previous = temporary + ".previous"
            os.replace(output_dir, previous)
        os.replace(temporary, output_dir)
        if previous:
            shutil.rmtree(previous)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def config_path(saved_model_dir: str) -> str:
    """Where an exported SavedModel keeps its model's configuration."""
    return os.path.join(saved_model_dir, EXTRA_DIR, CONFIG_FILE)


def _write_config(predictor: Predictor, directory: str) -> None:
    tf.io.gfile.makedirs(os.path.join(directory, EXTRA_DIR))
    with tf.io.gfile.GFile(config_path(directory), "w") as f:
        f.write(predictor.config.to_json())
