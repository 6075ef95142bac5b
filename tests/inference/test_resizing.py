"""Test-time sizing: the shorter-side rule against exact fractions, the canvas
resize against TF's own resize ops, the way back by hand, and a Predictor
that resizes against the same model run on an image upsampled by TF."""
import fractions
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import strided_conv_backbone
from deeplab2 import common
from deeplab2.model import build_model
from deeplab2.inference import Predictor
from deeplab2.inference.resizing import resize_into_canvas, sample_back, shorter_side_size


def _small_panoptic_fpn():
    """An untrained Panoptic FPN on the test backbone whose every detection
    survives post-processing: random weights still give boxes and masks."""
    keras.utils.set_random_seed(0)
    return build_model("panoptic_fpn", "synthetic", crop_size=(64, 96),
                       backbone=strided_conv_backbone.register(), fpn_channels=16,
                       semantic_channels=8, semantic_groups=4, box_fc_channels=32,
                       mask_channels=8, rpn_pre_nms_top_k_test=100, rpn_post_nms_top_k=100,
                       detection_score_threshold=0.0, max_detections=20,
                       postprocess={"score_threshold": 0.0, "stuff_area_limit": 0})


def _oracle_size(height, width, shorter, longer):
    """floor(side * scale + 0.5) with scale = min(S / short, L / long), exactly."""
    scale = min(fractions.Fraction(shorter, min(height, width)),
                fractions.Fraction(longer, max(height, width)))
    return tuple(math.floor(side * scale + fractions.Fraction(1, 2)) for side in (height, width))


def test_shorter_side_sizes_match_exact_fractions():
    rng = np.random.default_rng(0)
    sizes = [(427, 640), (640, 427), (360, 640), (1024, 2048), (800, 1333), (1, 1),
             (500, 500), (300, 2000)] + [tuple(s) for s in rng.integers(1, 3000, (300, 2))]
    got = shorter_side_size(tf.constant(sizes, tf.int32), 800, 1333).numpy()
    expected = np.array([_oracle_size(h, w, 800, 1333) for h, w in sizes])
    np.testing.assert_array_equal(got, expected)
    # The papers' COCO example: a 427x640 image runs at 800x1199.
    assert tuple(got[0]) == (800, 1199)
    assert tuple(got[5]) == (800, 800)
    assert tuple(got[7]) == (200, 1333)  # capped by the longer side


@pytest.mark.parametrize("half_pixel", [True, False])
def test_canvas_resize_matches_tf_resize_per_image(half_pixel):
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (2, 20, 30, 3)).astype(np.float32)
    sizes = np.array([[20, 30], [13, 7]])
    new_sizes = np.array([[37, 55], [9, 5]])  # up and down
    canvas = resize_into_canvas(tf.constant(images), tf.constant(sizes), tf.constant(new_sizes),
                                (40, 64), (10.0, 20.0, 30.0), half_pixel).numpy()
    assert canvas.shape == (2, 40, 64, 3)
    for i, ((h, w), (nh, nw)) in enumerate(zip(sizes, new_sizes)):
        crop = images[i:i + 1, :h, :w]
        if half_pixel:
            expected = tf.image.resize(crop, (nh, nw), method="bilinear")
        else:
            expected = tf.compat.v1.image.resize_bilinear(crop, (nh, nw), align_corners=True)
        np.testing.assert_allclose(canvas[i, :nh, :nw], expected[0], atol=2e-3)
        padding = np.ones((40, 64), bool)
        padding[:nh, :nw] = False
        np.testing.assert_array_equal(canvas[i][padding], np.tile([10.0, 20.0, 30.0],
                                                                  (padding.sum(), 1)))


def test_sample_back_takes_the_nearest_canvas_pixel():
    maps = np.arange(2 * 8 * 12).reshape(2, 8, 12).astype(np.int32)
    canvas_sizes = np.array([[8, 12], [6, 3]])
    sizes = np.array([[4, 6], [4, 2]])
    out = sample_back(tf.constant(maps), tf.constant(canvas_sizes), tf.constant(sizes),
                      (5, 7)).numpy()
    assert out.shape == (2, 5, 7)
    # Image 0, halved: output pixel i takes canvas pixel 2i + 1; beyond the
    # image the last canvas row/column of the image repeats.
    np.testing.assert_array_equal(out[0, :4, :6], maps[0, 1:8:2, 1:12:2])
    np.testing.assert_array_equal(out[0, 4, :6], maps[0, 7, 1:12:2])
    # Image 1, 6x3 -> 4x2: rows floor((2i+1) * 6 / 8) = 0, 2, 3, 5; columns
    # floor((2j+1) * 3 / 4) = 0, 2.
    np.testing.assert_array_equal(out[1, :4, :2], maps[1][np.ix_([0, 2, 3, 5], [0, 2])])


def test_predictor_resizing_matches_the_model_on_an_upsampled_image():
    """A 48x64 image, shorter side 96 -> exactly 2x; the same tiny Panoptic FPN
    run by hand on TF's 2x resize in the same canvas gives the maps at the odd
    pixels and boxes twice as large."""
    model = _small_panoptic_fpn()
    predictor = Predictor(model, shorter_side=96, max_longer_side=150)
    assert predictor.canvas == (160, 160)
    rng = np.random.default_rng(2)
    image = rng.uniform(0, 255, (1, 48, 64, 3)).astype(np.float32)
    padded = np.full((1, 64, 96, 3), 127.5, np.float32)  # a larger padded batch
    padded[:, :48, :64] = image
    resized = predictor(tf.constant(padded), tf.constant([[48, 64]]))

    upsampled = tf.image.resize(image, (96, 128), method="bilinear")
    canvas = tf.pad(upsampled, [[0, 0], [0, 64], [0, 32], [0, 0]], constant_values=127.5)
    plain = Predictor(model)(canvas, tf.constant([[96, 128]]))

    assert resized[common.PANOPTIC].shape == (1, 64, 96)
    panoptic = resized[common.PANOPTIC].numpy()[0, :48, :64]
    expected = plain[common.PANOPTIC].numpy()[0, 1:96:2, 1:128:2]
    assert np.mean(panoptic == expected) > 0.999
    assert len(np.unique(expected)) > 1
    valid = plain[common.INSTANCE_SCORES].numpy()[0] > 0
    assert valid.any()
    np.testing.assert_allclose(resized[common.BOXES].numpy()[0][valid],
                               plain[common.BOXES].numpy()[0][valid] / 2, atol=1e-2)


def test_resize_options_are_checked():
    model = _small_panoptic_fpn()
    with pytest.raises(ValueError, match="shorter_side <= max_longer_side"):
        Predictor(model, shorter_side=900, max_longer_side=800)
    with pytest.raises(ValueError, match="positive integers"):
        Predictor(model, shorter_side=800)
    with pytest.raises(ValueError, match="set one of them"):
        Predictor(model, shorter_side=64, max_longer_side=96, fit_size=(64, 96))


def test_predict_image_resizes_images_of_sizes_unknown_when_traced():
    """As in an exported signature: any size in, maps at that size and boxes
    inside the image out, from one canvas size."""
    predictor = Predictor(_small_panoptic_fpn(), shorter_side=64, max_longer_side=96)
    predict = tf.function(predictor.predict_image,
                          input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    rng = np.random.default_rng(3)
    for height, width in ((30, 50), (70, 20)):
        outputs = predict(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        assert outputs[common.PANOPTIC].shape == (height, width)
        boxes = outputs[common.BOXES].numpy()
        assert len(boxes) and boxes.min() >= 0
        assert boxes[:, 2].max() <= width and boxes[:, 3].max() <= height
