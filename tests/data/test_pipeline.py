"""The tf.data pipelines on small TFRecords: keys and targets, determinism, epochs over
sharded files, resumption, evaluation padding and indices, sharding under an input
context, the shuffle buffer's memory budget, errors and Gin configuration."""
import collections
import io

import gin
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from deeplab2 import common
from deeplab2.data import pipeline
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.data.records import RecordFileError
from deeplab2.data.tfrecord import encode_example
from deeplab2.model.meta import get_meta_architecture, make_config
from deeplab2.model.panoptic_deeplab.targets import PanopticDeepLabTargets, make_targets

INFO = get_dataset_info("cityscapes")
IGNORE = INFO.ignore_panoptic_id
CROP = (33, 65)
TARGET_KEYS = (common.SEMANTIC_TARGET, common.CENTER_HEATMAP_TARGET, common.CENTER_POINTS,
               common.NUM_INSTANCES, common.OFFSET_TARGET, common.SEMANTIC_WEIGHTS,
               common.CENTER_WEIGHTS, common.OFFSET_WEIGHTS)
KEYS = {common.IMAGE, common.PANOPTIC_LABEL, common.IMAGE_ID, common.IMAGE_HEIGHT,
        common.IMAGE_WIDTH, common.SAMPLE_SEED, *TARGET_KEYS}
NO_AUGMENTATION = pipeline.TrainingInput(min_scale=1.0, max_scale=1.0, flip_prob=0.0)


def _config(crop=CROP, output_stride=32, pixel_mean=127.5, dataset=INFO):
    return make_config("panoptic_deeplab", dataset, output_stride=output_stride,
                       crop_size=crop, pixel_mean=pixel_mean, pixel_std=127.5,
                       architecture={}, postprocess={})


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


@pytest.fixture(scope="module")
def sixteen_shards(tmp_path_factory):
    """48 synthetic scenes of 64x96 in 16 shards of 3."""
    from deeplab2.data.converters.synthetic import convert_synthetic

    directory = tmp_path_factory.mktemp("shards")
    convert_synthetic(str(directory), num_train=48, num_val=0, seed=0, num_shards=16,
                      num_workers=1, height=64, width=96)
    assert len(list(directory.glob("train-*.tfrecord"))) == 16
    return str(directory / "train-*.tfrecord")


def _batches(dataset, count):
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset.take(count)]


def _train(records, config=None, batch=2, seed=0, **kwargs):
    config = config or _config()
    return pipeline.training_dataset(records, config, PanopticDeepLabTargets(config.dataset),
                                     global_batch_size=batch, seed=seed, **kwargs)


def _ids(batches):
    return [i.decode() for b in batches for i in b[common.IMAGE_ID]]


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
    options = pipeline.TrainingInput(autoaugment=True)
    first = _batches(_train(records, seed=3, options=options), 3)
    again = _batches(_train(records, seed=3, options=options), 3)
    other = _batches(_train(records, seed=4, options=options), 3)
    for a, b in zip(first, again):
        for key in KEYS:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert any(not np.array_equal(a[common.IMAGE], c[common.IMAGE])
               for a, c in zip(first, other))


def test_an_epoch_yields_every_example_once_in_an_order_of_its_own(sixteen_shards):
    stream = _ids(_batches(_train(sixteen_shards, batch=1, options=NO_AUGMENTATION), 96))
    first, second = stream[:48], stream[48:]
    assert sorted(first) == sorted(second) == sorted(f"train_{i:06d}" for i in range(48))
    assert first != second
    other_seed = _ids(_batches(_train(sixteen_shards, batch=1, seed=1,
                                      options=NO_AUGMENTATION), 48))
    assert sorted(other_seed) == sorted(first) and other_seed != first
    # Sixteen files interleaved and shuffled: the first batch of 8 comes from
    # many shards, not from the first file (scenes 0-2) or two.
    assert len({int(i.split("_")[1]) // 3 for i in first[:8]}) >= 4


def test_a_resumed_stream_continues_the_uninterrupted_one(sixteen_shards):
    """Resumed at step 29 (mid second epoch), the stream is exactly the rest of
    the uninterrupted one: nothing repeated, nothing skipped, same augmentations."""
    whole = _batches(_train(sixteen_shards, batch=2), 34)
    resumed = _batches(_train(sixteen_shards, batch=2, start_step=29), 5)
    for expected, actual in zip(whole[29:], resumed):
        for key in KEYS:
            np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


def test_files_are_split_across_pipelines_when_there_are_enough(records, sixteen_shards):
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    batches = _batches(_train(records, batch=4, input_context=context), 3)
    assert all(b[common.IMAGE].shape[0] == 2 for b in batches)
    assert set(_ids(batches)) == {"img3", "img4", "img5"}  # the second file only
    # More pipelines than files: every pipeline reads the files and keeps every
    # other example, so the pipelines' epochs are disjoint.
    epochs = []
    for pipeline_id in range(3):
        context = tf.distribute.InputContext(num_input_pipelines=3,
                                             input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=3)
        epochs.append(_ids(_batches(_train(records, batch=3, input_context=context), 2)))
    assert sorted(sum(epochs, [])) == [f"img{i}" for i in range(6)]


def test_the_shuffle_buffer_keeps_to_its_memory_budget(sixteen_shards):
    files = sorted(tf.io.gfile.glob(sixteen_shards))
    shard = pipeline.shard_records(files, 1, 0)
    assert shard.epoch_size == 48
    generous = pipeline.TrainingInput(shuffle_buffer=1000, shuffle_memory_mb=1024)
    assert pipeline.shuffle_buffer_size(shard, generous) == 48  # the epoch binds
    tight = pipeline.TrainingInput(shuffle_buffer=1000,
                                   shuffle_memory_mb=10.5 * shard.record_bytes / 2 ** 20)
    assert pipeline.shuffle_buffer_size(shard, tight) == 10


def test_images_are_padded_with_the_model_pad_value(records):
    config = _config(pixel_mean=(100.0, 110.0, 120.0), crop=(65, 65))
    (batch,) = _batches(_train(records, config, options=NO_AUGMENTATION), 1)
    for i in range(2):
        h, w = batch[common.IMAGE_HEIGHT][i], batch[common.IMAGE_WIDTH][i]
        np.testing.assert_array_equal(batch[common.IMAGE][i, h:], np.broadcast_to(
            [100.0, 110.0, 120.0], batch[common.IMAGE][i, h:].shape))
    evaluation = _batches(pipeline.evaluation_dataset(records, config, global_batch_size=1), 1)
    np.testing.assert_array_equal(evaluation[0][common.IMAGE][0, -1, -1], [100, 110, 120])


def test_eval_pads_to_full_batches_in_file_order_with_indices(records):
    batches = _batches(pipeline.evaluation_dataset(records, _config(), global_batch_size=4),
                       10)
    assert [len(b[common.IMAGE_INDEX]) for b in batches] == [4, 4]
    assert [i for b in batches for i in b[common.IMAGE_INDEX]] == [0, 1, 2, 3, 4, 5, -1, -1]
    assert _ids(batches) == [f"img{k}" for k in range(6)] + ["", ""]
    first = batches[0]
    for i in range(4):
        h, w = first[common.IMAGE_HEIGHT][i], first[common.IMAGE_WIDTH][i]
        image, label = _scene(i, h, w)
        np.testing.assert_array_equal(first[common.IMAGE][i, :h, :w], image)
        np.testing.assert_array_equal(first[common.PANOPTIC_LABEL][i, :h, :w], label)
        assert np.all(first[common.IMAGE][i, h:] == 127.5)
        assert np.all(first[common.PANOPTIC_LABEL][i, :, w:] == IGNORE)
    filler = batches[1]
    assert filler[common.IMAGE_HEIGHT][3] == 0 and np.all(filler[common.IMAGE][3] == 127.5)
    assert np.all(filler[common.PANOPTIC_LABEL][3] == IGNORE)


def test_eval_pipelines_share_the_images_and_take_as_many_steps(records):
    """4 replicas on 2 workers, 2 images per step: 6 images are 2 steps, each
    pipeline yields 2 x 2 per-replica batches and every image comes once."""
    seen = collections.Counter()
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2,
                                             input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=4)
        batches = _batches(pipeline.evaluation_dataset(
            records, _config(), global_batch_size=8, input_context=context), 10)
        assert [len(b[common.IMAGE_INDEX]) for b in batches] == [2, 2]
        seen.update(int(i) for b in batches for i in b[common.IMAGE_INDEX])
    assert seen == collections.Counter({0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1, -1: 2})


def test_eval_without_image_ids_carries_numbers_only(records):
    (batch,) = _batches(pipeline.evaluation_dataset(records, _config(), global_batch_size=2,
                                                    keep_image_ids=False), 1)
    assert common.IMAGE_ID not in batch
    assert all(v.dtype != object for v in batch.values())


def test_eval_rejects_images_larger_than_the_crop(records):
    dataset = pipeline.evaluation_dataset(records, _config(output_stride=16),
                                          global_batch_size=1, crop_size=(17, 33))
    with pytest.raises(tf.errors.InvalidArgumentError, match="larger than the crop size"):
        _batches(dataset, 1)


def test_missing_empty_and_broken_files_are_named(records, tmp_path):
    with pytest.raises(RecordFileError, match=r"training file pattern .*nothing-\*"):
        _train(str(tmp_path / "nothing-*.tfrecord"))
    empty = tmp_path / "empty-0.tfrecord"
    empty.write_bytes(b"")
    with pytest.raises(RecordFileError, match=f"training files hold no records: {empty}"):
        _train(str(empty))
    with pytest.raises(RecordFileError, match="evaluation files hold no records"):
        pipeline.evaluation_dataset(str(empty), _config(), global_batch_size=1)
    data = open(sorted(tf.io.gfile.glob(records))[0], "rb").read()
    truncated = tmp_path / "truncated.tfrecord"
    truncated.write_bytes(data[:-7])
    with pytest.raises(RecordFileError, match=f"{truncated} is truncated"):
        _train(str(truncated))


def test_the_family_chooses_the_resize_convention(records):
    """Shorter side 32, no flip: each 20x40 / 24x48 / 18x44 image is scaled by
    32 / its height. Panoptic FPN resizes half-pixel to floor(w * scale + 0.5)
    columns (64, 64, 78), exactly tf.image.resize; Panoptic-DeepLab aligns
    corners, round((w - 1) * scale) + 1 columns (63, 64, 77)."""
    options = pipeline.TrainingInput(shorter_side=(32, 32), flip_prob=0.0)
    fpn = make_config("panoptic_fpn", INFO, output_stride=32, crop_size=(64, 96),
                      pixel_mean=127.5, pixel_std=127.5, architecture={}, postprocess={})
    targets = get_meta_architecture("panoptic_fpn").training_targets(fpn)
    batches = _batches(pipeline.training_dataset(records, fpn, targets, global_batch_size=2,
                                                 seed=0, options=options), 3)
    deeplab = _batches(_train(records, _config(crop=(65, 97)), options=options), 3)

    def width(batch, i):  # columns before the padding (the scenes' left edge is void)
        return np.flatnonzero(batch[common.PANOPTIC_LABEL][i, 0] != IGNORE).max() + 1

    fpn_widths, deeplab_widths = {}, {}
    for batch, other in zip(batches, deeplab):
        for i in range(2):
            h, w = batch[common.IMAGE_HEIGHT][i], batch[common.IMAGE_WIDTH][i]
            fpn_widths[w] = cols = width(batch, i)
            deeplab_widths[other[common.IMAGE_WIDTH][i]] = width(other, i)
            image, _ = _scene(int(batch[common.IMAGE_ID][i][3:]), h, w)
            np.testing.assert_array_equal(
                batch[common.IMAGE][i, :32, :cols],
                tf.image.resize(image, [32, cols], method="bilinear"))
            assert np.all(batch[common.IMAGE][i, 32:] == 127.5)
    assert fpn_widths == {40: 64, 48: 64, 44: 78}
    assert deeplab_widths == {40: 63, 48: 64, 44: 77}


def test_bad_crop_size_is_rejected():
    with pytest.raises(ValueError, match=r"k \* 32 \+ 1"):
        _config(crop=(32, 64))


def test_training_input_is_bound_in_gin(records):
    gin.clear_config()
    try:
        gin.parse_config(["TrainingInput.min_scale = 2.0", "TrainingInput.max_scale = 2.0",
                          "TrainingInput.flip_prob = 0.0"])
        options = pipeline.TrainingInput()
    finally:
        gin.clear_config()
    assert (options.min_scale, options.max_scale, options.flip_prob) == (2.0, 2.0, 0.0)
    # At scale 2 every image fills the 33x65 crop: no padding (ignore) at the
    # bottom-right corner, which lies on road at any crop offset.
    (batch,) = _batches(_train(records, options=options), 1)
    assert np.all(batch[common.PANOPTIC_LABEL][:, -1, -1] == 0)
    (unscaled,) = _batches(_train(records, options=NO_AUGMENTATION), 1)
    assert np.all(unscaled[common.PANOPTIC_LABEL][:, -1, -1] == IGNORE)
