"""ONNX export: a tiny random-weight Panoptic-DeepLab converted through tf2onnx and run
with ONNX Runtime, against the Keras model's raw outputs and a SavedModel of the same
model (the same maps through the host post-processing); bad inputs and failures."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.tfrecord import decode_example
from deeplab2.export import export_saved_model, onnx as onnx_export, tflite_postprocess
from deeplab2.export.network import NetworkFileError
from deeplab2.export.runtimes import open_network
from deeplab2.inference import Predictor
from deeplab2.model import model_dir
from network_export_testing import INPUT_SIZE, tiny_model

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model():
    return tiny_model()


# Conversions take 10 to 25 s each on two busy cores: the tests using them are slow.
@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """(path of the ONNX file, a SavedModel of the model, reloaded)."""
    folder = tmp_path_factory.mktemp("onnx")
    path = str(folder / "model.onnx")
    onnx_export.export_onnx(model, path, INPUT_SIZE)
    export_saved_model(Predictor(model), str(folder / "saved_model"))
    return path, tf.saved_model.load(str(folder / "saved_model"))


@pytest.mark.slow
def test_raw_outputs_match_the_keras_model_at_any_batch_size(model, exported):
    network = open_network(exported[0])
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        images = rng.uniform(0, 255, (batch, *INPUT_SIZE, 3)).astype(np.float32)
        reference = model.head_outputs(images, training=False)  # stride 4
        outputs = network(images)
        for key, value in reference.items():
            value = value.numpy()
            error = np.abs(outputs[key] - value).max() / np.abs(value).max()
            assert error < 1e-4, (key, batch, error)


@pytest.mark.slow
def test_the_batch_is_dynamic_and_the_size_fixed(exported):
    proto = onnx.load(exported[0])
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value")
    assert [d.dim_value for d in dims[1:]] == [*INPUT_SIZE, 3]
    assert {op.domain or "ai.onnx": op.version for op in proto.opset_import}["ai.onnx"] == 18
    resizes = [node for node in proto.graph.node if node.op_type == "Resize"]
    assert resizes and all(node.input[2] == "" for node in resizes)  # sizes, not scales
    session = onnxruntime.InferenceSession(exported[0], providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="Got invalid dimensions for input: image"):
        session.run(None, {"image": np.zeros((1, 33, 65, 3), np.float32)})
    with pytest.raises(ValueError, match=r"images must be \[batch, 65, 97, 3\] \(the "
                       r"network's input size\), got \[1, 33, 65, 3\]"):
        open_network(exported[0])(np.zeros((1, 33, 65, 3), np.float32))


@pytest.mark.slow
def test_the_same_maps_as_the_saved_model(model, exported, tiny_records):
    network = open_network(exported[0])
    serve = exported[1].serve
    assert network.info.config == model.model_config
    records = tf.data.TFRecordDataset(f"{tiny_records}/val-00000-of-00001.tfrecord")
    for serialized in records:
        image = decode_example(serialized)[common.IMAGE].numpy()
        expected = {k: v.numpy() for k, v in serve(image).items()}
        raw = network(tflite_postprocess.prepare_image(image, network.info))
        predicted = tflite_postprocess.postprocess(raw, network.info, image.shape[:2])
        assert (expected[common.INSTANCE] > 0).any(), "the image should have instances"
        assert set(predicted) == set(expected)
        for key in expected:
            np.testing.assert_allclose(predicted[key], expected[key], atol=1e-5, err_msg=key)


def test_an_input_size_the_model_does_not_take_is_one_line(model, tmp_path):
    model_dir.write_model_config(str(tmp_path / "model"), model.model_config)
    target = tmp_path / "model.onnx"
    result = subprocess.run(
        [sys.executable, "scripts/export_model.py", f"--model_dir={tmp_path / 'model'}",
         "--format=onnx", "--input_size=64,96", f"--output_file={target}"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: input_size (64, 96) does not fit the panoptic_deeplab "
                           "model (the next size it takes: 65x97): "), result.stderr[-2000:]
    assert not target.exists()


def test_a_file_of_another_origin_is_refused_in_one_line(tmp_path):
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])], "other",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])])
    other = tmp_path / "other.onnx"
    onnx.save(onnx.helper.make_model(graph), str(other))
    with pytest.raises(NetworkFileError) as error:
        open_network(str(other))
    assert str(error.value) == (
        f"{other} is an ONNX model of another origin: it has no deeplab2.network_info "
        "metadata (export the model with scripts/export_model.py --format onnx).")


def test_a_failed_conversion_leaves_the_previous_file_alone(model, tmp_path, monkeypatch):
    import tf2onnx

    target = tmp_path / "model.onnx"
    target.write_bytes(b"an earlier export")

    def fail(*args, **kwargs):
        raise ValueError("tf2onnx could not convert\nwith details")

    monkeypatch.setattr(tf2onnx.convert, "from_function", fail)
    with pytest.raises(onnx_export.ConversionError,
                       match="^the panoptic_deeplab model does not convert to ONNX: "
                             "ValueError: tf2onnx could not convert$"):
        onnx_export.export_onnx(model, str(target), INPUT_SIZE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert target.read_bytes() == b"an earlier export"
