"""Mapillary Vistas in its official layout -> TFRecords, with v1.2 or v2.0 labels.

The v2.0 release holds both label versions:

  config_v1.2.json, config_v2.0.json   "labels": name, readable, color, instances, evaluate
  <split>/images/<key>.jpg
  <split>/v1.2/panoptic/panoptic_2018.json and <key>.png
  <split>/v2.0/panoptic/panoptic_2020.json and <key>.png

For v1.2 the v1.1 release's layout is read too: config.json and
<split>/panoptic/panoptic_2018.json with its PNGs. The panoptic JSON and PNGs are
in COCO panoptic format (read by the COCO converter); a category id is the
position of its label in the config plus 1, and PNG id 0 is void.

The labels with "evaluate": true are the classes, in config order; the others
are void and become the ignore label 255 ("Unlabeled" in v1.2; it and 7
ambiguous or group labels in v2.0). The config must match the registered
descriptor ("mapillary_vistas": 65 classes, "mapillary_vistas_v2": 116), and the
panoptic JSON's categories must match the config. The splits training and
validation are written as "train" and "val".

With `max_resize`, examples are shrunk to that longest side (see resizing.py).
Segments that vanish are counted in the split summary (`num_vanished_segments`,
`vanished_segments_by_class`, added after the writer's summary) and the first
few are printed.
"""
import collections
import functools
import json
import multiprocessing
import os
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from deeplab2.data.converters.coco import (CocoItem, coco_items, read_panoptic_example,
                                           read_panoptic_json)
from deeplab2.data.converters.common import (ConversionError, ExampleStats, PanopticExample,
                                             serialize)
from deeplab2.data.converters.resizing import shrink_example
from deeplab2.data.converters.writer import write_split
from deeplab2.data.dataset_info import DatasetInfo, get_dataset_info
from deeplab2.utils.paths import write_atomically

# Label version -> registered descriptor.
DATASETS = {"v1.2": "mapillary_vistas", "v2.0": "mapillary_vistas_v2"}
# Source split -> the split name written (the one the Gin configs read).
SPLITS = {"training": "train", "validation": "val"}
_SHOWN_VANISHED = 3  # vanished segments named in the printed line


class Layout(NamedTuple):
    """Where one label version's files are: the config relative to the root,
    the panoptic folder relative to the split folder, the JSON inside it."""
    config: str
    panoptic_dir: str
    panoptic_json: str


# Label version -> its layouts, in the order they are looked for.
LAYOUTS = {
    "v1.2": (Layout("config_v1.2.json", "v1.2/panoptic", "panoptic_2018.json"),
             Layout("config.json", "panoptic", "panoptic_2018.json")),  # v1.1 release
    "v2.0": (Layout("config_v2.0.json", "v2.0/panoptic", "panoptic_2020.json"),),
}


class VistasLabel(NamedTuple):
    """One entry of a config's "labels"."""
    name: str  # machine name, e.g. "animal--bird"
    readable: str  # e.g. "Bird"
    color: Tuple[int, int, int]
    instances: bool
    evaluate: bool


class VanishedSegment(NamedTuple):
    """A source segment that no pixel keeps after shrinking."""
    image_id: str
    segment_id: int
    class_name: str
    pixels: int  # its area at the source size


def find_layout(root: str, version: str) -> Layout:
    """The first layout of `version` whose config exists under `root`."""
    layouts = LAYOUTS[version]
    for layout in layouts:
        if os.path.isfile(os.path.join(root, layout.config)):
            return layout
    expected = " or ".join(os.path.join(root, layout.config) for layout in layouts)
    raise ConversionError(f"no Mapillary Vistas {version} config: {expected} not found")


def read_config(path: str) -> List[VistasLabel]:
    """The labels of a config file; a bad entry is an error naming the field."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ConversionError(f"cannot read config {path}: {e}") from None
    labels = data.get("labels") if isinstance(data, dict) else None
    if not isinstance(labels, list) or not labels:
        raise ConversionError(f"{path}: labels: expected a non-empty list of labels, got "
                              f"{_short(labels)}")
    return [_label(entry, f"{path}: labels[{i}]") for i, entry in enumerate(labels)]


def _label(entry: Any, where: str) -> VistasLabel:
    if not isinstance(entry, dict):
        raise ConversionError(f"{where}: expected an object, got {_short(entry)}")
    checks = (("name", lambda v: isinstance(v, str), "a string"),
              ("readable", lambda v: isinstance(v, str), "a string"),
              ("color", _is_color, "[red, green, blue] with integers in 0..255"),
              ("instances", lambda v: isinstance(v, bool), "true or false"),
              ("evaluate", lambda v: isinstance(v, bool), "true or false"))
    for field, valid, expected in checks:
        if field not in entry:
            raise ConversionError(f"{where}.{field}: missing; expected {expected}")
        if not valid(entry[field]):
            raise ConversionError(f"{where}.{field}: expected {expected}, got "
                                  f"{_short(entry[field])}")
    return VistasLabel(entry["name"], entry["readable"], tuple(entry["color"]),
                       entry["instances"], entry["evaluate"])


def _is_color(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 3
            and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255
                    for c in value))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_config(labels: Sequence[VistasLabel], info: DatasetInfo, path: str) -> None:
    """Raises unless the config defines exactly the classes of `info`: its
    evaluated labels in order (readable name, color, "instances" = thing), the
    class of labels[p] having source id p + 1. The error names the first label
    that differs."""
    classes = {source_id - 1: c for c, source_id in enumerate(info.source_ids)}
    for position, label in enumerate(labels):
        class_id = classes.get(position)
        expected = [("evaluate", class_id is not None)]
        if class_id is not None:
            expected += [("readable", info.class_names[class_id]),
                         ("color", info.colors[class_id]),
                         ("instances", info.is_thing(class_id))]
        for field, value in expected:
            if getattr(label, field) != value:
                raise ConversionError(
                    f"{path}: labels[{position}] ({label.readable!r}): {field} is "
                    f"{_json(getattr(label, field))}, expected {_json(value)} for dataset "
                    f"{info.name!r}")
    last = max(classes)
    if last >= len(labels):
        raise ConversionError(
            f"{path}: labels: {len(labels)} labels, expected at least {last + 1} "
            f"(labels[{last}] is class {info.class_names[classes[last]]!r} of dataset "
            f"{info.name!r})")


def _json(value: Any) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def check_categories(data: Dict[str, Any], labels: Sequence[VistasLabel],
                     panoptic_json: str, config_path: str) -> None:
    """Raises unless each of the panoptic JSON's categories is the config label
    at position id - 1 (by its name, or its supercategory, which holds the
    label's machine name in the official files)."""
    categories = data.get("categories", [])
    if not isinstance(categories, list):
        raise ConversionError(f"{panoptic_json}: categories: expected a list, got "
                              f"{_short(categories)}")
    for i, category in enumerate(categories):
        category_id = category.get("id") if isinstance(category, dict) else None
        if not (isinstance(category_id, int) and 1 <= category_id <= len(labels)):
            raise ConversionError(
                f"{panoptic_json}: categories[{i}].id: {_short(category_id)} is no label of "
                f"{config_path}; expected 1..{len(labels)} (label position + 1)")
        label = labels[category_id - 1]
        names = {category.get("name"), category.get("supercategory")}
        if not names & {label.name, label.readable}:
            raise ConversionError(
                f"{panoptic_json}: categories[{i}] (id {category_id}, name "
                f"{_short(category.get('name'))}) is not labels[{category_id - 1}] "
                f"({label.readable!r}) of {config_path}; expected category id = label "
                "position + 1")


def category_classes(labels: Sequence[VistasLabel], info: DatasetInfo) -> Dict[int, int]:
    """Class id of each category id: the ignore label for labels not evaluated."""
    classes = {position + 1: info.ignore_label
               for position, label in enumerate(labels) if not label.evaluate}
    classes.update((source_id, c) for c, source_id in enumerate(info.source_ids))
    return classes


def convert_item(item: CocoItem, info: DatasetInfo, categories: Dict[int, int],
                 max_resize: Optional[int] = None,
                 vanished: Optional[List[VanishedSegment]] = None
                 ) -> Tuple[bytes, ExampleStats]:
    """Reads, checks, optionally shrinks and serializes one annotated image;
    the segments that shrinking loses are appended to `vanished` if given."""
    example = read_panoptic_example(item, info, categories)
    if max_resize is not None:
        shrunk, dropped = shrink_example(example, max_resize)
        lost = _vanished_segments(item, info, example, dropped)
        if lost and vanished is not None:
            vanished.extend(lost)
        example = shrunk
    return serialize(*example, item.image_id, os.path.basename(item.image_path),
                     info.ignore_panoptic_id)


def _vanished_segments(item: CocoItem, info: DatasetInfo, example: PanopticExample,
                       dropped: Sequence[int]) -> List[VanishedSegment]:
    """The source segments among the dropped table entries of `example` (void
    pixels and labels that are not evaluated are no segments)."""
    if not dropped:
        return []
    pixels = np.bincount(example.segment_map.ravel(), minlength=len(example.segment_ids))
    return [VanishedSegment(item.image_id, item.segments[entry][0],
                            info.class_names[example.segment_ids[entry] // info.label_divisor],
                            int(pixels[entry]))
            for entry in dropped if example.segment_ids[entry] != info.ignore_panoptic_id]


def _list_items(root: str, split: str, layout: Layout, labels: Sequence[VistasLabel],
                config_path: str) -> List[CocoItem]:
    """The annotated images of a split, once the panoptic JSON's categories are
    checked against the config."""
    panoptic_dir = os.path.join(root, split, layout.panoptic_dir)
    panoptic_json = os.path.join(panoptic_dir, layout.panoptic_json)
    data = read_panoptic_json(panoptic_json)
    check_categories(data, labels, panoptic_json, config_path)
    return coco_items(data, panoptic_json, panoptic_dir, os.path.join(root, split, "images"))


def convert_mapillary_vistas(root: str, split: str, version: str, output_dir: str,
                             max_resize: Optional[int] = None,
                             num_shards: Optional[int] = None,
                             num_workers: Optional[int] = None,
                             shard_bytes: Optional[int] = None) -> Dict[str, Any]:
    """Converts one split ("training" or "validation") of a Vistas tree with the
    labels of `version` ("v1.2" or "v2.0"); returns the split summary.

    `max_resize` shrinks every image with a longer side above it (see
    resizing.py). Shards are sized by bytes unless `num_shards` is given (see
    write_split).
    """
    if version not in LAYOUTS:
        raise ValueError(f"Unknown Mapillary Vistas version {version!r}; expected one of "
                         f"{tuple(LAYOUTS)}.")
    if split not in SPLITS:
        raise ValueError(f"Unknown Mapillary Vistas split {split!r}; expected one of "
                         f"{tuple(SPLITS)}.")
    if max_resize is not None and max_resize < 1:
        raise ValueError(f"max_resize must be >= 1, got {max_resize}.")
    info = get_dataset_info(DATASETS[version])
    layout = find_layout(root, version)
    config_path = os.path.join(root, layout.config)
    labels = read_config(config_path)
    check_config(labels, info, config_path)
    items = _list_items(root, split, layout, labels, config_path)
    categories = category_classes(labels, info)
    options = dict(num_shards=num_shards, num_workers=num_workers, shard_bytes=shard_bytes)
    metadata = {"version": version, "config": layout.config}
    convert = functools.partial(convert_item, info=info, categories=categories)
    if max_resize is None:
        return write_split(items, convert, output_dir, SPLITS[split], info.name,
                           metadata=metadata, **options)
    # Workers append what vanished to a list served by a manager process.
    with multiprocessing.Manager() as manager:
        vanished = manager.list()
        summary = write_split(
            items, functools.partial(convert, max_resize=max_resize, vanished=vanished),
            output_dir, SPLITS[split], info.name,
            metadata=dict(metadata, max_resize=max_resize), **options)
        lost = sorted(vanished)
    return _add_vanished(output_dir, SPLITS[split], summary, lost, max_resize)


def _add_vanished(output_dir: str, split: str, summary: Dict[str, Any],
                  lost: Sequence[VanishedSegment], max_resize: int) -> Dict[str, Any]:
    """Adds the vanished segments' count (total and by class) to the written
    summary, replacing its file atomically, and prints them in one line."""
    by_class = collections.Counter(segment.class_name for segment in lost)
    summary = dict(summary, num_vanished_segments=len(lost),
                   vanished_segments_by_class=dict(sorted(by_class.items())))
    path = os.path.join(output_dir, f"{split}-summary.json")
    def write(temporary):
        with open(temporary, "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")

    write_atomically(path, write)
    examples = ", ".join(f"image {s.image_id} segment {s.segment_id} ({s.class_name!r}, "
                         f"{s.pixels} px)" for s in lost[:_SHOWN_VANISHED])
    print(f"{len(lost)} segments vanished at max_resize {max_resize} (by class in {path})"
          + (f", e.g. {examples}" if lost else ""), flush=True)
    return summary
