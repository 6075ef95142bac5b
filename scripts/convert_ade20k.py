"""Converts one split of ADE20K panoptic to sharded TFRecords.

Reads the ADEChallengeData2016 folder once Mask2Former's
datasets/prepare_ade20k_pan_seg.py has added the panoptic annotations:

  ADEChallengeData2016/
    images/{training,validation}/ADE_*.jpg
    ade20k_panoptic_{train,val}.json      (COCO panoptic format)
    ade20k_panoptic_{train,val}/ADE_*.png  (RGB segment ids)

  python scripts/convert_ade20k.py --ade20k_root=/data/ADEChallengeData2016 \
      --split=val --output_dir=data/ade20k

Category ids 0..149 become classes 1..150 of the "ade20k" descriptor (100 things,
50 stuff); unlabeled pixels become void (class 0, the ignore label). Shards hold
about 150 MB of records each; --shard_bytes changes the size and --num_shards
asks for an exact count instead.
"""
from absl import app, flags

from deeplab2.data.converters.ade20k import IMAGE_FOLDERS, convert_ade20k
from deeplab2.data.converters.cli import define_output_flags, run_conversion

define_output_flags()
flags.DEFINE_string("ade20k_root", None, "The ADEChallengeData2016 folder: images/ and "
                    "the ade20k_panoptic_* files of prepare_ade20k_pan_seg.py.")
flags.DEFINE_enum("split", None, list(IMAGE_FOLDERS), "Split to convert.")
flags.mark_flags_as_required(["ade20k_root", "split"])
FLAGS = flags.FLAGS


def main(argv):
    del argv  # unused
    run_conversion(convert_ade20k, FLAGS.ade20k_root, FLAGS.split, FLAGS.output_dir)


if __name__ == "__main__":
    app.run(main)
