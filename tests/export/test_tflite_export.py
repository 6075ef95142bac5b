"""TFLite export: a tiny random-weight Panoptic-DeepLab converted at float32, float16 and
int8 (calibrated on synthetic records), run with the LiteRT interpreter, against the
Keras model's raw outputs and the in-process predictions (which the SavedModel
reproduces exactly, tests/export/test_saved_model.py); bad inputs and failures."""
import os
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.records import RecordFileError
from deeplab2.data.tfrecord import decode_example
from deeplab2.export import calibration, tflite, tflite_postprocess
from deeplab2.export.network import NetworkFileError, NetworkInfo
from deeplab2.export.runtimes import open_network
from deeplab2.inference import Predictor
from deeplab2.model import build_model, model_dir
from network_export_testing import INPUT_SIZE, tiny_model

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
# Largest error relative to each output's largest magnitude (issue 14).
TOLERANCE = {"float32": 1e-4, "float16": 1e-2}


def _relative_errors(outputs, reference):
    return {key: float(np.abs(outputs[key] - reference[key]).max()
                       / np.abs(reference[key]).max()) for key in reference}


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def val_images(tiny_records):
    return [decode_example(s)[common.IMAGE].numpy()
            for s in tf.data.TFRecordDataset(f"{tiny_records}/val-00000-of-00001.tfrecord")]


# Conversions take 10 to 25 s each on two busy cores: the tests using them are slow.
@pytest.fixture(scope="module")
def exported(model, tiny_records, tmp_path_factory):
    """{quantization: path of the exported file}."""
    folder = tmp_path_factory.mktemp("tflite")
    images = calibration.calibration_images(f"{tiny_records}/train-*.tfrecord", model,
                                            INPUT_SIZE, steps=4)
    paths = {}
    for quantization in tflite.QUANTIZATIONS:
        paths[quantization] = str(folder / f"model_{quantization}.tflite")
        tflite.export_tflite(model, paths[quantization], INPUT_SIZE, quantization,
                             images if quantization == "int8" else None)
    return paths


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (2, *INPUT_SIZE, 3)).astype(np.float32)


def _network_reference(model, images):
    """The raw outputs the file should return: the heads' outputs at stride 4."""
    return {k: v.numpy() for k, v in model.head_outputs(images, training=False).items()}


def _operators(path):
    """[(op name, input tensor types, output tensor types, first output's name,
    whether it writes a graph output)] of a TFLite file's main graph."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if k.isupper()}
    types = {v: k for k, v in vars(schema.TensorType).items() if k.isupper()}
    with open(path, "rb") as f:
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(f.read()))
    graph = model.subgraphs[0]
    outputs = {int(i) for i in graph.outputs}
    result = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        result.append((op_names[max(code.builtinCode, code.deprecatedBuiltinCode)],
                       [types[graph.tensors[i].type] for i in op.inputs if i >= 0],
                       [types[graph.tensors[i].type] for i in op.outputs],
                       graph.tensors[op.outputs[0]].name.decode(),
                       bool({int(i) for i in op.outputs} & outputs)))
    return result


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["float32", "float16"])
def test_raw_outputs_match_the_keras_model(model, exported, images, quantization):
    network = open_network(exported[quantization])
    errors = _relative_errors(network(images), _network_reference(model, images))
    assert max(errors.values()) < TOLERANCE[quantization], errors


@pytest.mark.slow
def test_float16_stores_the_convolution_weights_in_half_and_the_rest_in_float32(exported):
    operators = _operators(exported["float16"])
    casts = [(inputs, out) for op, inputs, out, _, _ in operators if op == "DEQUANTIZE"]
    assert len(casts) > 40 and all(inputs == ["FLOAT16"] and out == ["FLOAT32"]
                                   for inputs, out in casts)
    # Convolutions compute in float32 and keep their biases in float32.
    convolutions = [inputs for op, inputs, _, _, _ in operators
                    if op in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert len(convolutions) > 40 and all(set(t) == {"FLOAT32"} for t in convolutions)
    # Every weight but the first convolution's comes from a float16 copy.
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    with open(exported["float16"], "rb") as f:
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(f.read()))
    graph = model.subgraphs[0]
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    cast = {int(op.outputs[0]) for op in graph.operators
            if codes[op.opcodeIndex] == schema.BuiltinOperator.DEQUANTIZE}
    weights = [int(op.inputs[1]) for op in graph.operators
               if codes[op.opcodeIndex] in (schema.BuiltinOperator.CONV_2D,
                                            schema.BuiltinOperator.DEPTHWISE_CONV_2D)]
    assert [i not in cast for i in weights] == [True] + [False] * (len(weights) - 1)
    assert model.buffers[graph.tensors[weights[0]].buffer].data is not None
    # The float32 weights are gone from the file: about half its size.
    ratio = os.path.getsize(exported["float16"]) / os.path.getsize(exported["float32"])
    assert 0.45 < ratio < 0.6, ratio


@pytest.mark.slow
def test_int8_runs_with_the_outputs_shapes(model, exported, images):
    network = open_network(exported["int8"])
    reference = _network_reference(model, images)
    outputs = network(images)
    assert {k: v.shape for k, v in outputs.items()} == {
        k: v.shape for k, v in reference.items()}
    assert all(np.isfinite(v).all() for v in outputs.values())
    assert network.info.quantization == "int8"


@pytest.mark.slow
def test_int8_keeps_the_family_float_layers_outputs_and_hard_swish_float(exported):
    operators = _operators(exported["int8"])
    int8 = [name for _, _, out, name, _ in operators if out == ["INT8"]]
    assert sum(bool(re.match(r"mobilenet_v3_small(_\d+)?/", name)) for name in int8) > 30
    assert sum(name.startswith(("semantic_decoder_1/", "semantic_head_1/"))
               for name in int8) > 5
    # The family's float layers: Panoptic-DeepLab's instance decoder and heads.
    assert [name for name in int8 if name.startswith(
        ("instance_decoder_1/", "center_head_1/", "offset_head_1/"))] == []
    # The heads' classifiers write the outputs from float inputs and weights.
    writers = [inputs for _, inputs, _, _, writes in operators if writes]
    assert len(writers) == 3 and all(set(t) == {"FLOAT32"} for t in writers), writers
    hard_swish = [(inputs, out) for op, inputs, out, _, _ in operators if op == "HARD_SWISH"]
    assert hard_swish and all(inputs == out == ["FLOAT32"] for inputs, out in hard_swish)


@pytest.mark.slow
def test_the_file_carries_the_model_config_and_input_size(model, exported):
    info = tflite_postprocess.read_network_info(exported["float32"])
    assert info.config == model.model_config
    assert info.input_size == INPUT_SIZE and info.file_format == "tflite"
    # The heads' outputs at stride 4 ((65 - 1) / 4 + 1 = 17 rows), upsampled on the host.
    assert info.outputs == {common.CENTER_HEATMAP: (17, 25, 1), common.OFFSET: (17, 25, 2),
                            common.SEMANTIC_LOGITS: (17, 25, 6)}


@pytest.mark.slow
def test_the_host_post_processing_gives_the_in_process_predictions(model, exported,
                                                                   val_images):
    network = open_network(exported["float32"])
    predictor = Predictor(model)
    for image in val_images:
        expected = {k: v.numpy() for k, v in predictor.predict_image(image).items()}
        predicted = network.predict_image(image)
        raw = network(tflite_postprocess.prepare_image(image, network.info))
        postprocessed = tflite_postprocess.postprocess(raw, network.info, image.shape[:2])
        assert (expected[common.INSTANCE] > 0).any(), "the image should have instances"
        for key in expected:
            np.testing.assert_allclose(predicted[key], expected[key], atol=1e-5, err_msg=key)
            np.testing.assert_array_equal(postprocessed[key], predicted[key], err_msg=key)


def test_outputs_at_the_input_size_of_version_1_files_post_process_alike(model, val_images):
    # Files of network info version 1 hold the model's outputs at the input
    # size; the host upsamples them to that same size, a copy.
    predictor = Predictor(model)
    info = NetworkInfo(model.model_config, INPUT_SIZE,
                              {key: (*INPUT_SIZE, channels) for key, channels in
                               ((common.SEMANTIC_LOGITS, 6), (common.CENTER_HEATMAP, 1),
                                (common.OFFSET, 2))}, "tflite")
    image = val_images[0]
    raw = {k: v.numpy() for k, v in model(tflite_postprocess.prepare_image(image, info),
                                          training=False).items()}
    predicted = tflite_postprocess.postprocess(raw, info, image.shape[:2])
    expected = predictor.predict_image(image)
    for key in expected:
        np.testing.assert_array_equal(predicted[key], expected[key].numpy(), err_msg=key)


def test_an_input_size_the_model_does_not_take_is_refused(model, tmp_path):
    with pytest.raises(ValueError) as error:
        tflite.export_tflite(model, str(tmp_path / "m.tflite"), (64, 96))
    assert str(error.value).startswith("input_size (64, 96) does not fit the "
                                       "panoptic_deeplab model (the next size it takes: "
                                       "65x97)")
    assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_a_calibration_pattern_matching_nothing_is_one_line(model, tmp_path):
    with pytest.raises(RecordFileError, match="calibration pattern .* matches no file"):
        calibration.calibration_images(str(tmp_path / "none-*"), model, INPUT_SIZE, 4)
    (tmp_path / "summary.json").write_text('{"dataset": "synthetic", "split": "train"}')
    images = calibration.calibration_images(str(tmp_path / "*.json"), model, INPUT_SIZE, 4)
    with pytest.raises(RecordFileError, match=r"^calibration pattern '.*\*\.json': corrupted "
                       r"record at 0 \(Is this even a TFRecord file\?\)$"):
        list(images())
    model_dir.write_model_config(str(tmp_path / "model"), model.model_config)
    target = tmp_path / "model_int8.tflite"
    result = subprocess.run(
        [sys.executable, "scripts/export_model.py", f"--model_dir={tmp_path / 'model'}",
         "--format=tflite", "--quantization=int8", f"--output_file={target}",
         f"--calibration_pattern={tmp_path / 'none-*'}"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (f"error: --calibration_pattern '{tmp_path / 'none-*'}' "
                         "matches no file."), result.stderr[-2000:]
    assert not target.exists()


def test_a_file_of_another_origin_is_refused_in_one_line(tmp_path):
    plain = tf.function(lambda x: {"y": x * 2.0},
                        input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [plain.get_concrete_function()], tf.Module())
    other = tmp_path / "other.tflite"
    other.write_bytes(converter.convert())
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a model at all")
    for path, message in ((other, "is a TFLite model of another origin: it has no "
                                  "deeplab2.network_info metadata"),
                          (garbage, "is neither a TFLite nor an ONNX file")):
        with pytest.raises(NetworkFileError) as error:
            open_network(str(path))
        assert f"{path} {message}" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.slow
def test_outputs_of_another_model_are_refused_by_the_post_processing(exported):
    info = tflite_postprocess.read_network_info(exported["float32"])
    raw = {common.SEMANTIC_LOGITS: np.zeros((1, 17, 25, 19), np.float32),
           common.CENTER_HEATMAP: np.zeros((1, 17, 25, 1), np.float32),
           common.OFFSET: np.zeros((1, 17, 25, 2), np.float32)}
    with pytest.raises(NetworkFileError, match=r"output semantic_logits has shape "
                       r"\[1, 17, 25, 19\], the exported panoptic_deeplab network's is "
                       r"\[batch, 17, 25, 6\]: a file of another model\?"):
        tflite_postprocess.postprocess(raw, info, (64, 96))
    with pytest.raises(NetworkFileError, match="are not those of the exported"):
        tflite_postprocess.postprocess({"logits": raw[common.SEMANTIC_LOGITS]}, info,
                                       (64, 96))


@pytest.mark.slow
def test_panoptic_fpn_is_refused_naming_the_ops_litert_cannot_run(tmp_path):
    import strided_conv_backbone

    keras.utils.set_random_seed(0)
    model = build_model("panoptic_fpn", "synthetic", crop_size=(64, 96),
                        backbone=strided_conv_backbone.register(), fpn_channels=16,
                        semantic_channels=8, semantic_groups=4, box_fc_channels=32,
                        mask_channels=8, rpn_pre_nms_top_k_test=100, rpn_post_nms_top_k=100,
                        max_detections=20)
    with pytest.raises(tflite.ConversionError) as error:
        tflite.export_tflite(model, str(tmp_path / "fpn.tflite"), (64, 96))
    assert str(error.value).startswith(
        "the panoptic_fpn model does not convert to TFLite: its ops CropAndResize, "
        "DynamicPartition, DynamicStitch are no TFLite builtins, and the LiteRT interpreter "
        "has no TensorFlow (Select) kernels"), str(error.value)
    assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_conversion_leaves_the_previous_file_alone(model, tmp_path, monkeypatch):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"an earlier export")

    def fail(self):
        raise RuntimeError("converter crashed\nwith details")

    monkeypatch.setattr(tf.lite.TFLiteConverter, "convert", fail)
    with pytest.raises(tflite.ConversionError,
                       match="^the panoptic_deeplab model does not convert to TFLite: "
                             "RuntimeError: converter crashed$"):
        tflite.export_tflite(model, str(target), INPUT_SIZE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]
    assert target.read_bytes() == b"an earlier export"


def test_a_failed_write_and_a_killed_one_leave_nothing(tmp_path, monkeypatch, capsys):
    from deeplab2.export import files

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".model.tflite.incomplete-{dead.pid}-x1"
    stale.mkdir()
    (stale / "model.tflite").write_bytes(b"half")
    target = tmp_path / "model.tflite"

    def fail(*args):
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(files.os, "chmod", fail)
        with pytest.raises(OSError, match="disk full"):
            files.write_file_atomically(str(target), b"complete")
    assert list(tmp_path.iterdir()) == []
    assert f"an interrupted run left in {tmp_path}: {stale.name}" in capsys.readouterr().out
    files.write_file_atomically(str(target), b"complete")
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]
    assert target.read_bytes() == b"complete"


def test_bfloat16_is_refused_for_a_network_file_in_one_line(model, tmp_path):
    model_dir.write_model_config(str(tmp_path / "model"), model.model_config)
    target = tmp_path / "model.tflite"
    result = subprocess.run(
        [sys.executable, "scripts/export_model.py", f"--model_dir={tmp_path / 'model'}",
         "--format=tflite", f"--output_file={target}", "--compute_dtype=bfloat16"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --compute_dtype applies to the SavedModel only; a tflite file's precision "
        "is its --quantization."), result.stderr[-2000:]
    assert not target.exists()
