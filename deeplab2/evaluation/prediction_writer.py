"""Writes panoptic predictions in the official formats, PNG + JSON.

- COCO panoptic (panopticapi `pq_compute`): `panoptic_<split>.json` and the
  folder `panoptic_<split>/` of `<image_id>.png`.
- Cityscapes panoptic (cityscapesScripts `evalPanopticSemanticLabeling`, whose
  default prediction file is `cityscapes_panoptic_val.json` beside its folder):
  `cityscapes_panoptic_<split>.json` and `cityscapes_panoptic_<split>/` of
  `<image_id>_panoptic.png`.

Both are COCO panoptic files: RGB PNGs with id = R + 256 G + 256^2 B (0 void)
and a JSON of `annotations` (`image_id`, `file_name`, `segments_info`) and
`categories`. Every distinct non-void panoptic id of a map (`class *
label_divisor + instance`) becomes one segment, numbered 1, 2, ... in id order;
its `category_id` is the dataset's original category id (`source_ids`).
`read_predictions` inverts the writing up to the instance numbers: the things of
each class read back as instances 1, 2, ... in id order, the numbering that
post-processing gives.
"""
import json
import os
from typing import Callable, Dict, Iterable, List, Optional, Union

import numpy as np

from deeplab2 import common
from deeplab2.data.dataset_info import DatasetInfo
from deeplab2.evaluation import coco_format
from deeplab2.utils.progress import Progress

FORMATS = ("coco", "cityscapes")
_PREFIXES = {"coco": "panoptic", "cityscapes": "cityscapes_panoptic"}
_SUFFIXES = {"coco": ".png", "cityscapes": "_panoptic.png"}


def output_paths(output_dir: str, fmt: str, split: str = "val"):
    """(JSON path, PNG folder) of format `fmt` in `output_dir`."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    stem = os.path.join(output_dir, f"{_PREFIXES[fmt]}_{split}")
    return stem + ".json", stem


def json_image_id(image_id: str) -> Union[int, str]:
    """The JSON `image_id` of a record's id: an int for COCO's numeric ids
    ("139" -> 139, as in the ground-truth JSON), else the string itself."""
    if image_id.isdigit() and str(int(image_id)) == image_id:
        return int(image_id)
    return image_id


def check_panoptic(panoptic: np.ndarray, info: DatasetInfo, image_id: str) -> None:
    """Raises ValueError when a panoptic id has no class of the dataset."""
    classes = np.unique(np.asarray(panoptic) // info.label_divisor)
    bad = [int(c) for c in classes
           if not (0 <= c < info.num_classes or c == info.ignore_label)]
    if bad:
        raise ValueError(f"Image {image_id}: classes {bad} of its panoptic map are not "
                         f"classes of dataset {info.name!r}.")


class PredictionWriter:
    """Writes the panoptic maps of one dataset's images in some formats.

    Call `add` per image, then `close` to write the JSON files.
    """

    def __init__(self, output_dir: str, info: DatasetInfo,
                 formats: Iterable[str] = ("coco",), split: str = "val"):
        self.info = info
        self.paths = {fmt: output_paths(output_dir, fmt, split) for fmt in formats}
        if not self.paths:
            raise ValueError("Give at least one format.")
        for _, png_dir in self.paths.values():
            os.makedirs(png_dir, exist_ok=True)
        self.annotations: Dict[str, List[Dict]] = {fmt: [] for fmt in self.paths}

    def add(self, image_id: str, panoptic: np.ndarray) -> None:
        """Writes the PNGs of one HxW `class * label_divisor + instance` map."""
        check_panoptic(panoptic, self.info, image_id)
        for fmt, (_, png_dir) in self.paths.items():
            png_path = os.path.join(png_dir, image_id + _SUFFIXES[fmt])
            self.annotations[fmt].append(coco_format.write_panoptic(
                png_path, panoptic, self.info, json_image_id(image_id)))

    def close(self) -> Dict[str, str]:
        """Writes the JSON files; returns {format: JSON path}."""
        categories = coco_format.categories(self.info)
        for fmt, (json_path, _) in self.paths.items():
            with open(json_path, "w") as f:
                json.dump({"annotations": self.annotations[fmt],
                           "categories": categories}, f)
        return {fmt: json_path for fmt, (json_path, _) in self.paths.items()}


def read_predictions(json_path: str, png_dir: str,
                     info: DatasetInfo) -> Dict[str, np.ndarray]:
    """{image id: HxW `class * label_divisor + instance` map} of written files."""
    class_of = {source: k for k, source in enumerate(info.source_ids)
                if k != info.ignore_label}
    maps = {}
    for annotation in coco_format.load_json(json_path)["annotations"]:
        ids = coco_format.read_panoptic_png(
            os.path.join(png_dir, annotation["file_name"]))
        panoptic = np.full(ids.shape, info.ignore_panoptic_id, np.int64)
        instances = {}
        for segment in sorted(annotation["segments_info"], key=lambda s: s["id"]):
            cls = class_of[segment["category_id"]]
            instance = 0
            if info.is_thing(cls):
                instance = instances[cls] = instances.get(cls, 0) + 1
            panoptic[ids == segment["id"]] = cls * info.label_divisor + instance
        maps[str(annotation["image_id"])] = panoptic
    return maps


def _picture(batch: Dict, predictions: Dict, index: int, height: int, width: int,
             info: DatasetInfo) -> np.ndarray:
    from deeplab2.vis import render_panels

    def crop(key, values):
        return None if key not in values else values[key][index, :height, :width]

    return render_panels(
        crop(common.IMAGE, batch).astype(np.uint8), dataset_info=info,
        panoptic=crop(common.PANOPTIC, predictions),
        semantic=crop(common.SEMANTIC, predictions),
        center_heatmap=crop(common.CENTER_HEATMAP, predictions),
        offset=crop(common.OFFSET, predictions),
        gt_panoptic=crop(common.PANOPTIC_LABEL, batch))


def predict_and_write(predict: Callable[[object], Dict], batches: Iterable[Dict],
                      writer: PredictionWriter, *, picture_dir: Optional[str] = None,
                      num_pictures: int = 0, num_images: Optional[int] = None) -> int:
    """Runs `predict` (image batch -> post-processed predictions) on padded
    evaluation batches and writes each image's panoptic map, cropped to its
    original size; draws the first `num_pictures` into `picture_dir`.

    Returns the number of images written.
    """
    from deeplab2.vis import save_png

    progress = Progress(num_images, desc="predict", unit="img")
    count = 0
    for batch in batches:
        predictions = {k: np.asarray(v) for k, v in predict(batch[common.IMAGE]).items()}
        if common.PANOPTIC not in predictions:
            raise ValueError(f"The predictions have no {common.PANOPTIC!r} map (keys: "
                             f"{', '.join(sorted(predictions))}).")
        batch = {k: np.asarray(v) for k, v in batch.items()}
        for i in range(batch[common.IMAGE].shape[0]):
            height = int(batch[common.IMAGE_HEIGHT][i])
            width = int(batch[common.IMAGE_WIDTH][i])
            image_id = batch[common.IMAGE_ID][i]
            image_id = image_id.decode() if isinstance(image_id, bytes) else str(image_id)
            writer.add(image_id, predictions[common.PANOPTIC][i, :height, :width])
            if picture_dir and count < num_pictures:
                save_png(os.path.join(picture_dir, f"{count:05d}_{image_id}.png"),
                         _picture(batch, predictions, i, height, width, writer.info))
            count += 1
            progress.update()
    progress.close()
    return count
