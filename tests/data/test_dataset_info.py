"""The registered dataset descriptors match SPEC section 1 and the source files."""
import json

import pytest

from deeplab2.data import dataset_info

# name: (num_classes, num_things, ignore_label, label_divisor, stuff_area_limit),
# SPEC section 1. COCO and ADE20K count their void class 0 (the ignore label).
SPEC = {
    "cityscapes": (19, 8, 255, 1000, 2048),
    "coco": (134, 80, 0, 256, 4096),
    "mapillary_vistas": (65, 37, 255, 1000, 4096),
    "ade20k": (151, 100, 0, 1000, 4096),
}

CITYSCAPES_TRAIN_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26,
                              27, 28, 31, 32, 33)


@pytest.mark.parametrize("name", sorted(SPEC))
def test_spec_counts(name):
    info = dataset_info.get_dataset_info(name)
    num_classes, num_things, ignore, divisor, stuff_area = SPEC[name]
    assert info.name == name
    assert info.num_classes == num_classes
    assert len(info.thing_ids) == num_things
    assert info.ignore_label == ignore
    assert info.label_divisor == divisor
    assert info.stuff_area_limit == stuff_area


def test_spec_datasets_are_registered():
    assert set(SPEC) <= set(dataset_info.dataset_names())


@pytest.mark.parametrize("name", dataset_info.dataset_names())
def test_descriptor_is_consistent(name):
    info = dataset_info.get_dataset_info(name)
    assert len(set(info.class_names)) == info.num_classes, "class names not unique"
    assert len(set(info.source_ids)) == info.num_classes, "source ids not unique"
    for color in info.colors:
        assert len(color) == 3
        assert all(isinstance(v, int) and 0 <= v <= 255 for v in color), color
    assert len(set(info.thing_ids)) == len(info.thing_ids)
    assert set(info.thing_ids) <= set(range(info.num_classes))
    assert info.ignore_label not in info.thing_ids
    # Panoptic ids of every class and instance fit in int32.
    assert max(info.num_classes, info.ignore_label + 1) * info.label_divisor < 2**31


def test_void_class_is_black_where_it_is_a_class():
    for name in ("coco", "ade20k"):
        info = dataset_info.get_dataset_info(name)
        assert info.class_names[info.ignore_label] == "void"
        assert info.colors[info.ignore_label] == (0, 0, 0)


def test_unknown_name_lists_known_names():
    with pytest.raises(KeyError) as error:
        dataset_info.get_dataset_info("no_such_dataset")
    message = str(error.value)
    assert "no_such_dataset" in message
    for name in dataset_info.dataset_names():
        assert name in message


def test_cityscapes_source_ids_are_label_ids_of_train_ids():
    info = dataset_info.get_dataset_info("cityscapes")
    assert info.source_ids == CITYSCAPES_TRAIN_LABEL_IDS
    assert [info.class_names[i] for i in info.thing_ids] == [
        "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]


def test_coco_source_ids_round_trip_with_categories_json(shared_data):
    path = shared_data / "coco_panoptic" / "panoptic_coco_categories.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    categories = json.loads(path.read_text())
    info = dataset_info.get_dataset_info("coco")
    assert info.source_ids[1:] == tuple(c["id"] for c in categories)
    for class_id, category in enumerate(categories, start=1):
        assert info.source_ids.index(category["id"]) == class_id
        assert info.class_names[class_id] == category["name"]
        assert info.colors[class_id] == tuple(category["color"])
        assert info.is_thing(class_id) == bool(category["isthing"])


def test_mapillary_vistas_encoding():
    info = dataset_info.get_dataset_info("mapillary_vistas")
    # Class id = config_v1.2.json label index; source id = panoptic category id.
    assert info.source_ids == tuple(range(1, 66))
    assert info.class_names[0] == "Bird" and info.class_names[64] == "Ego Vehicle"
    assert info.is_thing(info.class_names.index("Car"))
    assert not info.is_thing(info.class_names.index("On Rails"))
    assert len(info.stuff_ids) == 28


def test_ade20k_encoding():
    info = dataset_info.get_dataset_info("ade20k")
    # Class id = SceneParsing label value; source id = panoptic JSON category id.
    assert info.source_ids == (-1,) + tuple(range(150))
    assert info.class_names[1] == "wall" and info.class_names[150] == "flag"
    assert info.is_thing(info.class_names.index("person"))
    assert not info.is_thing(info.class_names.index("sky"))
    assert len(info.stuff_ids) == 50
