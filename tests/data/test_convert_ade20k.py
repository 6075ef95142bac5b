"""ADE20K panoptic -> TFRecords: synthetic scenes in the real on-disk layout of
Mask2Former's prepare_ade20k_pan_seg.py come back segment by segment."""
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from _converter_sources import coco_rgb, random_rgb, read_split, write_png
from conftest import PROJECT_ROOT
from deeplab2 import common
from deeplab2.data.converters import convert_coco
from deeplab2.data.converters.coco import category_to_class, default_split_name
from deeplab2.data.dataset_info import get_dataset_info

ADE20K = get_dataset_info("ade20k")
HEIGHT, WIDTH = 40, 60
SCRIPT = PROJECT_ROOT / "scripts" / "convert_ade20k.py"
_IMAGE_FOLDERS = {"train": "training", "val": "validation"}


def _category(name):
    """JSON category id of a class name: class id - 1."""
    return ADE20K.class_names.index(name) - 1


def _scene(index):
    """A category map (-1 = unlabeled) and the thing instances as (category, mask) pairs.

    Scene 2 is unlabeled throughout, like the few empty ADE20K annotations.
    """
    categories = np.full((HEIGHT, WIDTH), -1)
    things = []
    if index == 0:
        categories[:20], categories[20:] = _category("wall"), _category("floor")
        boxes = [("person", 5, 15, 5, 12), ("person", 5, 18, 20, 26),
                 ("bed", 22, 35, 30, 55)]
    elif index == 1:
        categories[:15], categories[15:] = _category("sky"), _category("road")
        boxes = [("car", 18, 30, 2, 14), ("car", 18, 30, 16, 28),
                 ("person", 10, 30, 40, 45)]
    else:
        boxes = []
    for name, top, bottom, left, right in boxes:
        mask = np.zeros((HEIGHT, WIDTH), bool)
        mask[top:bottom, left:right] = True
        things.append((_category(name), mask))
    if index < 2:
        categories[:, -3:] = -1  # an unlabeled strip
    return categories, things


def _segment_id(category, taken):
    """panopticapi's IdGenerator convention: the id encodes a color; stuff uses its
    category's color, a thing instance that color if still free, else a nearby one."""
    r, g, b = ADE20K.colors[category + 1]
    for step in range(256):
        segment_id = r + 256 * g + 65536 * ((b + step) % 256)
        if segment_id not in taken:
            taken.add(segment_id)
            return segment_id
    raise AssertionError("no free color")


def _segment(segment_id, category, mask):
    ys, xs = np.nonzero(mask)
    return {"id": segment_id, "category_id": category, "area": int(mask.sum()),
            "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1,
                     int(np.ptp(ys)) + 1], "iscrowd": 0}


def write_ade20k(root, split):
    """ADEChallengeData2016 with `split`'s 3 images, panoptic PNGs and JSON; returns the
    expected panoptic label of each image: (category + 1) * 1000 + instance."""
    images, annotations, expected = [], [], []
    for index in range(3):
        image_id = f"ADE_{split}_{index + 1:08d}"
        categories, things = _scene(index)
        ids = np.zeros((HEIGHT, WIDTH), np.int64)
        label = np.zeros((HEIGHT, WIDTH), np.int64)  # void: class 0 = ignore label
        segments, taken, instances = [], set(), {}
        for category in np.unique(categories[categories >= 0]).tolist():  # stuff first
            mask = categories == category
            segments.append(_segment(_segment_id(category, taken), category, mask))
            ids[mask], label[mask] = segments[-1]["id"], (category + 1) * 1000
        for category, mask in things:  # then things, pasted over stuff
            segments.append(_segment(_segment_id(category, taken), category, mask))
            instances[category] = instances.get(category, 0) + 1
            panoptic_id = (category + 1) * 1000 + instances[category]
            ids[mask], label[mask] = segments[-1]["id"], panoptic_id
        image_path = f"{root}/images/{_IMAGE_FOLDERS[split]}/{image_id}.jpg"
        os.makedirs(os.path.dirname(image_path), exist_ok=True)
        Image.fromarray(random_rgb(HEIGHT, WIDTH, seed=index)).save(image_path, "JPEG")
        write_png(f"{root}/ade20k_panoptic_{split}/{image_id}.png", coco_rgb(ids))
        images.append({"id": image_id, "file_name": f"{image_id}.jpg",
                       "width": WIDTH, "height": HEIGHT})
        annotations.append({"image_id": image_id, "file_name": f"{image_id}.png",
                            "segments_info": segments})
        expected.append(label)
    categories_json = [{"id": c - 1, "name": ADE20K.class_names[c],
                        "color": ADE20K.colors[c], "isthing": int(ADE20K.is_thing(c))}
                       for c in range(1, 151)]
    with open(f"{root}/ade20k_panoptic_{split}.json", "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": categories_json}, f)
    return expected


def test_ade20k_category_ids_and_split_names():
    mapping = category_to_class(ADE20K)
    assert mapping == {c: c + 1 for c in range(150)}
    assert sum(ADE20K.is_thing(c) for c in mapping.values()) == 100
    assert default_split_name("ADEChallengeData2016/ade20k_panoptic_val.json") == "val"
    assert default_split_name("ade20k_panoptic_train.json") == "train"


def test_ade20k_scenes_round_trip(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    expected = write_ade20k(str(root), "val")
    summary = convert_coco(f"{root}/ade20k_panoptic_val.json",
                           f"{root}/ade20k_panoptic_val", f"{root}/images/validation",
                           str(tmp_path / "out"), dataset="ade20k", num_workers=1)
    assert (summary["dataset"], summary["split"], summary["num_images"]) == (
        "ade20k", "val", 3)
    assert summary["num_segments"] == 5 + 5  # void is not a segment; scene 2 has none
    examples, _ = read_split(tmp_path / "out", "val")
    assert [e[common.IMAGE_ID].decode() for e in examples] == [
        "ADE_val_00000001", "ADE_val_00000002", "ADE_val_00000003"]
    for example, label in zip(examples, expected):
        assert example[common.IMAGE].shape == (HEIGHT, WIDTH, 3)
        np.testing.assert_array_equal(example[common.PANOPTIC_LABEL], label)
        assert sorted(example[common.SEGMENT_IDS].tolist()) == np.unique(label).tolist()
        assert not example[common.SEGMENT_IS_CROWD].any()  # ADE20K has no crowd regions

    first = examples[0][common.PANOPTIC_LABEL]
    person_a, person_b, bed, wall = first[10, 8], first[10, 22], first[30, 40], first[0, 0]
    assert ADE20K.class_names[person_a // 1000] == "person"
    assert ADE20K.is_thing(person_a // 1000)
    assert (person_a % 1000, person_b % 1000, person_b // 1000) == (1, 2, person_a // 1000)
    assert ADE20K.class_names[bed // 1000] == "bed" and bed % 1000 == 1
    assert ADE20K.class_names[wall // 1000] == "wall" and not ADE20K.is_thing(wall // 1000)
    assert wall % 1000 == 0 and first[0, -1] == ADE20K.ignore_panoptic_id
    assert not examples[2][common.PANOPTIC_LABEL].any()  # all void


def test_ade20k_script_converts_and_names_a_missing_folder(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    write_ade20k(str(root), "train")

    def run():
        return subprocess.run(
            [sys.executable, str(SCRIPT), f"--ade20k_root={root}", "--split=train",
             f"--output_dir={tmp_path}/out", "--num_workers=1", "--num_shards=2"],
            capture_output=True, text=True, timeout=120,
            env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)))

    ok = run()
    assert ok.returncode == 0, ok.stderr
    assert "wrote 3 images" in ok.stdout
    summary = json.loads((tmp_path / "out" / "train-summary.json").read_text())
    assert (summary["dataset"], summary["split"], summary["num_shards"]) == (
        "ade20k", "train", 2)

    os.rename(root / "ade20k_panoptic_train", root / "elsewhere")
    missing = run()
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"error: missing panoptic PNG folder: {root}/ade20k_panoptic_train not found "
        "(made by Mask2Former's datasets/prepare_ade20k_pan_seg.py)"]
