"""COCO box AP on hand cases whose answer is known, and its place in SplitMetrics.

COCO's AP averages, over 101 recall points r = 0, 0.01, ..., 1, the best
precision at recall >= r (0 where that recall is never reached); AP averages
that over the IoU thresholds 0.5, 0.55, ..., 0.95.
"""
import json

import numpy as np
import pytest

from deeplab2 import common
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.evaluation.dataset_evaluation import SplitMetrics, evaluate_dataset
from deeplab2.evaluation.instance_ap import BOX_NAMES, BoxAP, encode_panoptic_boxes

INFO = get_dataset_info("cityscapes")  # label divisor 1000; person 11, car 13
PERSON, CAR = 11, 13
BOX_A, BOX_B = (0, 0, 10, 10), (20, 20, 30, 35)


def _result(gt_boxes, gt_crowd, pred_boxes, scores):
    ap = BoxAP([1])
    ap.update(gt_boxes, [1] * len(gt_boxes), gt_crowd, pred_boxes, [1] * len(pred_boxes),
              scores)
    return ap.result()


def test_perfect_prediction_scores_one():
    ap = BoxAP([1, 2])
    gt = [BOX_A, BOX_B, (40, 5, 60, 15)]
    ap.update(gt, [1, 1, 2], [0, 0, 0], gt, [1, 1, 2], [0.9, 0.8, 0.7])
    assert ap.result() == pytest.approx({"box_AP": 1.0, "box_AP50": 1.0, "box_AP75": 1.0})


def test_one_of_two_boxes_found():
    """Precision 1 up to recall 0.5 and recall 1 is never reached: 51 of the
    101 points have precision 1, at every IoU threshold."""
    result = _result([BOX_A, BOX_B], [0, 0], [BOX_A], [0.9])
    for name in BOX_NAMES:
        assert result[name] == pytest.approx(51 / 101, abs=1e-12)


def test_a_better_scored_false_positive_halves_precision():
    """The miss comes first: precision 1/2 at recall 1/2, so 51 points of 1/2."""
    result = _result([BOX_A, BOX_B], [0, 0], [(50, 50, 60, 60), BOX_A], [0.9, 0.5])
    assert result["box_AP"] == pytest.approx(25.5 / 101, abs=1e-12)


@pytest.mark.parametrize("x1, ap, ap50, ap75", [
    (4.9, 0.0, 0.0, 0.0),  # IoU 0.49: no threshold met
    (5.1, 0.1, 1.0, 0.0),  # IoU 0.51: only 0.5 of the 10 thresholds
    (7.4, 0.5, 1.0, 0.0),  # IoU 0.74: 0.5 .. 0.7
    (7.6, 0.6, 1.0, 1.0),  # IoU 0.76: 0.5 .. 0.75
])
def test_iou_thresholds(x1, ap, ap50, ap75):
    """A box of width x1 inside the 10 x 10 ground truth has IoU x1 / 10."""
    result = _result([BOX_A], [0], [(0, 0, x1, 10)], [0.9])
    assert result == pytest.approx({"box_AP": ap, "box_AP50": ap50, "box_AP75": ap75},
                                   abs=1e-12)


def test_crowd_ground_truth_is_an_ignore_region():
    """The better-scored box inside the crowd is neither a hit nor a miss;
    the crowd itself needs no detection."""
    crowd = (40, 0, 64, 20)
    result = _result([BOX_A, crowd], [0, 1], [(45, 5, 55, 15), BOX_A], [0.9, 0.8])
    assert result["box_AP"] == pytest.approx(1.0)
    # The same boxes with the crowd as an ordinary instance: the first box
    # (IoU 100 / 480) misses, so precision is 1/2 at recall 1/2.
    result = _result([BOX_A, crowd], [0, 0], [(45, 5, 55, 15), BOX_A], [0.9, 0.8])
    assert result["box_AP"] == pytest.approx(25.5 / 101, abs=1e-12)


def test_no_ground_truth_or_no_prediction():
    assert _result([], [], [BOX_A], [0.9]) == {name: None for name in BOX_NAMES}
    assert _result([(0, 0, 5, 5)], [1], [], []) == {name: None for name in BOX_NAMES}
    assert _result([BOX_A], [0], [], []) == {name: 0.0 for name in BOX_NAMES}


def test_bad_boxes_are_refused():
    with pytest.raises(ValueError, match=r"predicted boxes must be finite \[1, 4\]"):
        _result([BOX_A], [0], [(0, 0, 10)], [0.9])
    with pytest.raises(ValueError, match="ground-truth boxes must be finite"):
        _result([(0, 0, np.nan, 10)], [0], [BOX_A], [0.9])


def _maps():
    """A 20 x 30 ground truth (road, a person, a car, a car crowd) and its
    perfect prediction (the crowd predicted as car 7)."""
    gt = np.zeros((20, 30), np.int32)
    gt[2:6, 3:9] = PERSON * 1000 + 1
    gt[10:18, 12:29] = CAR * 1000 + 1
    gt[0:4, 20:30] = CAR * 1000
    pred = gt.copy()
    pred[0:4, 20:30] = CAR * 1000 + 7
    return gt, pred


def test_panoptic_maps_give_tight_boxes_and_clipped_predictions():
    gt, pred = _maps()
    scores = {11001: 0.9, 13001: 0.8, 13007: 0.7, 13009: 0.6}
    boxes = {11001: (3, 2, 9, 6), 13001: (12, 10, 40, 18), 13007: (-5, -5, 30, 4),
             13009: (0, 0, 5, 5)}  # 13009 has no pixel in the map: not a prediction
    entry = encode_panoptic_boxes(gt, pred, scores, boxes, INFO)
    assert entry["gt"] == [[[3.0, 2.0, 9.0, 6.0], PERSON, False],
                           [[20.0, 0.0, 30.0, 4.0], CAR, True],
                           [[12.0, 10.0, 29.0, 18.0], CAR, False]]
    assert entry["pred"] == [[[3.0, 2.0, 9.0, 6.0], PERSON, 0.9],
                             [[12.0, 10.0, 30.0, 18.0], CAR, 0.8],
                             [[0.0, 0.0, 30.0, 4.0], CAR, 0.7]]
    with pytest.raises(KeyError, match="no box for predicted instance id 13007"):
        encode_panoptic_boxes(gt, pred, scores, {11001: (3, 2, 9, 6), 13001: (0, 0, 1, 1)},
                              INFO)


def test_split_metrics_report_box_ap_only_with_boxes():
    gt, pred = _maps()
    scores = {11001: 0.9, 13001: 0.8, 13007: 0.95}
    # The car's box is its truth (IoU 1); the person's box covers a third of
    # its truth (IoU 1/3, a miss); the box on the crowd is ignored.
    boxes = {11001: (3, 2, 5, 6), 13001: (12, 10, 29, 18), 13007: (20, 0, 30, 4)}

    without = SplitMetrics(INFO)
    without.score(0, "a", gt, pred, scores)
    assert not set(BOX_NAMES) & set(without.result())
    assert without.result()["AP"] == pytest.approx(1.0)

    metrics = SplitMetrics(INFO)
    metrics.score(0, "a", gt, pred, scores, boxes)
    result = metrics.result()
    assert result["AP"] == pytest.approx(1.0)
    # COCO averages over the classes with ground truth: car 1, person 0.
    assert result["box_AP"] == pytest.approx(0.5)
    assert result["box_AP50"] == pytest.approx(0.5)
    json.dumps(result)

    merged = SplitMetrics(INFO)
    merged.merge_payload(metrics.payload())
    assert merged.result()["box_AP"] == result["box_AP"]

    mixed = SplitMetrics(INFO)
    mixed.score(0, "a", gt, pred, scores, boxes)
    mixed.score(1, "b", gt, pred, scores)
    with pytest.raises(ValueError, match="1 of 2 images were scored with boxes"):
        mixed.result()

    no_ap = SplitMetrics(INFO, compute_ap=False)
    no_ap.score(0, "a", gt, pred, None, boxes)
    assert "box_AP" not in no_ap.result() and "AP" not in no_ap.result()


def test_evaluate_dataset_reads_the_boxes_of_the_instance_table(tmp_path):
    """BOXES row i belongs to INSTANCE_PANOPTIC_IDS row i; the batch is padded."""
    gt, pred = _maps()
    pad = ((0, 4), (0, 2))
    batch = {common.IMAGE: np.zeros((1, 24, 32, 3), np.float32),
             common.PANOPTIC_LABEL: np.pad(gt, pad)[None],
             common.IMAGE_HEIGHT: np.array([20]), common.IMAGE_WIDTH: np.array([30])}
    void = INFO.ignore_panoptic_id
    ids = np.array([[13007, 11001, void, 13001]])
    boxes = np.array([[[20, 0, 30, 4], [3, 2, 9, 6], [0, 0, 0, 0], [12, 10, 29, 18]]],
                     np.float32)
    predictions = {common.PANOPTIC: np.pad(pred, pad)[None],
                   common.INSTANCE_PANOPTIC_IDS: ids,
                   common.INSTANCE_SCORES: np.array([[0.95, 0.9, 0.0, 0.8]])}
    result = evaluate_dataset(lambda _: predictions, [batch], INFO)
    assert "box_AP" not in result

    predictions[common.BOXES] = boxes
    result = evaluate_dataset(lambda _: predictions, [batch], INFO,
                              picture_dir=str(tmp_path), num_pictures=1)
    assert result["box_AP"] == pytest.approx(1.0)
    # Swapping the person's and the car's boxes must break the matching.
    predictions[common.BOXES] = boxes[:, [0, 3, 2, 1]]
    assert evaluate_dataset(lambda _: predictions, [batch], INFO)["box_AP"] == 0.0
