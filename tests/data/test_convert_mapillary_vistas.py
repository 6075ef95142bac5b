"""Mapillary Vistas converter: tiny synthetic trees in the official layouts."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from _converter_sources import coco_rgb, random_rgb, read_split, write_png
from conftest import PROJECT_ROOT
from deeplab2 import common
from deeplab2.data.converters import ConversionError, convert_mapillary_vistas
from deeplab2.data.converters.resizing import fitted_size, resize_nearest
from deeplab2.data.dataset_info import get_dataset_info

INFO = {"v1.2": get_dataset_info("mapillary_vistas"),
        "v2.0": get_dataset_info("mapillary_vistas_v2")}
# Labels with "evaluate": false (category id -> readable name); the rest are classes.
VOID = {"v1.2": {66: "Unlabeled"},
        "v2.0": {3: "Ambiguous Barrier", 32: "Person Group", 39: "Lane Marking - Ambiguous",
                 80: "Signage - Ambiguous", 87: "Pole Group", 97: "Traffic Sign - Ambiguous",
                 116: "Vehicle Group", 124: "Unlabeled"}}
# (config, panoptic folder inside the split, JSON): v2.0 release, v1.1 release.
LAYOUTS = {
    ("v1.2", "v2.0-release"): ("config_v1.2.json", "v1.2/panoptic", "panoptic_2018.json"),
    ("v1.2", "v1.1-release"): ("config.json", "panoptic", "panoptic_2018.json"),
    ("v2.0", "v2.0-release"): ("config_v2.0.json", "v2.0/panoptic", "panoptic_2020.json"),
}
KEYS = ("Zk3-8aQw1bXyTr5uVn0pLs", "a9Bc-DeFgHiJkLmNoPqRsT", "0123456789abcdefABCDEF")
HEIGHT, WIDTH = 40, 60


def _config_labels(version):
    """Every label of the config in order, with the official field names."""
    info, void = INFO[version], VOID[version]
    labels = []
    for category_id in range(1, max(void) + 1):
        if category_id in void:
            readable, color, instances = void[category_id], (0, 0, 0), False
        else:
            c = info.source_ids.index(category_id)
            readable, color, instances = info.class_names[c], info.colors[c], info.is_thing(c)
        labels.append({"color": list(color), "instances": instances, "readable": readable,
                       "name": "fixture--" + readable.lower().replace(" ", "-"),
                       "evaluate": category_id not in void})
    return labels


def _category(version, name):
    """Category id of a label by its readable name."""
    return next(i for i, label in enumerate(_config_labels(version), start=1)
                if label["readable"] == name)


def _scene(version, k):
    """Segment id map and segments_info of image k: road, sky, two cars, a crowd car,
    a person, a 1-pixel pole (vanishes at max_resize 20), a 3x3 pole, void; for v2.0
    also a person group, a label that is not evaluated."""
    ids = np.full((HEIGHT, WIDTH), 7 + k, np.int64)
    regions = [("Sky", 0, np.s_[:10]), ("Car", 0, np.s_[12:20, 5:15]),
               ("Car", 0, np.s_[12:20, 20:30]), ("Car", 1, np.s_[22:30, 5:25]),
               ("Person", 0, np.s_[22:34, 40:46]), ("Pole", 0, np.s_[0, 0]),
               ("Pole", 0, np.s_[3:6, 3:6])]
    if version == "v2.0":
        regions.append(("Person Group", 0, np.s_[30:38, 50:58]))
    segments = [("Road", 7 + k, 0)]
    for n, (name, crowd, where) in enumerate(regions):
        segment_id = 70000 * (n + 1) + 256 * k + 3  # uses all three PNG channels
        ids[where] = segment_id
        segments.append((name, segment_id, crowd))
    ids[-2:] = 0  # void
    info = []
    for name, segment_id, crowd in reversed(segments):  # any order, not the PNG's
        ys, xs = np.nonzero(ids == segment_id)
        info.append({"id": segment_id, "category_id": _category(version, name),
                     "area": int(ys.size), "iscrowd": crowd,
                     "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1,
                              int(np.ptp(ys)) + 1]})
    return ids, info


def _write_tree(root, version, release="v2.0-release", split="validation"):
    """A three-image Vistas tree; returns the paths of the config and panoptic JSON."""
    config_name, panoptic_dir, json_name = LAYOUTS[version, release]
    labels = _config_labels(version)
    with open(f"{root}/{config_name}", "w") as f:
        json.dump({"labels": labels, "version": version.lstrip("v"), "mapping": "public",
                   "folder_structure": ""}, f)
    images, annotations = [], []
    for k, key in enumerate(KEYS):
        ids, segments = _scene(version, k)
        os.makedirs(f"{root}/{split}/images", exist_ok=True)
        Image.fromarray(random_rgb(HEIGHT, WIDTH, seed=k)).save(
            f"{root}/{split}/images/{key}.jpg", format="JPEG")
        write_png(f"{root}/{split}/{panoptic_dir}/{key}.png", coco_rgb(ids))
        images.append({"file_name": f"{key}.jpg", "id": key, "height": HEIGHT,
                       "width": WIDTH})
        annotations.append({"image_id": key, "file_name": f"{key}.png",
                            "segments_info": segments})
    categories = [{"id": i, "name": label["readable"], "supercategory": label["name"],
                   "isthing": int(label["instances"]), "color": label["color"]}
                  for i, label in enumerate(labels, start=1)
                  if label["readable"] != "Unlabeled"]
    panoptic_json = f"{root}/{split}/{panoptic_dir}/{json_name}"
    with open(panoptic_json, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": categories}, f)
    return f"{root}/{config_name}", panoptic_json


def _expected(version, k):
    """The panoptic label and (id, crowd) table the converter must write for image k."""
    info = INFO[version]
    ids, segments = _scene(version, k)
    label = np.full(ids.shape, info.ignore_panoptic_id)
    table, instances = [], {}
    for segment in segments:
        category = segment["category_id"]
        c = info.source_ids.index(category) if category in info.source_ids else 255
        instance = 0
        if info.is_thing(c) and not segment["iscrowd"]:
            instance = instances[c] = instances.get(c, 0) + 1
        label[ids == segment["id"]] = c * 1000 + instance
        table.append((c * 1000 + instance, segment["iscrowd"]))
    return label, sorted(table + [(info.ignore_panoptic_id, 0)])


def _table(example):
    return sorted(zip(example[common.SEGMENT_IDS].tolist(),
                      example[common.SEGMENT_IS_CROWD].tolist()))


@pytest.mark.parametrize("version, release", sorted(LAYOUTS))
def test_vistas_round_trip_keeps_every_segment_class_and_crowd_flag(tmp_path, version,
                                                                   release):
    root = tmp_path / "vistas"
    root.mkdir()
    _write_tree(str(root), version, release)
    summary = convert_mapillary_vistas(str(root), "validation", version,
                                       str(tmp_path / "out"), num_workers=1)
    info = INFO[version]
    assert (summary["dataset"], summary["split"], summary["version"]) == (
        info.name, "val", version)
    assert summary["config"] == LAYOUTS[version, release][0]
    assert summary["num_images"] == 3 and "num_vanished_segments" not in summary
    examples, _ = read_split(tmp_path / "out", "val")
    assert [e[common.IMAGE_ID].decode() for e in examples] == list(KEYS)
    for k, example in enumerate(examples):
        label, table = _expected(version, k)
        np.testing.assert_array_equal(example[common.PANOPTIC_LABEL], label)
        assert _table(example) == table
        assert example[common.IMAGE].shape == (HEIGHT, WIDTH, 3)
    cars = [i for i, _ in _table(examples[0]) if i // 1000 == info.class_names.index("Car")]
    assert cars == [c * 1000 + n for c in [info.class_names.index("Car")] for n in (0, 1, 2)]
    labeled = sum(i != info.ignore_panoptic_id
                  for example in examples for i in example[common.SEGMENT_IDS])
    assert summary["num_segments"] == labeled == 3 * 8  # person group (v2.0) is ignored


def test_vistas_v2_descriptor_is_the_benchmark_label_space():
    info = INFO["v2.0"]
    assert (info.num_classes, len(info.thing_ids), len(info.stuff_ids)) == (116, 70, 46)
    assert set(VOID["v2.0"]).isdisjoint(info.source_ids)
    assert info.class_names[info.source_ids.index(31)] == "Person"
    assert info.is_thing(info.class_names.index("Signage - Back"))
    assert not info.is_thing(info.class_names.index("Traffic Island"))


def _edit(path, change):
    with open(path) as f:
        data = json.load(f)
    change(data)
    with open(path, "w") as f:
        json.dump(data, f)


def _label(i, **values):
    """A change of the config setting fields of labels[i]."""
    return lambda d: d["labels"][i].update(values)


_CONFIG_BREAKS = {
    # name: (version, config change, message after "<config>: ")
    "renamed": ("v1.2", _label(12, readable="Gravel"),
                "labels[12] ('Gravel'): readable is \"Gravel\", expected \"Rail Track\" for "
                "dataset 'mapillary_vistas'"),
    "recolored": ("v1.2", _label(27, color=[1, 2, 3]),
                  "labels[27] ('Sky'): color is [1, 2, 3], expected [70, 130, 180]"),
    "not-a-thing": ("v1.2", _label(55, instances=False),
                    "labels[55] ('Car'): instances is false, expected true"),
    "not-evaluated": ("v1.2", _label(3, evaluate=False),
                      "labels[3] ('Fence'): evaluate is false, expected true"),
    "void-evaluated": ("v2.0", _label(31, evaluate=True),
                       "labels[31] ('Person Group'): evaluate is true, expected false for "
                       "dataset 'mapillary_vistas_v2'"),
    "label-missing": ("v1.2", lambda d: d["labels"].pop(0),
                      "labels[0] ('Ground Animal'): readable is \"Ground Animal\", expected "
                      "\"Bird\""),
    "too-short": ("v1.2", lambda d: d.__setitem__("labels", d["labels"][:60]),
                  "labels: 60 labels, expected at least 65 (labels[64] is class "
                  "'Ego Vehicle'"),
    "bad-color": ("v1.2", _label(3, color="red"),
                  "labels[3].color: expected [red, green, blue] with integers in 0..255, got "
                  "'red'"),
    "no-evaluate": ("v2.0", lambda d: d["labels"][7].pop("evaluate"),
                    "labels[7].evaluate: missing; expected true or false"),
    "no-labels": ("v1.2", lambda d: d.pop("labels"),
                  "labels: expected a non-empty list of labels, got None"),
}


@pytest.mark.parametrize("case", sorted(_CONFIG_BREAKS))
def test_vistas_config_that_does_not_match_is_a_one_line_error(tmp_path, case):
    version, change, message = _CONFIG_BREAKS[case]
    config, _ = _write_tree(str(tmp_path), version)
    _edit(config, change)
    with pytest.raises(ConversionError) as error:
        convert_mapillary_vistas(str(tmp_path), "validation", version, str(tmp_path / "out"),
                                 num_workers=1)
    assert str(error.value).startswith(f"{config}: {message}")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def _json_break(change):
    return lambda config, panoptic_json: _edit(panoptic_json, change)


def _segment(i, **values):
    return _json_break(lambda d: d["annotations"][1]["segments_info"][i].update(values))


_SOURCE_BREAKS = {
    # name: (change(config path, panoptic JSON path), regex; {root} = the escaped tree)
    "no-config": (lambda config, _: os.remove(config),
                  "no Mapillary Vistas v1.2 config: {root}/config_v1.2.json or "
                  "{root}/config.json not found$"),
    "no-panoptic-json": (lambda _, panoptic_json: os.remove(panoptic_json),
                         "cannot read panoptic JSON {root}/validation/v1.2/panoptic/"
                         "panoptic_2018.json: "),
    "no-image": (lambda config, _: os.remove(
        f"{os.path.dirname(config)}/validation/images/{KEYS[2]}.jpg"),
        f"missing image for label {{root}}/validation/v1.2/panoptic/{KEYS[2]}.png: "
        f"{{root}}/validation/images/{KEYS[2]}.jpg not found$"),
    "no-png": (lambda config, _: os.remove(
        f"{os.path.dirname(config)}/validation/v1.2/panoptic/{KEYS[0]}.png"),
        f"missing label for image {{root}}/validation/images/{KEYS[0]}.jpg: "
        f"{{root}}/validation/v1.2/panoptic/{KEYS[0]}.png not found$"),
    "shifted-categories": (_json_break(lambda d: [c.update(id=c["id"] - 1)
                                                  for c in d["categories"][1:]]),
                           r"{root}/validation/v1.2/panoptic/panoptic_2018.json: "
                           r"categories\[1\] \(id 1, name 'Ground Animal'\) is not "
                           r"labels\[0\] \('Bird'\) of {root}/config_v1.2.json; expected "
                           r"category id = label position \+ 1$"),
    "category-out-of-range": (_json_break(lambda d: d["categories"][0].update(id=67)),
                              r"panoptic_2018.json: categories\[0\].id: 67 is no label of "
                              r"{root}/config_v1.2.json; expected 1..66 "),
    "bad-iscrowd": (_segment(2, iscrowd="yes"),
                    f"panoptic_2018.json: segment .* of image '{KEYS[1]}': id and category_id "
                    "must be integers and iscrowd 0 or 1"),
    "unknown-category": (_segment(0, category_id=99),
                         f"{KEYS[1]}.png: unknown category id 99 .* for dataset "
                         "mapillary_vistas$"),
}


@pytest.mark.parametrize("case", sorted(_SOURCE_BREAKS))
def test_vistas_missing_files_and_bad_fields_are_one_line_errors(tmp_path, case):
    change, pattern = _SOURCE_BREAKS[case]
    root = tmp_path / "src"
    root.mkdir()
    change(*_write_tree(str(root), "v1.2"))
    with pytest.raises(ConversionError) as error:
        convert_mapillary_vistas(str(root), "validation", "v1.2", str(tmp_path / "out"),
                                 num_workers=1)
    assert "\n" not in str(error.value)
    assert re.search(pattern.format(root=re.escape(str(root))), str(error.value)), error.value
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_vistas_max_resize_keeps_survivors_and_reports_vanished(tmp_path, capsys):
    _write_tree(str(tmp_path), "v2.0")
    summary = convert_mapillary_vistas(str(tmp_path), "validation", "v2.0",
                                       str(tmp_path / "out"), max_resize=20, num_workers=2)
    info = INFO["v2.0"]
    pole = info.class_names.index("Pole")
    assert summary["max_resize"] == 20
    assert summary["num_vanished_segments"] == 3  # the 1-pixel pole of each image
    assert summary["vanished_segments_by_class"] == {"Pole": 3}
    assert summary["num_segments"] == 3 * 7
    output = capsys.readouterr().out
    summary_path = tmp_path / "out" / "val-summary.json"
    assert (f"3 segments vanished at max_resize 20 (by class in {summary_path}), e.g. image "
            f"{KEYS[2]} segment 420515 ('Pole', 1 px)") in output
    assert json.loads(summary_path.read_text()) == summary
    examples, _ = read_split(tmp_path / "out", "val")
    for k, example in enumerate(examples):
        assert example[common.IMAGE].shape == (13, 20, 3)  # 40x60 -> 13.3x20
        label, table = _expected("v2.0", k)
        small = resize_nearest(label, 13, 20)
        np.testing.assert_array_equal(example[common.PANOPTIC_LABEL], small)
        survivors = [entry for entry in table if entry[0] in small]
        assert _table(example) == survivors
        assert len(table) - len(survivors) == 1
        # The 3x3 pole is first in segments_info: instance 1; the 1-pixel one vanishes.
        assert (pole * 1000 + 2, 0) not in survivors and (pole * 1000 + 1, 0) in survivors


def test_vistas_max_resize_leaves_small_images_unchanged(tmp_path, capsys):
    _write_tree(str(tmp_path), "v1.2")
    summary = convert_mapillary_vistas(str(tmp_path), "validation", "v1.2",
                                       str(tmp_path / "out"), max_resize=60, num_workers=1)
    assert summary["num_vanished_segments"] == 0
    assert summary["vanished_segments_by_class"] == {}
    assert "0 segments vanished at max_resize 60" in capsys.readouterr().out
    examples, raw = read_split(tmp_path / "out", "val")
    jpeg = (tmp_path / "validation" / "images" / f"{KEYS[0]}.jpg").read_bytes()
    assert raw[0]["image/encoded"].bytes_list.value[0] == jpeg
    assert _table(examples[0]) == _expected("v1.2", 0)[1]


def test_vistas_fitted_size_keeps_the_aspect_and_never_enlarges():
    assert fitted_size(40, 60, 20) == (13, 20)
    assert fitted_size(3000, 4000, 2177) == (1633, 2177)
    assert fitted_size(6000, 4000, 2177) == (2177, 1451)
    assert fitted_size(768, 1024, 2177) == (768, 1024)
    label = np.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(resize_nearest(label, 1, 2), [[5, 7]])  # pixel centers
    with pytest.raises(ValueError, match="max_side must be >= 1"):
        fitted_size(4, 4, 0)


def test_vistas_script_converts_and_reports(tmp_path):
    _write_tree(str(tmp_path), "v1.2", "v1.1-release", split="training")
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts/convert_mapillary_vistas.py"),
         f"--vistas_root={tmp_path}", "--split=training", "--version=v1.2",
         "--max_resize=30", f"--output_dir={tmp_path}/out", "--num_workers=1"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)),
        timeout=120)
    assert result.returncode == 0, result.stderr
    assert "wrote 3 images, 21 segments" in result.stdout  # 3 poles vanished
    assert "segments vanished at max_resize 30" in result.stdout
    summary = json.loads((tmp_path / "out" / "train-summary.json").read_text())
    assert (summary["dataset"], summary["config"], summary["max_resize"]) == (
        "mapillary_vistas", "config.json", 30)
