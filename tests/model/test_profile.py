"""Multiply-add and parameter counting from the traced graph."""
import importlib.util
import json
import pathlib

import keras
import numpy as np
import pytest
from keras.src.backend.common import global_state

from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.model import build_model, profile
from deeplab2.model.layers.deformable_conv import DeformableConv2D
from deeplab2.model.panoptic_deeplab import family

SCRIPT = (pathlib.Path(__file__).resolve().parents[2] / "scripts"
          / "profile_model.py")


def _single_layer_model(layer, input_shape):
    inputs = keras.Input(input_shape, batch_size=1)
    return keras.Model(inputs, layer(inputs))


@pytest.mark.parametrize("layer, input_shape, expected", [
    # H_out * W_out * K_h * K_w * C_in / groups * C_out.
    (keras.layers.Conv2D(8, 3, padding="same"), (10, 12, 4),
     10 * 12 * 3 * 3 * 4 * 8),
    (keras.layers.Conv2D(8, 3, strides=2, padding="valid"), (11, 11, 4),
     5 * 5 * 3 * 3 * 4 * 8),
    (keras.layers.Conv2D(8, 1, groups=2), (6, 6, 4), 6 * 6 * 2 * 8),
    # Depthwise: H_out * W_out * K * K * C.
    (keras.layers.DepthwiseConv2D(5, padding="same"), (9, 9, 6),
     9 * 9 * 5 * 5 * 6),
    (keras.layers.Dense(7), (3, 5), 3 * 5 * 7),
    # Batch norm, pooling and resizing are not counted.
    (keras.layers.BatchNormalization(), (4, 4, 3), 0),
    (keras.layers.AveragePooling2D(2), (4, 4, 3), 0),
    (keras.layers.UpSampling2D(2, interpolation="bilinear"), (4, 4, 3), 0),
])
def test_madds_of_single_layers(layer, input_shape, expected):
    model = _single_layer_model(layer, input_shape)
    assert profile.count_madds(model, input_shape) == expected


@pytest.mark.parametrize("all_taps_max_elements", [2 ** 21, 0])
def test_deformable_conv_counts_as_the_convolution_it_generalizes(all_taps_max_elements):
    """Its 9 taps (all at once on small maps, one by one on large ones) plus
    its 18-channel offset convolution."""
    layer = DeformableConv2D(8, all_taps_max_elements=all_taps_max_elements)
    shape = (10, 12, 4)
    assert profile.count_madds(_single_layer_model(layer, shape), shape) == (
        10 * 12 * 9 * 4 * 8 + 10 * 12 * 9 * 4 * 18)


def test_atrous_convs_counted_on_the_space_to_batch_grid():
    # Rate 6 on 41x41: TF runs it on 6 * ceil(41 / 6) = 42 positions per axis.
    conv = keras.layers.Conv2D(4, 3, dilation_rate=6, padding="same")
    depthwise = keras.layers.DepthwiseConv2D(3, dilation_rate=6,
                                             padding="same")
    shape = (41, 41, 8)
    assert profile.count_madds(_single_layer_model(conv, shape),
                               shape) == 42 * 42 * 9 * 8 * 4
    assert profile.count_madds(_single_layer_model(depthwise, shape),
                               shape) == 42 * 42 * 9 * 8


def test_params_trainable_and_all():
    model = _single_layer_model(keras.layers.BatchNormalization(), (4, 4, 3))
    assert profile.count_params(model) == 12
    assert profile.count_params(model, trainable_only=True) == 6


def test_keras_resnet50_matches_published_count():
    # He et al. report 3.8 G multiply-adds for ResNet-50 at 224x224; the
    # keras layout (stride on the first 1x1) has 3.86 G plus the 2 M of the
    # classifier.
    built = []

    def build():
        built.append(keras.applications.ResNet50(weights=None))
        return built[0]

    result = profile.profile_builder(build, (224, 224, 3))
    assert result["params_all"] == 25_636_712
    assert result["params"] == 25_583_592
    assert abs(result["madds"] / 1e9 - 3.86) < 0.02
    # Its weights were never allocated nor left for Keras to initialize.
    pending = global_state.get_global_attribute("uninitialized_variables")
    ours = {id(v) for v in built[0].variables}
    assert not ours & {id(v) for v in pending or []}


class TwoConvs(keras.Model):
    """A subclassed model without a build method: Keras builds it by running it."""

    def __init__(self):
        super().__init__()
        self.first = keras.layers.Conv2D(4, 3, padding="same")
        self.second = keras.layers.Conv2D(2, 1)

    def call(self, inputs, training=None):
        return self.second(self.first(inputs))


def test_counting_an_unbuilt_model_builds_it_with_real_weights():
    model = TwoConvs()
    assert profile.count_madds(model, (5, 6, 3)) == 5 * 6 * (9 * 3 * 4 + 4 * 2)
    # Outside a stateless scope the count leaves a working model: its weights
    # are allocated and it computes what its layers compute.
    assert profile.count_params(model) == 9 * 3 * 4 + 4 + 4 * 2 + 2
    images = np.random.default_rng(0).normal(size=(1, 5, 6, 3)).astype("float32")
    np.testing.assert_allclose(model(images), model.second(model.first(images)))
    assert np.abs(model.first.kernel.numpy()).sum() > 0  # initialized, not the zeros read


class PoolingBackbone(keras.layers.Layer):
    """A backbone without weights nor multiply-adds: the image average-pooled to
    strides 4 ("res2"), 8 ("res3") and 32 ("final"), 3 channels each."""

    def call(self, inputs, training=None):
        def pool(stride):
            return keras.ops.average_pool(inputs, stride, stride, padding="same")
        return {"res2": pool(4), "res3": pool(8), "final": pool(32)}


@pytest.fixture
def pooling_backbone(monkeypatch):
    """Makes "pooling" a backbone name of the Panoptic-DeepLab family."""
    names = family.backbones.backbone_names()
    monkeypatch.setattr(family.backbones, "get_backbone",
                        lambda name, output_stride, **kwargs: PoolingBackbone())
    monkeypatch.setattr(family.backbones, "backbone_names", lambda: names + ["pooling"])


# Distinct widths, so that a width used in the wrong place changes the count.
WIDTHS = dict(semantic_aspp_channels=8, semantic_decoder_channels=6,
              semantic_low_level_channels=(5, 4), semantic_head_channels=7,
              instance_aspp_channels=4, instance_decoder_channels=3,
              instance_low_level_channels=(2, 3), instance_head_channels=5)


def _hand_count(num_classes, semantic_only=False):
    """Multiply-adds of Panoptic-DeepLab (separable convs, output stride 32,
    ASPP rates 3, 6, 9) on PoolingBackbone at 65x65, layer by layer.

    Features: 3x3 (final), 9x9 (res3), 17x17 (res2), 3 channels each.
    """
    channels = 3
    final, res3, res2 = 3 * 3, 9 * 9, 17 * 17

    def separable(positions, kernel, cin, cout, depthwise_positions=None):
        return ((depthwise_positions or positions) * kernel * kernel * cin
                + positions * cin * cout)

    def aspp(filters):
        # Rate r runs on the space-to-batch grid: r * ceil(3 / r) per axis.
        atrous = sum(separable(final, 3, channels, filters,
                               depthwise_positions=(rate * -(-3 // rate)) ** 2)
                     for rate in (3, 6, 9))
        return (final * channels * filters  # 1x1 branch
                + atrous
                + channels * filters  # image pooling: 1x1 conv on one position
                + final * 5 * filters * filters)  # projection of the 5 branches

    def decoder(aspp_filters, filters, low_level):
        return (res3 * channels * low_level[0]
                + separable(res3, 5, aspp_filters + low_level[0], filters)
                + res2 * channels * low_level[1]
                + separable(res2, 5, filters + low_level[1], filters))

    def head(decoder_filters, filters, outputs):
        return separable(res2, 5, decoder_filters, filters) + res2 * filters * outputs

    total = aspp(8) + decoder(8, 6, (5, 4)) + head(6, 7, num_classes)
    if not semantic_only:
        total += aspp(4) + decoder(4, 3, (2, 3)) + head(3, 5, 1) + head(3, 5, 2)
    return total


def _run_script(capsys, *args):
    spec = importlib.util.spec_from_file_location("profile_model", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    options = [f"--option={key}={json.dumps(value)}" for key, value in WIDTHS.items()]
    script.main(["--backbone", "pooling", "--input_size", "65", "65", *options, *args])
    return capsys.readouterr().out


def test_profile_model_script_matches_a_hand_count(pooling_backbone, capsys):
    result = json.loads(_run_script(capsys, "--num_classes", "3", "--json"))
    assert result["madds"] == _hand_count(num_classes=3)
    # Parameters: those of the model build_model builds, weights allocated.
    model = build_model(dataset=profile.placeholder_dataset(3), backbone="pooling",
                        **WIDTHS)
    assert result["params_all"] == model.count_params()
    assert result["params"] == sum(w.numpy().size for w in model.trainable_weights)
    assert result["params"] < result["params_all"]  # BN statistics are not trainable

    semantic_only = json.loads(_run_script(capsys, "--num_classes", "3", "--semantic_only",
                                           "--json"))
    assert semantic_only["madds"] == _hand_count(num_classes=3, semantic_only=True)
    line = _run_script(capsys, "--num_classes", "3")
    assert line == "panoptic_deeplab pooling OS32 65x65: 0.0 M params, 0.0 B multiply-adds\n"


def test_profile_model_counts_the_datasets_classes(pooling_backbone):
    classes = get_dataset_info("coco").num_classes
    result = profile.profile_model((65, 65), dataset="coco", backbone="pooling", **WIDTHS)
    assert result["madds"] == _hand_count(num_classes=classes)


@pytest.mark.parametrize("labels", [{}, {"dataset": "coco", "num_classes": 3}])
def test_profile_model_takes_exactly_one_label_space(labels):
    with pytest.raises(ValueError, match="exactly one of dataset and num_classes"):
        profile.profile_model((65, 65), backbone="mobilenet_v3_small", **labels)
