"""Hand-worked PQ, PQ-dagger and mIoU on tiny panoptic maps, streaming."""
import numpy as np
import pytest

from deeplab2.data.dataset_info import DatasetInfo, get_dataset_info
from deeplab2.evaluation.coco_evaluation import format_table
from deeplab2.evaluation.evaluator import PanopticEvaluator
from deeplab2.evaluation.miou import ConfusionMatrix
from deeplab2.evaluation.overlaps import SegmentError

# Classes: 0 sky, 1 ground (stuff), 2 car (thing); void = 255 * 1000.
INFO = DatasetInfo(name="tiny", class_names=("sky", "ground", "car"),
                   colors=((0, 0, 255), (0, 255, 0), (255, 0, 0)),
                   thing_ids=(2,), ignore_label=255, label_divisor=1000,
                   stuff_area_limit=0, source_ids=(0, 1, 2))
SKY, GROUND, VOID = 0, 1000, 255000


def stuff_images():
    """Image 1: gt sky rows 0-1, ground rows 2-3; predicted sky is row 0,
    columns 0-7 (IoU 8/20 = 0.4), ground the rest (IoU 20/32 = 0.625).
    Image 2: ground everywhere in both (IoU 1)."""
    gt = np.full((4, 10), GROUND)
    gt[:2] = SKY
    pred = np.full((4, 10), GROUND)
    pred[0, :8] = SKY
    return [(gt, pred), (np.full((4, 10), GROUND), np.full((4, 10), GROUND))]


def test_stuff_pq_dagger_miou_by_hand_and_empty_things_group():
    evaluator = PanopticEvaluator(INFO)
    gt, pred = stuff_images()[0]
    evaluator.update(gt, pred)
    r = evaluator.result()
    assert r["per_class"][0]["pq"] == 0.0  # sky: FP + FN, no match
    assert r["per_class"][0]["pq_dagger"] == pytest.approx(0.4)
    assert r["per_class"][1]["pq"] == pytest.approx(0.625)
    assert r["All"]["pq"] == pytest.approx(0.3125) and r["All"]["n"] == 2
    assert r["pq_dagger"]["All"] == pytest.approx((0.4 + 0.625) / 2)
    assert r["Things"] == {"pq": None, "sq": None, "rq": None, "n": 0}
    assert r["pq_dagger"]["Things"] is None
    assert r["per_class"][2]["pq"] is None and r["per_class"][2]["iou"] is None
    assert r["miou"] == pytest.approx((8 / 20 + 20 / 32) / 2)
    things_row = format_table(r).splitlines()[3]
    assert things_row.startswith("Things") and things_row.count("n/a") == 4


def test_streaming_accumulates_over_images():
    evaluator = PanopticEvaluator(INFO)
    for gt, pred in stuff_images():
        evaluator.update(gt, pred)
    r = evaluator.result()
    # ground: 2 TPs with IoU 0.625 and 1; sky: one FP + one FN.
    assert r["per_class"][1]["pq"] == pytest.approx(1.625 / 2)
    assert r["All"]["pq"] == pytest.approx(1.625 / 4)
    assert r["per_class"][1]["pq_dagger"] == pytest.approx(1.625 / 2)
    assert r["pq_dagger"]["Stuff"] == pytest.approx((0.4 + 0.8125) / 2)
    # ground pixels: 60 shared, 60 ground truth, 72 predicted.
    assert r["miou"] == pytest.approx((0.4 + 60 / 72) / 2)
    assert r["num_images"] == 2


def test_crowd_and_void_rules_by_hand():
    """Car instance matched (TP); a car on the car crowd region and a car on
    void are not FPs; a car on the sky is an FP. Sky's IoU is 20 / 56 < 0.5
    (FP + FN) but enters PQ-dagger."""
    gt = np.full((12, 10), SKY)
    gt[0:4, 0:5] = 2001          # car, 20 px
    gt[6:10, :] = 2000           # car crowd, 40 px
    gt[10:12, :] = VOID          # void, 20 px
    pred = np.full((12, 10), SKY)
    pred[0:4, 0:5] = 2005        # TP, IoU 1
    pred[6:10, 0:6] = 2006       # on crowd: ignored
    pred[4:6, :] = 2007          # on sky: FP
    pred[10:12, 0:6] = 2008      # on void: ignored
    evaluator = PanopticEvaluator(INFO)
    evaluator.update(gt, pred)
    r = evaluator.result()
    car = r["per_class"][2]
    assert (car["tp"], car["fp"], car["fn"]) == (1, 1, 0)
    assert car["pq"] == pytest.approx(1 / 1.5) and car["sq"] == 1.0
    sky = r["per_class"][0]
    # gt sky: 20 + 20 = 40 px; predicted sky: 20 + 16 + 8 (on void) = 44 px,
    # IoU = 20 / (44 + 40 - 20 - 8) = 20 / 56.
    assert (sky["tp"], sky["fp"], sky["fn"]) == (0, 1, 1)
    assert sky["pq_dagger"] == pytest.approx(20 / 56)
    assert r["pq_dagger"]["All"] == pytest.approx((20 / 56 + 1 / 1.5) / 2)
    assert r["Things"]["n"] == 1 and r["Stuff"]["n"] == 1


def test_crowd_only_excuses_its_own_category():
    info = get_dataset_info("cityscapes")
    gt = np.full((8, 8), 0)
    gt[:4] = 13000  # car crowd
    pred = np.full((8, 8), 0)
    pred[:4] = 11001  # a person on the car crowd
    evaluator = PanopticEvaluator(info)
    evaluator.update(gt, pred)
    r = evaluator.result()
    assert r["per_class"][11]["fp"] == 1
    assert r["per_class"][13]["fn"] == 0 and r["per_class"][13]["pq"] is None


def test_errors_name_the_image_and_segment():
    evaluator = PanopticEvaluator(INFO)
    with pytest.raises(SegmentError, match="image 0: prediction is 4x9"):
        evaluator.update(np.zeros((4, 10), int), np.zeros((4, 9), int))
    with pytest.raises(SegmentError, match=r"image im7: .*7001.*class 7"):
        evaluator.update(np.zeros((4, 10), int), np.full((4, 10), 7001),
                         image_id="im7")


def test_confusion_matrix_counts_void_predictions_as_misses():
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 0, 1, 1, 255]), np.array([0, 255, 1, 0, 1]), 255)
    # class 0: 1 shared, 2 gt, 2 predicted -> 1/3; class 1: 1 / 2.
    assert cm.result()["miou"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert ConfusionMatrix(3).result() == {"miou": None, "per_class": {
        0: None, 1: None, 2: None}}


def test_all_void_ground_truth_or_prediction():
    evaluator = PanopticEvaluator(INFO)
    evaluator.update(np.full((4, 4), VOID), np.full((4, 4), 2001))
    evaluator.update(np.full((4, 4), 2001), np.full((4, 4), VOID))
    r = evaluator.result()
    # The car on void is ignored; the unpredicted car is a false negative.
    assert (r["per_class"][2]["fp"], r["per_class"][2]["fn"]) == (0, 1)
    assert r["All"]["pq"] == 0.0 and r["miou"] == 0.0
