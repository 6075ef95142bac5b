"""Panoptic quality (PQ, SQ, RQ) and PQ-dagger, accumulated over a dataset.

Semantics are those of panopticapi's `pq_compute` (SPEC section 7):

- a predicted and a ground-truth segment of the same category match when
  IoU > 0.5, with IoU = inter / (|pred| + |gt| - inter - |pred on void|);
  crowd ground truth is never matched;
- an unmatched prediction is a false positive unless more than half of it lies
  on void plus the crowd region of its own category (panopticapi takes the
  last crowd segment of that category in the image's segment list);
- unmatched non-crowd ground truth is a false negative;
- TP, FP, FN and the IoU sums accumulate per category over the dataset;
  groups (All, Things, Stuff) average over the categories with TP+FP+FN > 0,
  a class without TP counting with SQ 0. A group without any such category
  reports n = 0 and None instead of dividing by zero; per-class values of
  absent categories are None (panopticapi says 0).

PQ-dagger (Porzi et al., Seamless Scene Segmentation, Sec. 4) keeps PQ_c for
thing classes and, for a stuff class c, uses
`PQ-dagger_c = (1 / |S_c|) * sum of IoU(s, s') over (s, s') in S_c x S'_c with
IoU > 0`: S_c are the non-crowd ground-truth segments of c over the dataset
(one per image in the panoptic encoding; COCO files listing several are taken
literally), S'_c the predicted ones, pairs are formed within an image, and IoU
is the void-corrected IoU above, so a stuff prediction counts with its IoU
however small. It is averaged over the same categories as PQ (TP+FP+FN > 0);
a stuff class counted there only for its false positives (|S_c| = 0) scores
0, the limit of the formula with nothing matched.
"""
import dataclasses
from typing import Dict, Iterable, Optional, Sequence

import numpy as np

from deeplab2.evaluation.overlaps import Overlaps

GROUPS = ("All", "Things", "Stuff")


@dataclasses.dataclass(frozen=True)
class Category:
    """A category as reported: `key` names it in results (category or class id)."""
    key: int
    name: str
    isthing: bool
    evaluated: bool = True


@dataclasses.dataclass
class PQStats:
    """Per-category sums over images, indexed by category index."""
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    iou: np.ndarray
    dagger_iou: np.ndarray
    dagger_gt: np.ndarray

    @classmethod
    def zeros(cls, num_classes: int) -> "PQStats":
        ints = [np.zeros(num_classes, np.int64) for _ in range(3)]
        return cls(*ints, np.zeros(num_classes), np.zeros(num_classes),
                   np.zeros(num_classes, np.int64))

    def __iadd__(self, other: "PQStats") -> "PQStats":
        for field in dataclasses.fields(self):
            getattr(self, field.name)[...] += getattr(other, field.name)
        return self


def _count(classes: np.ndarray, num_classes: int, weights=None) -> np.ndarray:
    counts = np.bincount(classes, weights=weights, minlength=num_classes)
    return counts if weights is not None else counts.astype(np.int64)


def match_segments(overlaps: Overlaps, num_classes: int) -> PQStats:
    """PQ statistics of one image from its overlap table."""
    table, gt, pred = overlaps.table, overlaps.gt, overlaps.pred
    inter = table[1:, 1:]
    pred_area = table[:, 1:].sum(0)
    pred_on_void = table[0, 1:]
    gt_area = gt.areas if gt.areas is not None else table[1:].sum(1)

    candidate = ((inter > 0) & ~gt.crowd[:, None]
                 & (gt.classes[:, None] == pred.classes[None, :]))
    gi, pj = np.nonzero(candidate)
    shared = inter[gi, pj]
    iou = shared / (pred_area[pj] + gt_area[gi] - shared - pred_on_void[pj])
    hit = iou > 0.5
    gt_matched = np.zeros(len(gt), bool)
    gt_matched[gi[hit]] = True
    pred_matched = np.zeros(len(pred), bool)
    pred_matched[pj[hit]] = True

    crowd_of_class = np.full(num_classes, -1)
    for g in np.flatnonzero(gt.crowd):  # the last crowd segment wins
        crowd_of_class[gt.classes[g]] = g
    crowd = crowd_of_class[pred.classes]
    on_crowd = np.zeros(len(pred), np.int64)
    has_crowd = np.flatnonzero(crowd >= 0)
    on_crowd[has_crowd] = inter[crowd[has_crowd], has_crowd]
    ignored = (pred_on_void + on_crowd) / np.maximum(pred_area, 1) > 0.5

    return PQStats(
        tp=_count(gt.classes[gi[hit]], num_classes),
        fp=_count(pred.classes[~pred_matched & ~ignored], num_classes),
        fn=_count(gt.classes[~gt_matched & ~gt.crowd], num_classes),
        iou=_count(gt.classes[gi[hit]], num_classes, iou[hit]),
        dagger_iou=_count(gt.classes[gi], num_classes, iou),
        dagger_gt=_count(gt.classes[~gt.crowd], num_classes))


def _mean(values: np.ndarray) -> Optional[float]:
    return float(values.mean()) if len(values) else None


class PanopticQuality:
    """Streaming PQ / SQ / RQ / PQ-dagger over the given categories."""

    def __init__(self, categories: Sequence[Category]):
        self.categories = tuple(categories)
        self.stats = PQStats.zeros(len(self.categories))

    def add(self, stats: PQStats) -> None:
        self.stats += stats

    def update(self, overlaps: Overlaps) -> PQStats:
        """Adds one image; returns its own statistics."""
        stats = match_segments(overlaps, len(self.categories))
        self.add(stats)
        return stats

    def result(self) -> Dict:
        """{'All', 'Things', 'Stuff': {pq, sq, rq, n}, 'pq_dagger': {group:
        value}, 'per_class': {key: {...}}}, fractions in [0, 1]."""
        s = self.stats
        evaluated = np.array([c.evaluated for c in self.categories], bool)
        isthing = np.array([c.isthing for c in self.categories], bool)
        present = evaluated & (s.tp + s.fp + s.fn > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            denom = s.tp + 0.5 * s.fp + 0.5 * s.fn
            pq = s.iou / denom
            sq = np.where(s.tp > 0, s.iou / np.maximum(s.tp, 1), 0.0)
            rq = s.tp / denom
            stuff_dagger = np.where(s.dagger_gt > 0, s.dagger_iou
                                    / np.maximum(s.dagger_gt, 1), 0.0)
        dagger = np.where(isthing, pq, stuff_dagger)

        result = {}
        daggers = {}
        for group, member in zip(GROUPS, (evaluated, isthing, ~isthing)):
            sel = present & member
            result[group] = {"pq": _mean(pq[sel]), "sq": _mean(sq[sel]),
                             "rq": _mean(rq[sel]), "n": int(sel.sum())}
            daggers[group] = _mean(dagger[sel])
        result["pq_dagger"] = daggers
        result["per_class"] = {
            c.key: _class_result(c, i, present[i], pq, sq, rq, dagger, s)
            for i, c in enumerate(self.categories) if c.evaluated}
        return result


def _class_result(category: Category, i: int, present: bool, pq, sq, rq,
                  dagger, stats: PQStats) -> Dict:
    values = {"name": category.name, "isthing": category.isthing,
              "tp": int(stats.tp[i]), "fp": int(stats.fp[i]),
              "fn": int(stats.fn[i])}
    for name, array in (("pq", pq), ("sq", sq), ("rq", rq),
                        ("pq_dagger", dagger)):
        values[name] = float(array[i]) if present else None
    return values


def dataset_categories(info) -> Iterable[Category]:
    """Categories of a DatasetInfo, keyed by class id; its ignore class (e.g.
    COCO's void class 0) is not evaluated."""
    return [Category(i, name, info.is_thing(i), i != info.ignore_label)
            for i, name in enumerate(info.class_names)]
