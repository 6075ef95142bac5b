"""Your own dataset: a .json descriptor accepted wherever a dataset name is,
validated with one-line errors, converted from COCO panoptic format and kept
in a model's model_config.json."""
import json
import os
import subprocess
import sys

import gin
import numpy as np
import pytest

from _converter_sources import read_split, write_coco
from conftest import PROJECT_ROOT
from deeplab2 import common
from deeplab2.data.custom_dataset import DatasetDescriptorError
from deeplab2.data.dataset_info import UnknownDatasetError, resolve_dataset

# Category ids of the user's panoptic JSON: 11 apple, 12 pear (things), 30 table.
DESCRIPTOR = {
    "name": "fruit",
    "classes": [
        {"id": 11, "name": "apple", "color": [200, 30, 30], "is_thing": True},
        {"id": 12, "name": "pear", "color": [160, 200, 40], "is_thing": True},
        {"id": 30, "name": "table", "color": [120, 90, 50]},
    ],
    "ignore_label": 255,
    "label_divisor": 1000,
}


def _write(tmp_path, values, name="fruit.json"):
    path = tmp_path / name
    path.write_text(json.dumps(values))
    return str(path)


def _with(**changes):
    """DESCRIPTOR with top-level `changes`; a None value drops the field."""
    values = json.loads(json.dumps(DESCRIPTOR))
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def _with_class(index, **changes):
    """DESCRIPTOR with class `index` changed; a None value drops the field."""
    values = _with()
    values["classes"][index].update(changes)
    values["classes"][index] = {k: v for k, v in values["classes"][index].items()
                                if v is not None}
    return values


def test_custom_dataset_descriptor_gives_contiguous_class_ids(tmp_path):
    info = resolve_dataset(_write(tmp_path, DESCRIPTOR))
    assert info.name == "fruit"
    assert info.class_names == ("apple", "pear", "table")
    assert info.source_ids == (11, 12, 30)
    assert info.thing_ids == (0, 1) and info.stuff_ids == (2,)
    assert info.colors[2] == (120, 90, 50)
    assert (info.ignore_label, info.label_divisor) == (255, 1000)
    assert info.stuff_area_limit == 4096  # the default


def test_custom_dataset_with_a_void_ignore_class(tmp_path):
    void = {"id": 0, "name": "void", "color": [0, 0, 0], "ignore": True}
    values = _with(ignore_label=None, classes=[void] + DESCRIPTOR["classes"])
    info = resolve_dataset(_write(tmp_path, values))
    assert info.ignore_label == 0 and info.class_names[0] == "void"
    assert info.thing_ids == (1, 2) and info.stuff_ids == (3,)


_VOID = {"id": 0, "name": "void", "color": [0, 0, 0], "ignore": True}
_ERRORS = {
    # case: (descriptor, field named, words of the problem)
    "duplicate_id": (_with_class(1, id=11), "classes[1].id", "repeats the id of classes[0]"),
    "duplicate_name": (_with_class(2, name="apple"), "classes[2].name", "repeats the name"),
    "missing_name": (_with_class(1, name=None), "classes[1].name", "missing"),
    "empty_name": (_with_class(1, name=" "), "classes[1].name", "non-empty string"),
    "missing_color": (_with_class(2, color=None), "classes[2].color", "missing"),
    "bad_color": (_with_class(0, color=[0, 300, 0]), "classes[0].color", "0..255"),
    "missing_id": (_with_class(0, id=None), "classes[0].id", "missing"),
    "bad_thing_flag": (_with_class(0, is_thing=1), "classes[0].is_thing", "true or false"),
    "coco_spelling": (_with_class(0, isthing=True), "classes[0].isthing", "unknown field"),
    "ignore_in_class_range": (_with(ignore_label=2), "ignore_label",
                              "inside the class range [0, 3) (class 'table')"),
    "thing_ignore_class": (_with(ignore_label=None, classes=[
        dict(_VOID, is_thing=True)] + DESCRIPTOR["classes"]), "classes[0].is_thing",
        "the ignore class is marked as a thing"),
    "ignore_class_and_label": (_with(classes=[_VOID] + DESCRIPTOR["classes"]),
                               "ignore_label", "given together with the ignore class"),
    "two_ignore_classes": (_with(ignore_label=None, classes=[
        _VOID, dict(_VOID, id=99, name="other")]), "classes[1].ignore", "already"),
    "divisor_without_instances": (_with(label_divisor=1), "label_divisor", "integer >= 2"),
    "divisor_overflows_int32": (_with(label_divisor=10**7), "label_divisor",
                                "overflow int32"),
    "registered_name": (_with(name="coco"), "name", "registered dataset"),
    "missing_name_of_dataset": (_with(name=None), "name", "missing"),
    "no_classes": (_with(classes=[]), "classes", "non-empty list"),
    "unknown_field": (_with(things=[0]), "things", "unknown field"),
    "not_an_object": ([1, 2], "(top level)", "an object"),
}


@pytest.mark.parametrize("case", sorted(_ERRORS))
def test_custom_dataset_errors_name_the_file_and_the_field(tmp_path, case):
    values, field, words = _ERRORS[case]
    path = _write(tmp_path, values)
    with pytest.raises(UnknownDatasetError) as error:
        resolve_dataset(path)
    message = str(error.value)
    assert isinstance(error.value, DatasetDescriptorError)
    assert message.startswith(f"{path}: {field}: "), message
    assert words in message and "; expected " in message, message
    assert "\n" not in message


def test_custom_dataset_unreadable_files_are_one_line_errors(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"name": "fruit",')
    for target, words in ((str(path), "not valid JSON"),
                          (str(tmp_path / "absent.json"), "cannot read")):
        with pytest.raises(DatasetDescriptorError, match=words) as error:
            resolve_dataset(target)
        assert str(error.value).startswith(target) and "\n" not in str(error.value)


def test_unknown_dataset_name_mentions_custom_dataset_descriptors():
    with pytest.raises(UnknownDatasetError) as error:
        resolve_dataset("fruits")
    assert "Unknown dataset 'fruits'; known datasets: " in str(error.value)
    assert "cityscapes" in str(error.value) and ".json" in str(error.value)


def _fruit_scene(seed, height=40, width=60):
    """An id map and segments_info: table, two apples, a crowd of pears, a pear, void."""
    ids = np.full((height, width), 7, np.int64)  # table
    ids[2:12, 3:15] = 101
    ids[15:25, 3:15] = 102
    ids[2:12, 30:50] = 201  # crowd
    ids[20:30, 30:40 + seed] = 70000
    ids[-2:] = 0  # void
    segments = [{"id": 7, "category_id": 30, "iscrowd": 0},
                {"id": 101, "category_id": 11, "iscrowd": 0},
                {"id": 201, "category_id": 12, "iscrowd": 1},
                {"id": 102, "category_id": 11, "iscrowd": 0},
                {"id": 70000, "category_id": 12, "iscrowd": 0}]
    return ids, segments


def _convert(*args):
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "convert_coco.py"), *args],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


def test_custom_dataset_coco_panoptic_conversion(tmp_path):
    root = tmp_path / "fruit"
    annotations = [(i, *_fruit_scene(i)) for i in (1, 2, 3)]
    panoptic_json = write_coco(str(root), annotations)  # JPEGs, RGB PNGs, the JSON
    descriptor = _write(tmp_path, DESCRIPTOR)
    result = _convert(f"--panoptic_json={panoptic_json}", f"--panoptic_dir={root}/panoptic",
                      f"--image_dir={root}/images", f"--output_dir={tmp_path}/records",
                      f"--dataset={descriptor}", "--num_workers=1")
    assert result.returncode == 0, result.stderr

    summary = json.loads((tmp_path / "records" / "val2017-summary.json").read_text())
    assert summary["dataset"] == "fruit" and summary["num_images"] == 3
    examples, _ = read_split(tmp_path / "records", "val2017")
    for (_, ids, _), example in zip(annotations, examples):
        expected = np.full(ids.shape, 255 * 1000)  # void: the ignore label
        for segment_id, label in ((7, 2000), (101, 1), (102, 2), (201, 1000), (70000, 1001)):
            expected[ids == segment_id] = label  # table 2; apples 0; pears 1 (crowd: 0)
        np.testing.assert_array_equal(example[common.PANOPTIC_LABEL], expected)
        assert example[common.IMAGE].shape == (40, 60, 3)
        assert sorted(zip(example[common.SEGMENT_IDS].tolist(),
                          example[common.SEGMENT_IS_CROWD].tolist())) == [
            (1, 0), (2, 0), (1000, 1), (1001, 0), (2000, 0), (255000, 0)]

    bad = _write(tmp_path, _with_class(1, id=11), "bad.json")
    result = _convert(f"--panoptic_json={panoptic_json}", f"--panoptic_dir={root}/panoptic",
                      f"--image_dir={root}/images", f"--output_dir={tmp_path}/bad",
                      f"--dataset={bad}")
    assert result.returncode != 0
    assert result.stderr.strip() == (
        f"error: --dataset: {bad}: classes[1].id: 11 repeats the id of classes[0]; "
        "expected a unique category id per class")


def test_custom_dataset_model_config_round_trips_without_the_file(tmp_path):
    from deeplab2.model import build_model
    from deeplab2.model.model_dir import read_model_config, write_model_config

    descriptor = _write(tmp_path, DESCRIPTOR)
    slim = dict(semantic_aspp_channels=8, semantic_decoder_channels=8,
                semantic_low_level_channels=(8, 8), semantic_head_channels=8,
                instance_aspp_channels=8, instance_decoder_channels=8,
                instance_low_level_channels=(8, 8), instance_head_channels=8)
    gin.clear_config()
    try:  # as a trainer's Gin config binds it
        gin.parse_config(f"build_model.dataset = {descriptor!r}")
        model = build_model(meta_architecture="panoptic_deeplab",
                            backbone="mobilenet_v3_small", crop_size=(65, 65), **slim)
    finally:
        gin.clear_config()
    assert model.model_config.dataset == resolve_dataset(descriptor)
    outputs = model(np.zeros((1, 65, 65, 3), np.float32), training=False)
    assert outputs[common.SEMANTIC_LOGITS].shape[-1] == 3  # apple, pear, table
    write_model_config(str(tmp_path / "model"), model.model_config)
    os.remove(descriptor)
    config = read_model_config(str(tmp_path / "model"))
    assert config == model.model_config
    assert config.dataset.name == "fruit" and config.dataset.source_ids == (11, 12, 30)
