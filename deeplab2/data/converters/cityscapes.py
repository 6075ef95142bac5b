"""Cityscapes in its official layout -> TFRecords with train-id panoptic labels.

Reads `leftImg8bit/<split>/<city>/*_leftImg8bit.png` and, except for the test
split, `gtFine/<split>/<city>/*_gtFine_{instanceIds,labelIds}.png`. instanceIds
hold labelId * 1000 + k for instances and labelId for stuff and crowd regions.
Label ids become the 19 train ids of the "cityscapes" descriptor (all others,
e.g. caravan and trailer, become ignore); a thing region below 1000 is crowd.
Instances are renumbered 1..n per class in increasing order of source value.
"""
import dataclasses
import glob
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from deeplab2.data.converters.common import (ConversionError, ExampleStats, SourceImage,
                                             check_same_size, read_image, read_label_png,
                                             serialize)
from deeplab2.data.converters.writer import write_split
from deeplab2.data.dataset_info import get_dataset_info

_NUM_LABEL_IDS = 34  # label ids 0..33; license plate (-1) never appears in files
_SOURCE_DIVISOR = 1000  # instanceIds = labelId * 1000 + k
_IMAGE_SUFFIX = "_leftImg8bit.png"
_INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
_LABEL_SUFFIX = "_gtFine_labelIds.png"


@dataclasses.dataclass(frozen=True)
class CityscapesItem:
    """The files of one image; label paths are None in the unlabeled test split."""
    image_path: str
    instance_path: Optional[str]
    label_path: Optional[str]


def _key(path: str, suffix: str) -> Tuple[str, str]:
    """(city, image name) of a Cityscapes file."""
    return os.path.basename(os.path.dirname(path)), os.path.basename(path)[:-len(suffix)]


def list_cityscapes(root: str, split: str) -> List[CityscapesItem]:
    """Pairs every image of `split` with its label files, sorted by city and name."""
    image_glob = os.path.join(root, "leftImg8bit", split, "*", "*" + _IMAGE_SUFFIX)
    images = {_key(p, _IMAGE_SUFFIX): p for p in glob.glob(image_glob)}
    if split == "test":
        if not images:
            raise ConversionError(f"empty split {split!r}: no files match {image_glob}")
        return [CityscapesItem(images[k], None, None) for k in sorted(images)]
    label_glob = os.path.join(root, "gtFine", split, "*", "*" + _INSTANCE_SUFFIX)
    labels = {_key(p, _INSTANCE_SUFFIX): p for p in glob.glob(label_glob)}
    if not images and not labels:
        raise ConversionError(
            f"empty split {split!r}: no files match {image_glob} or {label_glob}")
    unmatched = sorted(labels.keys() - images.keys())
    if unmatched:
        city, name = unmatched[0]
        expected = os.path.join(root, "leftImg8bit", split, city, name + _IMAGE_SUFFIX)
        raise ConversionError(f"missing image for label {labels[city, name]}: "
                              f"{expected} not found")
    unmatched = sorted(images.keys() - labels.keys())
    if unmatched:
        city, name = unmatched[0]
        expected = os.path.join(root, "gtFine", split, city, name + _INSTANCE_SUFFIX)
        raise ConversionError(f"missing label for image {images[city, name]}: "
                              f"{expected} not found")
    items = []
    for key in sorted(images):
        instance_path = labels[key]
        label_path = instance_path[:-len(_INSTANCE_SUFFIX)] + _LABEL_SUFFIX
        if not os.path.isfile(label_path):
            raise ConversionError(f"missing labelIds for label {instance_path}: "
                                  f"{label_path} not found")
        items.append(CityscapesItem(images[key], instance_path, label_path))
    return items


def _read_gray(path: str, image_path: str, image: SourceImage) -> np.ndarray:
    """A single-channel label PNG of the image's size, as int64."""
    label = read_label_png(path)
    if label.ndim != 2:
        raise ConversionError(f"label {path} has {label.shape[2]} channels; expected 1")
    check_same_size(image_path, image, path, label)
    return label.astype(np.int64)


def _train_id_lut() -> np.ndarray:
    """Train id of each label id; ignore for label ids that are not evaluated."""
    info = get_dataset_info("cityscapes")
    lut = np.full(_NUM_LABEL_IDS, info.ignore_label, np.int64)
    lut[list(info.source_ids)] = np.arange(info.num_classes)
    return lut


def _panoptic_ids(values: Sequence[int], train_ids: Sequence[int],
                  path: str) -> Tuple[np.ndarray, np.ndarray]:
    """Panoptic id and crowd flag of each distinct instanceIds value (ascending)."""
    info = get_dataset_info("cityscapes")
    ids = np.empty(len(values), np.int64)
    crowd = np.zeros(len(values), bool)
    instances: Dict[int, int] = {}
    for i, (value, train_id) in enumerate(zip(values, train_ids)):
        if train_id == info.ignore_label:
            ids[i] = info.ignore_panoptic_id
        elif value < _SOURCE_DIVISOR:  # stuff, or a crowd region of a thing class
            ids[i] = train_id * info.label_divisor
            crowd[i] = info.is_thing(train_id)
        elif not info.is_thing(train_id):
            raise ConversionError(f"{path}: instance value {value} of stuff class "
                                  f"{info.class_names[train_id]!r}")
        else:
            instances[train_id] = instances.get(train_id, 0) + 1
            if instances[train_id] >= info.label_divisor:
                raise ConversionError(
                    f"{path}: instance id {instances[train_id]} of class "
                    f"{info.class_names[train_id]!r} overflows the label divisor "
                    f"{info.label_divisor}")
            ids[i] = train_id * info.label_divisor + instances[train_id]
    return ids, crowd


def _segments(instance_ids: np.ndarray, label_ids: np.ndarray, instance_path: str,
              label_path: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment map, panoptic ids and crowd flags of one image's labels."""
    # Distinct values and each pixel's position among them; counting is much
    # faster than np.unique's sort, and 16-bit PNG values keep the counts small.
    flat = instance_ids.ravel()
    values = np.flatnonzero(np.bincount(flat))
    position = np.zeros(values[-1] + 1, np.int64)
    position[values] = np.arange(len(values))
    inverse = position[flat]
    source_labels = np.where(values >= _SOURCE_DIVISOR, values // _SOURCE_DIVISOR, values)
    unknown = values[source_labels >= _NUM_LABEL_IDS]
    if unknown.size:
        raise ConversionError(f"{instance_path}: unknown category: values "
                              f"{unknown.tolist()} have no Cityscapes label id "
                              f"(0..{_NUM_LABEL_IDS - 1})")
    disagree = np.flatnonzero(source_labels[inverse] != label_ids.ravel())
    if disagree.size:
        y, x = divmod(int(disagree[0]), label_ids.shape[1])
        raise ConversionError(
            f"{label_path} disagrees with {instance_path} at {disagree.size} pixels, e.g. "
            f"(y={y}, x={x}): labelId {label_ids[y, x]} vs instanceIds {instance_ids[y, x]}")
    ids, crowd = _panoptic_ids(values.tolist(), _train_id_lut()[source_labels].tolist(),
                               instance_path)
    # Values that share a panoptic id (e.g. several ignored label ids) share an entry.
    table_ids, table_index = np.unique(ids, return_inverse=True)
    table_crowd = np.zeros(len(table_ids), np.int64)
    table_crowd[table_index] = crowd
    segment_map = table_index[inverse].reshape(instance_ids.shape)
    return segment_map, table_ids, table_crowd


def convert_item(item: CityscapesItem) -> Tuple[bytes, ExampleStats]:
    """Reads, checks and serializes one image with its label (all-ignore for test)."""
    image = read_image(item.image_path)
    image_name = os.path.basename(item.image_path)
    image_id = image_name[:-len(_IMAGE_SUFFIX)]
    ignore_id = get_dataset_info("cityscapes").ignore_panoptic_id
    if item.instance_path is None:
        segment_map = np.zeros((image.height, image.width), np.uint8)
        return serialize(image, segment_map, [ignore_id], [0], image_id, image_name,
                         ignore_id)
    instance_ids = _read_gray(item.instance_path, item.image_path, image)
    label_ids = _read_gray(item.label_path, item.image_path, image)
    segment_map, ids, crowd = _segments(instance_ids, label_ids, item.instance_path,
                                        item.label_path)
    return serialize(image, segment_map, ids.tolist(), crowd.tolist(), image_id, image_name,
                     ignore_id)


def convert_cityscapes(root: str, split: str, output_dir: str,
                       num_shards: Optional[int] = None, num_workers: Optional[int] = None,
                       shard_bytes: Optional[int] = None) -> Dict[str, Any]:
    """Converts one split of a Cityscapes tree; returns the split summary.

    Shards are sized by bytes unless `num_shards` is given (see write_split).
    """
    items = list_cityscapes(root, split)
    return write_split(items, convert_item, output_dir, split, "cityscapes",
                       num_shards=num_shards, num_workers=num_workers,
                       shard_bytes=shard_bytes)
