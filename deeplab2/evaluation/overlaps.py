"""Pixel overlaps between the segments of a ground truth and a prediction.

Every metric of this package is a function of one small table per image: the
number of pixels shared by each (ground-truth segment, predicted segment) pair,
with row and column 0 for void. The table is counted over runs of equal
(ground truth, prediction) ids along the flattened image rather than over
pixels: panoptic maps are piecewise constant, so a few comparisons per pixel
replace the sort of `np.unique` over millions of pixels.
"""
import dataclasses
from typing import Callable, Optional, Tuple

import numpy as np


class SegmentError(ValueError):
    """Input segments and label maps that do not describe each other."""


@dataclasses.dataclass(frozen=True)
class Segments:
    """The labelled segments of one image (void is not a segment).

    Attributes:
        ids: int64 [S] segment ids as stored in the label map.
        classes: int64 [S] category index of each segment.
        crowd: bool [S], True for crowd regions (never matched).
        areas: int64 [S] declared areas (COCO ground-truth JSON, used as
            panopticapi does), or None to use the counted pixels.
    """
    ids: np.ndarray
    classes: np.ndarray
    crowd: np.ndarray
    areas: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.ids)


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """A flattened label map, as seen by the run counter.

    `keys` [H * W] are compared between neighbouring pixels: equal keys must
    mean equal ids (unequal keys of equal ids only cost an extra run).
    `ids_at` returns the exact ids at given flat positions. This lets an RGB
    PNG be read in place, without building its id image
    (`coco_format.rgb_label_map`).
    """
    keys: np.ndarray
    ids_at: Callable[[np.ndarray], np.ndarray]
    shape: Tuple[int, int]


def array_label_map(ids: np.ndarray) -> LabelMap:
    """Wraps an integer HxW id array."""
    ids = np.asarray(ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise SegmentError(f"a label map must be a 2-D integer array, got "
                           f"shape {ids.shape} and dtype {ids.dtype}")
    flat = ids.reshape(-1)
    return LabelMap(flat, lambda positions: flat[positions].astype(np.int64),
                    ids.shape)


def joint_runs(gt: LabelMap, pred: LabelMap):
    """Splits the flattened image into runs of constant (gt id, pred id).

    Returns (gt ids, pred ids, lengths) of the runs. Runs are not necessarily
    maximal; callers only sum lengths per id pair.
    """
    if gt.shape != pred.shape:
        raise SegmentError(f"label maps differ in size: {gt.shape}, "
                           f"{pred.shape}")
    n = gt.shape[0] * gt.shape[1]
    change = gt.keys[1:] != gt.keys[:-1]
    change |= pred.keys[1:] != pred.keys[:-1]
    starts = np.flatnonzero(change)
    starts += 1
    starts = np.concatenate(([0] if n else [], starts)).astype(np.int64)
    lengths = np.diff(starts, append=n)
    return gt.ids_at(starts), pred.ids_at(starts), lengths


def pair_counts(gt: LabelMap, pred: LabelMap):
    """Pixels per (gt id, pred id) pair.

    Returns (gt ids [A], pred ids [B], counts [A, B] int64), ids sorted and
    unique, each id present on at least one pixel.
    """
    gt_run, pred_run, lengths = joint_runs(gt, pred)
    gt_ids, gt_inv = np.unique(gt_run, return_inverse=True)
    pred_ids, pred_inv = np.unique(pred_run, return_inverse=True)
    flat = np.bincount(gt_inv.ravel() * len(pred_ids) + pred_inv.ravel(),
                       weights=lengths, minlength=len(gt_ids) * len(pred_ids))
    counts = flat.astype(np.int64).reshape(len(gt_ids), len(pred_ids))
    return gt_ids, pred_ids, counts


@dataclasses.dataclass(frozen=True)
class Overlaps:
    """Pixel counts of one image: `table[i, j]` = pixels of gt segment i-1 and
    predicted segment j-1, row / column 0 being void."""
    table: np.ndarray
    gt: Segments
    pred: Segments

    def semantic_confusion(self, num_classes: int) -> np.ndarray:
        """[K, K + 1] pixel confusion of categories; rows are ground truth
        (void rows dropped), the last column is predicted void."""
        gt_class = self.gt.classes
        pred_class = np.concatenate(([num_classes], self.pred.classes))
        index = gt_class[:, None] * (num_classes + 1) + pred_class[None, :]
        flat = np.bincount(index.ravel(), weights=self.table[1:].ravel(),
                           minlength=num_classes * (num_classes + 1))
        return flat.astype(np.int64).reshape(num_classes, num_classes + 1)


Describe = Callable[[np.ndarray], Tuple[Segments, np.ndarray]]
"""Maps the sorted ids seen in a label map to (its segments, void mask of ids)."""


def _rows(ids: np.ndarray, describe: Describe, what: str, image: str,
          pixels: np.ndarray) -> Tuple[Segments, np.ndarray]:
    """The segments of one side and the table row (1 + segment index, 0 for
    void) of each observed id."""
    try:
        segments, void = describe(ids)
    except SegmentError as e:
        raise SegmentError(f"image {image}: {e}") from None
    rows = np.zeros(len(ids), np.int64)
    known = np.zeros(len(ids), bool)
    if len(segments):
        order = np.argsort(segments.ids, kind="stable")
        sorted_ids = segments.ids[order]
        pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
        known = sorted_ids[pos] == ids
        rows = np.where(known, order[pos] + 1, 0)
    unknown = np.flatnonzero(~known & ~void)
    if len(unknown):
        k = unknown[0]
        raise SegmentError(f"image {image}: {what} segment id {int(ids[k])} "
                           f"covers {int(pixels[k])} pixels of the label map "
                           "but is not listed in its segments")
    return segments, rows


def image_overlaps(gt_map: LabelMap, pred_map: LabelMap, describe_gt: Describe,
                   describe_pred: Describe, image: str = "?") -> Overlaps:
    """Counts the overlap table of one image and checks ids against segments.

    Raises SegmentError naming the image and segment when a map holds a
    non-void id missing from its segments, or a segment has no pixel.
    """
    if gt_map.shape != pred_map.shape:
        raise SegmentError(
            f"image {image}: prediction is {pred_map.shape[0]}x"
            f"{pred_map.shape[1]} but ground truth is {gt_map.shape[0]}x"
            f"{gt_map.shape[1]}")
    gt_ids, pred_ids, counts = pair_counts(gt_map, pred_map)
    gt, rows = _rows(gt_ids, describe_gt, "ground-truth", image, counts.sum(1))
    pred, cols = _rows(pred_ids, describe_pred, "predicted", image,
                       counts.sum(0))
    table = np.zeros((len(gt) + 1, len(pred) + 1), np.int64)
    np.add.at(table, (rows[:, None], cols[None, :]), counts)
    for segments, area, what in ((gt, table[1:].sum(1), "ground-truth"),
                                 (pred, table[:, 1:].sum(0), "predicted")):
        empty = np.flatnonzero(area == 0)
        if len(empty):
            raise SegmentError(
                f"image {image}: {what} segment id {int(segments.ids[empty[0]])} "
                "is listed in its segments but has no pixel in its label map")
    return Overlaps(table, gt, pred)


def panoptic_describer(label_divisor: int, ignore_label: int, num_classes: int,
                       thing_ids, groundtruth: bool) -> Describe:
    """Describes ids `class * label_divisor + instance` of a panoptic map.

    Ids of the ignore class are void. In the ground truth, a thing class with
    instance 0 is a crowd region; predictions have no crowd.
    """
    things = np.zeros(num_classes, bool)
    things[list(thing_ids)] = True

    def describe(ids: np.ndarray) -> Tuple[Segments, np.ndarray]:
        classes = ids // label_divisor
        void = classes == ignore_label
        bad = np.flatnonzero(~void & ((classes < 0) | (classes >= num_classes)))
        if len(bad):
            raise SegmentError(
                f"panoptic id {int(ids[bad[0]])} has class "
                f"{int(classes[bad[0]])}, outside [0, {num_classes}) and not the "
                f"ignore label {ignore_label}")
        keep = ~void
        ids, classes = ids[keep].astype(np.int64), classes[keep].astype(np.int64)
        crowd = things[classes] & (ids % label_divisor == 0) & groundtruth
        return Segments(ids, classes, crowd), void

    return describe
