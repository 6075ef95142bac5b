"""COCO mask AP (AP, AP50, AP75) of scored instance masks, streamed.

Masks are RLE-encoded as images arrive; `result` runs pycocotools'
`COCOeval(iouType='segm')` once over everything, so the numbers are the
official ones (101-point interpolation, up to 100 detections per image, crowd
ground truth as ignore regions).
"""
import contextlib
import io
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

NAMES = ("AP", "AP50", "AP75")


def _encode(masks: np.ndarray):
    masks = np.asarray(masks, np.uint8)
    if len(masks) == 0:
        return []
    return mask_utils.encode(np.asfortranarray(np.moveaxis(masks, 0, -1)))


class MaskAP:
    """Streaming COCO mask AP over the given (thing) category ids."""

    def __init__(self, category_ids: Sequence[int]):
        self.category_ids = tuple(int(c) for c in category_ids)
        self._images = []
        self._gt = []
        self._predictions = []

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

    def result(self) -> Dict[str, Optional[float]]:
        """{'AP', 'AP50', 'AP75'}: None without ground truth instances."""
        if not any(not g["iscrowd"] for g in self._gt):
            return {name: None for name in NAMES}
        if not self._predictions:
            return {name: 0.0 for name in NAMES}
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO()
            coco_gt.dataset = {
                "images": self._images, "annotations": self._gt,
                "categories": [{"id": c} for c in self.category_ids]}
            coco_gt.createIndex()
            coco_dt = coco_gt.loadRes([dict(p) for p in self._predictions])
            evaluator = COCOeval(coco_gt, coco_dt, iouType="segm")
            evaluator.params.catIds = list(self.category_ids)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return {name: float(v) if v >= 0 else None
                for name, v in zip(NAMES, evaluator.stats[:3])}


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


def _instances(panoptic: np.ndarray, info, crowd_allowed: bool):
    """(ids, masks [N, H, W], class ids, crowd flags) of thing segments."""
    panoptic = np.asarray(panoptic)
    ids = np.unique(panoptic)
    classes = ids // info.label_divisor
    instance = ids % info.label_divisor
    thing = np.isin(classes, info.thing_ids)
    keep = thing & ((instance > 0) | crowd_allowed)
    ids, classes, crowd = ids[keep], classes[keep], instance[keep] == 0
    masks = panoptic[None] == ids[:, None, None]
    return ids, masks, classes, crowd
