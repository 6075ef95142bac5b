"""COCO mask AP and box AP (AP, AP50, AP75) of scored instances, streamed.

Masks are RLE-encoded (boxes listed) as images arrive; `result` runs
pycocotools' `COCOeval` (iouType 'segm' or 'bbox') once over everything, so
the numbers are the official ones (101-point interpolation, up to 100
detections per image, crowd ground truth as ignore regions). Boxes are
(x0, y0, x1, y1) in pixel edges: pixel i spans [i, i + 1), so the box of a
mask is (min x, min y, max x + 1, max y + 1).
"""
import contextlib
import io
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

NAMES = ("AP", "AP50", "AP75")
BOX_NAMES = ("box_AP", "box_AP50", "box_AP75")


def _encode(masks: np.ndarray):
    masks = np.asarray(masks, np.uint8)
    if len(masks) == 0:
        return []
    return mask_utils.encode(np.asfortranarray(np.moveaxis(masks, 0, -1)))


class _StreamingAP:
    """COCO AP of `IOU_TYPE` over the given (thing) category ids: images,
    ground truth and predictions as COCO records, evaluated at `result`."""

    IOU_TYPE = ""
    NAMES = ()

    def __init__(self, category_ids: Sequence[int]):
        self.category_ids = tuple(int(c) for c in category_ids)
        self._images = []
        self._gt = []
        self._predictions = []

    def result(self) -> Dict[str, Optional[float]]:
        """AP, AP50, AP75 under `NAMES`: None without ground truth instances."""
        return _coco_ap(self._images, self._gt, self._predictions, self.category_ids,
                        self.IOU_TYPE, self.NAMES)


class MaskAP(_StreamingAP):
    """Streaming COCO mask AP over the given (thing) category ids."""

    IOU_TYPE = "segm"
    NAMES = NAMES

    def update(self, gt_masks: np.ndarray, gt_classes: Sequence[int],
               gt_crowd: Sequence[bool], pred_masks: np.ndarray,
               pred_classes: Sequence[int], pred_scores: Sequence[float],
               ) -> None:
        """Adds one image: [N, H, W] boolean masks with their categories."""
        self.add_entry(encode_image(gt_masks, gt_classes, gt_crowd, pred_masks,
                                    pred_classes, pred_scores))

    def add_entry(self, entry: Dict) -> None:
        """Adds one image from its `encode_image` entry (e.g. from another worker)."""
        image_id = len(self._images) + 1
        self._images.append({"id": image_id, "height": entry["height"],
                             "width": entry["width"]})
        for counts, category, crowd in entry["gt"]:
            rle = {"size": [entry["height"], entry["width"]], "counts": counts.encode()}
            self._gt.append({
                "id": len(self._gt) + 1, "image_id": image_id,
                "category_id": int(category), "segmentation": rle,
                "area": float(mask_utils.area(rle)),
                "bbox": mask_utils.toBbox(rle).tolist(),
                "iscrowd": int(bool(crowd))})
        for counts, category, score in entry["pred"]:
            rle = {"size": [entry["height"], entry["width"]], "counts": counts.encode()}
            self._predictions.append({
                "image_id": image_id, "category_id": int(category),
                "segmentation": rle, "score": float(score)})

    def update_panoptic(self, gt_panoptic: np.ndarray,
                        pred_panoptic: np.ndarray, scores: Mapping[int, float],
                        info) -> None:
        """Adds one image of `class * label_divisor + instance` maps (see
        `encode_panoptic`)."""
        self.add_entry(encode_panoptic(gt_panoptic, pred_panoptic, scores, info))



class BoxAP(_StreamingAP):
    """Streaming COCO box AP over the given (thing) category ids."""

    IOU_TYPE = "bbox"
    NAMES = BOX_NAMES

    def update(self, gt_boxes, gt_classes: Sequence[int], gt_crowd: Sequence[bool],
               pred_boxes, pred_classes: Sequence[int],
               pred_scores: Sequence[float]) -> None:
        """Adds one image: [N, 4] (x0, y0, x1, y1) boxes with their categories."""
        self.add_entry(encode_boxes(gt_boxes, gt_classes, gt_crowd, pred_boxes,
                                    pred_classes, pred_scores))

    def add_entry(self, entry: Dict) -> None:
        """Adds one image from its `encode_boxes` entry (e.g. from another worker)."""
        image_id = len(self._images) + 1
        self._images.append({"id": image_id})
        for box, category, crowd in entry["gt"]:
            xywh = _xywh(box)
            self._gt.append({
                "id": len(self._gt) + 1, "image_id": image_id,
                "category_id": int(category), "bbox": xywh,
                "area": xywh[2] * xywh[3], "iscrowd": int(bool(crowd))})
        for box, category, score in entry["pred"]:
            self._predictions.append({
                "image_id": image_id, "category_id": int(category),
                "bbox": _xywh(box), "score": float(score)})

    def update_panoptic(self, gt_panoptic: np.ndarray, pred_panoptic: np.ndarray,
                        scores: Mapping[int, float], boxes: Mapping[int, Sequence[float]],
                        info) -> None:
        """Adds one image of `class * label_divisor + instance` maps (see
        `encode_panoptic_boxes`)."""
        self.add_entry(encode_panoptic_boxes(gt_panoptic, pred_panoptic, scores, boxes, info))



def _xywh(box: Sequence[float]) -> list:
    """(x0, y0, x1, y1) -> COCO's [x, y, width, height]."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def _coco_ap(images: list, gt: list, predictions: list, category_ids: Sequence[int],
             iou_type: str, names: Sequence[str]) -> Dict[str, Optional[float]]:
    """COCOeval's AP, AP50, AP75 under `names`: None without ground truth
    instances, 0 without predictions."""
    if not any(not g["iscrowd"] for g in gt):
        return {name: None for name in names}
    if not predictions:
        return {name: 0.0 for name in names}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": gt,
                           "categories": [{"id": c} for c in category_ids]}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([dict(p) for p in predictions])
        evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        evaluator.params.catIds = list(category_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(v) if v >= 0 else None
            for name, v in zip(names, evaluator.stats[:3])}


def encode_image(gt_masks: np.ndarray, gt_classes: Sequence[int], gt_crowd: Sequence[bool],
                 pred_masks: np.ndarray, pred_classes: Sequence[int],
                 pred_scores: Sequence[float]) -> Dict:
    """One image's masks as JSON values: run-length encoded, with categories,
    crowd flags and scores (what `MaskAP.add_entry` takes)."""
    gt_masks, pred_masks = np.asarray(gt_masks), np.asarray(pred_masks)
    if gt_masks.ndim != 3 or pred_masks.ndim != 3:
        raise ValueError("masks must be [N, H, W] arrays")
    if len(pred_masks) and pred_masks.shape[1:] != gt_masks.shape[1:]:
        raise ValueError(f"predicted masks are {pred_masks.shape[1:]} but "
                         f"ground-truth masks are {gt_masks.shape[1:]}")
    height, width = gt_masks.shape[1:]
    return {
        "height": int(height), "width": int(width),
        "gt": [[rle["counts"].decode(), int(c), bool(crowd)]
               for rle, c, crowd in zip(_encode(gt_masks), gt_classes, gt_crowd)],
        "pred": [[rle["counts"].decode(), int(c), float(score)]
                 for rle, c, score in zip(_encode(pred_masks), pred_classes, pred_scores)],
    }


def encode_panoptic(gt_panoptic: np.ndarray, pred_panoptic: np.ndarray,
                    scores: Mapping[int, float], info) -> Dict:
    """`encode_image` of `class * label_divisor + instance` maps.

    Thing segments are the instances; a ground-truth thing class with
    instance 0 is crowd. `scores` gives each predicted thing panoptic id
    its confidence.
    """
    gt = _instances(gt_panoptic, info, crowd_allowed=True)
    pred = _instances(pred_panoptic, info, crowd_allowed=False)
    missing = [i for i in pred[0] if int(i) not in scores]
    if missing:
        raise KeyError(f"no score for predicted instance id {missing[0]}")
    return encode_image(gt[1], gt[2], gt[3], pred[1], pred[2],
                        [scores[int(i)] for i in pred[0]])


def _segments(panoptic: np.ndarray, info, crowd_allowed: bool):
    """(ids, class ids, crowd flags) of the thing segments of a panoptic map."""
    ids = np.unique(panoptic)
    classes = ids // info.label_divisor
    instance = ids % info.label_divisor
    keep = np.isin(classes, info.thing_ids) & ((instance > 0) | crowd_allowed)
    return ids[keep], classes[keep], instance[keep] == 0


def _instances(panoptic: np.ndarray, info, crowd_allowed: bool):
    """(ids, masks [N, H, W], class ids, crowd flags) of thing segments."""
    panoptic = np.asarray(panoptic)
    ids, classes, crowd = _segments(panoptic, info, crowd_allowed)
    masks = panoptic[None] == ids[:, None, None]
    return ids, masks, classes, crowd


def _tight_boxes(panoptic: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """[N, 4] (x0, y0, x1, y1) tight box of the pixels of each id (ids present
    in the map), from the rows and columns each id occupies."""
    height, width = panoptic.shape
    unique, inverse = np.unique(panoptic, return_inverse=True)
    inverse = inverse.reshape(panoptic.shape)
    rows = np.zeros((len(unique), height), bool)
    columns = np.zeros((len(unique), width), bool)
    rows[inverse, np.arange(height)[:, None]] = True
    columns[inverse, np.arange(width)[None, :]] = True
    index = np.searchsorted(unique, ids)
    rows, columns = rows[index], columns[index]
    return np.stack([columns.argmax(1), rows.argmax(1),
                     width - columns[:, ::-1].argmax(1),
                     height - rows[:, ::-1].argmax(1)], 1).astype(np.float64)


def _as_boxes(boxes, name: str, count: int) -> np.ndarray:
    """`boxes` as float64 [count, 4], or a one-line ValueError."""
    boxes = np.asarray(boxes, np.float64)
    if boxes.size == 0 and count == 0:
        return np.zeros((0, 4))
    if boxes.shape != (count, 4) or not np.all(np.isfinite(boxes)):
        raise ValueError(f"{name} boxes must be finite [{count}, 4] (x0, y0, x1, y1) "
                         f"values, one per instance; got shape {boxes.shape}")
    return boxes


def encode_boxes(gt_boxes, gt_classes: Sequence[int], gt_crowd: Sequence[bool],
                 pred_boxes, pred_classes: Sequence[int],
                 pred_scores: Sequence[float]) -> Dict:
    """One image's boxes as JSON values, with categories, crowd flags and
    scores (what `BoxAP.add_entry` takes)."""
    gt_boxes = _as_boxes(gt_boxes, "ground-truth", len(gt_classes))
    pred_boxes = _as_boxes(pred_boxes, "predicted", len(pred_classes))
    return {
        "gt": [[box.tolist(), int(c), bool(crowd)]
               for box, c, crowd in zip(gt_boxes, gt_classes, gt_crowd)],
        "pred": [[box.tolist(), int(c), float(score)]
                 for box, c, score in zip(pred_boxes, pred_classes, pred_scores)],
    }


def encode_panoptic_boxes(gt_panoptic: np.ndarray, pred_panoptic: np.ndarray,
                          scores: Mapping[int, float], boxes: Mapping[int, Sequence[float]],
                          info) -> Dict:
    """`encode_boxes` of `class * label_divisor + instance` maps.

    Ground-truth boxes are the tight boxes of the thing segments (instance 0:
    crowd). The predictions are the thing instances of the predicted map, as
    for mask AP, each with its `scores` and `boxes` entries (by panoptic id),
    the box clipped to the map.
    """
    gt_panoptic, pred_panoptic = np.asarray(gt_panoptic), np.asarray(pred_panoptic)
    gt_ids, gt_classes, gt_crowd = _segments(gt_panoptic, info, crowd_allowed=True)
    pred_ids, pred_classes, _ = _segments(pred_panoptic, info, crowd_allowed=False)
    for table, name in ((scores, "score"), (boxes, "box")):
        missing = [i for i in pred_ids if int(i) not in table]
        if missing:
            raise KeyError(f"no {name} for predicted instance id {missing[0]}")
    height, width = pred_panoptic.shape
    pred_boxes = np.clip(_as_boxes([boxes[int(i)] for i in pred_ids], "predicted",
                                   len(pred_ids)), 0.0, [width, height, width, height])
    return encode_boxes(_tight_boxes(gt_panoptic, gt_ids), gt_classes, gt_crowd,
                        pred_boxes, pred_classes, [scores[int(i)] for i in pred_ids])
