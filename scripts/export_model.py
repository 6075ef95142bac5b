"""Exports a model directory's model as a SavedModel serving images of any size,
or its network alone as a TFLite or ONNX file.

--format=saved_model (the default): every family gets the same signatures:
"serving_default" (one uint8 image), "serving_batch" (a uint8 batch and each
image's size) and "metadata" (the configuration, labels and test-time options
as JSON, also in assets.extra/deeplab2_metadata.json); they return maps and
instance tables, plus the per-instance outputs the family declares (Panoptic
FPN: `boxes`). See deeplab2.export.saved_model.

--format=tflite / onnx: the network at a fixed --input_size (float32 images in
[0, 255] in, raw outputs out), written to --output_file; the post-processing
runs on the host (deeplab2.export.tflite_postprocess). TFLite takes
--quantization float32, float16 or int8 (post-training, calibrated on
--calibration_steps images of --calibration_pattern).

Everything comes from the model directory (model_config.json and the latest
checkpoint, or --checkpoint); test-time augmentation and post-processing
overrides are flags.

Examples:
  python scripts/export_model.py --model_dir=runs/quickstart/model \\
      --output_dir=runs/quickstart/saved_model
  python scripts/export_model.py --model_dir=runs/quickstart/model --format=tflite \\
      --quantization=int8 --input_size=193,257 \\
      --calibration_pattern='data/synthetic/train-*.tfrecord' \\
      --output_file=runs/quickstart/model_int8.tflite
"""
import sys

from absl import app, flags

from deeplab2.inference.cli import define_model_flags, load_predictor_from_flags
from deeplab2.utils.console import configure_logging

define_model_flags()
_FORMAT = flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite", "onnx"],
                            "saved_model: image in, predictions out, any size; tflite / "
                            "onnx: the network alone at --input_size.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write the SavedModel.")
_XLA = flags.DEFINE_bool("xla", False, "Compile the whole serving function with XLA "
                         "(once per input size); the post-processing always is.")
_MAX_SIDE = flags.DEFINE_integer("max_side", 4096, "Longest image side the SavedModel "
                                 "serves; larger images get an error.", lower_bound=1)
_OUTPUT_FILE = flags.DEFINE_string("output_file", None, "Where to write the .tflite or "
                                   ".onnx file (--format tflite / onnx).")
_INPUT_SIZE = flags.DEFINE_list("input_size", None, "height,width of the TFLite / ONNX "
                                "network's input, a size the model takes (e.g. 513,1025); "
                                "default: the model's training crop.")
_QUANTIZATION = flags.DEFINE_enum("quantization", "float32", ["float32", "float16", "int8"],
                                  "TFLite only: float16 weights, or int8 weights and "
                                  "activations (post-training, calibrated).")
_CALIBRATION_PATTERN = flags.DEFINE_string("calibration_pattern", None, "TFRecords whose "
                                           "images calibrate int8 quantization (e.g. "
                                           "'data/synthetic/train-*.tfrecord').")
_CALIBRATION_STEPS = flags.DEFINE_integer("calibration_steps", 100, "Images calibrating "
                                          "int8 quantization.", lower_bound=1)


def main(argv):
    del argv  # unused
    configure_logging()
    if _FORMAT.value == "saved_model":
        _export_saved_model()
    else:
        _export_network()


def _export_saved_model():
    from deeplab2 import export
    from deeplab2.utils.paths import OutputPathError

    if not _OUTPUT_DIR.value:
        sys.exit("error: --output_dir is required (where to write the SavedModel).")
    predictor, step, checkpoint = load_predictor_from_flags()
    try:
        export.export_saved_model(predictor, _OUTPUT_DIR.value, jit_compile=_XLA.value,
                                  max_side=_MAX_SIDE.value)
    except OutputPathError as error:
        sys.exit(f"error: --{error}")
    except OSError as error:
        sys.exit(f"error: cannot write {_OUTPUT_DIR.value}: {error.strerror or error}")
    print(f"Wrote {_OUTPUT_DIR.value} from {checkpoint} (step {step}): signature "
          "'serving_default' takes a uint8 image [height, width, 3], 'serving_batch' "
          "uint8 images [batch, height, width, 3] and int32 image_sizes [batch, 2]; "
          f"both return {', '.join(predictor.image_output_keys)}; 'metadata' returns "
          "the model's description as JSON")


def _export_network():
    """--format tflite / onnx: checks every flag before loading the model."""
    from deeplab2.data import records
    from deeplab2.export import calibration, files, onnx, tflite
    from deeplab2.model.model_dir import ModelDirError, read_model_config
    from deeplab2.utils.paths import OutputPathError

    values = flags.FLAGS
    module = tflite if _FORMAT.value == "tflite" else onnx
    path = _OUTPUT_FILE.value
    int8 = _FORMAT.value == "tflite" and _QUANTIZATION.value == "int8"
    if not path:
        sys.exit(f"error: --output_file is required with --format={_FORMAT.value}.")
    if values.scales != ["1.0"] or values.flip or values.shorter_side or values.max_longer_side:
        sys.exit("error: --scales, --flip, --shorter_side and --max_longer_side apply to the "
                 f"SavedModel only; a {_FORMAT.value} file holds the network alone.")
    if values.compute_dtype != "float32":
        sys.exit(f"error: --compute_dtype applies to the SavedModel only; a {_FORMAT.value} "
                 "file's precision is its --quantization.")
    if _FORMAT.value == "onnx" and _QUANTIZATION.value != "float32":
        sys.exit("error: --quantization applies to --format=tflite; ONNX is float32.")
    if int8 != bool(_CALIBRATION_PATTERN.value):
        sys.exit("error: --calibration_pattern is required with --quantization=int8, and "
                 "only then.")
    if not values.model_dir:
        sys.exit("error: --model_dir is required.")
    try:
        files.check_output_file(path, "--output_file", module.SUFFIX)
        input_size = _input_size(read_model_config(values.model_dir))
        if int8:
            records.list_files(_CALIBRATION_PATTERN.value, "--calibration_pattern")
    except (OutputPathError, ModelDirError, ValueError) as error:
        sys.exit(f"error: {error}")
    predictor, step, checkpoint = load_predictor_from_flags()
    model, config = predictor.model, predictor.config
    try:
        if _FORMAT.value == "onnx":
            info = onnx.export_onnx(model, path, input_size, config=config)
        else:
            images = (calibration.calibration_images(_CALIBRATION_PATTERN.value, model,
                                                     input_size, _CALIBRATION_STEPS.value)
                      if int8 else None)
            info = tflite.export_tflite(model, path, input_size, _QUANTIZATION.value,
                                        images, config=config)
    except ValueError as error:  # conversion errors, records that do not decode
        sys.exit(f"error: {error}")
    except OSError as error:
        sys.exit(f"error: cannot write {path}: {error.strerror or error}")
    print(f"Wrote {path} ({info.quantization}) from {checkpoint} (step {step}): input "
          f"'image' float32 [batch, {info.input_size[0]}, {info.input_size[1]}, 3] in "
          f"[0, 255], outputs {', '.join(info.outputs)}; post-process them with "
          "deeplab2.export.tflite_postprocess")


def _input_size(config):
    """--input_size checked against the model (default: its training crop)."""
    from deeplab2.export import network

    if not _INPUT_SIZE.value:
        if config.crop_size is None:
            raise ValueError("--input_size is required: the model has no training crop.")
        return network.check_input_size(config, config.crop_size)
    try:
        size = [int(side) for side in _INPUT_SIZE.value]
    except ValueError:
        raise ValueError(f"--input_size must be height,width in pixels, got "
                         f"{','.join(_INPUT_SIZE.value)}.") from None
    return network.check_input_size(config, size)


if __name__ == "__main__":
    app.run(main)
