"""Writes a model's panoptic predictions of TFRecords or photos in the official formats.

The model, its dataset, its post-processing options and its input sizes come
from the model directory; test-time augmentation and post-processing
overrides are flags. Photos may also be predicted by an exported model
(scripts/export_model.py): a SavedModel (--saved_model), or a TFLite or ONNX
network file (--tflite, --onnx; run with LiteRT or ONNX Runtime, photos
larger than its input size shrunk to fit, post-processed on the host by
deeplab2.export.tflite_postprocess).

Example, TFRecords:
  python scripts/predict.py --model_dir=runs/cityscapes \\
      --file_pattern='data/cityscapes/val-*.tfrecord' --output_dir=/tmp/pred \\
      --format=both --num_pictures=4
  # COCO: /tmp/pred/panoptic_val.json + panoptic_val/ (panopticapi pq_compute)
  # Cityscapes: /tmp/pred/cityscapes_panoptic_val.json + cityscapes_panoptic_val/
  #   (CITYSCAPES_RESULTS=/tmp/pred csEvalPanopticSemanticLabeling)
  # --format=cityscapes_instance,cityscapes_semantic: /tmp/pred/cityscapes_instance_val/
  #   (CITYSCAPES_RESULTS=/tmp/pred/cityscapes_instance_val
  #   csEvalInstanceLevelSemanticLabeling) and /tmp/pred/cityscapes_semantic_val/
  #   (csEvalPixelLevelSemanticLabeling likewise)

Example, photos (files, folders of .jpg/.jpeg/.png, globs; upright per EXIF):
  python scripts/predict.py --model_dir=runs/cityscapes \\
      --images='photos/*.jpg,more_photos' --output_dir=/tmp/photos
  # or --saved_model=runs/cityscapes/saved_model, --tflite=runs/cityscapes/model.tflite,
  # --onnx=runs/cityscapes/model.onnx
  # /tmp/photos/panoptic_val/<name>.png + panoptic_val.json, and the photo with
  # its segments in /tmp/photos/overlays/<name>.png; unreadable files are skipped.
"""
import os
import sys

from absl import app, flags

from deeplab2.evaluation.prediction_writer import FORMATS, PANOPTIC_FORMATS
from deeplab2.inference.cli import define_model_flags, load_predictor_from_flags
from deeplab2.utils.console import configure_logging

define_model_flags()
_FILE_PATTERN = flags.DEFINE_string("file_pattern", None, "TFRecords to predict.")
_IMAGES = flags.DEFINE_list("images", None, "Photos to predict: files, folders (their "
                            ".jpg, .jpeg and .png files) or globs.")
_SAVED_MODEL = flags.DEFINE_string("saved_model", None, "Exported SavedModel predicting "
                                   "--images, instead of --model_dir.")
_TFLITE = flags.DEFINE_string("tflite", None, "Exported TFLite network predicting --images, "
                              "instead of --model_dir.")
_ONNX = flags.DEFINE_string("onnx", None, "Exported ONNX network predicting --images, "
                            "instead of --model_dir.")
_DATASET = flags.DEFINE_string("dataset", None, "The --saved_model's dataset, if it does not "
                               "record it: a name (e.g. cityscapes), a .json dataset "
                               "descriptor or the model directory it was exported from.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write the predictions.",
                                  required=True)
_FORMAT = flags.DEFINE_list("format", ["coco"], f"Output formats, comma-separated: "
                            f"{', '.join(FORMATS)}, or both (coco,cityscapes).")
_SPLIT = flags.DEFINE_string("split_name", "val", "Split name in the output file names.")
_CROP = flags.DEFINE_list("crop_size", None, "Height,width every image is padded to "
                          "(k * output_stride + 1, at least the largest image); default: "
                          "the model's training crop.")
_FIT = flags.DEFINE_list("fit_size", None, "Height,width photos are shrunk to fit in and "
                         "padded to (k * output_stride + 1), as google-research/deeplab2 "
                         "evaluates; default: each photo at its own size.")
_NUM_PICTURES = flags.DEFINE_integer(
    "num_pictures", 0, "Pictures of the first predictions, in output_dir/pictures.")

_RECORD_FLAGS = ("crop_size", "num_pictures")
_PHOTO_FLAGS = ("fit_size",)
_MODEL_DIR_FLAGS = ("checkpoint", "scales", "flip", "shorter_side", "max_longer_side",
                    "postprocess")
_MODEL_SOURCES = ("model_dir", "saved_model", "tflite", "onnx")


def _flag_error():
    """What is wrong with the combination of flags, or None."""
    values = flags.FLAGS
    if not values.format or not set(values.format) <= set(FORMATS + ("both",)):
        return (f"--format={','.join(values.format)}: give comma-separated formats of "
                f"{', '.join(FORMATS)} (both: coco,cityscapes).")
    if (values.images is None) == (values.file_pattern is None):
        return "give exactly one of --images and --file_pattern."
    sources = [name for name in _MODEL_SOURCES if values[name].value is not None]
    if len(sources) != 1:
        return "give exactly one of --model_dir, --saved_model, --tflite and --onnx."
    for name in _RECORD_FLAGS if values.images is not None else _PHOTO_FLAGS:
        if values[name].present:
            other = "--file_pattern" if values.images is not None else "--images"
            return f"--{name} applies to {other} only."
    source = sources[0]
    if source == "model_dir":
        return ("--dataset applies to --saved_model only (a model directory has its "
                "dataset)." if values["dataset"].present else None)
    if values.file_pattern is not None:
        return f"--{source} predicts --images only; predict TFRecords from --model_dir."
    for name in _MODEL_DIR_FLAGS:
        if values[name].present:
            return f"--{name} applies to --model_dir only (an exported model has it built in)."
    if source != "saved_model":
        for name, applies_to, built_in in (("dataset", "--saved_model", "dataset"),
                                           ("fit_size", "--model_dir", "input size")):
            if values[name].present:
                return (f"--{name} applies to {applies_to} only (the {source} file has "
                        f"its {built_in} built in).")
    return None


def _formats():
    """The --format formats, "both" standing for the two panoptic ones."""
    names = [n for name in _FORMAT.value
             for n in (PANOPTIC_FORMATS if name == "both" else (name,))]
    return tuple(dict.fromkeys(names))


def _predict_records():
    from deeplab2.data import pipeline
    from deeplab2.data.records import RecordFileError
    from deeplab2.evaluation.prediction_writer import PredictionWriter, predict_and_write

    predictor, step, checkpoint = load_predictor_from_flags()
    try:
        crop = tuple(int(c) for c in _CROP.value) if _CROP.value else None
        batches = pipeline.evaluation_dataset(_FILE_PATTERN.value, predictor.config,
                                              global_batch_size=1, crop_size=crop)
    except (RecordFileError, ValueError) as error:
        sys.exit(f"error: {error}")
    writer = PredictionWriter(_OUTPUT_DIR.value, predictor.info, _formats(), _SPLIT.value)
    try:
        count = predict_and_write(
            predictor.batch_function(), batches, writer,
            picture_dir=os.path.join(_OUTPUT_DIR.value, "pictures"),
            num_pictures=_NUM_PICTURES.value)
    except ValueError as error:  # an image id that is no safe file name; the JSON is not written
        sys.exit(f"error: {_FILE_PATTERN.value}: {error}")
    paths = writer.close()
    print(f"Predicted {count} images of {_FILE_PATTERN.value} with {checkpoint} (step "
          f"{step}); wrote {', '.join(paths.values())}")


def _fit_size():
    """(height, width) of --fit_size, or None."""
    if not _FIT.value:
        return None
    try:
        height, width = (int(side) for side in _FIT.value)
    except ValueError:
        sys.exit(f"error: --fit_size must be height,width, got {','.join(_FIT.value)}.")
    return height, width


def _model_dir_function():
    """(uint8 photo -> predictions, dataset, description) of --model_dir."""
    from deeplab2.export import serving_function
    from deeplab2.inference import Predictor

    predictor, step, checkpoint = load_predictor_from_flags()
    fit_size = _fit_size()
    if fit_size:
        try:
            predictor = Predictor(predictor.model, scales=predictor.scales,
                                  flip=predictor.flip,
                                  postprocess=predictor.config.postprocess, fit_size=fit_size,
                                  shorter_side=predictor.shorter_side,
                                  max_longer_side=predictor.max_longer_side)
        except ValueError as error:
            sys.exit(f"error: --fit_size: {error}")
    return serving_function(predictor), predictor.info, f"{checkpoint} (step {step})"


def _exported_dataset(saved_model):
    """The dataset an exported SavedModel records (deeplab2.export.metadata)."""
    from deeplab2.export.metadata import MetadataError, exported_config
    from deeplab2.model.model_dir import ModelDirError

    try:
        return exported_config(saved_model).dataset
    except MetadataError as error:
        raise ModelDirError(f"{error} Pass --dataset, the model's dataset or its model "
                            "directory.") from None


def _saved_model_function():
    """(uint8 photo -> predictions, dataset, description) of --saved_model and --dataset."""
    import tensorflow as tf

    from deeplab2.data.dataset_info import resolve_dataset
    from deeplab2.export.saved_model import INPUT_KEY
    from deeplab2.model.model_dir import ModelDirError, read_model_config

    try:
        if not _DATASET.value:
            info = _exported_dataset(_SAVED_MODEL.value)
        elif os.path.isdir(_DATASET.value):
            info = read_model_config(_DATASET.value).dataset
        else:
            info = resolve_dataset(_DATASET.value)
    except ModelDirError as error:
        sys.exit(f"error: --dataset: {error}")
    except KeyError as error:
        sys.exit(f"error: --dataset: {error.args[0]}")
    try:
        loaded = tf.saved_model.load(_SAVED_MODEL.value)
    except (OSError, ValueError) as error:
        sys.exit(f"error: cannot load SavedModel {_SAVED_MODEL.value}: "
                 f"{' '.join(str(error).split())[:300]}")
    signature = loaded.signatures.get("serving_default")
    inputs = signature.structured_input_signature[1] if signature else {}
    if INPUT_KEY not in inputs:
        sys.exit(f"error: {_SAVED_MODEL.value} has no 'serving_default' signature taking "
                 f"{INPUT_KEY!r} (export it with scripts/export_model.py).")
    extra = {}
    fit_size = _fit_size()
    if fit_size:
        if "fit_size" not in inputs:
            sys.exit(f"error: --fit_size: the signature of {_SAVED_MODEL.value} takes no "
                     "fit size; predict from --model_dir to use it.")
        extra["fit_size"] = tf.constant(fit_size, inputs["fit_size"].dtype)

    def predict(image):
        return signature(**{INPUT_KEY: tf.constant(image)}, **extra)
    return predict, info, _SAVED_MODEL.value


def _network_file_function(path, file_format):
    """(uint8 photo -> predictions, dataset, description) of --tflite / --onnx."""
    from deeplab2.export.network import NetworkFileError
    from deeplab2.export.runtimes import open_network

    if not os.path.isfile(path):
        sys.exit(f"error: --{file_format} {path}: no such file.")
    try:
        network = open_network(path)
    except NetworkFileError as error:
        sys.exit(f"error: --{file_format}: {error}")
    if network.info.file_format != file_format:
        sys.exit(f"error: --{file_format} {path} holds a {network.info.file_format} network; "
                 f"pass it as --{network.info.file_format}.")
    return network.predict_image, network.info.config.dataset, path


def _model_function():
    """(uint8 photo -> predictions, dataset, description) of the model flag given."""
    if _SAVED_MODEL.value:
        return _saved_model_function()
    for file_format, flag in (("tflite", _TFLITE), ("onnx", _ONNX)):
        if flag.value:
            return _network_file_function(flag.value, file_format)
    return _model_dir_function()


def _predict_photos():
    import numpy as np

    from deeplab2 import common
    from deeplab2.evaluation.dataset_evaluation import instance_scores
    from deeplab2.evaluation.prediction_writer import PredictionWriter
    from deeplab2.inference.photos import (UnreadablePhotoError, find_photos, output_names,
                                           read_photo)
    from deeplab2.utils.progress import Progress
    from deeplab2.vis import colorize_panoptic, overlay, save_png

    try:
        paths = find_photos(_IMAGES.value)
    except ValueError as error:
        sys.exit(f"error: --images: {error}")
    predict, info, model = _model_function()
    writer = PredictionWriter(_OUTPUT_DIR.value, info, _formats(), _SPLIT.value)
    overlay_dir = os.path.join(_OUTPUT_DIR.value, "overlays")
    progress = Progress(len(paths), desc="predict", unit="photo")
    skipped = 0
    for path, name in zip(paths, output_names(paths)):
        try:
            photo = read_photo(path)
        except UnreadablePhotoError as error:
            skipped += 1
            clear = "\r\x1b[K" if sys.stderr.isatty() else ""  # the progress line
            print(f"{clear}skipped {path}: {error}", file=sys.stderr, flush=True)
        else:
            predictions = {k: np.asarray(v)[None] for k, v in predict(photo).items()}
            panoptic = predictions[common.PANOPTIC][0]
            scores = (instance_scores(predictions, 0, info.ignore_panoptic_id)
                      if common.INSTANCE_SCORES in predictions else None)
            try:
                writer.add(name, panoptic, scores)
            except ValueError as error:  # a --dataset that is not the model's
                sys.exit(f"error: {error}")
            save_png(os.path.join(overlay_dir, name + ".png"),
                     overlay(photo, colorize_panoptic(panoptic, info)))
        progress.update()
    progress.close()
    written = writer.close()
    print(f"Predicted {len(paths) - skipped} photos ({skipped} skipped: unreadable) with "
          f"{model}; wrote {', '.join(written.values())}, {overlay_dir}")


def main(argv):
    del argv  # unused
    configure_logging()
    error = _flag_error()
    if error:
        sys.exit(f"error: {error}")
    from deeplab2.utils.paths import OutputPathError, prepare_output_dir

    try:
        prepare_output_dir(_OUTPUT_DIR.value, "--output_dir")
    except OutputPathError as error:
        sys.exit(f"error: {error}")
    if _IMAGES.value is not None:
        _predict_photos()
    else:
        _predict_records()


if __name__ == "__main__":
    app.run(main)
