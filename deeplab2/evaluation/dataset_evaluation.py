"""Scores predictions over a split: PQ / PQ-dagger / mIoU, mask and box AP, pictures.

On Cityscapes, AP and AP50 are the official Cityscapes numbers (cityscapes_ap),
as the papers report them, and COCO mask AP is coco_AP, coco_AP50, coco_AP75.

`SplitMetrics` turns each image into a small record (its PQ statistics, its
masks run-length encoded for AP, its boxes when the model predicts them) and
adds the records in the order of the images' positions in the split, however
the images were spread over replicas and workers; pixel confusions are integer
counts, summed as they come. So a distributed evaluation gives exactly the
numbers of a single-device one.
Records travel between workers as JSON (`payload` / `merge_payload`).

`evaluate_dataset` runs any function from an image batch to post-processed
predictions (deeplab2.inference.Predictor, an exported model, ...) over the
batches of the evaluation pipeline, so it serves models trained anywhere.
"""
import json
from typing import Callable, Dict, Iterable, Optional

import numpy as np

from deeplab2 import common
from deeplab2.data.dataset_info import DatasetInfo
from deeplab2.evaluation import cityscapes_ap
from deeplab2.evaluation.evaluator import merge_results
from deeplab2.evaluation.instance_ap import (BoxAP, MaskAP, encode_panoptic,
                                             encode_panoptic_boxes)
from deeplab2.evaluation.miou import ConfusionMatrix
from deeplab2.evaluation.overlaps import (array_label_map, image_overlaps,
                                          panoptic_describer)
from deeplab2.evaluation.panoptic_quality import (PanopticQuality, PQStats,
                                                  dataset_categories, match_segments)
from deeplab2.utils.paths import path_inside
from deeplab2.utils.progress import Progress

_PQ_FIELDS = ("tp", "fp", "fn", "iou", "dagger_iou", "dagger_gt")


def _by_instance_id(predictions: Dict[str, np.ndarray], key: str, index: int,
                    void_id: int) -> Dict[int, np.ndarray]:
    """{predicted thing panoptic id: its row of predictions[key]} of image
    `index` of a batch (row i of a per-instance table belongs to row i of
    INSTANCE_PANOPTIC_IDS)."""
    ids = predictions[common.INSTANCE_PANOPTIC_IDS][index]
    return {int(i): value for i, value in zip(ids, predictions[key][index]) if i != void_id}


def instance_scores(predictions: Dict[str, np.ndarray], index: int,
                    void_id: int) -> Dict[int, float]:
    """{predicted thing panoptic id: score} of image `index` of a batch."""
    return {i: float(score) for i, score in
            _by_instance_id(predictions, common.INSTANCE_SCORES, index, void_id).items()}


def instance_boxes(predictions: Dict[str, np.ndarray], index: int,
                   void_id: int) -> Optional[Dict[int, np.ndarray]]:
    """{predicted thing panoptic id: (x0, y0, x1, y1) box} of image `index` of a
    batch; None when the predictions carry no boxes."""
    if common.BOXES not in predictions:
        return None
    return _by_instance_id(predictions, common.BOXES, index, void_id)


def _sparse_stats(stats: PQStats) -> Dict[str, list]:
    """The classes with any non-zero statistic: {class: [tp, fp, fn, iou, ...]}."""
    rows = np.stack([getattr(stats, f).astype(np.float64) for f in _PQ_FIELDS], 1)
    return {str(c): [float(v) for v in rows[c]] for c in np.flatnonzero(rows.any(1))}


def _dense_stats(sparse: Dict[str, list], num_classes: int) -> PQStats:
    stats = PQStats.zeros(num_classes)
    for key, values in sparse.items():
        for field, value in zip(_PQ_FIELDS, values):
            getattr(stats, field)[int(key)] = value
    return stats


class SplitMetrics:
    """PQ, PQ-dagger, mIoU and (optionally) mask AP and box AP over the images
    of a split.

    Images may be scored in any order and on any worker: `score` takes each
    image's position in the split, and `result` sums in that order.
    """

    def __init__(self, info: DatasetInfo, compute_ap: bool = True):
        self.info = info
        self.compute_ap = compute_ap
        self.cityscapes_ap = compute_ap and info.name == "cityscapes"
        self._categories = tuple(dataset_categories(info))
        args = (info.label_divisor, info.ignore_label, info.num_classes, info.thing_ids)
        self._describe_gt = panoptic_describer(*args, groundtruth=True)
        self._describe_pred = panoptic_describer(*args, groundtruth=False)
        self._records: Dict[int, Dict] = {}
        num_classes = len(self._categories)
        self._confusion = np.zeros((num_classes, num_classes + 1), np.int64)

    def score(self, index: int, name: str, gt: np.ndarray, pred: np.ndarray,
              scores: Optional[Dict[int, float]] = None,
              boxes: Optional[Dict[int, np.ndarray]] = None) -> None:
        """Scores image `index` (named `name` in errors): HxW panoptic maps of
        ground truth and prediction, the prediction's instance scores and, for
        box AP, its instance boxes (both by panoptic id)."""
        if index in self._records:
            raise ValueError(f"image {index} ({name}) was scored twice.")
        overlaps = image_overlaps(array_label_map(gt), array_label_map(pred),
                                  self._describe_gt, self._describe_pred, name)
        num_classes = len(self._categories)
        record = {"pq": _sparse_stats(match_segments(overlaps, num_classes))}
        self._confusion += overlaps.semantic_confusion(num_classes)
        if self.compute_ap:
            record["ap"] = encode_panoptic(gt, pred, scores or {}, self.info)
            if self.cityscapes_ap:
                record["cityscapes_ap"] = cityscapes_ap.encode_overlaps(
                    overlaps, scores or {}, self.info)
            if boxes is not None:
                record["box_ap"] = encode_panoptic_boxes(gt, pred, scores or {}, boxes,
                                                         self.info)
        self._records[index] = record

    @property
    def num_images(self) -> int:
        return len(self._records)

    def payload(self) -> bytes:
        """This worker's records and confusion counts, as JSON bytes."""
        return json.dumps({"records": {str(k): v for k, v in self._records.items()},
                           "confusion": self._confusion.tolist()}).encode()

    def merge_payload(self, payload: bytes) -> None:
        """Adds another worker's `payload`."""
        values = json.loads(payload.decode())
        for key, record in values["records"].items():
            if int(key) in self._records:
                raise ValueError(f"image {key} was scored by two workers.")
            self._records[int(key)] = record
        self._confusion += np.asarray(values["confusion"], np.int64)

    def result(self) -> Dict:
        """The result dict of PanopticEvaluator (groups, pq_dagger, miou,
        per_class, num_images) plus AP, AP50, AP75 when computing AP (on
        Cityscapes: see `cityscapes_ap.report_as_cityscapes`), and box_AP,
        box_AP50, box_AP75 when the images were scored with boxes."""
        num_classes = len(self._categories)
        pq = PanopticQuality(self._categories)
        confusion = ConfusionMatrix(num_classes, [c.key for c in self._categories],
                                    [c.evaluated for c in self._categories])
        confusion.add(self._confusion)
        mask_ap = MaskAP(self.info.thing_ids) if self.compute_ap else None
        with_boxes = sum("box_ap" in record for record in self._records.values())
        if with_boxes not in (0, len(self._records)):
            raise ValueError(f"box AP needs boxes for every image; {with_boxes} of "
                             f"{len(self._records)} images were scored with boxes.")
        box_ap = BoxAP(self.info.thing_ids) if with_boxes else None
        official_ap = (cityscapes_ap.CityscapesAP(self.info.thing_ids)
                       if self.cityscapes_ap else None)
        for index in sorted(self._records):
            record = self._records[index]
            pq.add(_dense_stats(record["pq"], num_classes))
            if mask_ap is not None:
                mask_ap.add_entry(record["ap"])
            if box_ap is not None:
                box_ap.add_entry(record["box_ap"])
            if official_ap is not None:
                official_ap.add_entry(record["cityscapes_ap"])
        result = merge_results(pq.result(), confusion.result(), len(self._records))
        if mask_ap is not None:
            result.update(mask_ap.result())
        if official_ap is not None:
            cityscapes_ap.report_as_cityscapes(result, official_ap.result())
        if box_ap is not None:
            result.update(box_ap.result())
        return result


def render_prediction(batch: Dict, predictions: Dict, index: int, info: DatasetInfo,
                      height: Optional[int] = None, width: Optional[int] = None) -> np.ndarray:
    """Panels of image `index` of a batch: prediction (with the boxes of its
    kept instances, when predicted) and ground truth over the image, semantic
    map, center heatmap, offsets (those present); cropped to height x width
    (default: the image's original size)."""
    from deeplab2.vis import render_panels

    if height is None:
        height = int(np.asarray(batch[common.IMAGE_HEIGHT])[index])
        width = int(np.asarray(batch[common.IMAGE_WIDTH])[index])

    def crop(value):
        return None if value is None else np.asarray(value)[index, :height, :width]

    boxes = instance_boxes(predictions, index, info.ignore_panoptic_id)
    return render_panels(
        crop(batch[common.IMAGE]).astype(np.uint8), dataset_info=info,
        panoptic=crop(predictions.get(common.PANOPTIC)),
        semantic=crop(predictions.get(common.SEMANTIC)),
        center_heatmap=crop(predictions.get(common.CENTER_HEATMAP)),
        offset=crop(predictions.get(common.OFFSET)),
        gt_panoptic=crop(batch[common.PANOPTIC_LABEL]),
        boxes=None if boxes is None else list(boxes.values()),
        box_ids=None if boxes is None else list(boxes))


def image_name(batch: Dict[str, np.ndarray], i: int, index: int) -> str:
    """An image's id when the batch carries ids, else its position."""
    if common.IMAGE_ID in batch:
        image_id = batch[common.IMAGE_ID][i]
        return image_id.decode() if isinstance(image_id, bytes) else str(image_id)
    return f"image{index}"


def score_batch(metrics: SplitMetrics, batch: Dict[str, np.ndarray],
                predictions: Dict[str, np.ndarray], first_index: int = 0):
    """Scores the real images of one batch (fillers, IMAGE_INDEX -1, are
    skipped); yields (i, index, name) of each."""
    info = metrics.info
    for i in range(batch[common.IMAGE].shape[0]):
        index = (int(batch[common.IMAGE_INDEX][i]) if common.IMAGE_INDEX in batch
                 else first_index + i)
        if index < 0:
            continue
        height, width = int(batch[common.IMAGE_HEIGHT][i]), int(batch[common.IMAGE_WIDTH][i])
        name = image_name(batch, i, index)
        with_ap = metrics.compute_ap
        metrics.score(index, name, batch[common.PANOPTIC_LABEL][i, :height, :width],
                      predictions[common.PANOPTIC][i, :height, :width],
                      instance_scores(predictions, i, info.ignore_panoptic_id) if with_ap else None,
                      instance_boxes(predictions, i, info.ignore_panoptic_id) if with_ap else None)
        yield i, index, name


def evaluate_dataset(predict: Callable[[Dict], Dict], batches: Iterable[Dict],
                     info: DatasetInfo, *, compute_ap: bool = True,
                     picture_dir: Optional[str] = None, num_pictures: int = 0,
                     num_images: Optional[int] = None) -> Dict:
    """Scores `predict` (padded evaluation batch -> post-processed predictions,
    e.g. `Predictor.batch_function()`) on `batches`.

    Predictions are cropped back to each image's original size before
    scoring. Returns the `SplitMetrics` result. The first `num_pictures`
    images are drawn (prediction and ground truth) into `picture_dir`.
    """
    from deeplab2.vis import save_png

    metrics = SplitMetrics(info, compute_ap)
    progress = Progress(num_images, desc="eval", unit="img")
    drawn = seen = 0
    for batch in batches:
        predictions = {k: np.asarray(v) for k, v in predict(batch).items()}
        batch = {k: np.asarray(v) for k, v in batch.items()}
        for i, _, name in score_batch(metrics, batch, predictions, first_index=seen):
            if picture_dir and drawn < num_pictures:
                save_png(path_inside(picture_dir, f"{drawn:05d}_{name}.png",
                                     f"image id {name!r}"),
                         render_prediction(batch, predictions, i, info))
                drawn += 1
            progress.update()
        seen += batch[common.IMAGE].shape[0]
    progress.close()
    return metrics.result()
