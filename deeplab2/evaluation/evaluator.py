"""Streaming panoptic evaluation (PQ, PQ-dagger, mIoU) of integer panoptic maps.

Ground truth and prediction are `class * label_divisor + instance` maps of a
dataset descriptor; in the ground truth a thing class with instance 0 is a
crowd region, and the ignore class is void in both. One overlap table per
image feeds every metric (see overlaps.py).
"""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from deeplab2.evaluation.miou import ConfusionMatrix
from deeplab2.evaluation.overlaps import (Overlaps, array_label_map,
                                          image_overlaps, panoptic_describer)
from deeplab2.evaluation.panoptic_quality import (Category, PanopticQuality,
                                                  PQStats, dataset_categories,
                                                  match_segments)


def image_statistics(overlaps: Overlaps,
                     num_classes: int) -> Tuple[PQStats, np.ndarray]:
    """PQ statistics and semantic confusion of one image."""
    return (match_segments(overlaps, num_classes),
            overlaps.semantic_confusion(num_classes))


def merge_results(pq: Dict, miou: Dict, num_images: int) -> Dict:
    """One result dict: PQ groups, `pq_dagger`, `miou`, per-class `iou`."""
    result = dict(pq)
    result["miou"] = miou["miou"]
    for key, values in result["per_class"].items():
        values["iou"] = miou["per_class"].get(key)
    result["num_images"] = num_images
    return result


class MetricSet:
    """PQ / PQ-dagger / mIoU accumulators over one list of categories."""

    def __init__(self, categories: Sequence[Category]):
        self.pq = PanopticQuality(categories)
        self.confusion = ConfusionMatrix(
            len(categories), [c.key for c in categories],
            [c.evaluated for c in categories])
        self.num_images = 0

    def add(self, overlaps: Overlaps) -> None:
        """Adds one image."""
        self.add_statistics(*image_statistics(overlaps,
                                              len(self.pq.categories)))

    def add_statistics(self, stats: PQStats, confusion: np.ndarray) -> None:
        """Adds one image's `image_statistics` (e.g. from a worker thread)."""
        self.pq.add(stats)
        self.confusion.add(confusion)
        self.num_images += 1

    def result(self) -> Dict:
        return merge_results(self.pq.result(), self.confusion.result(),
                             self.num_images)


class PanopticEvaluator(MetricSet):
    """Accumulates PQ, PQ-dagger and mIoU over images of a dataset."""

    def __init__(self, info):
        super().__init__(dataset_categories(info))
        args = (info.label_divisor, info.ignore_label, info.num_classes,
                info.thing_ids)
        self._describe_gt = panoptic_describer(*args, groundtruth=True)
        self._describe_pred = panoptic_describer(*args, groundtruth=False)

    def update(self, gt_panoptic: np.ndarray, pred_panoptic: np.ndarray,
               image_id: Optional[str] = None) -> None:
        """Adds one image (HxW integer maps of the same size)."""
        name = str(image_id) if image_id is not None else str(self.num_images)
        self.add(image_overlaps(array_label_map(gt_panoptic),
                                array_label_map(pred_panoptic),
                                self._describe_gt, self._describe_pred, name))
