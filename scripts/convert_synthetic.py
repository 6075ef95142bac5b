"""Writes the built-in synthetic dataset (train and val splits) as sharded TFRecords.

  python scripts/convert_synthetic.py --output_dir=data/synthetic \
      --num_train=1000 --num_val=100 --seed=0

Shards hold about 150 MB of records each; --shard_bytes changes the size and
--num_shards asks for an exact count instead.
"""
from absl import app, flags

from deeplab2.data import synthetic
from deeplab2.data.converters import convert_synthetic
from deeplab2.data.converters.cli import define_output_flags, run_conversion

define_output_flags()
flags.DEFINE_integer("num_train", 1000, "Train scenes (0 skips the split).", lower_bound=0)
flags.DEFINE_integer("num_val", 100, "Val scenes (0 skips the split).", lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seed of the scene generator.")
flags.DEFINE_integer("height", synthetic.DEFAULT_HEIGHT, "Scene height.", lower_bound=32)
flags.DEFINE_integer("width", synthetic.DEFAULT_WIDTH, "Scene width.", lower_bound=32)
FLAGS = flags.FLAGS


def main(argv):
    del argv  # unused
    run_conversion(convert_synthetic, FLAGS.output_dir, FLAGS.num_train, FLAGS.num_val,
                   FLAGS.seed, height=FLAGS.height, width=FLAGS.width)


if __name__ == "__main__":
    app.run(main)
