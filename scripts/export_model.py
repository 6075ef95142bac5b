"""Exports a trained checkpoint as a SavedModel that serves one image of any size.

The model, dataset and Predictor options (test-time augmentation, post-processing)
come from the Gin configs the model was trained with; see deeplab2.export.

Example:
  python scripts/export_model.py --gin_config=configs/synthetic/quickstart.gin \\
      --checkpoint=runs/quickstart --output_dir=exported/quickstart
"""
import sys

from absl import app, flags

from deeplab2.training.config import define_gin_flags, parse_gin_flags_or_exit

define_gin_flags()
_CHECKPOINT = flags.DEFINE_string("checkpoint", None,
                                  "Checkpoint prefix, or a directory (its latest).",
                                  required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write the SavedModel.",
                                  required=True)
_XLA = flags.DEFINE_bool("xla", False, "Compile the whole serving function with XLA "
                         "(once per input size); the post-processing always is.")


def main(argv):
    del argv  # unused
    parse_gin_flags_or_exit()
    from deeplab2 import export

    try:
        predictor = export.restore_predictor(_CHECKPOINT.value)
    except (ValueError, AssertionError) as error:
        sys.exit(f"error: cannot restore {_CHECKPOINT.value!r}: {error}")
    export.export_saved_model(predictor, _OUTPUT_DIR.value, jit_compile=_XLA.value)
    print(f"Wrote {_OUTPUT_DIR.value} (signature 'serving_default': uint8 image "
          f"[height, width, 3] -> panoptic, semantic, instance maps and instance tables)")


if __name__ == "__main__":
    app.run(main)
