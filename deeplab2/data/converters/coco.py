"""COCO panoptic format (JSON + RGB PNGs) -> TFRecords.

Serves COCO panoptic, the Cityscapes panoptic JSON that cityscapesScripts'
createPanopticImgs writes with train ids, and the ADE20K panoptic JSON of
Mask2Former's prepare_ade20k_pan_seg.py. PNG pixel id = R + 256*G + 256^2*B,
0 = void (ignore); `segments_info` gives each id's category and crowd flag.
Category ids become class ids of the chosen descriptor; thing instances are
renumbered 1..n per class in the order of `segments_info`; crowd and stuff
segments get instance 0.
"""
import dataclasses
import functools
import json
import os
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from deeplab2.data.converters.common import (ConversionError, ExampleStats, PanopticExample,
                                             check_same_size, read_image, read_label_png,
                                             serialize)
from deeplab2.data.converters.writer import write_split
from deeplab2.data.dataset_info import DatasetInfo, dataset_names, resolve_dataset
from deeplab2.utils.paths import path_inside

DATASETS = ("coco", "cityscapes", "ade20k")
# Words of panoptic JSON file names that say nothing about the split.
_NON_SPLIT_WORDS = ("coco", "cityscapes", "ade20k", "panoptic", "trainid")


@dataclasses.dataclass(frozen=True)
class CocoItem:
    """The files and segments of one annotated image."""
    image_path: str
    panoptic_path: str
    image_id: str
    segments: Tuple[Tuple[int, int, int], ...]  # (segment id, category id, iscrowd)


def category_to_class(info: DatasetInfo) -> Dict[int, int]:
    """Class id of each category id found in the dataset's panoptic JSON.

    COCO and ADE20K JSONs use their category ids (the descriptor's source ids; ADE20K's
    are 0..149), as do datasets of a .json descriptor (its classes' "id"); the
    Cityscapes panoptic JSON is written with train ids, which are the class ids.
    """
    if info.name == "cityscapes":
        return {c: c for c in range(info.num_classes)}
    if info.name in ("coco", "ade20k") or info.name not in dataset_names():
        return {s: c for c, s in enumerate(info.source_ids) if c != info.ignore_label}
    raise ValueError(f"No COCO panoptic category mapping for dataset {info.name!r}; "
                     f"expected one of {DATASETS} or a .json dataset descriptor.")


def default_split_name(panoptic_json: str) -> str:
    """Split name from a JSON file name: panoptic_val2017.json -> "val2017",
    cityscapes_panoptic_val_trainId.json and ade20k_panoptic_val.json -> "val"."""
    stem = os.path.splitext(os.path.basename(panoptic_json))[0]
    words = [w for w in stem.split("_") if w.lower() not in _NON_SPLIT_WORDS]
    return "_".join(words) or stem


def _image_candidates(image_dir: str, file_name: str, source: str) -> List[str]:
    """Where an image may be: `image_dir/file_name`, or in Cityscapes' per-city folder
    (leftImg8bit/<split>/<city>/<city>_..._leftImg8bit.png) when image_dir is the split."""
    candidates = [path_inside(image_dir, file_name, source)]
    city = file_name.split("_")[0]
    if city != file_name and "/" not in file_name:
        candidates.append(path_inside(os.path.join(image_dir, city), file_name, source))
    return candidates


def _segments(annotation: Dict, panoptic_json: str) -> Tuple[Tuple[int, int, int], ...]:
    """(id, category id, iscrowd) of each entry of an annotation's segments_info."""
    segments = []
    for segment in annotation["segments_info"]:
        crowd = segment.get("iscrowd", 0)
        values = (segment["id"], segment["category_id"], crowd)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values[:2]) \
                or crowd not in (0, 1):
            raise ConversionError(
                f"{panoptic_json}: segment {segment.get('id')!r} of image "
                f"{annotation['image_id']!r}: id and category_id must be integers and "
                f"iscrowd 0 or 1, got {values!r}")
        segments.append((values[0], values[1], int(crowd)))
    return tuple(segments)


def _repeated(values) -> List:
    seen, repeated = set(), []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.add(value)
    return repeated


def read_panoptic_json(panoptic_json: str) -> Dict[str, Any]:
    """The parsed panoptic JSON; an unreadable file is a ConversionError naming it."""
    try:
        with open(panoptic_json) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ConversionError(f"cannot read panoptic JSON {panoptic_json}: {e}") from None


def list_coco(panoptic_json: str, panoptic_dir: str, image_dir: str) -> List[CocoItem]:
    """One item per annotation of the JSON, in file order, with existing files."""
    return coco_items(read_panoptic_json(panoptic_json), panoptic_json, panoptic_dir,
                      image_dir)


def coco_items(data: Dict[str, Any], panoptic_json: str, panoptic_dir: str,
               image_dir: str) -> List[CocoItem]:
    """list_coco on the already parsed `data` of the file `panoptic_json`.

    Image ids must be unique among `images` and among `annotations`, and every
    annotation needs its image; file names must stay inside their folders.
    """
    try:
        images = [(image["id"], image["file_name"]) for image in data["images"]]
        annotations = [(a["image_id"], a["file_name"], _segments(a, panoptic_json))
                       for a in data["annotations"]]
    except (KeyError, TypeError) as e:
        raise ConversionError(f"malformed panoptic JSON {panoptic_json}: missing or bad "
                              f"field {e}") from None
    if not annotations:
        raise ConversionError(f"empty split: {panoptic_json} has no annotations")
    for what, ids in (("images", [i for i, _ in images]),
                      ("annotations", [i for i, _, _ in annotations])):
        repeated = _repeated(ids)
        if repeated:
            raise ConversionError(f"{panoptic_json}: image ids {repeated[:10]} appear more "
                                  f"than once in {what!r}; expected one entry per image")
    file_names = dict(images)
    unknown = [i for i, _, _ in annotations if i not in file_names]
    if unknown:
        raise ConversionError(f"{panoptic_json}: annotations of image ids {unknown[:10]} "
                              "have no entry in 'images'")
    items = []
    for image_id, label_name, segments in annotations:
        panoptic_path = path_inside(
            panoptic_dir, label_name,
            f"{panoptic_json}: file_name of the annotation of image {image_id!r}")
        candidates = _image_candidates(
            image_dir, file_names[image_id],
            f"{panoptic_json}: file_name of image {image_id!r}")
        image_path = next((p for p in candidates if os.path.isfile(p)), None)
        if image_path is None:
            raise ConversionError(f"missing image for label {panoptic_path}: "
                                  f"{' or '.join(candidates)} not found")
        if not os.path.isfile(panoptic_path):
            raise ConversionError(f"missing label for image {image_path}: "
                                  f"{panoptic_path} not found")
        items.append(CocoItem(image_path, panoptic_path, str(image_id), segments))
    return items


def _table(item: CocoItem, info: DatasetInfo,
           categories: Dict[int, int]) -> Tuple[List[int], List[int]]:
    """Panoptic id and crowd flag of each segment, in segments_info order."""
    ids, crowd = [], []
    instances: Dict[int, int] = {}
    for segment_id, category_id, is_crowd in item.segments:
        if category_id not in categories:
            raise ConversionError(f"{item.panoptic_path}: unknown category id {category_id} "
                                  f"(segment {segment_id} of image {item.image_id}) for "
                                  f"dataset {info.name}")
        class_id = categories[category_id]
        instance = 0
        if info.is_thing(class_id) and not is_crowd:
            instance = instances[class_id] = instances.get(class_id, 0) + 1
            if instance >= info.label_divisor:
                raise ConversionError(
                    f"{item.panoptic_path}: instance id {instance} of class "
                    f"{info.class_names[class_id]!r} (segment {segment_id} of image "
                    f"{item.image_id}) overflows the label divisor {info.label_divisor}")
        ids.append(class_id * info.label_divisor + instance)
        crowd.append(1 if is_crowd else 0)
    return ids, crowd


def convert_item(item: CocoItem, info: DatasetInfo) -> Tuple[bytes, ExampleStats]:
    """Reads, checks and serializes one annotated image."""
    example = read_panoptic_example(item, info, category_to_class(info))
    return serialize(*example, item.image_id, os.path.basename(item.image_path),
                     info.ignore_panoptic_id)


def read_panoptic_example(item: CocoItem, info: DatasetInfo,
                          categories: Dict[int, int]) -> PanopticExample:
    """Reads and checks one annotated image; `categories` gives the class id of
    each category id. Table entry i is segments_info[i]; void pixels, if any,
    get one more entry, the ignore id, at the end."""
    image = read_image(item.image_path)
    rgb = read_label_png(item.panoptic_path)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ConversionError(f"label {item.panoptic_path} has shape {rgb.shape}; "
                              "expected an RGB PNG")
    check_same_size(item.image_path, image, item.panoptic_path, rgb)
    rgb = rgb.astype(np.int64)
    pixel_ids = rgb[:, :, 0] + 256 * rgb[:, :, 1] + 256 * 256 * rgb[:, :, 2]
    values, inverse = np.unique(pixel_ids.ravel(), return_inverse=True)

    index = {segment_id: i for i, (segment_id, _, _) in enumerate(item.segments)}
    if len(index) != len(item.segments):
        raise ConversionError(f"{item.panoptic_path}: segments_info of image "
                              f"{item.image_id} repeats a segment id")
    unlisted = [v for v in values.tolist() if v != 0 and v not in index]
    if unlisted:
        raise ConversionError(f"{item.panoptic_path}: segment id {unlisted[0]} is in the "
                              f"PNG but not in segments_info of image {item.image_id}")
    absent = sorted(index.keys() - set(values.tolist()))
    if absent:
        raise ConversionError(f"{item.panoptic_path}: segment id {absent[0]} of "
                              f"segments_info (image {item.image_id}) is absent from the PNG")
    ids, crowd = _table(item, info, categories)
    if 0 in values and 0 not in index:  # void pixels: one ignore entry at the end
        index[0] = len(ids)
        ids.append(info.ignore_panoptic_id)
        crowd.append(0)
    lut = np.array([index[v] for v in values.tolist()], np.int64)
    segment_map = lut[inverse].reshape(pixel_ids.shape)
    return PanopticExample(image, segment_map, ids, crowd)


def convert_coco(panoptic_json: str, panoptic_dir: str, image_dir: str, output_dir: str,
                 dataset: Union[str, DatasetInfo] = "coco", split: Optional[str] = None,
                 num_shards: Optional[int] = None, num_workers: Optional[int] = None,
                 shard_bytes: Optional[int] = None) -> Dict[str, Any]:
    """Converts every annotated image of a panoptic JSON; returns the split summary.

    `dataset` is a name, a .json descriptor's path or a DatasetInfo (see
    resolve_dataset). `split` defaults to default_split_name(panoptic_json).
    Shards are sized by bytes unless `num_shards` is given (see write_split).
    """
    info = resolve_dataset(dataset)
    category_to_class(info)  # fail fast on an unsupported dataset
    items = list_coco(panoptic_json, panoptic_dir, image_dir)
    return write_split(items, functools.partial(convert_item, info=info), output_dir,
                       split or default_split_name(panoptic_json), info.name,
                       num_shards=num_shards, num_workers=num_workers,
                       shard_bytes=shard_bytes)
