"""Official-format prediction files: ground truth written as predictions scores
PQ = 1 with the reference tool, files read back exactly, Cityscapes layout."""
import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from conftest import shared_subdir
from deeplab2 import common
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.evaluation import coco_format
from deeplab2.evaluation.coco_evaluation import evaluate_coco_panoptic
from deeplab2.evaluation.prediction_writer import (PredictionWriter, json_image_id,
                                                   output_paths, predict_and_write,
                                                   read_predictions)

CITYSCAPES_ID = "frankfurt_000000_000294"


def coco_to_panoptic(annotation, ids, info):
    """A COCO panoptic annotation in our encoding: things numbered 1, 2, ...
    per class, crowd regions as instance 0."""
    class_of = {c: k for k, c in enumerate(info.source_ids)}
    panoptic = np.full(ids.shape, info.ignore_panoptic_id, np.int64)
    count = {}
    for segment in annotation["segments_info"]:
        cls = class_of[segment["category_id"]]
        instance = 0
        if info.is_thing(cls) and not segment["iscrowd"]:
            instance = count[cls] = count.get(cls, 0) + 1
        panoptic[ids == segment["id"]] = cls * info.label_divisor + instance
    return panoptic


def cityscapes_to_panoptic(instance_ids, info):
    """A Cityscapes `*_instanceIds.png` in our encoding (train ids)."""
    panoptic = np.full(instance_ids.shape, info.ignore_panoptic_id, np.int64)
    class_of = {c: k for k, c in enumerate(info.source_ids)}
    for value in np.unique(instance_ids):
        label = value // 1000 if value >= 1000 else value
        if label in class_of:
            instance = value % 1000 + 1 if value >= 1000 else 0
            panoptic[instance_ids == value] = (class_of[label] * info.label_divisor
                                               + instance)
    return panoptic


def test_coco_ground_truth_as_predictions_scores_pq_one(shared_data, tmp_path):
    hotcoco_panoptic = pytest.importorskip("hotcoco.panoptic")
    root = shared_subdir(shared_data, "coco_panoptic")
    info = get_dataset_info("coco")
    gt_json = root / "panoptic_examples.json"
    gt = json.loads(gt_json.read_text())
    writer = PredictionWriter(str(tmp_path), info, ["coco"])
    maps = {}
    for annotation in gt["annotations"]:
        ids = coco_format.read_panoptic_png(str(root / "panoptic" / annotation["file_name"]))
        image_id = str(annotation["image_id"])  # as TFRecords store it
        maps[image_id] = coco_to_panoptic(annotation, ids, info)
        writer.add(image_id, maps[image_id])
    paths = writer.close()
    pred_json, pred_dir = output_paths(str(tmp_path), "coco")
    assert paths == {"coco": pred_json}
    with contextlib.redirect_stdout(io.StringIO()):
        result = hotcoco_panoptic.pq_compute(str(gt_json), pred_json,
                                             str(root / "panoptic"), pred_dir)
    for group in ("All", "Things", "Stuff"):
        assert result[group]["pq"] == pytest.approx(1.0, abs=1e-12), group
    assert result["All"]["n"] == len({s["category_id"] for a in gt["annotations"]
                                      for s in a["segments_info"]})
    back = read_predictions(pred_json, pred_dir, info)
    assert back.keys() == maps.keys()
    for image_id, panoptic in maps.items():
        np.testing.assert_array_equal(back[image_id], panoptic)


def test_segments_ids_and_round_trip_with_class_zero_stuff(tmp_path):
    info = get_dataset_info("cityscapes")
    panoptic = np.full((6, 8), 255000)
    panoptic[:2] = 0  # road: panoptic id 0
    panoptic[2:4, :3] = 13005
    panoptic[2:4, 5:] = 13002
    panoptic[4:, 1] = 11000  # a thing class without instance
    writer = PredictionWriter(str(tmp_path), info, ["coco"], split="test")
    writer.add("7", panoptic)
    writer.close()
    pred_json, pred_dir = output_paths(str(tmp_path), "coco", "test")
    assert pred_json.endswith("panoptic_test.json")
    data = json.loads(open(pred_json).read())
    assert data["categories"] == coco_format.categories(info)
    (annotation,) = data["annotations"]
    assert annotation["image_id"] == 7 and annotation["file_name"] == "7.png"
    assert annotation["segments_info"] == [
        {"id": 1, "category_id": 7, "iscrowd": 0, "area": 16, "bbox": [0, 0, 8, 2]},
        {"id": 11001, "category_id": 24, "iscrowd": 0, "area": 2, "bbox": [1, 4, 1, 2]},
        {"id": 13003, "category_id": 26, "iscrowd": 0, "area": 6, "bbox": [5, 2, 3, 2]},
        {"id": 13006, "category_id": 26, "iscrowd": 0, "area": 6, "bbox": [0, 2, 3, 2]}]
    ids = coco_format.read_panoptic_png(f"{pred_dir}/7.png")
    assert set(np.unique(ids)) == {0, 1, 11001, 13003, 13006}
    np.testing.assert_array_equal(read_predictions(pred_json, pred_dir, info)["7"],
                                  panoptic)


def test_json_image_ids_and_unknown_format():
    assert json_image_id("139") == 139
    assert json_image_id("000139") == "000139"
    assert json_image_id(CITYSCAPES_ID) == CITYSCAPES_ID
    with pytest.raises(ValueError, match="Unknown format"):
        output_paths("/tmp", "kitti")


def test_invalid_maps_and_repeated_images_raise(tmp_path):
    writer = PredictionWriter(str(tmp_path), get_dataset_info("cityscapes"))
    with pytest.raises(ValueError, match=r"classes \[19\]"):
        writer.add("a", np.array([[19000, 0]]))
    writer.add("b", np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="already written"):
        writer.add("b", np.zeros((2, 2), np.int64))


def test_cityscapes_format_layout_and_score(shared_data, tmp_path):
    root = shared_subdir(shared_data, "cityscapes")
    info = get_dataset_info("cityscapes")
    instance_ids = np.array(Image.open(
        root / "gtFine/val/frankfurt" / f"{CITYSCAPES_ID}_gtFine_instanceIds.png"))
    panoptic = cityscapes_to_panoptic(instance_ids, info)
    writer = PredictionWriter(str(tmp_path / "pred"), info, ["cityscapes", "coco"])
    writer.add(CITYSCAPES_ID, panoptic)
    paths = writer.close()
    pred_json, pred_dir = output_paths(str(tmp_path / "pred"), "cityscapes")
    assert paths["cityscapes"] == pred_json
    assert pred_json.endswith("/cityscapes_panoptic_val.json")
    assert pred_dir == pred_json[:-len(".json")]
    data = json.loads(open(pred_json).read())
    (annotation,) = data["annotations"]
    assert annotation["image_id"] == CITYSCAPES_ID
    assert annotation["file_name"] == f"{CITYSCAPES_ID}_panoptic.png"
    with Image.open(f"{pred_dir}/{annotation['file_name']}") as png:
        assert png.mode == "RGB" and png.size == (256, 128)
    segments = annotation["segments_info"]
    # 4 persons and 3 cars (segment id = panoptic id + 1); Cityscapes label ids.
    things = sorted(s["category_id"] for s in segments if (s["id"] - 1) % 1000)
    assert things == [24] * 4 + [26] * 3
    assert {s["category_id"] for s in segments} <= set(info.source_ids)
    assert sum(s["area"] for s in segments) == int(
        (panoptic != info.ignore_panoptic_id).sum())
    np.testing.assert_array_equal(
        read_predictions(pred_json, pred_dir, info)[CITYSCAPES_ID], panoptic)

    (tmp_path / "gt").mkdir()
    gt = coco_format.write_panoptic(str(tmp_path / "gt" / "a.png"), panoptic, info,
                                    CITYSCAPES_ID, groundtruth=True)
    gt_json = tmp_path / "gt.json"
    gt_json.write_text(json.dumps({"annotations": [gt],
                                   "categories": coco_format.categories(info)}))
    result = evaluate_coco_panoptic(str(gt_json), str(tmp_path / "gt"), pred_json,
                                    pred_dir)
    assert result["All"]["pq"] == pytest.approx(1.0, abs=1e-12)
    assert result["Things"]["n"] == 2


def test_predict_and_write_crops_and_draws(tmp_path):
    info = get_dataset_info("synthetic")
    panoptic = np.full((2, 9, 12), 3001)
    panoptic[:, :4] = 0
    batch = {common.IMAGE: np.zeros((2, 9, 12, 3), np.float32),
             common.IMAGE_ID: np.array([b"val_000000", b"val_000001"]),
             common.IMAGE_HEIGHT: np.array([9, 5]), common.IMAGE_WIDTH: np.array([12, 7]),
             common.PANOPTIC_LABEL: panoptic}

    def predict(batch):
        assert batch[common.IMAGE].shape == (2, 9, 12, 3)
        return {common.PANOPTIC: panoptic, common.SEMANTIC: panoptic // 1000}

    writer = PredictionWriter(str(tmp_path), info, ["coco"])
    count = predict_and_write(predict, [batch], writer, picture_dir=str(tmp_path / "pics"),
                              num_pictures=1)
    writer.close()
    assert count == 2
    assert [p.name for p in (tmp_path / "pics").iterdir()] == ["00000_val_000000.png"]
    maps = read_predictions(*output_paths(str(tmp_path), "coco"), info)
    np.testing.assert_array_equal(maps["val_000001"], panoptic[1, :5, :7])
    with pytest.raises(ValueError, match="no 'panoptic' map"):
        predict_and_write(lambda batch: {common.SEMANTIC: panoptic}, [batch],
                          PredictionWriter(str(tmp_path / "x"), info))


@pytest.mark.parametrize("image_id, message", [
    ("../../x", "'../../x' leads outside"),
    ("/abs/path", "'/abs/path' is an absolute path"),
    ("", "'' is not a file name"),
    ("a\0b", r"'a\\x00b' is not a file name"),
])
def test_image_ids_from_records_never_leave_the_output_folder(tmp_path, image_id, message):
    writer = PredictionWriter(str(tmp_path / "out"), get_dataset_info("synthetic"),
                              ["coco", "cityscapes"])
    with pytest.raises(ValueError, match=f"image id: {message}"):
        writer.add(image_id, np.zeros((2, 2), np.int64))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_record_id_with_subfolders_stays_inside(tmp_path):
    info = get_dataset_info("synthetic")
    writer = PredictionWriter(str(tmp_path), info, ["coco"])
    writer.add("city/frame_1", np.zeros((2, 2), np.int64))
    writer.close()
    assert (tmp_path / "panoptic_val" / "city" / "frame_1.png").is_file()
    assert set(read_predictions(*output_paths(str(tmp_path), "coco"), info)) == {
        "city/frame_1"}
