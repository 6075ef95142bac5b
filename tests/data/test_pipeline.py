"""The tf.data pipeline on small TFRecords: keys and shapes, determinism, eval
padding, sharding under an input context, errors and Gin configuration."""
import io

import gin
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from deeplab2 import common
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.data.pipeline import build_dataset
from deeplab2.data.targets import make_targets
from deeplab2.data.tfrecord import encode_example

INFO = get_dataset_info("cityscapes")
IGNORE = INFO.ignore_panoptic_id
CROP = (33, 65)
TARGET_KEYS = (common.SEMANTIC_TARGET, common.CENTER_HEATMAP_TARGET, common.CENTER_POINTS,
               common.NUM_INSTANCES, common.OFFSET_TARGET, common.SEMANTIC_WEIGHTS,
               common.CENTER_WEIGHTS, common.OFFSET_WEIGHTS)
KEYS = {common.IMAGE, common.PANOPTIC_LABEL, common.IMAGE_ID, common.IMAGE_HEIGHT,
        common.IMAGE_WIDTH, *TARGET_KEYS}


def _scene(index, height, width):
    rng = np.random.default_rng(index)
    label = np.full((height, width), 8 * 1000, np.int32)
    label[height // 2:] = 0
    label[:, :3] = IGNORE
    label[2:9, 5:14] = 13 * 1000 + 1
    label[10:16, 20:26] = 11 * 1000 + 1
    label[3:7, width - 8:width - 2] = 13 * 1000  # crowd
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return image, label


def _record(index, height, width):
    image, label = _scene(index, height, width)
    ids, segment_map = np.unique(label, return_inverse=True)
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    return encode_example(png.getvalue(), "png", segment_map.reshape(label.shape),
                          ids.tolist(), [0] * len(ids), f"img{index}", f"img{index}.png")


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Two files of three examples each; sizes vary within a file."""
    directory = tmp_path_factory.mktemp("records")
    sizes = [(20, 40), (24, 48), (18, 44)]
    for f in range(2):
        with tf.io.TFRecordWriter(str(directory / f"data-{f}.tfrecord")) as writer:
            for k, (h, w) in enumerate(sizes):
                writer.write(_record(3 * f + k, h, w))
    return str(directory / "data-*.tfrecord")


def _batches(dataset, count):
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset.take(count)]


def _train(records, **kwargs):
    kwargs = {"seed": 0, **kwargs}
    return build_dataset(records, "cityscapes", True, CROP, 2, **kwargs)


def test_training_batches_have_every_key_and_consistent_targets(records):
    (batch,) = _batches(_train(records), 1)
    assert set(batch) == KEYS
    assert batch[common.IMAGE].dtype == np.float32
    assert batch[common.IMAGE].shape == (2, *CROP, 3)
    assert batch[common.OFFSET_TARGET].shape == (2, *CROP, 2)
    assert batch[common.CENTER_POINTS].shape == (2, 256, 2)
    assert 0 <= batch[common.IMAGE].min() and batch[common.IMAGE].max() <= 255
    for i in range(2):
        expected = make_targets(batch[common.PANOPTIC_LABEL][i], INFO)
        for key in TARGET_KEYS:
            np.testing.assert_array_equal(batch[key][i], expected[key], err_msg=key)


def test_seeded_training_is_deterministic_and_depends_on_the_seed(records):
    first = _batches(_train(records, seed=3, autoaugment=True), 3)
    again = _batches(_train(records, seed=3, autoaugment=True), 3)
    other = _batches(_train(records, seed=4, autoaugment=True), 3)
    for a, b in zip(first, again):
        for key in KEYS:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert any(not np.array_equal(a[common.IMAGE], c[common.IMAGE])
               for a, c in zip(first, other))


def test_eval_pads_in_file_order_and_keeps_the_original_size(records):
    dataset = build_dataset(records, "cityscapes", False, CROP, 4)
    batches = _batches(dataset, 10)
    assert [len(b[common.IMAGE_ID]) for b in batches] == [4, 2]  # partial batch kept
    ids = [i.decode() for b in batches for i in b[common.IMAGE_ID]]
    assert ids == [f"img{k}" for k in range(6)]
    first = batches[0]
    for i, index in enumerate(range(4)):
        h, w = first[common.IMAGE_HEIGHT][i], first[common.IMAGE_WIDTH][i]
        image, label = _scene(index, h, w)
        np.testing.assert_array_equal(first[common.IMAGE][i, :h, :w], image)
        np.testing.assert_array_equal(first[common.PANOPTIC_LABEL][i, :h, :w], label)
        assert np.all(first[common.IMAGE][i, h:] == 127.5)
        assert np.all(first[common.PANOPTIC_LABEL][i, :, w:] == IGNORE)
    again = _batches(build_dataset(records, "cityscapes", False, CROP, 4), 10)
    np.testing.assert_array_equal(again[1][common.CENTER_HEATMAP_TARGET],
                                  batches[1][common.CENTER_HEATMAP_TARGET])


def test_eval_rejects_images_larger_than_the_crop(records):
    dataset = build_dataset(records, "cityscapes", False, (17, 33), 1, output_stride=16)
    with pytest.raises(tf.errors.InvalidArgumentError, match="larger than the crop size"):
        _batches(dataset, 1)


def test_per_replica_batch_and_file_shards(records):
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    train = build_dataset(records, "cityscapes", True, CROP, 4, seed=0, input_context=context)
    batches = _batches(train, 3)
    assert all(b[common.IMAGE].shape[0] == 2 for b in batches)
    seen = {i.decode() for b in batches for i in b[common.IMAGE_ID]}
    assert seen <= {"img3", "img4", "img5"}  # the second file only
    evaluation = build_dataset(records, "cityscapes", False, CROP, 4, input_context=context)
    ids = [i.decode() for b in _batches(evaluation, 5) for i in b[common.IMAGE_ID]]
    assert ids == ["img3", "img4", "img5"]


def test_missing_files_name_the_pattern(tmp_path):
    pattern = str(tmp_path / "nothing-*.tfrecord")
    with pytest.raises(ValueError, match="nothing-"):
        build_dataset(pattern, "cityscapes", True, CROP, 2)


def test_bad_crop_size_is_rejected(records):
    with pytest.raises(ValueError, match=r"k \* 32 \+ 1"):
        build_dataset(records, "cityscapes", True, (32, 64), 2)


def test_gin_configuration(records):
    gin.clear_config()
    try:
        gin.parse_config([
            f"build_dataset.file_pattern = '{records}'",
            "build_dataset.dataset_name = 'cityscapes'",
            "build_dataset.is_training = True",
            "build_dataset.crop_size = (33, 65)",
            "build_dataset.global_batch_size = 3",
            "build_dataset.max_instances = 5",
            "build_dataset.seed = 1",
        ])
        (batch,) = _batches(build_dataset(), 1)
    finally:
        gin.clear_config()
    assert batch[common.IMAGE].shape == (3, *CROP, 3)
    assert batch[common.CENTER_POINTS].shape == (3, 5, 2)
