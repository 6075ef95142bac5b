"""Converts one split of Cityscapes (official layout) to sharded TFRecords.

  python scripts/convert_cityscapes.py --cityscapes_root=/data/cityscapes \
      --split=val --output_dir=data/cityscapes

Shards hold about 150 MB of records each; --shard_bytes changes the size and
--num_shards asks for an exact count instead.
"""
from absl import app, flags

from deeplab2.data.converters import convert_cityscapes
from deeplab2.data.converters.cli import define_output_flags, run_conversion

define_output_flags()
flags.DEFINE_string("cityscapes_root", None, "Folder holding leftImg8bit/ and gtFine/.")
flags.DEFINE_enum("split", None, ["train", "val", "test"], "Split to convert.")
flags.mark_flags_as_required(["cityscapes_root", "split"])
FLAGS = flags.FLAGS


def main(argv):
    del argv  # unused
    run_conversion(convert_cityscapes, FLAGS.cityscapes_root, FLAGS.split, FLAGS.output_dir)


if __name__ == "__main__":
    app.run(main)
