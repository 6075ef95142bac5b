"""Export of UPSNet and Seamless: a tiny random-weight model of each on the
four-layer test backbone, exported and reloaded in this process, serves images of
any size (and batches) as the in-process Predictor predicts them, with Panoptic
FPN's signature, describes itself (metadata) and serves the same through TF
Serving's graph-mode loader; its serving graph holds no float64."""
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

# Narrow widths and few proposals; score thresholds 0 keep the weak detections
# of random weights. Seamless's box head keeps 128 channels for its GroupNorm.
SHARED = dict(fpn_channels=16, mask_channels=8, rpn_pre_nms_top_k_test=100,
              rpn_post_nms_top_k=100, max_detections=20, detection_score_threshold=0.0)
SMALL = {"upsnet": dict(SHARED, semantic_dcn_channels=[8], box_fc_channels=32),
         "seamless": dict(SHARED, semantic_channels=8, box_fc_channels=128)}
SIZES = ((50, 70), (64, 96))


@pytest.fixture(scope="module", params=sorted(SMALL))
def predictor(request):
    keras.utils.set_random_seed(0)
    model = build_model(request.param, "synthetic", crop_size=(64, 96),
                        backbone=strided_conv_backbone.register(),
                        postprocess={"score_threshold": 0.0, "overlap_threshold": 1.0},
                        **SMALL[request.param])
    # Mask logits far above the semantic logits: the kept detections win their boxes.
    model.mask_head.predictor.bias.assign(tf.fill(model.mask_head.predictor.bias.shape, 5.0))
    return Predictor(model)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return {size: rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in SIZES}


@pytest.fixture(scope="module")
def export_dir(predictor, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("export") / "saved_model")
    export_saved_model(predictor, path, max_side=128)
    return path


@pytest.fixture(scope="module")
def loaded(export_dir):
    return tf.saved_model.load(export_dir)


def _numpy(outputs):
    return {key: np.asarray(value) for key, value in outputs.items()}


def _assert_same(served, expected):
    for key in MAP_KEYS + (common.INSTANCE_CLASSES, common.INSTANCE_PANOPTIC_IDS):
        np.testing.assert_array_equal(served[key], expected[key], err_msg=key)
    np.testing.assert_allclose(served[common.INSTANCE_SCORES],
                               expected[common.INSTANCE_SCORES], atol=1e-5, rtol=0)
    np.testing.assert_allclose(served[common.BOXES], expected[common.BOXES], atol=1e-3, rtol=0)


@pytest.mark.slow
def test_the_reloaded_model_serves_images_and_batches_as_the_predictor(predictor, images,
                                                                      loaded):
    signature = loaded.signatures["serving_default"]
    assert set(signature.structured_outputs) == set(MAP_KEYS + INSTANCE_KEYS) | {common.BOXES}
    expected = {size: _numpy(predictor.predict_image(tf.constant(images[size])))
                for size in SIZES}
    for size in SIZES:
        assert (expected[size][common.INSTANCE] > 0).any(), "the test image should have instances"
        _assert_same(_numpy(signature(image=tf.constant(images[size]))), expected[size])
    slots = np.zeros((2, 64, 96, 3), np.uint8)
    for slot, (height, width) in zip(slots, SIZES):
        slot[:height, :width] = images[(height, width)]
    served = _numpy(loaded.signatures["serving_batch"](
        images=tf.constant(slots), image_sizes=tf.constant(SIZES, tf.int32)))
    for i, (height, width) in enumerate(SIZES):
        _assert_same({key: value[i, :height, :width] if key in MAP_KEYS else value[i]
                      for key, value in served.items()}, expected[(height, width)])


def test_the_serving_function_has_no_float64(predictor):
    concrete = serving_function(predictor).get_concrete_function()
    assert ops_producing(concrete, [tf.float64]) == []


@pytest.mark.slow
def test_the_metadata_and_tf_servings_loader_describe_and_serve_the_model(
        request, predictor, images, loaded, export_dir):
    check_metadata(loaded, export_dir, predictor, request.node.callspec.params["predictor"])
    check_graph_mode_loader(loaded, export_dir, images[SIZES[0]])
