"""Exports a model directory's model as a SavedModel serving one image of any size.

Every family gets the same signature (maps and instance tables), plus the
per-instance outputs it declares (Panoptic FPN: `boxes`).

Everything comes from the model directory (model_config.json and the latest
checkpoint, or --checkpoint); test-time augmentation and post-processing
overrides are flags. See deeplab2.export.

Example:
  python scripts/export_model.py --model_dir=runs/quickstart/model \\
      --output_dir=runs/quickstart/saved_model
"""
import sys

from absl import app, flags

from deeplab2.inference.cli import define_model_flags, load_predictor_from_flags
from deeplab2.utils.console import configure_logging

define_model_flags()
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write the SavedModel.",
                                  required=True)
_XLA = flags.DEFINE_bool("xla", False, "Compile the whole serving function with XLA "
                         "(once per input size); the post-processing always is.")
_MAX_SIDE = flags.DEFINE_integer("max_side", 4096, "Longest image side the SavedModel "
                                 "serves; larger images get an error.", lower_bound=1)


def main(argv):
    del argv  # unused
    configure_logging()
    from deeplab2 import export
    from deeplab2.utils.paths import OutputPathError

    predictor, step, checkpoint = load_predictor_from_flags()
    try:
        export.export_saved_model(predictor, _OUTPUT_DIR.value, jit_compile=_XLA.value,
                                  max_side=_MAX_SIDE.value)
    except OutputPathError as error:
        sys.exit(f"error: --{error}")
    except OSError as error:
        sys.exit(f"error: cannot write {_OUTPUT_DIR.value}: {error.strerror or error}")
    print(f"Wrote {_OUTPUT_DIR.value} from {checkpoint} (step {step}): signature "
          "'serving_default' takes a uint8 image [height, width, 3] and returns "
          f"{', '.join(predictor.image_output_keys)}")


if __name__ == "__main__":
    app.run(main)
