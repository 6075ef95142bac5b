"""Dataset converters: exact labels on the real samples, clear errors, atomic output."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from _converter_sources import (cityscapes_instance_ids, coco_rgb, coco_segments_map,
                                random_rgb, raw_bytes, read_split, write_cityscapes_image,
                                write_coco, write_png)
from conftest import PROJECT_ROOT, shared_subdir
from deeplab2 import common
from deeplab2.data import synthetic
from deeplab2.data.converters import (ConversionError, convert_cityscapes, convert_coco,
                                      convert_synthetic, write_split)
from deeplab2.data.converters import writer
from deeplab2.data.converters.common import ExampleStats
from deeplab2.data.dataset_info import get_dataset_info

CITYSCAPES = get_dataset_info("cityscapes")
COCO = get_dataset_info("coco")


def _check_image_and_ratio(example, raw, image_path):
    """Image bytes are stored unchanged; the label is >= 20x smaller than int32."""
    assert raw_bytes(raw, "image/encoded") == pathlib.Path(image_path).read_bytes()
    expected = np.asarray(Image.open(image_path).convert("RGB"))
    assert example[common.IMAGE].shape == expected.shape
    if image_path.endswith(".png"):
        np.testing.assert_array_equal(example[common.IMAGE], expected)
    label_bytes = (len(raw_bytes(raw, "label/segment_map"))
                   + 16 * len(example[common.SEGMENT_IDS]))  # map + two int64 lists
    ratio = example[common.PANOPTIC_LABEL].size * 4 / label_bytes
    print(f"{os.path.basename(image_path)}: label {label_bytes} B, {ratio:.0f}x below int32")
    assert ratio >= 20


def _table(example):
    return sorted(zip(example[common.SEGMENT_IDS].tolist(),
                      example[common.SEGMENT_IS_CROWD].tolist()))


# ---------------------------------------------------------------- real samples


def test_cityscapes_sample_matches_labels_computed_from_source(shared_data, tmp_path):
    root = shared_subdir(shared_data, "cityscapes")
    convert_cityscapes(str(root), "val", str(tmp_path), num_workers=1)
    (example,), (raw,) = read_split(tmp_path, "val")
    name = "frankfurt_000000_000294"
    gt = root / "gtFine" / "val" / "frankfurt"
    instance_ids = np.array(Image.open(gt / f"{name}_gtFine_instanceIds.png")).astype(np.int64)
    label_ids = np.where(instance_ids >= 1000, instance_ids // 1000, instance_ids)
    train_ids = np.full(instance_ids.shape, 255)
    for train_id, label_id in enumerate(CITYSCAPES.source_ids):
        train_ids[label_ids == label_id] = train_id
    expected = np.where(train_ids == 255, 255000, train_ids * 1000)
    crowd_ids = set()
    for c in CITYSCAPES.thing_ids:
        values = np.unique(instance_ids[(train_ids == c) & (instance_ids >= 1000)])
        for k, value in enumerate(values, start=1):
            expected[instance_ids == value] = c * 1000 + k
        if ((train_ids == c) & (instance_ids < 1000)).any():
            crowd_ids.add(c * 1000)

    np.testing.assert_array_equal(example[common.PANOPTIC_LABEL], expected)
    assert _table(example) == sorted((int(i), int(i in crowd_ids)) for i in np.unique(expected))
    instances = [i for i in example[common.SEGMENT_IDS] if i % 1000 and i != 255000]
    assert sum(i // 1000 == 11 for i in instances) == 4  # persons, as the README says
    assert sum(i // 1000 == 13 for i in instances) == 3  # cars
    assert example[common.IMAGE_ID] == name.encode()
    assert raw_bytes(raw, "image/filename") == f"{name}_leftImg8bit.png".encode()
    _check_image_and_ratio(example, raw, str(root / "leftImg8bit/val/frankfurt" /
                                             f"{name}_leftImg8bit.png"))


_COCO_SAMPLES = [
    # folder, json, panoptic dir, image dir, dataset, split, segments per image (README)
    ("coco_panoptic", "panoptic_examples.json", "panoptic", "images", "coco", "examples",
     [18, 32]),
    ("coco_cats", "panoptic_annotations.json", "panoptic", ".", "coco", "annotations", [6]),
    ("street_800", "gtFine/cityscapes_panoptic_dummy_trainId.json",
     "gtFine/cityscapes_panoptic_dummy_trainId", "leftImg8bit", "cityscapes", "dummy", [10]),
]


@pytest.mark.parametrize("folder, json_name, panoptic_dir, image_dir, dataset, split, counts",
                         _COCO_SAMPLES, ids=[s[0] for s in _COCO_SAMPLES])
def test_coco_format_samples_match_labels_computed_from_source(
        shared_data, tmp_path, folder, json_name, panoptic_dir, image_dir, dataset, split,
        counts):
    root = shared_subdir(shared_data, folder)
    info = get_dataset_info(dataset)
    convert_coco(str(root / json_name), str(root / panoptic_dir), str(root / image_dir),
                 str(tmp_path), dataset=dataset, num_shards=2, num_workers=2)
    examples, raws = read_split(tmp_path, split)  # split name taken from the JSON name
    with open(root / json_name) as f:
        data = json.load(f)
    if dataset == "coco":
        class_of = {cat: c for c, cat in enumerate(COCO.source_ids) if c}
    else:  # Cityscapes panoptic JSON with train ids
        class_of = {c: c for c in range(info.num_classes)}
    file_names = {image["id"]: image["file_name"] for image in data["images"]}
    assert len(examples) == len(data["annotations"]) == len(counts)

    for example, raw, annotation, count in zip(examples, raws, data["annotations"], counts):
        rgb = np.array(Image.open(root / panoptic_dir / annotation["file_name"]), np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        expected = np.full(ids.shape, info.ignore_label * info.label_divisor)
        table, instances = [], {}
        for segment in annotation["segments_info"]:
            c = class_of[segment["category_id"]]
            k = 0
            if c in info.thing_ids and not segment["iscrowd"]:
                k = instances[c] = instances.get(c, 0) + 1
            expected[ids == segment["id"]] = c * info.label_divisor + k
            table.append((c * info.label_divisor + k, segment["iscrowd"]))
        if (ids == 0).any():
            table.append((info.ignore_label * info.label_divisor, 0))

        np.testing.assert_array_equal(example[common.PANOPTIC_LABEL], expected)
        assert _table(example) == sorted(table)
        assert len(annotation["segments_info"]) == count
        assert example[common.IMAGE_ID] == str(annotation["image_id"]).encode()
        _check_image_and_ratio(example, raw,
                               str(root / image_dir / file_names[annotation["image_id"]]))
    crowd = sum(sum(e[common.SEGMENT_IS_CROWD]) for e in examples)
    assert crowd == {"coco_panoptic": 3, "coco_cats": 0, "street_800": 1}[folder]


def test_synthetic_scenes_round_trip(tmp_path):
    summaries = convert_synthetic(str(tmp_path), num_train=2, num_val=1, seed=7,
                                  num_workers=1, height=48, width=64)
    assert [s["num_images"] for s in summaries] == [2, 1]
    for split, count in (("train", 2), ("val", 1)):
        examples, raws = read_split(tmp_path, split)
        assert len(examples) == count
        for index, (example, raw) in enumerate(zip(examples, raws)):
            scene = synthetic.generate_scene(7, split, index, 48, 64)
            np.testing.assert_array_equal(example[common.IMAGE], scene.image)
            np.testing.assert_array_equal(example[common.PANOPTIC_LABEL], scene.panoptic)
            table = [(s.id, int(s.is_crowd)) for s in scene.segments]
            if (scene.panoptic == 255000).any():
                table.append((255000, 0))
            assert _table(example) == sorted(table)
            assert raw_bytes(raw, "image/format") == b"png"


def _greedy_counts(sizes, target):
    """Records per shard when a shard takes records in order until they total `target`."""
    counts, total = [], 0
    for size in sizes:
        if not counts or total >= target:
            counts.append(0)
            total = 0
        counts[-1] += 1
        total += size
    return counts


def _train_shards(directory):
    return sorted(n for n in os.listdir(directory) if n.startswith("train-0"))


def test_synthetic_shards_by_bytes_and_reruns_replace_stale_shards(tmp_path):
    target = 10_000  # a 48x64 scene serializes to about 6.5 kB
    ids = [f"train_{i:06d}".encode() for i in range(8)]
    train, _ = convert_synthetic(str(tmp_path), num_train=8, num_val=1, seed=5,
                                 num_workers=2, height=48, width=64, shard_bytes=target)
    val_files = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)
                 if n.startswith("val-")}
    shards = [_records(tmp_path / name) for name in train["shards"]]
    expected = _greedy_counts([len(r) for shard in shards for r in shard], target)
    n = len(expected)
    assert 1 < n < 8  # several shards, some holding more than one scene
    assert [len(shard) for shard in shards] == expected
    assert train["shards"] == _train_shards(tmp_path) == [
        f"train-{i:05d}-of-{n:05d}.tfrecord" for i in range(n)]
    for name, shard in zip(train["shards"][:-1], shards):
        assert sum(map(len, shard)) >= target
        assert os.path.getsize(tmp_path / name) >= target
    assert [e[common.IMAGE_ID] for e in read_split(tmp_path, "train")[0]] == ids
    assert json.loads((tmp_path / "train-summary.json").read_text()) == train
    assert (train["num_shards"], train["shard_bytes"]) == (n, target)
    assert train["num_images"] == 8
    assert train["num_bytes"] == sum(os.path.getsize(tmp_path / s) for s in train["shards"])
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]

    train, = convert_synthetic(str(tmp_path), num_train=8, num_val=0, seed=5,
                               num_workers=2, height=48, width=64, num_shards=3)
    assert train["num_shards"] == 3 and "shard_bytes" not in train
    assert train["shards"] == _train_shards(tmp_path) == [
        f"train-{i:05d}-of-00003.tfrecord" for i in range(3)]
    assert [len(_records(tmp_path / name)) for name in train["shards"]] == [3, 3, 2]
    assert [e[common.IMAGE_ID] for e in read_split(tmp_path, "train")[0]] == ids

    train, = convert_synthetic(str(tmp_path), num_train=8, num_val=0, seed=5,
                               num_workers=1, height=48, width=64)
    assert train["shards"] == _train_shards(tmp_path) == ["train-00000-of-00001.tfrecord"]
    assert train["shard_bytes"] == writer.DEFAULT_SHARD_BYTES == 150 * 10**6
    assert {n: (tmp_path / n).read_bytes() for n in val_files} == val_files


# ---------------------------------------------------------------- the writer


def _toy_convert(item):
    """Stands in for a converter: 'bad' fails, 'interrupt' is a Ctrl-C."""
    if item == "bad":
        raise ConversionError("source file bad.png is broken")
    if item == "interrupt":
        raise KeyboardInterrupt
    return item.encode(), ExampleStats(2, 10, 400)


def _records(path):
    return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]


def _snapshot(directory):
    """Every file (hidden ones included) with its bytes."""
    return {name: (directory / name).read_bytes() if (directory / name).is_file() else None
            for name in os.listdir(directory)}


@pytest.fixture
def previous_outputs(tmp_path):
    """An output folder already holding complete train and val splits."""
    write_split(["t"], _toy_convert, str(tmp_path), "train", "toy", num_workers=1)
    write_split(["v"], _toy_convert, str(tmp_path), "val", "toy", num_workers=1)
    return _snapshot(tmp_path)


def test_writer_shards_in_order_and_summarizes(tmp_path, capsys):
    summary = write_split(list("abcde"), _toy_convert, str(tmp_path), "val", "toy",
                          num_shards=2, num_workers=2)
    assert sorted(os.listdir(tmp_path)) == [
        "val-00000-of-00002.tfrecord", "val-00001-of-00002.tfrecord", "val-summary.json"]
    assert _records(tmp_path / "val-00000-of-00002.tfrecord") == [b"a", b"b", b"c"]
    assert _records(tmp_path / "val-00001-of-00002.tfrecord") == [b"d", b"e"]
    assert json.loads((tmp_path / "val-summary.json").read_text()) == summary
    assert "shard_bytes" not in summary
    num_bytes = sum(os.path.getsize(tmp_path / s) for s in summary["shards"])
    assert summary["num_bytes"] == num_bytes and summary["dataset"] == "toy"
    assert (summary["num_images"], summary["num_segments"], summary["raw_label_bytes"]) == (
        5, 10, 2000)
    assert capsys.readouterr().out == (f"wrote 5 images, 10 segments, {num_bytes} B in 2 "
                                       f"shards to {tmp_path}/val-*.tfrecord\n")


def test_writer_starts_a_shard_once_the_current_one_reaches_shard_bytes(tmp_path):
    summary = write_split(["ab", "c", "d", "efgh", "i"], _toy_convert, str(tmp_path), "val",
                          "toy", num_workers=2, shard_bytes=3)
    assert summary["shards"] == [f"val-{i:05d}-of-00003.tfrecord" for i in range(3)]
    assert [_records(tmp_path / name) for name in summary["shards"]] == [
        [b"ab", b"c"], [b"d", b"efgh"], [b"i"]]
    assert (summary["num_shards"], summary["shard_bytes"]) == (3, 3)


@pytest.mark.parametrize("sharding, message", [
    ({"num_shards": 2, "shard_bytes": 100}, "alternatives; pass at most one"),
    ({"num_shards": 0}, "num_shards must be >= 1"),
    ({"shard_bytes": 0}, "shard_bytes must be >= 1"),
])
def test_writer_rejects_bad_sharding(tmp_path, sharding, message):
    with pytest.raises(ValueError, match=message):
        write_split(list("ab"), _toy_convert, str(tmp_path), "val", "toy", **sharding)
    assert not os.listdir(tmp_path)


def test_writer_caps_shards_and_replaces_only_its_split(tmp_path, previous_outputs):
    write_split(list("abc"), _toy_convert, str(tmp_path), "val", "toy", num_shards=3,
                num_workers=1)
    summary = write_split(list("xy"), _toy_convert, str(tmp_path), "val", "toy",
                          num_shards=5, num_workers=1)
    assert summary["num_shards"] == 2
    names = sorted(os.listdir(tmp_path))
    assert [n for n in names if n.startswith("val")] == [
        "val-00000-of-00002.tfrecord", "val-00001-of-00002.tfrecord", "val-summary.json"]
    for name in ("train-00000-of-00001.tfrecord", "train-summary.json"):
        assert (tmp_path / name).read_bytes() == previous_outputs[name]


@pytest.mark.parametrize("items, num_workers, sharding, error", [
    (["a", "b", "c", "bad", "e"], 1, {"num_shards": 5}, ConversionError),
    (["a", "b", "c", "bad", "e"], 2, {"num_shards": 5}, ConversionError),
    (["a", "b", "c", "bad", "e"], 2, {"shard_bytes": 1}, ConversionError),
    (["a", "b", "interrupt", "d"], 1, {"num_shards": 4}, KeyboardInterrupt),
], ids=["error-inline", "error-pool", "error-pool-by-bytes", "interrupt-inline"])
def test_failure_mid_run_leaves_previous_outputs_only(tmp_path, previous_outputs, items,
                                                      num_workers, sharding, error):
    with pytest.raises(error):
        write_split(items, _toy_convert, str(tmp_path), "val", "toy",
                    num_workers=num_workers, **sharding)
    assert _snapshot(tmp_path) == previous_outputs


def test_ctrl_c_while_the_pool_runs_cleans_up(tmp_path, previous_outputs, monkeypatch):
    class InterruptedProgress(writer.Progress):
        def update(self, n=1, extra=""):
            super().update(n, extra)
            if self.count == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(writer, "Progress", InterruptedProgress)
    with pytest.raises(KeyboardInterrupt):
        write_split(list("abcd"), _toy_convert, str(tmp_path), "val", "toy", num_shards=4,
                    num_workers=2)
    assert _snapshot(tmp_path) == previous_outputs


# ---------------------------------------------------------------- broken sources

_CITY_BAD = "zurich_000000_000019"  # sorts last: earlier shards are done when it fails


def _cityscapes_tree(root):
    """Three good val images; tests break the last one."""
    for city, name in [("aachen", "aachen_000000_000019"), ("aachen", "aachen_000001_000019"),
                       ("zurich", _CITY_BAD)]:
        write_cityscapes_image(root, "val", city, name, cityscapes_instance_ids())
    return root


def _city_file(root, kind):
    folder = "leftImg8bit" if kind == "leftImg8bit" else "gtFine"
    return f"{root}/{folder}/val/zurich/{_CITY_BAD}_{kind}.png"


def _rewrite_labels(root, instance_ids):
    write_cityscapes_image(root, "val", "zurich", _CITY_BAD, instance_ids)


def _overflowing_instance_ids():
    ids = np.full((32, 32), 26000, np.uint16).ravel()
    ids[:1000] = 26000 + np.arange(1000)  # 1000 cars: instance 1000 overflows
    return ids.reshape(32, 32)


def _flip_byte(path):
    data = bytearray(pathlib.Path(path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    pathlib.Path(path).write_bytes(bytes(data))


def _truncate(path):
    data = pathlib.Path(path).read_bytes()
    pathlib.Path(path).write_bytes(data[:len(data) // 2])


def _unknown_category_ids():
    ids = cityscapes_instance_ids()
    ids[0, :3] = 40  # no Cityscapes label id 40
    return ids


def _stuff_instance_ids():
    ids = cityscapes_instance_ids()
    ids[15, 0] = 7001  # road has no instances
    return ids


def _disagreeing_label_ids(root):
    path = _city_file(root, "gtFine_labelIds")
    label_ids = np.array(Image.open(path))
    label_ids[3, 5] = 8
    write_png(path, label_ids)


_CITYSCAPES_BREAKS = {
    # name: (break the tree, file the message names, message pattern, workers)
    "missing-image": (lambda r: os.remove(_city_file(r, "leftImg8bit")),
                      "gtFine_instanceIds", "missing image for label", 1),
    "missing-label": (lambda r: os.remove(_city_file(r, "gtFine_instanceIds")),
                      "leftImg8bit", "missing label for image", 1),
    "size-mismatch": (lambda r: write_cityscapes_image(
        r, "val", "zurich", _CITY_BAD, cityscapes_instance_ids(), image_size=(17, 24)),
        "gtFine_instanceIds", "size mismatch: label .* is 16x24 but image .* is 17x24", 1),
    "unknown-category": (lambda r: _rewrite_labels(r, _unknown_category_ids()),
                         "gtFine_instanceIds", r"unknown category: values \[40\]", 1),
    "instance-overflow": (lambda r: _rewrite_labels(r, _overflowing_instance_ids()),
                          "gtFine_instanceIds",
                          "instance id 1000 of class 'car' overflows the label divisor 1000",
                          1),
    "stuff-instance": (lambda r: _rewrite_labels(r, _stuff_instance_ids()),
                       "gtFine_instanceIds", "instance value 7001 of stuff class 'road'", 1),
    "labelids-disagree": (_disagreeing_label_ids, "gtFine_labelIds",
                          r"disagrees with .* at 1 pixels, e.g. \(y=3, x=5\)", 1),
    "corrupt-png": (lambda r: _flip_byte(_city_file(r, "leftImg8bit")), "leftImg8bit",
                    "corrupt image", 2),
}


@pytest.mark.parametrize("case", sorted(_CITYSCAPES_BREAKS))
def test_cityscapes_errors_name_the_file_and_leave_no_output(tmp_path, previous_outputs,
                                                             case):
    breaks, kind, pattern, workers = _CITYSCAPES_BREAKS[case]
    root = _cityscapes_tree(str(tmp_path / "src"))
    before = _snapshot(tmp_path)
    breaks(root)
    with pytest.raises(ConversionError, match=pattern) as error:
        convert_cityscapes(root, "val", str(tmp_path), num_shards=3, num_workers=workers)
    assert _city_file(root, kind) in str(error.value)
    assert _snapshot(tmp_path).keys() == before.keys()


def test_cityscapes_empty_split_names_the_glob_and_test_split_is_all_ignore(tmp_path):
    root = _cityscapes_tree(str(tmp_path / "src"))
    with pytest.raises(ConversionError, match="empty split 'train'") as error:
        convert_cityscapes(root, "train", str(tmp_path / "out"))
    assert f"{root}/leftImg8bit/train/*/*_leftImg8bit.png" in str(error.value)
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")

    write_png(f"{root}/leftImg8bit/test/bonn/bonn_000000_000019_leftImg8bit.png",
              random_rgb(8, 12))
    convert_cityscapes(root, "test", str(tmp_path / "out"), num_workers=1)
    (example,), _ = read_split(tmp_path / "out", "test")
    assert (example[common.PANOPTIC_LABEL] == 255000).all()
    assert _table(example) == [(255000, 0)]


def _coco_annotations(third=None):
    """Three annotated images (ids 1, 2, 3); `third` replaces the last (ids, segments)."""
    ids, segments = coco_segments_map()
    return [(1, ids, segments), (2, ids, segments), (3,) + (third or (ids, segments))]


def _coco_overflow():
    ids = np.arange(1, 257).reshape(16, 16)  # 256 persons: instance 256 overflows
    return ids, [{"id": i, "category_id": 1, "iscrowd": 0} for i in range(1, 257)]


def _coco_segments(change):
    ids, segments = coco_segments_map()
    return ids, change([dict(s) for s in segments])


_COCO_BREAKS = {
    # name: (third annotation, break after writing, message pattern, workers)
    "missing-image": (None, lambda r: os.remove(f"{r}/images/000000000003.jpg"),
                      "missing image for label .*/panoptic/000000000003.png", 1),
    "size-mismatch": (None, lambda r: Image.fromarray(random_rgb(12, 15)).save(
        f"{r}/images/000000000003.jpg"), "size mismatch: .*000000000003", 1),
    "unknown-category": (_coco_segments(lambda s: s[:3] + [dict(s[3], category_id=12)]),
                         None, "000000000003.png: unknown category id 12", 1),
    "png-id-not-in-json": (_coco_segments(lambda s: s[:2] + s[3:]), None,
                           "000000000003.png: segment id 70000 is in the PNG but not in "
                           "segments_info of image 3", 1),
    "json-id-not-in-png": (_coco_segments(lambda s: s + [dict(s[0], id=999)]), None,
                           r"000000000003.png: segment id 999 of segments_info \(image 3\) "
                           "is absent from the PNG", 1),
    "instance-overflow": (_coco_overflow(), None, "000000000003.png: instance id 256 of class "
                          "'person' .* overflows the label divisor 256", 1),
    "corrupt-jpeg": (None, lambda r: _truncate(f"{r}/images/000000000003.jpg"),
                     "corrupt image .*/images/000000000003.jpg", 2),
}


@pytest.mark.parametrize("case", sorted(_COCO_BREAKS))
def test_coco_errors_name_the_file_and_leave_no_output(tmp_path, previous_outputs, case):
    third, breaks, pattern, workers = _COCO_BREAKS[case]
    root = str(tmp_path / "src")
    panoptic_json = write_coco(root, _coco_annotations(third))
    before = _snapshot(tmp_path)
    if breaks:
        breaks(root)
    with pytest.raises(ConversionError, match=pattern):
        convert_coco(panoptic_json, f"{root}/panoptic", f"{root}/images", str(tmp_path),
                     split="val", num_shards=3, num_workers=workers)
    assert _snapshot(tmp_path).keys() == before.keys()
    assert _snapshot(tmp_path)["val-summary.json"] == previous_outputs["val-summary.json"]


def test_coco_tiny_tree_converts_and_empty_json_is_an_error(tmp_path):
    root = str(tmp_path / "src")
    panoptic_json = write_coco(root, _coco_annotations(), image_format="PNG")
    summary = convert_coco(panoptic_json, f"{root}/panoptic", f"{root}/images",
                           str(tmp_path / "out"), num_workers=1)
    assert summary["split"] == "val2017" and summary["num_segments"] == 3 * 4  # void not counted
    example = read_split(tmp_path / "out", "val2017")[0][0]
    wall = COCO.source_ids.index(171) * 256
    assert _table(example) == sorted([(257, 0), (256, 1), (258, 0), (wall, 0), (0, 0)])
    ids, _ = coco_segments_map()
    expected = np.select([ids == 300, ids == 8, ids == 70000, ids == 5], [257, 256, 258, wall])
    np.testing.assert_array_equal(example[common.PANOPTIC_LABEL], expected)

    empty = write_coco(str(tmp_path / "empty"), [])
    with pytest.raises(ConversionError, match="empty split") as error:
        convert_coco(empty, root, root, str(tmp_path / "out2"))
    assert empty in str(error.value)


def test_cityscapes_panoptic_json_finds_images_in_city_folders(tmp_path):
    name = "bonn_000000_000019"
    ids = np.zeros((8, 10), np.int64)
    ids[:4] = 7  # road
    ids[5:, 2:5] = 26001
    ids[5:, 6:9] = 26
    segments = [{"id": 7, "category_id": 0, "iscrowd": 0},
                {"id": 26001, "category_id": 13, "iscrowd": 0},
                {"id": 26, "category_id": 13, "iscrowd": 1}]
    write_png(f"{tmp_path}/leftImg8bit/val/bonn/{name}_leftImg8bit.png", random_rgb(8, 10))
    write_png(f"{tmp_path}/gtFine/panoptic/{name}_gtFine_panoptic.png", coco_rgb(ids))
    (tmp_path / "gtFine/cityscapes_panoptic_val_trainId.json").write_text(json.dumps({
        "images": [{"id": name, "file_name": f"{name}_leftImg8bit.png"}],
        "annotations": [{"image_id": name, "file_name": f"{name}_gtFine_panoptic.png",
                         "segments_info": segments}]}))
    summary = convert_coco(f"{tmp_path}/gtFine/cityscapes_panoptic_val_trainId.json",
                           f"{tmp_path}/gtFine/panoptic", f"{tmp_path}/leftImg8bit/val",
                           str(tmp_path / "out"), dataset="cityscapes", num_workers=1)
    assert summary["split"] == "val"
    (example,), _ = read_split(tmp_path / "out", "val")
    expected = np.select([ids == 7, ids == 26001, ids == 26], [0, 13001, 13000], 255000)
    np.testing.assert_array_equal(example[common.PANOPTIC_LABEL], expected)
    assert _table(example) == [(0, 0), (13000, 1), (13001, 0), (255000, 0)]


# ---------------------------------------------------------------- scripts


def test_scripts_convert_and_exit_1_with_the_message_on_bad_input(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    ok = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts/convert_synthetic.py"),
         f"--output_dir={tmp_path}", "--num_train=3", "--num_val=1", "--seed=3",
         "--num_workers=1", "--shard_bytes=1"],
        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "wrote 3 images" in ok.stdout and f"{tmp_path}/val-*.tfrecord" in ok.stdout
    summary = json.loads((tmp_path / "train-summary.json").read_text())
    assert (summary["num_shards"], summary["shard_bytes"]) == (3, 1)
    bad = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts/convert_coco.py"),
         f"--panoptic_json={tmp_path}/nope.json", f"--panoptic_dir={tmp_path}",
         f"--image_dir={tmp_path}", f"--output_dir={tmp_path}/out"],
        capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1
    assert f"cannot read panoptic JSON {tmp_path}/nope.json" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize("script, args", [
    ("convert_cityscapes.py", ["--cityscapes_root=src", "--split=val"]),
    ("convert_coco.py", ["--panoptic_json=p.json", "--panoptic_dir=p", "--image_dir=i"]),
    ("convert_synthetic.py", []),
])
def test_scripts_reject_num_shards_with_shard_bytes(tmp_path, script, args):
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / script), *args,
         f"--output_dir={tmp_path}/out", "--num_shards=2", "--shard_bytes=1000"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)),
        timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --num_shards and --shard_bytes are alternatives; pass at most one"]
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


# ------------------------------------------------ malformed JSON, unsafe names


def _edit_json(path, change):
    with open(path) as f:
        data = json.load(f)
    change(data)
    with open(path, "w") as f:
        json.dump(data, f)


_JSON_BREAKS = {
    # name: (change of the panoptic JSON, message pattern)
    "duplicate-image-id": (lambda d: d["images"].__setitem__(1, dict(d["images"][1], id=1)),
                           r"image ids \[1\] appear more than once in 'images'"),
    "duplicate-annotation": (lambda d: d["annotations"].append(d["annotations"][0]),
                             r"image ids \[1\] appear more than once in 'annotations'"),
    "annotation-without-image": (lambda d: d["images"].pop(2),
                                 r"annotations of image ids \[3\] have no entry in 'images'"),
    "iscrowd-yes": (lambda d: d["annotations"][0]["segments_info"][0].__setitem__(
        "iscrowd", "yes"), "segment 300 of image 1: .*iscrowd 0 or 1"),
    "integer-file-name": (lambda d: d["images"][0].__setitem__("file_name", 12),
                          "file_name of image 1: expected a file name string, got 12"),
    "dotdot-image": (lambda d: d["images"][0].__setitem__("file_name", "../../secret.png"),
                     r"file_name of image 1: '../../secret.png' leads outside"),
    "absolute-image": (lambda d: d["images"][0].__setitem__("file_name", "/etc/passwd"),
                       "file_name of image 1: '/etc/passwd' is an absolute path"),
    "dotdot-label": (lambda d: d["annotations"][1].__setitem__("file_name", "../x.png"),
                     r"file_name of the annotation of image 2: '../x.png' leads outside"),
    "empty-label": (lambda d: d["annotations"][1].__setitem__("file_name", ""),
                    "file_name of the annotation of image 2: '' is not a file name"),
    "nul-label": (lambda d: d["annotations"][1].__setitem__("file_name", "a\0.png"),
                  r"file_name of the annotation of image 2: 'a\\x00.png' is not a file name"),
}


@pytest.mark.parametrize("case", sorted(_JSON_BREAKS))
def test_coco_json_problems_are_errors_naming_the_ids(tmp_path, previous_outputs, case):
    change, pattern = _JSON_BREAKS[case]
    root = str(tmp_path / "src")
    panoptic_json = write_coco(root, _coco_annotations())
    _edit_json(panoptic_json, change)
    before = _snapshot(tmp_path)
    with pytest.raises((ConversionError, ValueError), match=pattern) as error:
        convert_coco(panoptic_json, f"{root}/panoptic", f"{root}/images", str(tmp_path),
                     split="val", num_workers=1)
    assert panoptic_json in str(error.value)
    assert _snapshot(tmp_path).keys() == before.keys()


def test_a_killed_run_leaves_a_temporary_folder_the_next_run_removes(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no process has any more
    stale = tmp_path / f".val.incomplete-{dead.pid}-abc"
    stale.mkdir()
    (stale / "shard-00000.tfrecord").write_bytes(b"half")
    alive = tmp_path / f".val.incomplete-{os.getppid()}-def"  # a running writer's
    alive.mkdir()
    other_split = tmp_path / f".train.incomplete-{dead.pid}-ghi"
    other_split.mkdir()
    write_split(["v"], _toy_convert, str(tmp_path), "val", "toy", num_workers=1)
    assert not stale.exists() and alive.exists() and other_split.exists()
    assert f"Removed 1 temporary folder(s) an interrupted run left in {tmp_path}" in (
        capsys.readouterr().out)


@pytest.mark.parametrize("args, message", [
    (["--output_dir={tmp}/out", "--num_train=1", "--num_val=1"],
     "error: output_dir {tmp}/out is a file; expected a folder"),
    (["--output_dir={tmp}/out/sub", "--num_train=1", "--num_val=1"],
     "error: output_dir {tmp}/out/sub: cannot create the folder: Not a directory"),
    (["--output_dir={tmp}/new", "--num_train=0", "--num_val=0"],
     "error: Need non-negative scene counts, not both 0; got num_train=0, num_val=0."),
])
def test_bad_output_folders_and_counts_are_one_line_errors(tmp_path, args, message):
    (tmp_path / "out").write_text("not a folder")
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts/convert_synthetic.py"),
         *(a.format(tmp=tmp_path) for a in args)],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)),
        timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [message.format(tmp=tmp_path)]
    assert (tmp_path / "out").read_text() == "not a folder"
    assert not (tmp_path / "new").exists()
