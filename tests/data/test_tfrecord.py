"""The TFRecord format: lossless round trips, 8/16-bit segment maps, tf.data use."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from deeplab2 import common
from deeplab2.data.tfrecord import decode_example, encode_example


def _image_bytes(height, width, fmt, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return image, buffer.getvalue()


def _every_entry_map(num_segments, height, width, seed=0):
    """A random HxW map that uses each of `num_segments` entries at least once."""
    rng = np.random.default_rng(seed)
    values = np.concatenate([np.arange(num_segments),
                             rng.integers(0, num_segments, height * width - num_segments)])
    return rng.permutation(values).reshape(height, width)


def _features(serialized):
    return tf.train.Example.FromString(serialized).features.feature


def _png_bit_depth(png):
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    return png[24]


def test_round_trip_keeps_crowd_duplicates_ignore_and_image_bytes():
    image, png = _image_bytes(37, 53, "PNG")
    # Two crowd car regions share panoptic id 13000 but stay separate entries.
    ids = [0, 2000, 11001, 11002, 13000, 13001, 13000, 255000]
    crowd = [0, 0, 0, 0, 1, 0, 1, 0]
    segment_map = _every_entry_map(len(ids), 37, 53)
    serialized = encode_example(png, "png", segment_map, ids, crowd, "frankfurt_01",
                                "frankfurt_01_leftImg8bit.png")
    decoded = decode_example(serialized)

    np.testing.assert_array_equal(decoded[common.IMAGE].numpy(), image)
    label = decoded[common.PANOPTIC_LABEL]
    assert label.dtype == tf.int32
    np.testing.assert_array_equal(label.numpy(), np.array(ids)[segment_map])
    assert decoded[common.SEGMENT_IDS].numpy().tolist() == ids
    assert decoded[common.SEGMENT_IS_CROWD].numpy().tolist() == crowd
    assert decoded[common.SEGMENT_IDS].dtype == decoded[common.SEGMENT_IS_CROWD].dtype == tf.int32
    assert decoded[common.IMAGE_ID].numpy() == b"frankfurt_01"
    assert decoded[common.IMAGE_HEIGHT].numpy() == 37 and decoded[common.IMAGE_WIDTH].numpy() == 53
    assert decoded[common.IMAGE_HEIGHT].dtype == tf.int32

    features = _features(serialized)
    assert features["image/encoded"].bytes_list.value[0] == png
    assert features["image/format"].bytes_list.value[0] == b"png"
    assert features["image/filename"].bytes_list.value[0] == b"frankfurt_01_leftImg8bit.png"
    assert _png_bit_depth(features["label/segment_map"].bytes_list.value[0]) == 8


@pytest.mark.parametrize("num_segments, bit_depth", [(256, 8), (257, 16), (700, 16)])
def test_segment_map_bit_depth_follows_table_size(num_segments, bit_depth):
    _, jpeg = _image_bytes(30, 40, "JPEG")
    rng = np.random.default_rng(num_segments)
    ids = (rng.integers(0, 19, num_segments) * 1000 + np.arange(num_segments) % 1000).tolist()
    crowd = rng.integers(0, 2, num_segments).tolist()
    segment_map = _every_entry_map(num_segments, 30, 40, seed=num_segments)
    serialized = encode_example(jpeg, "jpeg", segment_map, ids, crowd, "x", "x.jpg")
    png = _features(serialized)["label/segment_map"].bytes_list.value[0]
    assert _png_bit_depth(png) == bit_depth
    decoded = decode_example(serialized)
    np.testing.assert_array_equal(decoded[common.PANOPTIC_LABEL].numpy(),
                                  np.array(ids)[segment_map])
    assert decoded[common.SEGMENT_IS_CROWD].numpy().tolist() == crowd
    # JPEG bytes are kept, so decoding matches TF's own decoding of the source.
    np.testing.assert_array_equal(decoded[common.IMAGE].numpy(),
                                  tf.io.decode_jpeg(jpeg, channels=3).numpy())


def test_decode_inside_tf_data_map_handles_both_bit_depths():
    examples, labels = [], []
    for i, num_segments in enumerate((5, 300)):
        _, png = _image_bytes(20 + i, 24, "PNG", seed=i)
        ids = [7000 + k for k in range(num_segments)]
        segment_map = _every_entry_map(num_segments, 20 + i, 24, seed=i)
        examples.append(encode_example(png, "png", segment_map, ids, [0] * num_segments,
                                       f"id{i}", f"f{i}.png"))
        labels.append(np.array(ids)[segment_map])
    dataset = tf.data.Dataset.from_tensor_slices(examples).map(decode_example)
    assert dataset.element_spec[common.IMAGE].shape.as_list() == [None, None, 3]
    assert dataset.element_spec[common.PANOPTIC_LABEL].shape.as_list() == [None, None]
    decoded = list(dataset)
    assert len(decoded) == 2
    for element, label, i in zip(decoded, labels, range(2)):
        np.testing.assert_array_equal(element[common.PANOPTIC_LABEL].numpy(), label)
        assert element[common.IMAGE].shape == (20 + i, 24, 3)
        assert element[common.IMAGE_ID].numpy() == f"id{i}".encode()


@pytest.mark.parametrize("change, message", [
    (dict(image_format="gif"), "Image format"),
    (dict(segment_map=np.array([[0, 1], [1, 2]])), r"values must be in \[0, 2\)"),
    (dict(segment_map=np.array([[0, 0], [0, 0]])), r"entries \[1\] cover no pixel"),
    (dict(segment_map=np.zeros((2, 2, 1), np.int64)), "integer HxW"),
    (dict(segment_is_crowd=[0]), "one crowd flag each"),
    (dict(segment_is_crowd=[0, 2]), "must be 0 or 1"),
])
def test_encode_rejects_inconsistent_input(change, message):
    args = dict(image_bytes=b"", image_format="png", segment_map=np.array([[0, 1], [1, 0]]),
                segment_ids=[1000, 2000], segment_is_crowd=[0, 0], image_id="a",
                filename="a.png")
    args.update(change)
    with pytest.raises(ValueError, match=message):
        encode_example(**args)
