"""Export of a Panoptic FPN: a tiny random-weight model on the four-layer test backbone,
exported and reloaded in this process, serves images of any size as the in-process
Predictor predicts them, with the instances' boxes besides Panoptic-DeepLab's outputs;
its metadata describes it, and TF Serving's graph-mode loader serves the same."""
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import strided_conv_backbone
from top_down_export_checks import check_graph_mode_loader, check_metadata
from deeplab2 import common
from deeplab2.export import export_saved_model, serving_function
from deeplab2.export.saved_model import INSTANCE_KEYS, MAP_KEYS
from deeplab2.inference import Predictor
from deeplab2.model import build_model
from deeplab2.utils.graph_dtypes import ops_producing

# Narrow widths and few proposals (as tests/model/panoptic_fpn builds them); score
# thresholds 0 keep the weak detections of random weights as instances.
SMALL = dict(fpn_channels=16, semantic_channels=8, semantic_groups=4, box_fc_channels=32,
             mask_channels=8, rpn_pre_nms_top_k_test=100, rpn_post_nms_top_k=100,
             max_detections=20, detection_score_threshold=0.0)
# 50x70 is no multiple of 32 (padded to 64x96); at 64x96 levels P4..P6 have fewer
# than 100 anchors, so the exported model pads their top-k.
SIZES = ((50, 70), (64, 96))
MAX_SIDE = 128
# Name: (shape, dtype, what the signature's error says).
BAD_INPUTS = {
    "float": ((9, 9, 3), np.float32, "expected to be a uint8 tensor but is a float tensor"),
    "rank2": ((9, 9), np.uint8,
              "Shape of tensor image [9,9] is not compatible with expected shape [?,?,3]"),
    "channels4": ((9, 9, 4), np.uint8,
                  "Shape of tensor image [9,9,4] is not compatible with expected shape "
                  "[?,?,3]"),
    "too_large": ((9, MAX_SIDE + 1, 3), np.uint8,
                  f"image side exceeds the maximum of {MAX_SIDE} pixels"),
}


def _tiny_model():
    keras.utils.set_random_seed(0)
    return build_model("panoptic_fpn", "synthetic", crop_size=(64, 96),
                       backbone=strided_conv_backbone.register(),
                       postprocess={"score_threshold": 0.0}, **SMALL)


def _numpy(outputs):
    return {key: np.asarray(value) for key, value in outputs.items()}


@pytest.fixture(scope="module")
def predictor():
    return Predictor(_tiny_model())


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return {size: rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in SIZES}


# About a minute on two busy cores (tracing and saving the serving graph): the
# tests using it are slow.
@pytest.fixture(scope="module")
def export_dir(predictor, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("export") / "saved_model")
    export_saved_model(predictor, path, max_side=MAX_SIDE)
    return path


@pytest.fixture(scope="module")
def loaded(export_dir):
    """The SavedModel of `predictor` exported and reloaded."""
    return tf.saved_model.load(export_dir)


@pytest.fixture(scope="module")
def signature(loaded):
    return loaded.signatures["serving_default"]


@pytest.mark.slow
def test_the_signature_is_panoptic_deeplabs_plus_boxes(signature):
    assert set(signature.structured_outputs) == set(MAP_KEYS + INSTANCE_KEYS) | {common.BOXES}
    assert list(signature.structured_input_signature[1]) == ["image"]


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_the_reloaded_model_equals_the_in_process_predictor(predictor, images, signature,
                                                            size):
    served = _numpy(signature(image=tf.constant(images[size])))
    expected = _numpy(predictor.predict_image(tf.constant(images[size])))
    assert set(served) == set(expected)
    assert served[common.PANOPTIC].shape == size
    assert (expected[common.INSTANCE] > 0).any(), "the test image should have instances"
    for key in MAP_KEYS + (common.INSTANCE_CLASSES, common.INSTANCE_PANOPTIC_IDS):
        np.testing.assert_array_equal(served[key], expected[key], err_msg=key)
    np.testing.assert_allclose(served[common.INSTANCE_SCORES],
                               expected[common.INSTANCE_SCORES], atol=1e-5, rtol=0)
    np.testing.assert_allclose(served[common.BOXES], expected[common.BOXES], atol=1e-3,
                               rtol=0)


@pytest.mark.slow
def test_the_batch_signature_equals_the_image_signature(predictor, images, loaded):
    """Both test images in 64x96 slots (noise beyond the 50x70 one): each is
    padded to 64x96 on its own too, so the predictions are the same."""
    slots = np.random.default_rng(1).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    for slot, (height, width) in zip(slots, SIZES):
        slot[:height, :width] = images[(height, width)]
    served = _numpy(loaded.signatures["serving_batch"](
        images=tf.constant(slots), image_sizes=tf.constant(SIZES, tf.int32)))
    for i, (height, width) in enumerate(SIZES):
        expected = _numpy(predictor.predict_image(tf.constant(images[(height, width)])))
        assert (expected[common.INSTANCE] > 0).any()
        for key in MAP_KEYS + (common.INSTANCE_CLASSES, common.INSTANCE_PANOPTIC_IDS):
            np.testing.assert_array_equal(served[key][i, :height, :width] if key in MAP_KEYS
                                          else served[key][i], expected[key], err_msg=key)
        np.testing.assert_allclose(served[common.INSTANCE_SCORES][i],
                                   expected[common.INSTANCE_SCORES], atol=1e-5, rtol=0)
        np.testing.assert_allclose(served[common.BOXES][i], expected[common.BOXES],
                                   atol=1e-3, rtol=0)
    assert (served[common.SEMANTIC][0, 50:] == predictor.info.ignore_label).all()


@pytest.mark.parametrize("size", SIZES)
def test_boxes_lie_in_the_image_and_describe_the_kept_instances(predictor, images, size):
    outputs = _numpy(predictor.predict_image(tf.constant(images[size])))
    boxes, count = outputs[common.BOXES], outputs[common.INSTANCE].max()
    assert boxes.shape == (SMALL["max_detections"], 4)
    height, width = size
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= width).all() and (
        boxes[:, [1, 3]] <= height).all()
    assert (boxes[:count, 2:] > boxes[:count, :2]).all()
    assert (boxes[count:] == 0).all()
    for instance in range(1, count + 1):
        rows, columns = np.nonzero(outputs[common.INSTANCE] == instance)
        x0, y0, x1, y1 = boxes[instance - 1]
        # The pasted mask lies within its box, give or take the bilinear border pixel.
        assert x0 - 1 <= columns.min() and columns.max() < x1 + 1, instance
        assert y0 - 1 <= rows.min() and rows.max() < y1 + 1, instance


def test_fit_size_scales_the_boxes_back_to_the_image(predictor):
    model = predictor.model
    image = np.random.default_rng(1).integers(0, 256, (128, 96, 3), dtype=np.uint8)
    fitted = _numpy(Predictor(model, fit_size=(64, 64)).predict_image(tf.constant(image)))
    # fit_size shrinks 128x96 to 64x48 (align-corners bilinear), pads it to 64x64.
    shrunk = tf.compat.v1.image.resize_bilinear(tf.constant(image[None], tf.float32),
                                                (64, 48), align_corners=True)[0]
    plain = _numpy(Predictor(model).predict_image(shrunk))
    assert (plain[common.INSTANCE] > 0).any()
    np.testing.assert_array_equal(fitted[common.INSTANCE_PANOPTIC_IDS],
                                  plain[common.INSTANCE_PANOPTIC_IDS])
    np.testing.assert_allclose(fitted[common.BOXES], 2 * plain[common.BOXES], rtol=1e-6)
    assert fitted[common.PANOPTIC].shape == (128, 96)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_inputs_get_clear_errors(signature, name):
    shape, dtype, message = BAD_INPUTS[name]
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
        signature(image=tf.zeros(shape, dtype))


def test_the_serving_function_has_no_float64_and_strings_only_in_its_size_check(predictor):
    concrete = serving_function(predictor).get_concrete_function()
    assert ops_producing(concrete, [tf.float32])
    assert ops_producing(concrete, [tf.float64]) == []
    strings = ops_producing(concrete, [tf.string])
    assert strings and all("/check_image_side/" in op for op in strings), strings


@pytest.mark.slow
def test_the_metadata_and_tf_servings_loader_describe_and_serve_the_model(
        predictor, images, loaded, export_dir):
    check_metadata(loaded, export_dir, predictor, "panoptic_fpn")
    check_graph_mode_loader(loaded, export_dir, images[SIZES[0]])
