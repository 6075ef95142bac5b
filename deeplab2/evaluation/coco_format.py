"""COCO panoptic format: RGB PNGs with id = R + 256 G + 256^2 B plus a JSON.

The JSON holds `images`, `annotations` (one per image: `image_id`,
`file_name`, `segments_info` of `id`, `category_id`, `iscrowd`, `area`,
`bbox`) and, for ground truth, `categories` (`id`, `name`, `isthing`). Id 0
is void. Readers check what the metrics rely on and raise FormatError naming
the file, image and segment.
"""
import json
import os
from typing import Dict, List, Mapping, Sequence

import numpy as np
from PIL import Image

from deeplab2.evaluation import pixel_words
from deeplab2.evaluation.overlaps import LabelMap, SegmentError, Segments

VOID_ID = 0


class FormatError(SegmentError):
    """Malformed COCO panoptic input."""


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> HxW int64 segment ids."""
    rgb = np.asarray(rgb).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """HxW ids in [0, 2^24) -> HxWx3 uint8."""
    ids = np.asarray(ids, np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 24):
        raise FormatError("COCO panoptic ids must lie in [0, 2^24)")
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(
        np.uint8)


def _open_rgb(path: str) -> Image.Image:
    """The decoded PNG in RGB mode; FormatError for a missing, unreadable,
    corrupt or non-PNG file."""
    try:
        image = Image.open(path)
    except FileNotFoundError:
        raise FormatError(f"missing PNG file {path}") from None
    except OSError as e:  # a folder, no permission, not an image
        raise FormatError(f"cannot read PNG file {path}: {e}") from None
    with image:
        if image.format != "PNG":
            raise FormatError(f"{path} is {image.format}; expected a PNG")
        try:
            image.load()
        except (OSError, SyntaxError) as e:  # truncated or garbled data
            raise FormatError(f"corrupt PNG file {path}: {e}") from None
        return image if image.mode == "RGB" else image.convert("RGB")


def read_panoptic_png(path: str) -> np.ndarray:
    """The HxW int64 segment ids of a COCO panoptic PNG."""
    image = _open_rgb(path)
    words = pixel_words.rgb_words(image) & 0xFFFFFF
    return words.astype(np.int64).reshape(image.height, image.width)


def write_panoptic_png(path: str, ids: np.ndarray) -> None:
    """Writes HxW segment ids as a COCO panoptic PNG."""
    Image.fromarray(id_to_rgb(ids)).save(path, format="PNG")


def rgb_label_map(path: str) -> LabelMap:
    """A COCO panoptic PNG as a LabelMap read in place: the keys are the
    image's 32-bit pixel words (id plus a constant padding byte)."""
    image = _open_rgb(path)
    words = pixel_words.rgb_words(image)

    def ids_at(positions: np.ndarray) -> np.ndarray:
        return (words[positions] & 0xFFFFFF).astype(np.int64)

    return LabelMap(words, ids_at, (image.height, image.width))


def load_json(path: str) -> Dict:
    """Reads a COCO panoptic JSON and checks its top-level structure."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FormatError(f"missing JSON file {path}") from None
    except json.JSONDecodeError as e:
        raise FormatError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"),
                                                    list):
        raise FormatError(f"{path} has no 'annotations' list")
    for k, annotation in enumerate(data["annotations"]):
        missing = {"image_id", "file_name", "segments_info"} - set(annotation)
        if missing:
            raise FormatError(f"{path}: annotation {k} lacks "
                              f"{', '.join(sorted(missing))}")
    return data


def category_index(categories: Sequence[Mapping]) -> Dict[int, int]:
    """Category id -> position in the categories list."""
    index = {}
    for k, category in enumerate(categories):
        if category["id"] in index:
            raise FormatError(f"category id {category['id']} is listed twice")
        index[category["id"]] = k
    return index


def json_segments(annotation: Mapping, categories: Mapping[int, int],
                  groundtruth: bool, source: str) -> Segments:
    """The Segments of one annotation. Ground truth keeps its declared areas
    and crowd flags; a prediction's `iscrowd` is ignored, as in panopticapi."""
    info = annotation["segments_info"]
    image = annotation["image_id"]
    seen = set()
    for segment in info:
        sid = segment.get("id")
        where = f"{source}: image {image}, segment id {sid}"
        if not isinstance(sid, int) or not 0 < sid < 1 << 24:
            raise FormatError(f"{where}: ids must be integers in [1, 2^24) "
                              "(0 is void)")
        if sid in seen:
            raise FormatError(f"{where} is listed twice")
        seen.add(sid)
        if segment.get("category_id") not in categories:
            raise FormatError(f"{where} has unknown category_id "
                              f"{segment.get('category_id')}")
    areas = None
    if groundtruth and all("area" in s for s in info):
        areas = np.array([s["area"] for s in info], np.int64)
    return Segments(
        ids=np.array([s["id"] for s in info], np.int64),
        classes=np.array([categories[s["category_id"]] for s in info],
                         np.int64),
        crowd=np.array([groundtruth and bool(s.get("iscrowd", 0))
                        for s in info], bool),
        areas=areas)


def segments_info(ids: np.ndarray, classes: np.ndarray, crowd: np.ndarray,
                  category_ids: Sequence[int]) -> List[Dict]:
    """COCO `segments_info` of a map of segment ids 1..S (0 void).

    Args:
        ids: HxW segment ids; every segment has a pixel.
        classes, crowd: [S] category index and crowd flag of segment k + 1.
        category_ids: COCO category id of each category index.
    """
    ids = np.asarray(ids)
    count = len(classes) + 1
    areas = np.bincount(ids.ravel(), minlength=count)
    boxes = []
    for axis in (1, 0):  # x from the columns, then y from the rows
        seen = np.zeros((count, ids.shape[axis]), bool)
        seen[ids, np.arange(ids.shape[axis]) if axis else
             np.arange(ids.shape[0])[:, None]] = True
        first = seen.argmax(1)
        boxes.append((first, seen.shape[1] - seen[:, ::-1].argmax(1) - first))
    (x, w), (y, h) = boxes
    return [{"id": k, "category_id": int(category_ids[classes[k - 1]]),
             "iscrowd": int(crowd[k - 1]), "area": int(areas[k]),
             "bbox": [int(x[k]), int(y[k]), int(w[k]), int(h[k])]}
            for k in range(1, count)]


def panoptic_to_segments(panoptic: np.ndarray, label_divisor: int,
                         ignore_label: int, thing_ids: Sequence[int],
                         groundtruth: bool):
    """Renumbers a `class * label_divisor + instance` map as segment ids.

    Returns (ids HxW with 0 void and 1..S segments, classes [S], crowd [S]);
    crowd (thing class with instance 0) only in the ground truth.
    """
    panoptic = np.asarray(panoptic, np.int64)
    values, inverse = np.unique(panoptic, return_inverse=True)
    classes = values // label_divisor
    labelled = classes != ignore_label
    numbers = np.cumsum(labelled) * labelled
    ids = numbers[inverse.reshape(panoptic.shape)]
    values, classes = values[labelled], classes[labelled]
    crowd = (np.isin(classes, list(thing_ids)) & (values % label_divisor == 0)
             & groundtruth)
    return ids, classes, crowd


def write_panoptic(png_path: str, panoptic: np.ndarray, info, image_id,
                   groundtruth: bool = False) -> Dict:
    """Writes a `class * label_divisor + instance` map of a DatasetInfo as a
    COCO panoptic PNG; returns its JSON annotation (category ids are the
    descriptor's `source_ids`)."""
    ids, classes, crowd = panoptic_to_segments(
        panoptic, info.label_divisor, info.ignore_label, info.thing_ids,
        groundtruth)
    write_panoptic_png(png_path, ids)
    return {"image_id": image_id, "file_name": os.path.basename(png_path),
            "segments_info": segments_info(ids, classes, crowd,
                                           info.source_ids)}


def categories(info) -> List[Dict]:
    """The COCO `categories` of a DatasetInfo (its ignore class left out)."""
    return [{"id": info.source_ids[k], "name": name,
             "isthing": int(info.is_thing(k)), "color": list(info.colors[k])}
            for k, name in enumerate(info.class_names)
            if k != info.ignore_label]
