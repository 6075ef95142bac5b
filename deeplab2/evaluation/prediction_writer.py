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
label_divisor + instance`) becomes one segment whose id is that panoptic id + 1
(so that class 0 stuff, panoptic id 0, is not void); void pixels get id 0. A
segment's `category_id` is the dataset's original category id (`source_ids`),
and `read_predictions` gives back the exact panoptic maps.
"""
import json
import os
from typing import Callable, Dict, Iterable, List, Optional, Union

import numpy as np

from deeplab2 import common
from deeplab2.data.dataset_info import DatasetInfo
from deeplab2.evaluation import coco_format
from deeplab2.utils.paths import UnsafePathError, path_inside
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


def panoptic_segments(panoptic: np.ndarray, info: DatasetInfo):
    """(HxW segment ids, COCO `segments_info`) of a panoptic map: id = panoptic
    id + 1, 0 for void; category ids from `info.source_ids`, iscrowd 0."""
    panoptic = np.asarray(panoptic, np.int64)
    renumbered, classes, crowd = coco_format.panoptic_to_segments(
        panoptic, info.label_divisor, info.ignore_label, info.thing_ids,
        groundtruth=False)
    values = np.unique(panoptic)
    values = values[values // info.label_divisor != info.ignore_label]
    segment_ids = np.concatenate([[coco_format.VOID_ID], values + 1])
    segments = coco_format.segments_info(renumbered, classes, crowd, info.source_ids)
    for segment in segments:
        segment["id"] = int(segment_ids[segment["id"]])
    return segment_ids[renumbered], segments


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
        self.image_ids = set()

    def add(self, image_id: str, panoptic: np.ndarray) -> None:
        """Writes the PNGs of one HxW `class * label_divisor + instance` map."""
        if image_id in self.image_ids:
            raise ValueError(f"Image {image_id} was already written.")
        # Checked before anything is written.
        stems = {fmt: path_inside(png_dir, image_id, "image id")
                 for fmt, (_, png_dir) in self.paths.items()}
        self.image_ids.add(image_id)
        check_panoptic(panoptic, self.info, image_id)
        ids, segments = panoptic_segments(panoptic, self.info)
        for fmt, stem in stems.items():
            file_name = image_id + _SUFFIXES[fmt]
            path = stem + _SUFFIXES[fmt]
            os.makedirs(os.path.dirname(path), exist_ok=True)  # ids may hold subfolders
            coco_format.write_panoptic_png(path, ids)
            self.annotations[fmt].append({"image_id": json_image_id(image_id),
                                          "file_name": file_name,
                                          "segments_info": segments})

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
    """{image id: HxW `class * label_divisor + instance` map} of written files;
    raises coco_format.FormatError when a segment's category is not its class."""
    maps = {}
    for annotation in coco_format.load_json(json_path)["annotations"]:
        try:
            path = path_inside(png_dir, annotation["file_name"],
                               f"{json_path}: file_name of image {annotation['image_id']!r}")
        except UnsafePathError as e:
            raise coco_format.FormatError(str(e)) from None
        ids = coco_format.read_panoptic_png(path)
        for segment in annotation["segments_info"]:
            cls = (segment["id"] - 1) // info.label_divisor
            if not 0 <= cls < info.num_classes or (
                    info.source_ids[cls] != segment["category_id"]):
                raise coco_format.FormatError(
                    f"{json_path}: segment {segment['id']} of image "
                    f"{annotation['image_id']} is not of category "
                    f"{segment['category_id']}")
        maps[str(annotation["image_id"])] = np.where(
            ids == coco_format.VOID_ID, info.ignore_panoptic_id, ids - 1)
    return maps


def predict_and_write(predict: Callable[[Dict], Dict], batches: Iterable[Dict],
                      writer: PredictionWriter, *, picture_dir: Optional[str] = None,
                      num_pictures: int = 0) -> int:
    """Runs `predict` (padded evaluation batch -> post-processed predictions,
    e.g. `Predictor.batch_function()`) on evaluation batches and writes each
    image's panoptic map, cropped to its original size; draws the first
    `num_pictures` into `picture_dir`.

    Returns the number of images written.
    """
    from deeplab2.evaluation.dataset_evaluation import render_prediction
    from deeplab2.vis import save_png

    progress = Progress(None, desc="predict", unit="img")
    count = 0
    for batch in batches:
        predictions = {k: np.asarray(v) for k, v in predict(batch).items()}
        if common.PANOPTIC not in predictions:
            raise ValueError(f"The predictions have no {common.PANOPTIC!r} map (keys: "
                             f"{', '.join(sorted(predictions))}).")
        batch = {k: np.asarray(v) for k, v in batch.items()}
        for i in range(batch[common.IMAGE].shape[0]):
            if common.IMAGE_INDEX in batch and batch[common.IMAGE_INDEX][i] < 0:
                continue  # a filler padding the last batch
            height = int(batch[common.IMAGE_HEIGHT][i])
            width = int(batch[common.IMAGE_WIDTH][i])
            image_id = batch[common.IMAGE_ID][i]
            image_id = image_id.decode() if isinstance(image_id, bytes) else str(image_id)
            writer.add(image_id, predictions[common.PANOPTIC][i, :height, :width])
            if picture_dir and count < num_pictures:
                save_png(path_inside(picture_dir, f"{count:05d}_{image_id}.png",
                                     f"image id {image_id!r}"),
                         render_prediction(batch, predictions, i, writer.info,
                                           height, width))
            count += 1
            progress.update()
    progress.close()
    return count
