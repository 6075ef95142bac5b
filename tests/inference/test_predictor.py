"""Test-time augmentation and post-processing around a model."""
import numpy as np
import pytest
import tensorflow as tf
import keras

from deeplab2 import common
from deeplab2.common import SEMANTIC_PROBABILITIES
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.inference import Predictor
from deeplab2.model import build_model
from deeplab2.model.meta import get_meta_architecture, make_config

import strided_conv_backbone

INFO = get_dataset_info("synthetic")
FAMILY = get_meta_architecture("panoptic_deeplab")


def _config(output_stride=32, **postprocess):
    return make_config("panoptic_deeplab", INFO, output_stride=output_stride, crop_size=None,
                       pixel_mean=127.5, pixel_std=127.5, architecture={},
                       postprocess=postprocess)


def scaled_size(size, scale, output_stride):
    return FAMILY.scaled_size(size, scale, _config(output_stride))


class PixelModel(keras.Model):
    """Per-pixel outputs: logits and heatmap from the pixel's color, offset constant."""

    def __init__(self, offset=(3.0, 5.0), output_stride=32, **postprocess):
        super().__init__()
        self.model_config = _config(output_stride, **postprocess)
        self.offset = tf.constant(offset, tf.float32)
        self.mix = tf.constant(np.random.default_rng(0).normal(
            size=(3, INFO.num_classes)).astype(np.float32))

    def call(self, images, training=None):
        return self.head_outputs(images, training)

    def head_outputs(self, images, training=None):
        """Already at the input's size: the family's upsampling keeps them."""
        x = images / 255.0
        shape = tf.shape(images)
        return {
            common.SEMANTIC_LOGITS: tf.einsum("bhwc,ck->bhwk", x, self.mix) * 4,
            common.CENTER_HEATMAP: x[..., :1],
            common.OFFSET: tf.broadcast_to(self.offset, tf.concat([shape[:3], [2]], 0)),
        }


def _images(height=33, width=49, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.uniform(0, 255, (2, height, width, 3)).astype(np.float32))


def test_scale_one_without_flip_equals_plain_inference():
    model = PixelModel()
    images = _images()
    raw = Predictor(model, scales=(1.0,), flip=False).raw_predictions(images)
    outputs = model(images)
    np.testing.assert_array_equal(raw[SEMANTIC_PROBABILITIES],
                                  tf.nn.softmax(outputs[common.SEMANTIC_LOGITS]))
    np.testing.assert_array_equal(raw[common.CENTER_HEATMAP], outputs[common.CENTER_HEATMAP])
    np.testing.assert_array_equal(raw[common.OFFSET], outputs[common.OFFSET])


def test_flip_negates_the_x_offset_of_the_flipped_pass():
    raw = Predictor(PixelModel((3.0, 5.0)), flip=True).raw_predictions(_images())
    # A per-pixel model is flip-equivariant: probabilities and heatmap are unchanged,
    # and the constant offset (3, 5) averages with (3, -5).
    plain = Predictor(PixelModel((3.0, 5.0))).raw_predictions(_images())
    np.testing.assert_allclose(raw[SEMANTIC_PROBABILITIES], plain[SEMANTIC_PROBABILITIES],
                               atol=1e-6)
    np.testing.assert_allclose(raw[common.OFFSET][..., 0], 3.0, atol=1e-6)
    np.testing.assert_allclose(raw[common.OFFSET][..., 1], 0.0, atol=1e-6)


def test_scales_rescale_offsets_to_input_pixels():
    height, width = 33, 49
    raw = Predictor(PixelModel((2.0, 2.0), output_stride=16),
                    scales=(1.0, 0.5)).raw_predictions(_images(height, width))
    small = (scaled_size(height, 0.5, 16), scaled_size(width, 0.5, 16))
    assert small == (17, 33)
    ratio_y = (height - 1) / (small[0] - 1)
    ratio_x = (width - 1) / (small[1] - 1)
    np.testing.assert_allclose(raw[common.OFFSET][..., 0], (2 + 2 * ratio_y) / 2, rtol=1e-5)
    np.testing.assert_allclose(raw[common.OFFSET][..., 1], (2 + 2 * ratio_x) / 2, rtol=1e-5)
    assert raw[common.CENTER_HEATMAP].shape == (2, height, width, 1)


class InputRecorder(PixelModel):
    """PixelModel that keeps the last input it was given."""

    def head_outputs(self, images, training=None):
        self.seen = images
        return super().head_outputs(images, training)


@pytest.mark.parametrize("scale", [2.0, 4.0])
def test_scaled_pass_feeds_what_training_at_that_scale_sees(scale):
    """A model trained at scale s is fed, by a pass at scale s, the training
    resize of each image (deeplab2.data.augment) padded with the pad value:
    the same pixel grid, and no band blending the image with its padding."""
    from deeplab2.data import augment

    sizes = [(25, 40), (33, 49)]
    rng = np.random.default_rng(1)
    unpadded = [rng.uniform(0, 255, size + (3,)).astype(np.float32) for size in sizes]
    padded = np.full((2, 33, 49, 3), augment.IMAGE_PAD_VALUE, np.float32)
    for i, image in enumerate(unpadded):
        padded[i, :image.shape[0], :image.shape[1]] = image
    model = InputRecorder(output_stride=16)
    Predictor(model, scales=(scale,)).raw_predictions(
        tf.constant(padded), image_sizes=tf.constant(sizes))
    crop = (scaled_size(33, scale, 16), scaled_size(49, scale, 16))
    for i, image in enumerate(unpadded):
        trained, _ = augment.scale_and_crop(
            tf.constant(image), tf.zeros(image.shape[:2], tf.int32),
            tf.constant(scale, tf.float64), (0, 0), crop, ignore_id=255)
        np.testing.assert_allclose(model.seen[i], trained, atol=1e-3)


def test_scaled_size_keeps_the_k_stride_plus_one_form():
    assert scaled_size(1025, 0.5, 32) == 513
    assert scaled_size(1025, 1.75, 32) == 1793
    assert scaled_size(193, 1.25, 16) == 241


def test_call_returns_panoptic_predictions_with_scores():
    predictor = Predictor(PixelModel(keep_k_centers=5))
    predictions = predictor(_images())
    assert predictions[common.PANOPTIC].shape == (2, 33, 49)
    assert predictions[common.INSTANCE_SCORES].shape == (2, 5)
    # The family's visual outputs come along; the probabilities do not.
    assert common.CENTER_HEATMAP in predictions and SEMANTIC_PROBABILITIES not in predictions
    semantic = predictions[common.SEMANTIC].numpy()
    np.testing.assert_array_equal(
        semantic, np.argmax(predictor.raw_predictions(_images())[SEMANTIC_PROBABILITIES],
                            axis=-1))


SMALL = dict(semantic_aspp_channels=16, semantic_decoder_channels=16,
             semantic_head_channels=16, instance_aspp_channels=16,
             instance_decoder_channels=8, instance_head_channels=8)


@pytest.mark.parametrize("semantic_only", [False, True])
def test_plain_inference_equals_post_processing_the_full_resolution_outputs(semantic_only):
    """A plain pass post-processes the heads at stride 4, upsampling inside;
    it predicts what post-processing the model's full-resolution outputs
    (softmax probabilities) predicts."""
    keras.utils.set_random_seed(1)  # heatmaps with positive peaks
    model = build_model(dataset="synthetic", backbone=strided_conv_backbone.register(),
                        semantic_only=semantic_only, postprocess={"center_threshold": 0.0},
                        **SMALL)
    predictor = Predictor(model)
    images = _images(65, 97)
    plain = predictor(images)
    full = predictor.family.postprocess(predictor.raw_predictions(images), predictor.config,
                                        predictor.config.postprocess)
    for key in (common.SEMANTIC, common.INSTANCE, common.PANOPTIC, common.INSTANCE_CLASSES,
                common.INSTANCE_PANOPTIC_IDS):
        np.testing.assert_array_equal(plain[key], full[key], err_msg=key)
    np.testing.assert_allclose(plain[common.INSTANCE_SCORES], full[common.INSTANCE_SCORES],
                               rtol=1e-5)
    assert len(np.unique(plain[common.SEMANTIC])) > 1
    if not semantic_only:
        assert (plain[common.INSTANCE_SCORES].numpy() > 0).sum() > 1
        outputs = model(images)
        for key in predictor.family.visual_outputs:
            np.testing.assert_allclose(plain[key], outputs[key], rtol=0,
                                       atol=1e-6 * np.abs(outputs[key]).max())


def test_plain_inference_traced_with_unknown_sizes_as_an_export_is():
    """The upsampling inside post-processing, traced with unknown image sizes
    (the exported signatures): each size and each slot of a batch of two
    sizes predicts what eager inference on that image predicts."""
    keras.utils.set_random_seed(1)
    model = build_model(dataset="synthetic", backbone=strided_conv_backbone.register(),
                        postprocess={"center_threshold": 0.0}, **SMALL)
    predictor = Predictor(model)
    one = tf.function(predictor.predict_image,
                      input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    batch = tf.function(predictor.predict_batch, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.uint8), tf.TensorSpec([None, 2], tf.int32)])
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size + (3,), dtype=np.uint8) for size in ((65, 97),
                                                                            (40, 70))]
    slots = np.zeros((2, 65, 97, 3), np.uint8)
    for i, image in enumerate(images):
        slots[i, :image.shape[0], :image.shape[1]] = image
    batched = batch(tf.constant(slots), tf.constant([i.shape[:2] for i in images], tf.int32))
    for i, image in enumerate(images):
        expected = predictor.predict_image(tf.constant(image))
        traced = one(tf.constant(image))
        height, width = image.shape[:2]
        for key in (common.PANOPTIC, common.SEMANTIC, common.INSTANCE):
            assert traced[key].shape == (height, width)
            np.testing.assert_array_equal(traced[key], expected[key], err_msg=key)
            np.testing.assert_array_equal(batched[key][i, :height, :width], expected[key],
                                          err_msg=key)
        np.testing.assert_allclose(batched[common.INSTANCE_SCORES][i],
                                   expected[common.INSTANCE_SCORES], rtol=1e-5, atol=1e-7)
        assert (expected[common.INSTANCE_SCORES].numpy() > 0).any()


def test_postprocess_overrides_are_validated_by_the_family():
    predictor = Predictor(PixelModel(), postprocess={"nms_kernel": 3})
    assert predictor.config.postprocess["nms_kernel"] == 3
    assert predictor.model.model_config.postprocess["nms_kernel"] == 7
    with pytest.raises(ValueError, match="nms_kernel must be a positive odd integer"):
        Predictor(PixelModel(), postprocess={"nms_kernel": 4})
    with pytest.raises(ValueError, match=r"unknown panoptic_deeplab postprocess option"):
        Predictor(PixelModel(), postprocess={"kernel": 3})


def test_a_model_without_config_is_refused():
    with pytest.raises(ValueError, match="has no model_config"):
        Predictor(keras.Sequential([keras.layers.Conv2D(3, 1)]))


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="at least one scale"):
        Predictor(PixelModel(), scales=())
    with pytest.raises(ValueError, match=r"\[batch, height, width, 3\]"):
        Predictor(PixelModel()).raw_predictions(tf.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match=r"\[batch, height, width, 3\]"):
        Predictor(PixelModel())(tf.zeros((4, 4, 3)))
