"""Converts one split of Mapillary Vistas (official layout) to sharded TFRecords.

  python scripts/convert_mapillary_vistas.py --vistas_root=/data/vistas \
      --split=training --version=v1.2 --max_resize=2177 --output_dir=data/mapillary_vistas

--version v1.2 writes the 65 classes of the "mapillary_vistas" descriptor, v2.0
the 116 evaluated classes of "mapillary_vistas_v2"; training and validation are
written as the splits "train" and "val". --max_resize shrinks images to that
longest side (the papers use 2177) and reports the segments that vanish.
Shards hold about 150 MB of records each; --shard_bytes changes the size and
--num_shards asks for an exact count instead.
"""
from absl import app, flags

from deeplab2.data.converters import convert_mapillary_vistas
from deeplab2.data.converters.cli import define_output_flags, run_conversion
from deeplab2.data.converters.mapillary_vistas import LAYOUTS, SPLITS

define_output_flags()
flags.DEFINE_string("vistas_root", None, "Folder holding the config JSONs and the "
                    "training/ and validation/ folders.")
flags.DEFINE_enum("split", None, list(SPLITS), "Split to convert.")
flags.DEFINE_enum("version", None, list(LAYOUTS), "Label version.")
flags.DEFINE_integer("max_resize", None, "Shrink images whose longer side exceeds this "
                     "(aspect kept; image bilinear, label nearest neighbour).", lower_bound=1)
flags.mark_flags_as_required(["vistas_root", "split", "version"])
FLAGS = flags.FLAGS


def main(argv):
    del argv  # unused
    run_conversion(convert_mapillary_vistas, FLAGS.vistas_root, FLAGS.split, FLAGS.version,
                   FLAGS.output_dir, max_resize=FLAGS.max_resize)


if __name__ == "__main__":
    app.run(main)
