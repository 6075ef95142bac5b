"""Writes a PNG per TFRecord example: ground truth over the image and its semantic map.

Example:
  python scripts/visualize.py --tfrecord_pattern='data/cityscapes/val-*.tfrecord' \
      --dataset=cityscapes --output_dir=/tmp/vis --max_examples=5
"""
import sys

from absl import app, flags

from deeplab2.data.dataset_info import UnknownDatasetError, resolve_dataset
from deeplab2.vis import records

_PATTERN = flags.DEFINE_string("tfrecord_pattern", None,
                               "Glob of the TFRecord files to read.", required=True)
_DATASET = flags.DEFINE_string("dataset", None,
                               "Registered dataset name (e.g. cityscapes) or the "
                               "path of a .json dataset descriptor.",
                               required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None,
                                  "Folder of the PNG files.", required=True)
_MAX_EXAMPLES = flags.DEFINE_integer("max_examples", 10,
                                     "Pictures to write; 0 or less writes all.")


def main(argv):
    del argv  # unused
    try:
        info = resolve_dataset(_DATASET.value)
    except UnknownDatasetError as error:
        sys.exit(f"error: --dataset: {error}")
    limit = _MAX_EXAMPLES.value if _MAX_EXAMPLES.value > 0 else None
    paths = records.write_pictures(records.read_examples(_PATTERN.value), info,
                                   _OUTPUT_DIR.value, limit)
    print(f"Wrote {len(paths)} pictures to {_OUTPUT_DIR.value}")


if __name__ == "__main__":
    app.run(main)
