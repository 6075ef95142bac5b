"""Tiny source datasets written into a test's tmp_path, and readers of converted shards.

Broken variants of these (missing files, corrupt bytes, bad ids) exercise the
converters' error checks without touching the real sample data.
"""
import glob
import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from deeplab2.data.tfrecord import decode_example


def write_png(path, array):
    """Writes uint8 gray/RGB or uint16 gray `array` as PNG, creating folders."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def random_rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def cityscapes_instance_ids(height=16, width=24):
    """Road, sky, two cars, a crowd car, a person, a caravan (ignored), unlabeled."""
    ids = np.full((height, width), 7, np.uint16)  # road
    ids[:4] = 23  # sky
    ids[5:8, 1:5] = 26001
    ids[5:8, 6:9] = 26003
    ids[9:12, 1:6] = 26  # crowd car
    ids[9:12, 10:12] = 24002
    ids[12:14, 14:20] = 29001  # caravan: ignored
    ids[-1] = 1  # ego vehicle: ignored
    return ids


def write_cityscapes_image(root, split, city, name, instance_ids, image_size=None):
    """One image of the official layout; labelIds derived from `instance_ids`."""
    height, width = image_size or instance_ids.shape
    write_png(f"{root}/leftImg8bit/{split}/{city}/{name}_leftImg8bit.png",
              random_rgb(height, width))
    label_ids = np.where(instance_ids >= 1000, instance_ids // 1000, instance_ids)
    write_png(f"{root}/gtFine/{split}/{city}/{name}_gtFine_instanceIds.png",
              instance_ids.astype(np.uint16))
    write_png(f"{root}/gtFine/{split}/{city}/{name}_gtFine_labelIds.png",
              label_ids.astype(np.uint8))


def coco_rgb(ids):
    """The COCO panoptic RGB encoding of an integer id map."""
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)


def write_coco(root, annotations, image_format="JPEG"):
    """A COCO panoptic tree: `annotations` is a list of (image id, id map, segments_info)."""
    os.makedirs(f"{root}/images", exist_ok=True)
    images, entries = [], []
    for image_id, ids, segments in annotations:
        name = f"{image_id:012d}"
        extension = ".jpg" if image_format == "JPEG" else ".png"
        Image.fromarray(random_rgb(*ids.shape)).save(f"{root}/images/{name}{extension}",
                                                     format=image_format)
        write_png(f"{root}/panoptic/{name}.png", coco_rgb(ids))
        images.append({"id": image_id, "file_name": name + extension,
                       "height": int(ids.shape[0]), "width": int(ids.shape[1])})
        entries.append({"image_id": image_id, "file_name": name + ".png",
                        "segments_info": segments})
    with open(f"{root}/panoptic_val2017.json", "w") as f:
        json.dump({"images": images, "annotations": entries, "categories": []}, f)
    return f"{root}/panoptic_val2017.json"


def coco_segments_map(height=12, width=16):
    """An id map and segments_info: two persons, a crowd person, a wall, void."""
    ids = np.full((height, width), 5, np.int64)  # wall (category 171)
    ids[2:6, 2:6] = 300
    ids[2:6, 8:12] = 70000
    ids[7:10, 1:9] = 8
    ids[-1] = 0  # void
    segments = [{"id": 300, "category_id": 1, "iscrowd": 0},
                {"id": 8, "category_id": 1, "iscrowd": 1},
                {"id": 70000, "category_id": 1, "iscrowd": 0},
                {"id": 5, "category_id": 171, "iscrowd": 0}]
    return ids, segments


def read_split(output_dir, split):
    """(decoded examples as numpy, raw feature maps) of a converted split, in order."""
    decoded, raw = [], []
    for path in sorted(glob.glob(os.path.join(output_dir, f"{split}-*.tfrecord"))):
        for record in tf.data.TFRecordDataset(path):
            decoded.append({k: v.numpy() for k, v in decode_example(record).items()})
            raw.append(tf.train.Example.FromString(record.numpy()).features.feature)
    return decoded, raw


def raw_bytes(feature_map, key):
    return feature_map[key].bytes_list.value[0]
