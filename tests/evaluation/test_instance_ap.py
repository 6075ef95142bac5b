"""COCO mask AP on hand cases whose answer is known."""
import numpy as np
import pytest

from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.evaluation.instance_ap import MaskAP


def boxes(shape, rects):
    masks = np.zeros((len(rects),) + shape, bool)
    for mask, (y0, y1, x0, x1) in zip(masks, rects):
        mask[y0:y1, x0:x1] = True
    return masks


RECTS = [(0, 10, 0, 10), (20, 30, 20, 35), (5, 15, 40, 60)]


def test_perfect_predictions_score_one():
    ap = MaskAP([1, 2])
    gt = boxes((64, 64), RECTS)
    ap.update(gt, [1, 1, 2], [0, 0, 0], gt, [1, 1, 2], [0.9, 0.8, 0.7])
    assert ap.result() == {"AP": 1.0, "AP50": 1.0, "AP75": 1.0}


def test_one_of_two_instances_missed():
    """Precision 1 up to recall 0.5, nothing beyond: 51 of the 101 recall
    points, at every IoU threshold."""
    ap = MaskAP([1])
    gt = boxes((64, 64), RECTS[:2])
    ap.update(gt, [1, 1], [0, 0], gt[:1], [1], [0.9])
    result = ap.result()
    for name in ("AP", "AP50", "AP75"):
        assert result[name] == pytest.approx(51 / 101, abs=1e-12)


def test_streams_images_and_reads_panoptic_maps_with_crowd():
    info = get_dataset_info("cityscapes")
    gt = np.full((32, 48), 0, np.int32)  # road
    gt[0:8, 0:8] = 11 * 1000 + 1          # person 1
    gt[10:20, 10:30] = 13 * 1000 + 1      # car 1
    gt[25:30, 0:10] = 13 * 1000           # car crowd
    pred = gt.copy()
    pred[25:30, 0:10] = 0
    pred[25:30, 0:5] = 13 * 1000 + 7      # a detection on the crowd: ignored
    scores = {11001: 0.9, 13001: 0.8, 13007: 0.95}
    ap = MaskAP(info.thing_ids)
    ap.update_panoptic(gt, pred, scores, info)
    ap.update_panoptic(gt, pred, scores, info)
    assert ap.result()["AP"] == pytest.approx(1.0)
    with pytest.raises(KeyError, match="13007"):
        ap.update_panoptic(gt, pred, {11001: 0.9, 13001: 0.8}, info)


def test_no_ground_truth_or_no_prediction():
    ap = MaskAP([1])
    empty = np.zeros((0, 8, 8), bool)
    ap.update(empty, [], [], empty, [], [])
    assert ap.result() == {"AP": None, "AP50": None, "AP75": None}
    ap.update(boxes((8, 8), [(0, 4, 0, 4)]), [1], [0], empty, [], [])
    assert ap.result() == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
