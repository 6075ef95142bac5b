"""Converts a COCO panoptic format dataset (JSON + RGB PNGs) to sharded TFRecords.

Works for COCO panoptic, for the Cityscapes panoptic JSON of cityscapesScripts'
createPanopticImgs with train ids (--dataset=cityscapes), and for any dataset in
COCO panoptic format given its .json descriptor (--dataset=my_dataset.json; see
the README, "Your own dataset"):

  python scripts/convert_coco.py --panoptic_json=annotations/panoptic_val2017.json \
      --panoptic_dir=annotations/panoptic_val2017 --image_dir=val2017 \
      --output_dir=data/coco

Shards hold about 150 MB of records each; --shard_bytes changes the size and
--num_shards asks for an exact count instead.
"""
import sys

from absl import app, flags

from deeplab2.data.converters import convert_coco
from deeplab2.data.converters.cli import define_output_flags, run_conversion
from deeplab2.data.converters.coco import DATASETS
from deeplab2.data.dataset_info import UnknownDatasetError, resolve_dataset

define_output_flags()
flags.DEFINE_string("panoptic_json", None, "Panoptic annotation JSON file.")
flags.DEFINE_string("panoptic_dir", None, "Folder of the panoptic RGB PNGs.")
flags.DEFINE_string("image_dir", None, "Folder of the images (file_name of `images`).")
flags.DEFINE_string("dataset", "coco", f"Label space of the category ids: one of "
                    f"{', '.join(DATASETS)}, or the path of a .json dataset descriptor.")
flags.DEFINE_string("split", None, "Split name; default from the JSON file name, e.g. "
                    "panoptic_val2017.json -> val2017.")
flags.mark_flags_as_required(["panoptic_json", "panoptic_dir", "image_dir"])
FLAGS = flags.FLAGS


def main(argv):
    del argv  # unused
    try:
        info = resolve_dataset(FLAGS.dataset)
    except UnknownDatasetError as error:
        sys.exit(f"error: --dataset: {error}")
    run_conversion(convert_coco, FLAGS.panoptic_json, FLAGS.panoptic_dir, FLAGS.image_dir,
                   FLAGS.output_dir, info, FLAGS.split)


if __name__ == "__main__":
    app.run(main)
