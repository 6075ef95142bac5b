"""Converts a COCO panoptic format dataset (JSON + RGB PNGs) to sharded TFRecords.

Works for COCO panoptic and for the Cityscapes panoptic JSON of cityscapesScripts'
createPanopticImgs with train ids (--dataset=cityscapes):

  python scripts/convert_coco.py --panoptic_json=annotations/panoptic_val2017.json \
      --panoptic_dir=annotations/panoptic_val2017 --image_dir=val2017 \
      --output_dir=data/coco --num_shards=8
"""
import sys

from absl import app, flags

from deeplab2.data.converters import ConversionError, convert_coco
from deeplab2.data.converters.coco import DATASETS

flags.DEFINE_string("panoptic_json", None, "Panoptic annotation JSON file.")
flags.DEFINE_string("panoptic_dir", None, "Folder of the panoptic RGB PNGs.")
flags.DEFINE_string("image_dir", None, "Folder of the images (file_name of `images`).")
flags.DEFINE_string("output_dir", None, "Folder of the TFRecord shards.")
flags.DEFINE_enum("dataset", "coco", list(DATASETS), "Label space of the category ids.")
flags.DEFINE_string("split", None, "Split name; default from the JSON file name, e.g. "
                    "panoptic_val2017.json -> val2017.")
flags.DEFINE_integer("num_shards", 1, "Number of output shards.", lower_bound=1)
flags.DEFINE_integer("num_workers", None, "Parallel processes (default: all cores).",
                     lower_bound=1)
flags.mark_flags_as_required(["panoptic_json", "panoptic_dir", "image_dir", "output_dir"])
FLAGS = flags.FLAGS


def main(argv):
    del argv  # unused
    try:
        convert_coco(FLAGS.panoptic_json, FLAGS.panoptic_dir, FLAGS.image_dir,
                     FLAGS.output_dir, FLAGS.dataset, FLAGS.split, FLAGS.num_shards,
                     FLAGS.num_workers)
    except ConversionError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
