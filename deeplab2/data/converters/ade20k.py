"""ADE20K panoptic (Mask2Former's prepare_ade20k_pan_seg.py layout) -> TFRecords.

The annotations are in COCO panoptic format, so conversion is the COCO
converter's with the "ade20k" descriptor; this module only knows where the
files of a split lie under the ADEChallengeData2016 folder:

  ADEChallengeData2016/
    images/{training,validation}/ADE_*.jpg
    ade20k_panoptic_{train,val}.json      (COCO panoptic format)
    ade20k_panoptic_{train,val}/ADE_*.png  (RGB segment ids)
"""
import os
from typing import Any, Dict, Tuple

from deeplab2.data.converters.coco import convert_coco
from deeplab2.data.converters.common import ConversionError

# Split name -> its folder under images/.
IMAGE_FOLDERS = {"train": "training", "val": "validation"}


def ade20k_sources(root: str, split: str) -> Tuple[str, str, str]:
    """(panoptic JSON, panoptic PNG folder, image folder) of `split` under `root`;
    the first one missing is a ConversionError naming the path expected."""
    panoptic_json = os.path.join(root, f"ade20k_panoptic_{split}.json")
    panoptic_dir = os.path.join(root, f"ade20k_panoptic_{split}")
    image_dir = os.path.join(root, "images", IMAGE_FOLDERS[split])
    expected = (("ADE20K root folder", root, os.path.isdir),
                ("image folder", image_dir, os.path.isdir),
                ("panoptic JSON", panoptic_json, os.path.isfile),
                ("panoptic PNG folder", panoptic_dir, os.path.isdir))
    for what, path, exists in expected:
        if not exists(path):
            hint = "" if path in (root, image_dir) else \
                " (made by Mask2Former's datasets/prepare_ade20k_pan_seg.py)"
            raise ConversionError(f"missing {what}: {path} not found{hint}")
    return panoptic_json, panoptic_dir, image_dir


def convert_ade20k(root: str, split: str, output_dir: str, **options) -> Dict[str, Any]:
    """Converts `split` ("train" or "val") of the ADEChallengeData2016 folder
    `root`; `options` go to convert_coco (shards, workers)."""
    return convert_coco(*ade20k_sources(root, split), output_dir, dataset="ade20k",
                        split=split, **options)
