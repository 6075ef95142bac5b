"""Multiply-add and parameter counting from the traced graph."""
import importlib.util
import json
import pathlib

import keras
import pytest
from keras.src.backend.common import global_state

from deeplab2.model import profile

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


def test_profile_model_script_prints_json(capsys):
    spec = importlib.util.spec_from_file_location("profile_model", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--backbone", "mobilenet_v3_small", "--input_size", "65",
                 "65", "--num_classes", "3", "--json"])
    result = json.loads(capsys.readouterr().out)
    expected = profile.profile_model((65, 65), backbone="mobilenet_v3_small",
                                     num_classes=3, output_stride=32)
    assert result["params"] == expected["params"] > 0
    assert result["madds"] == expected["madds"] > 0
    script.main(["--backbone", "mobilenet_v3_small", "--input_size", "65",
                 "65", "--semantic_only"])
    assert "multiply-adds" in capsys.readouterr().out
