"""Cityscapes instance-level AP and AP50, streamed: the numbers of
cityscapesScripts' `evalInstanceLevelSemanticLabeling` (2.3.0), the AP the
Cityscapes papers report.

The official rules, as this module applies them per class and per overlap
threshold t in np.arange(0.5, 1.0, 0.05):
- A prediction matches a ground-truth instance of its class when their IoU
  exceeds t (strictly). Ground-truth instances of at least `MIN_REGION_SIZE`
  pixels count; smaller ones and group (crowd) regions do not, and a
  prediction matching one of them is neither a true nor a false positive.
- A counted instance matched by several predictions is one true positive at
  the highest score; the others are false positives. An unmatched counted
  instance is a false negative.
- An unmatched prediction is a false positive unless more than t of its
  pixels lie on void, on groups or on small instances of its class (a small
  group is counted twice, as the official code does).
- Precision and recall are taken at every distinct score, plus the point
  (recall 0, precision 1); each precision is weighted by half the recall gap
  between its two neighbours on the curve.
- A class without counted ground truth has no AP (left out of the means); one
  with ground truth but no prediction in any image has AP 0. AP is the mean
  over classes and thresholds, AP50 the mean over classes at t = 0.5.
(With ground truth and predictions but nothing counted, e.g. every prediction
excused, cityscapesScripts raises IndexError; the AP here is 0.)

Images are reduced to small JSON records (`encode_*`) of region sizes and
intersections, so workers can exchange them; `CityscapesAP.result` evaluates.
From Cityscapes `*_gtFine_instanceIds.png` ground truth (`encode_instance_ids`)
the numbers are the official ones. From the library's panoptic ground truth
(`encode_panoptic`, or `encode_overlaps` of the overlap table the other
metrics count) they are too, except that the converter stores caravan and
trailer instances as void, where the official code counts a prediction on
them as a false positive.
"""
from typing import Dict, Mapping, Sequence

import numpy as np

from deeplab2.evaluation.overlaps import (Overlaps, array_label_map, image_overlaps,
                                          panoptic_describer)

OVERLAPS = np.arange(0.5, 1.0, 0.05)
MIN_REGION_SIZE = 100
# Cityscapes instanceIds: label id (0..33) * 1000 + k for instances, the label
# id for regions without instances (a group, for a class with instances).
SOURCE_DIVISOR = 1000
NUM_LABEL_IDS = 34


def _entry(gt_classes, gt_areas, gt_groups, pred_classes, pred_scores, pred_areas,
           pred_void, intersections) -> Dict:
    """An image's JSON record: ground-truth regions [class, pixels, group],
    non-empty predictions [class, score, pixels, void pixels] and intersections
    [prediction, region, pixels] of the same class."""
    kept = np.flatnonzero(np.asarray(pred_areas) > 0)
    intersections = np.asarray(intersections)[kept]
    same_class = np.asarray(pred_classes)[kept, None] == np.asarray(gt_classes)[None, :]
    rows, columns = np.nonzero((intersections > 0) & same_class)
    return {
        "gt": [[int(c), int(a), bool(g)] for c, a, g in zip(gt_classes, gt_areas, gt_groups)],
        "pred": [[int(pred_classes[i]), float(pred_scores[i]), int(pred_areas[i]),
                  int(pred_void[i])] for i in kept],
        "pairs": [[int(r), int(c), int(intersections[r, c])] for r, c in zip(rows, columns)],
    }


def _region_index(labels: np.ndarray, keep) -> tuple:
    """(HxW index of each pixel's kept region or -1, the kept values)."""
    values, inverse = np.unique(labels, return_inverse=True)
    kept = keep(values)
    lookup = np.full(len(values), -1, np.int64)
    lookup[kept] = np.arange(kept.sum())
    return lookup[inverse.reshape(labels.shape)], values[kept]


def encode_masks(gt_index: np.ndarray, gt_classes: Sequence[int], gt_groups: Sequence[bool],
                 void: np.ndarray, pred_masks: np.ndarray, pred_classes: Sequence[int],
                 pred_scores: Sequence[float]) -> Dict:
    """An image's record from (possibly overlapping) [N, H, W] predicted masks.

    `gt_index` (HxW) gives each pixel's ground-truth region (an instance or a
    group) as an index into `gt_classes` / `gt_groups`, -1 outside them;
    `void` marks the void pixels.
    """
    gt_index, void = np.asarray(gt_index), np.asarray(void, bool)
    pred_masks = np.asarray(pred_masks, bool).reshape((-1,) + gt_index.shape)
    num_gt = len(gt_classes)
    shifted = gt_index + 1
    intersections = np.zeros((len(pred_masks), num_gt), np.int64)
    for row, mask in enumerate(pred_masks):
        intersections[row] = np.bincount(shifted[mask], minlength=num_gt + 1)[1:]
    return _entry(gt_classes, np.bincount(shifted.ravel(), minlength=num_gt + 1)[1:],
                  gt_groups, pred_classes, pred_scores, pred_masks.sum((1, 2)),
                  (pred_masks & void).sum((1, 2)), intersections)


def encode_instance_ids(instance_ids: np.ndarray, pred_masks: np.ndarray,
                        pred_label_ids: Sequence[int], pred_scores: Sequence[float],
                        info) -> Dict:
    """An image's record from Cityscapes instanceIds ground truth and predicted
    masks with Cityscapes label ids (classes: label ids).

    `info` is the "cityscapes" descriptor: its thing classes' label ids are
    the evaluated ones, and regions of the label ids outside its classes
    (those with `ignoreInEval`) are void.
    """
    instance_ids = np.asarray(instance_ids, np.int64)
    label_ids = [info.source_ids[c] for c in info.thing_ids]
    void_ids = sorted(set(range(NUM_LABEL_IDS)) - set(info.source_ids))
    gt_index, values = _region_index(instance_ids, lambda v: np.isin(
        np.where(v >= SOURCE_DIVISOR, v // SOURCE_DIVISOR, v), label_ids))
    classes = np.where(values >= SOURCE_DIVISOR, values // SOURCE_DIVISOR, values)
    return encode_masks(gt_index, classes, values < SOURCE_DIVISOR,
                        np.isin(instance_ids, void_ids), pred_masks, pred_label_ids,
                        pred_scores)


def encode_overlaps(overlaps: Overlaps, scores: Mapping[int, float], info) -> Dict:
    """An image's record from the overlap table of `class * label_divisor +
    instance` maps (classes: class ids): ground-truth thing segments (instance
    0: group), void where the ground truth is the ignore class, and the
    predicted thing instances with `scores` by panoptic id."""
    gt, pred, table = overlaps.gt, overlaps.pred, overlaps.table
    gt_kept = np.flatnonzero(np.isin(gt.classes, info.thing_ids))
    pred_kept = np.flatnonzero(np.isin(pred.classes, info.thing_ids)
                               & (pred.ids % info.label_divisor > 0))
    missing = [int(i) for i in pred.ids[pred_kept] if int(i) not in scores]
    if missing:
        raise KeyError(f"no score for predicted instance id {missing[0]}")
    rows, columns = gt_kept + 1, pred_kept + 1  # row and column 0 are void
    return _entry(gt.classes[gt_kept], table[rows].sum(1), gt.crowd[gt_kept],
                  pred.classes[pred_kept], [scores[int(i)] for i in pred.ids[pred_kept]],
                  table[:, columns].sum(0), table[0, columns],
                  table[np.ix_(rows, columns)].T)


def encode_panoptic(gt_panoptic: np.ndarray, pred_panoptic: np.ndarray,
                    scores: Mapping[int, float], info) -> Dict:
    """`encode_overlaps` of two HxW `class * label_divisor + instance` maps."""
    args = (info.label_divisor, info.ignore_label, info.num_classes, info.thing_ids)
    return encode_overlaps(image_overlaps(
        array_label_map(np.asarray(gt_panoptic)), array_label_map(np.asarray(pred_panoptic)),
        panoptic_describer(*args, groundtruth=True),
        panoptic_describer(*args, groundtruth=False)), scores, info)


def _average_precision(scores: np.ndarray, is_true: np.ndarray, missed: int) -> float:
    """The official AP of scored detections (true or false positives) and
    `missed` unmatched ground-truth instances."""
    order = np.argsort(scores, kind="stable")
    scores, is_true = scores[order], is_true[order].astype(np.float64)
    _, first = np.unique(scores, return_index=True)  # each distinct score's first row
    true_below = np.concatenate([[0.0], np.cumsum(is_true)])[first]
    num_true = is_true.sum()
    true_positives = num_true - true_below
    precision = np.append(true_positives / (len(scores) - first), 1.0)
    recall = np.append(true_positives / (num_true + missed), 0.0)
    before = np.concatenate([recall[:1], recall[:-1]])
    after = np.append(recall[1:], 0.0)
    return float(np.sum(precision * (before - after) / 2))


class CityscapesAP:
    """Streaming Cityscapes AP and AP50 over the given classes (ids of the
    records' class space: label ids or class ids)."""

    def __init__(self, class_ids: Sequence[int], min_region_size: int = MIN_REGION_SIZE):
        self.class_ids = tuple(int(c) for c in class_ids)
        self.min_region_size = min_region_size
        self._gt, self._pred, self._pairs = [], [], []

    def add_entry(self, entry: Dict) -> None:
        """Adds one image's record (`encode_*`)."""
        pred_offset, gt_offset = len(self._pred), len(self._gt)
        self._gt.extend(entry["gt"])
        self._pred.extend(entry["pred"])
        self._pairs.extend([p + pred_offset, g + gt_offset, n] for p, g, n in entry["pairs"])

    def ap_table(self) -> np.ndarray:
        """[classes, OVERLAPS] AP, nan for classes without counted ground truth."""
        gt = np.asarray(self._gt, np.int64).reshape(-1, 3)
        gt_class, gt_area, gt_group = gt[:, 0], gt[:, 1], gt[:, 2].astype(bool)
        pred = np.asarray(self._pred, np.float64).reshape(-1, 4)
        pred_class, pred_score = pred[:, 0].astype(np.int64), pred[:, 1]
        pred_area, pred_void = pred[:, 2].astype(np.int64), pred[:, 3].astype(np.int64)
        pairs = np.asarray(self._pairs, np.int64).reshape(-1, 3)
        pair_pred, pair_gt, overlap = pairs[:, 0], pairs[:, 1], pairs[:, 2]

        counted = ~gt_group & (gt_area >= self.min_region_size)
        iou = overlap / (gt_area[pair_gt] + pred_area[pair_pred] - overlap)
        excused = overlap * (gt_group[pair_gt].astype(np.int64)
                             + (gt_area[pair_gt] < self.min_region_size))
        ignored = pred_void + np.bincount(pair_pred, excused, len(pred_class)).astype(np.int64)
        ignored_share = ignored / pred_area  # records hold non-empty predictions only

        table = np.full((len(self.class_ids), len(OVERLAPS)), np.nan)
        for k, overlap_threshold in enumerate(OVERLAPS):
            match = iou > overlap_threshold
            matched_pred = np.zeros(len(pred_class), bool)
            matched_pred[pair_pred[match]] = True
            counted_match = match & counted[pair_gt]
            # Per counted instance, its best-scored match is the true positive.
            order = np.lexsort((-pred_score[pair_pred[counted_match]], pair_gt[counted_match]))
            match_gt = pair_gt[counted_match][order]
            match_score = pred_score[pair_pred[counted_match]][order]
            best = np.ones(len(match_gt), bool)
            best[1:] = match_gt[1:] != match_gt[:-1]
            unmatched_fp = ~matched_pred & (ignored_share <= overlap_threshold)
            for row, cls in enumerate(self.class_ids):
                num_gt = int(np.sum(counted & (gt_class == cls)))
                if num_gt == 0:
                    continue
                if not np.any(pred_class == cls):
                    table[row, k] = 0.0
                    continue
                in_class = gt_class[match_gt] == cls
                fp = unmatched_fp & (pred_class == cls)
                scores = np.concatenate([match_score[in_class], pred_score[fp]])
                is_true = np.concatenate([best[in_class], np.zeros(fp.sum(), bool)])
                missed = num_gt - int(best[in_class].sum())
                table[row, k] = _average_precision(scores, is_true, missed)
        return table

    def result(self) -> Dict:
        """{"AP", "AP50", "per_class": {class id: {"ap", "ap50"}}}; None where
        no class (or not this class) has counted ground truth."""
        table = self.ap_table()
        present = ~np.isnan(table[:, 0])

        def value(x):
            return None if np.isnan(x) else float(x)

        return {"AP": value(table[present].mean()) if present.any() else None,
                "AP50": value(table[present, 0].mean()) if present.any() else None,
                "per_class": {cls: {"ap": value(row.mean()), "ap50": value(row[0])}
                              for cls, row in zip(self.class_ids, table)}}


COCO_NAMES = ("coco_AP", "coco_AP50", "coco_AP75")


def report_as_cityscapes(result: Dict, cityscapes: Dict) -> None:
    """Makes an evaluation result report Cityscapes AP as the Cityscapes papers
    do: AP and AP50 become the official numbers (`CityscapesAP.result`, also
    per class as `ap` / `ap50`); COCO mask AP moves to coco_AP, coco_AP50,
    coco_AP75."""
    for coco_name, name in zip(COCO_NAMES, ("AP", "AP50", "AP75")):
        result[coco_name] = result.pop(name)
    result["AP"], result["AP50"] = cityscapes["AP"], cityscapes["AP50"]
    for cls, values in cityscapes["per_class"].items():
        result["per_class"][cls].update(values)
