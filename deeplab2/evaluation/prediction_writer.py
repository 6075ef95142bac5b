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

Two per-image Cityscapes formats, each in its own folder (point
CITYSCAPES_RESULTS at that folder):
- cityscapes_instance (`evalInstanceLevelSemanticLabeling`):
  `cityscapes_instance_<split>/<image_id>_pred.txt` with one line per thing
  instance, `masks/<image_id>_<k>.png <label id> <score>` (the mask a binary
  PNG beside the txt), so it needs the instance scores.
- cityscapes_semantic (`evalPixelLevelSemanticLabeling`):
  `cityscapes_semantic_<split>/<image_id>_pred_labelIds.png`, each pixel the
  label id of its panoptic class (as the reported mIoU scores it), void 0.

Every file is written to a temporary name and renamed, so a reader never sees
a partial one.
"""
import functools
import json
import os
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Union

import numpy as np
from PIL import Image

from deeplab2 import common
from deeplab2.data.dataset_info import DatasetInfo
from deeplab2.evaluation import coco_format
from deeplab2.utils.paths import UnsafePathError, path_inside, write_atomically
from deeplab2.utils.progress import Progress

PANOPTIC_FORMATS = ("coco", "cityscapes")
FORMATS = PANOPTIC_FORMATS + ("cityscapes_instance", "cityscapes_semantic")
_PREFIXES = {"coco": "panoptic", "cityscapes": "cityscapes_panoptic",
             "cityscapes_instance": "cityscapes_instance",
             "cityscapes_semantic": "cityscapes_semantic"}
_SUFFIXES = {"coco": ".png", "cityscapes": "_panoptic.png",
             "cityscapes_instance": "_pred.txt", "cityscapes_semantic": "_pred_labelIds.png"}
VOID_LABEL_ID = 0  # Cityscapes' "unlabeled"


def output_paths(output_dir: str, fmt: str, split: str = "val"):
    """(JSON path, folder) of format `fmt` in `output_dir`; the JSON path is
    None for the per-image formats."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    stem = os.path.join(output_dir, f"{_PREFIXES[fmt]}_{split}")
    return (stem + ".json" if fmt in PANOPTIC_FORMATS else None), stem


def write_instance_txt(txt_path: str, masks: Iterable[np.ndarray], label_ids: Iterable[int],
                       scores: Iterable[float]) -> None:
    """Writes one image's instances in cityscapesScripts' instance format: the
    txt at `txt_path`, the HxW masks as `masks/<txt name>_<k>.png` beside it."""
    stem = os.path.basename(txt_path)[:-len(_SUFFIXES["cityscapes_instance"])]
    lines = []
    for k, (mask, label_id, score) in enumerate(zip(masks, label_ids, scores)):
        name = f"masks/{stem}_{k}.png"
        image = Image.fromarray(np.asarray(mask, np.uint8) * 255)
        write_atomically(os.path.join(os.path.dirname(txt_path), name),
                         functools.partial(image.save, format="PNG"))
        lines.append(f"{name} {int(label_id)} {float(score)!r}\n")
    write_atomically(txt_path, functools.partial(_write_text, "".join(lines)))


def _write_text(text: str, path: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def label_id_map(panoptic: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """HxW uint8 label ids (`source_ids`) of a panoptic map's classes, void 0."""
    classes = np.asarray(panoptic, np.int64) // info.label_divisor
    lookup = np.full(max(info.num_classes, info.ignore_label + 1), VOID_LABEL_ID, np.int64)
    lookup[:info.num_classes] = info.source_ids
    lookup[info.ignore_label] = VOID_LABEL_ID
    if lookup.min() < 0 or lookup.max() > 255:
        raise ValueError(f"dataset {info.name!r} has label ids outside 0..255; the "
                         "cityscapes_semantic format stores them in 8 bits.")
    return lookup[classes].astype(np.uint8)


def _thing_instances(panoptic: np.ndarray, info: DatasetInfo, scores: Mapping[int, float],
                     image_id: str):
    """(HxW masks, label ids, scores) of the thing instances of a map, the
    masks made one at a time."""
    ids = np.unique(panoptic)
    divisor = info.label_divisor
    ids = ids[np.isin(ids // divisor, info.thing_ids) & (ids % divisor > 0)]
    missing = [int(i) for i in ids if int(i) not in scores]
    if missing:
        raise ValueError(f"Image {image_id}: no score for instance {missing[0]} (the "
                         "cityscapes_instance format needs instance scores).")
    return ((panoptic == i for i in ids),
            [info.source_ids[i // divisor] for i in ids],
            [scores[int(i)] for i in ids])


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
        for _, folder in self.paths.values():
            os.makedirs(folder, exist_ok=True)
        self.annotations: Dict[str, List[Dict]] = {fmt: [] for fmt in self.paths}
        self.image_ids = set()

    def add(self, image_id: str, panoptic: np.ndarray,
            scores: Optional[Mapping[int, float]] = None) -> None:
        """Writes the files of one HxW `class * label_divisor + instance` map;
        cityscapes_instance takes each thing instance's score from `scores`
        (by panoptic id)."""
        if image_id in self.image_ids:
            raise ValueError(f"Image {image_id} was already written.")
        # Checked before anything is written.
        stems = {fmt: path_inside(folder, image_id, "image id")
                 for fmt, (_, folder) in self.paths.items()}
        if "cityscapes_instance" in stems and len(image_id.split()) != 1:
            raise ValueError(f"Image id {image_id!r} has white space, which the "
                             "cityscapes_instance txt lines cannot hold.")
        check_panoptic(panoptic, self.info, image_id)
        panoptic = np.asarray(panoptic, np.int64)
        if "cityscapes_instance" in stems:
            instances = _thing_instances(panoptic, self.info, scores or {}, image_id)
        self.image_ids.add(image_id)
        if any(fmt in PANOPTIC_FORMATS for fmt in stems):
            ids, segments = panoptic_segments(panoptic, self.info)
        for fmt, stem in stems.items():
            path = stem + _SUFFIXES[fmt]
            if fmt == "cityscapes_instance":
                write_instance_txt(path, *instances)
            elif fmt == "cityscapes_semantic":
                image = Image.fromarray(label_id_map(panoptic, self.info))
                write_atomically(path, functools.partial(image.save, format="PNG"))
            else:
                write_atomically(path, functools.partial(coco_format.write_panoptic_png,
                                                         ids=ids))
                self.annotations[fmt].append({"image_id": json_image_id(image_id),
                                              "file_name": image_id + _SUFFIXES[fmt],
                                              "segments_info": segments})

    def close(self) -> Dict[str, str]:
        """Writes the JSON files; returns {format: its JSON path, or its folder
        for the per-image formats}."""
        categories = coco_format.categories(self.info)
        for fmt, (json_path, _) in self.paths.items():
            if json_path is not None:
                write_atomically(json_path, functools.partial(
                    _write_text, json.dumps({"annotations": self.annotations[fmt],
                                             "categories": categories})))
        return {fmt: json_path or folder for fmt, (json_path, folder) in self.paths.items()}


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
    from deeplab2.evaluation.dataset_evaluation import instance_scores, render_prediction
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
            scores = (instance_scores(predictions, i, writer.info.ignore_panoptic_id)
                      if common.INSTANCE_SCORES in predictions else None)
            writer.add(image_id, predictions[common.PANOPTIC][i, :height, :width], scores)
            if picture_dir and count < num_pictures:
                save_png(path_inside(picture_dir, f"{count:05d}_{image_id}.png",
                                     f"image id {image_id!r}"),
                         render_prediction(batch, predictions, i, writer.info,
                                           height, width))
            count += 1
            progress.update()
    progress.close()
    return count
