"""Converts one split of Cityscapes (official layout) to sharded TFRecords.

  python scripts/convert_cityscapes.py --cityscapes_root=/data/cityscapes \
      --split=val --output_dir=data/cityscapes --num_shards=10
"""
import sys

from absl import app, flags

from deeplab2.data.converters import ConversionError, convert_cityscapes

flags.DEFINE_string("cityscapes_root", None, "Folder holding leftImg8bit/ and gtFine/.")
flags.DEFINE_enum("split", None, ["train", "val", "test"], "Split to convert.")
flags.DEFINE_string("output_dir", None, "Folder of the TFRecord shards.")
flags.DEFINE_integer("num_shards", 1, "Number of output shards.", lower_bound=1)
flags.DEFINE_integer("num_workers", None, "Parallel processes (default: all cores).",
                     lower_bound=1)
flags.mark_flags_as_required(["cityscapes_root", "split", "output_dir"])
FLAGS = flags.FLAGS


def main(argv):
    del argv  # unused
    try:
        convert_cityscapes(FLAGS.cityscapes_root, FLAGS.split, FLAGS.output_dir,
                           FLAGS.num_shards, FLAGS.num_workers)
    except ConversionError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
