"""COCO panoptic files: format round trip, streaming equals one call, and a
clear error for each kind of malformed input."""
import json

import numpy as np
import pytest
from PIL import Image

from conftest import shared_subdir
from evaluation_cases import load_sample, perturb, write_set
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.evaluation import coco_format
from deeplab2.evaluation.coco_evaluation import evaluate_coco_panoptic
from deeplab2.evaluation.coco_format import FormatError
from deeplab2.evaluation.evaluator import PanopticEvaluator


def to_panoptic(annotation, ids, info):
    """COCO segment ids -> class * label_divisor + instance (crowd: 0)."""
    class_of = {c: k for k, c in enumerate(info.source_ids)}
    panoptic = np.full(ids.shape, info.ignore_panoptic_id, np.int64)
    for k, segment in enumerate(annotation["segments_info"]):
        cls = class_of[segment["category_id"]]
        instance = 0 if (segment.get("iscrowd") or not info.is_thing(cls)) else k + 1
        panoptic[ids == segment["id"]] = cls * info.label_divisor + instance
    return panoptic


def test_streaming_integer_maps_equals_one_file_evaluation(shared_data, tmp_path):
    shared_subdir(shared_data, "coco_panoptic")
    info = get_dataset_info("coco")
    gt, images = load_sample(shared_data, "coco_panoptic")
    gt_json, gt_dir = write_set(tmp_path / "gt", gt, images)
    predictions = perturb(images, "erosion_2", 0, gt["categories"])
    pred_json, pred_dir = write_set(tmp_path / "pred", gt, predictions)
    files = evaluate_coco_panoptic(gt_json, gt_dir, pred_json, pred_dir)

    evaluator = PanopticEvaluator(info)
    for (a, gt_ids), (p, pred_ids) in zip(images, predictions):
        evaluator.update(to_panoptic(a, gt_ids, info),
                         to_panoptic(p, pred_ids, info))
    streamed = evaluator.result()
    for group in ("All", "Things", "Stuff"):
        assert streamed[group] == pytest.approx(files[group], abs=1e-12)
    assert streamed["pq_dagger"] == pytest.approx(files["pq_dagger"], abs=1e-12)
    assert streamed["miou"] == pytest.approx(files["miou"], abs=1e-12)
    for k, values in streamed["per_class"].items():
        expected = files["per_class"][info.source_ids[k]]
        for key, value in values.items():
            if key != "name":
                assert value == pytest.approx(expected[key], abs=1e-12), (k, key)


def test_png_round_trip_and_segment_renumbering(tmp_path):
    ids = np.array([[0, 1, 70000], [16777215, 256, 1]])
    path = str(tmp_path / "a.png")
    coco_format.write_panoptic_png(path, ids)
    np.testing.assert_array_equal(coco_format.read_panoptic_png(path), ids)
    panoptic = np.array([[255000, 13000, 13002], [0, 13002, 11001]])
    segments, classes, crowd = coco_format.panoptic_to_segments(
        panoptic, 1000, 255, (11, 13), groundtruth=True)
    np.testing.assert_array_equal(segments, [[0, 3, 4], [1, 4, 2]])
    np.testing.assert_array_equal(classes, [0, 11, 13, 13])
    np.testing.assert_array_equal(crowd, [False, False, True, False])
    info = coco_format.segments_info(segments, classes, crowd, list(range(20)))
    assert info[3] == {"id": 4, "category_id": 13, "iscrowd": 0, "area": 2,
                       "bbox": [1, 0, 2, 2]}
    assert info[2]["iscrowd"] == 1 and info[0]["bbox"] == [0, 1, 1, 1]


def test_written_predictions_score_like_the_integer_maps(tmp_path):
    """write_panoptic + categories give files that evaluate like the maps."""
    info = get_dataset_info("cityscapes")
    gt = np.full((20, 30), 0)
    gt[:5] = 10000
    gt[8:14, 3:9] = 13001
    gt[8:14, 12:20] = 13000
    gt[15:, :4] = info.ignore_panoptic_id
    pred = np.roll(gt, 1, 1)
    pred[pred == 13000] = 11001
    files = []
    for side, panoptic in (("gt", gt), ("pred", pred)):
        (tmp_path / side).mkdir()
        annotation = coco_format.write_panoptic(
            str(tmp_path / side / "a.png"), panoptic, info, 1, side == "gt")
        (tmp_path / f"{side}.json").write_text(json.dumps({
            "annotations": [annotation],
            "categories": coco_format.categories(info)}))
        files += [str(tmp_path / f"{side}.json"), str(tmp_path / side)]
    from_files = evaluate_coco_panoptic(*files)
    evaluator = PanopticEvaluator(info)
    evaluator.update(gt, pred)
    in_memory = evaluator.result()
    for group in ("All", "Things", "Stuff"):
        assert in_memory[group] == pytest.approx(from_files[group], abs=1e-12)
    assert in_memory["miou"] == pytest.approx(from_files["miou"], abs=1e-12)
    assert from_files["per_class"][26]["tp"] == 1  # car, label id 26
    # A person predicted on the car crowd is a false positive.
    assert from_files["per_class"][24]["fp"] == 1


@pytest.fixture
def files(tmp_path):
    """A valid 2-image set: ground truth and an identical prediction."""
    categories = [{"id": 1, "name": "car", "isthing": 1},
                  {"id": 7, "name": "sky", "isthing": 0}]
    ids = np.zeros((6, 8), np.int64)
    ids[:3] = 5
    ids[4:, 2:5] = 9
    images = [({"image_id": k, "file_name": f"{k}.png", "segments_info": [
        {"id": 5, "category_id": 7}, {"id": 9, "category_id": 1}]}, ids)
        for k in (1, 2)]
    gt = {"images": [{"id": k} for k in (1, 2)], "categories": categories}
    gt_paths = write_set(tmp_path / "gt", gt, images)
    pred_paths = write_set(tmp_path / "pred", gt, images, with_categories=False)
    return gt_paths + pred_paths


def edit_json(path, change):
    data = json.loads(open(path).read())
    change(data)
    open(path, "w").write(json.dumps(data))


def drop_segment(data):
    data["annotations"][1]["segments_info"].pop(1)


def add_segment(data):
    data["annotations"][1]["segments_info"].append({"id": 42, "category_id": 1})


def unknown_category(data):
    data["annotations"][1]["segments_info"][0]["category_id"] = 3


def duplicate_segment(data):
    info = data["annotations"][1]["segments_info"]
    info.append(dict(info[0]))


def no_prediction(data):
    data["annotations"].pop(1)


def duplicate_annotation(data):
    data["annotations"].append(data["annotations"][0])


def null_segments(data):
    data["annotations"][1]["segments_info"] = None


def escaping_file_name(name):
    def change(data):
        data["annotations"][1]["file_name"] = name
    return change


@pytest.mark.parametrize("side,change,message", [
    (2, drop_segment, r"image 2: predicted segment id 9 covers 6 pixels .* not "
                      "listed"),
    (0, drop_segment, r"image 2: ground-truth segment id 9 covers 6 pixels"),
    (2, add_segment, r"image 2: predicted segment id 42 is listed .* no pixel"),
    (0, add_segment, r"image 2: ground-truth segment id 42 is listed"),
    (2, unknown_category, r"image 2, segment id 5 has unknown category_id 3"),
    (2, duplicate_segment, r"image 2, segment id 5 is listed twice"),
    (2, no_prediction, r"no prediction for image 2"),
    # A repeated ground truth would be scored twice, a repeated prediction
    # would hide another.
    (0, duplicate_annotation, r"/gt.json: image 1 has more than one annotation"),
    (2, duplicate_annotation, r"/pred.json: image 1 has more than one annotation"),
    (2, null_segments, r"segments_info of image 2 is None; expected a list"),
    (0, null_segments, r"segments_info of image 2 is None; expected a list"),
    (2, escaping_file_name("../gt/2.png"), r"file_name of image 2: '../gt/2.png' leads "
                                           "outside"),
    (2, escaping_file_name("/etc/passwd"), r"file_name of image 2: '/etc/passwd' is an "
                                           "absolute path"),
    (0, escaping_file_name(""), r"file_name of image 2: '' is not a file name"),
    (0, escaping_file_name("a\0.png"), r"file_name of image 2: 'a\\x00.png' is not"),
])
def test_malformed_json_is_named(files, side, change, message):
    edit_json(files[side], change)
    with pytest.raises(FormatError, match=message):
        evaluate_coco_panoptic(*files)


def test_mismatched_size_and_missing_files_are_named(files, tmp_path):
    pred_png = tmp_path / "pred" / "2.png"
    coco_format.write_panoptic_png(str(pred_png), np.zeros((6, 9), np.int64))
    with pytest.raises(FormatError, match="image 2: prediction is 6x9 but "
                                          "ground truth is 6x8"):
        evaluate_coco_panoptic(*files)
    pred_png.unlink()
    with pytest.raises(FormatError, match="missing PNG file .*pred/2.png"):
        evaluate_coco_panoptic(*files)
    with pytest.raises(FormatError, match="missing JSON file"):
        evaluate_coco_panoptic(files[0], files[1], str(tmp_path / "x.json"),
                               files[3])
    edit_json(files[0], lambda d: d.pop("categories"))
    with pytest.raises(FormatError, match="no 'categories' list"):
        evaluate_coco_panoptic(*files)


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:60]), "corrupt PNG file .*pred/2.png"),
    (lambda p: p.write_bytes(b"not an image at all"), "cannot read PNG file .*pred/2.png"),
    (lambda p: Image.new("RGB", (8, 6)).save(p, format="JPEG"), "pred/2.png is JPEG; "
                                                                 "expected a PNG"),
    (lambda p: (p.unlink(), p.mkdir()), "cannot read PNG file .*pred/2.png"),
])
def test_broken_prediction_files_are_named(files, tmp_path, damage, message):
    damage(tmp_path / "pred" / "2.png")
    with pytest.raises(FormatError, match=message):
        evaluate_coco_panoptic(*files)
