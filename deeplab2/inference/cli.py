"""Command-line flags of the scripts that start from a model directory
(predict.py, evaluate.py, export_model.py): the model, its checkpoint,
test-time augmentation and size, post-processing overrides, compute dtype."""
import sys
from typing import Tuple

from absl import flags

from deeplab2.inference.loading import load_predictor, parse_overrides
from deeplab2.model.builder import COMPUTE_DTYPES
from deeplab2.utils.cpu_features import native_bfloat16


def define_model_flags() -> None:
    flags.DEFINE_string("model_dir", None, "Model directory (model_config.json and "
                        "checkpoints, as trainer.py writes it).")
    flags.DEFINE_string("checkpoint", None, "Checkpoint prefix, or a folder (its latest "
                        "checkpoint); default: the latest in --model_dir.")
    flags.DEFINE_list("scales", ["1.0"], "Test-time scales, e.g. 0.5,0.75,1,1.25,1.5.")
    flags.DEFINE_bool("flip", False, "Also predict left-right flipped images (test time).")
    flags.DEFINE_integer("shorter_side", None, "Test-time size: resize each image so that "
                         "its shorter side has this many pixels (e.g. 800 for the top-down "
                         "models on COCO), unless --max_longer_side is then exceeded.")
    flags.DEFINE_integer("max_longer_side", None, "With --shorter_side: the longest the "
                         "longer side may become (e.g. 1333).")
    flags.DEFINE_multi_string("postprocess", [], "Post-processing option overriding the "
                              "model's, key=value (e.g. nms_kernel=13); repeatable.")
    flags.DEFINE_enum("compute_dtype", "float32", list(COMPUTE_DTYPES),
                      "The network's arithmetic: bfloat16 (mixed precision) is about "
                      "2.8x faster on CPUs with AMX or AVX512-BF16; post-processing "
                      "stays float32.")


def load_predictor_from_flags() -> Tuple:
    """(predictor, step, checkpoint path) from the flags; exits with a one-line
    error when the model directory, checkpoint or an option is wrong."""
    from deeplab2.model.model_dir import ModelDirError

    values = flags.FLAGS
    if not values.model_dir:
        sys.exit("error: --model_dir is required.")
    if values.compute_dtype == "bfloat16" and native_bfloat16() is False:
        print("warning: this CPU has no bfloat16 instructions (AVX512-BF16, AMX): "
              "--compute_dtype=bfloat16 runs emulated, slower than float32.",
              file=sys.stderr)
    try:
        scales = tuple(float(s) for s in values.scales)
        return load_predictor(values.model_dir, values.checkpoint, scales=scales,
                              flip=values.flip,
                              postprocess=parse_overrides(values.postprocess),
                              shorter_side=values.shorter_side,
                              max_longer_side=values.max_longer_side,
                              compute_dtype=values.compute_dtype)
    except (ModelDirError, ValueError) as error:
        sys.exit(f"error: {error}")
