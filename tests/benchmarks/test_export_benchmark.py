"""scripts/benchmark.py export: the network in TensorFlow, the SavedModel, TFLite
(float32, int8) and ONNX files, and the host post-processing, timed in one run
with their file sizes."""
import json

import pytest

from deeplab2.benchmarks import export

FORMATS = ["tf_network", "saved_model", "tflite_float32", "tflite_int8", "onnx",
           "host_postprocess"]


@pytest.mark.slow
def test_export_benchmark_of_tflite_and_onnx_files_against_the_tf_network(capsys):
    assert export.main(["--dataset", "synthetic", "--input_size", "33", "65", "--formats",
                        *FORMATS, "--warmup", "0", "--repeats", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["benchmark"], report["dataset"], report["input_size"]) == (
        "export", "synthetic", [33, 65])
    results = report["formats"]
    assert list(results) == FORMATS
    for name, result in results.items():
        assert 0 < result["min_ms"] <= result["median_ms"], name
    baseline = results["tf_network"]["median_ms"]
    for name in ("tflite_float32", "onnx"):
        # The network's float32 weights, 4 bytes per parameter, and little else.
        assert 0.9 < results[name]["bytes"] / (4 * report["params"]) < 1.05, name
        assert results[name]["speedup_vs_tf_network"] == pytest.approx(
            baseline / results[name]["median_ms"], abs=0.01)
    assert "speedup_vs_tf_network" not in results["host_postprocess"]
    saved_model = results["saved_model"]
    assert saved_model["bytes"] > 4 * report["params"]  # float32 weights and the graphs
    for name in ("tflite_float32", "tflite_int8", "onnx"):
        assert results[name]["speedup_vs_saved_model"] == pytest.approx(
            saved_model["median_ms"] / results[name]["median_ms"], abs=0.01)
        assert results[name]["size_vs_saved_model"] == pytest.approx(
            results[name]["bytes"] / saved_model["bytes"], abs=1e-3)
    # int8 weights: one byte per quantized parameter; the instance branch stays float.
    assert 0.25 < results["tflite_int8"]["bytes"] / results["tflite_float32"]["bytes"] < 0.5


def test_an_input_size_the_model_does_not_take_is_refused():
    with pytest.raises(ValueError, match=r"input_size \(33, 64\) does not fit"):
        export.main(["--dataset", "synthetic", "--input_size", "33", "64",
                     "--formats", "tf_network"])
