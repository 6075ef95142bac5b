"""Writes the built-in synthetic dataset (train and val splits) as sharded TFRecords.

  python scripts/convert_synthetic.py --output_dir=data/synthetic \
      --num_train=1000 --num_val=100 --seed=0
"""
import sys

from absl import app, flags

from deeplab2.data import synthetic
from deeplab2.data.converters import ConversionError, convert_synthetic

flags.DEFINE_string("output_dir", None, "Folder of the TFRecord shards.")
flags.DEFINE_integer("num_train", 1000, "Train scenes (0 skips the split).", lower_bound=0)
flags.DEFINE_integer("num_val", 100, "Val scenes (0 skips the split).", lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seed of the scene generator.")
flags.DEFINE_integer("height", synthetic.DEFAULT_HEIGHT, "Scene height.", lower_bound=32)
flags.DEFINE_integer("width", synthetic.DEFAULT_WIDTH, "Scene width.", lower_bound=32)
flags.DEFINE_integer("num_shards", 1, "Number of output shards per split.", lower_bound=1)
flags.DEFINE_integer("num_workers", None, "Parallel processes (default: all cores).",
                     lower_bound=1)
flags.mark_flags_as_required(["output_dir"])
FLAGS = flags.FLAGS


def main(argv):
    del argv  # unused
    try:
        convert_synthetic(FLAGS.output_dir, FLAGS.num_train, FLAGS.num_val, FLAGS.seed,
                          FLAGS.num_shards, FLAGS.num_workers, FLAGS.height, FLAGS.width)
    except ConversionError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
