"""scripts/benchmark.py export_parity: each file format's raw outputs, maps and PQ against
the model's on a split, for a tiny model directory and the tiny synthetic records."""
import json
import pathlib
import sys

import numpy as np
import pytest

from deeplab2.benchmarks import export_parity
from deeplab2.model import model_dir

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "export"))
from network_export_testing import tiny_model  # noqa: E402

FORMATS = ["tflite_float32", "tflite_float16", "onnx"]


@pytest.mark.slow
def test_float_formats_reproduce_the_model_on_the_split(tiny_records, tmp_path, capsys):
    model = tiny_model()
    model(np.zeros((1, 65, 97, 3), np.float32))
    model_dir.write_model_dir(model, str(tmp_path / "model"))
    assert export_parity.main([
        "--model_dir", str(tmp_path / "model"),
        "--pattern", f"{tiny_records}/val-*.tfrecord",
        "--calibration_pattern", f"{tiny_records}/train-*.tfrecord",
        "--formats", *FORMATS]) == 0
    # The last line: restoring the model directory prints what it loaded before.
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["images"], report["input_size"]) == (2, [65, 97])
    results = report["formats"]
    assert list(results) == FORMATS
    for name in ("tflite_float32", "onnx"):
        result = results[name]
        assert result["raw_error"] < 1e-4 and result["raw_error_per_image"] < 1e-4, name
        assert result["same_maps"] == 2 and result["pq_drop"] == 0, name
        assert result["pq"] == report["model"]["pq"], name
        # float32 weights: 4 bytes per parameter, and little else.
        assert 0.9 < result["bytes"] / (4 * model.count_params()) < 1.05, name
    half = results["tflite_float16"]
    assert 1e-6 < half["raw_error"] < 1e-2
    assert half["raw_error"] <= half["raw_error_per_image"]
    assert half["bytes"] < 0.6 * results["tflite_float32"]["bytes"]


def test_a_model_without_training_crop_needs_an_input_size(tmp_path):
    from deeplab2.model import build_model

    model = build_model(dataset="synthetic", backbone="mobilenet_v3_small")
    model(np.zeros((1, 33, 33, 3), np.float32))
    model_dir.write_model_dir(model, str(tmp_path / "model"))
    assert model.model_config.crop_size is None
    with pytest.raises(SystemExit, match="--input_size is required"):
        export_parity.main(["--model_dir", str(tmp_path / "model"), "--pattern", "x",
                            "--calibration_pattern", "y"])


def test_int8_needs_a_calibration_pattern_and_max_images_a_positive_count(capsys):
    with pytest.raises(SystemExit):
        export_parity.main(["--model_dir", "m", "--pattern", "p"])
    assert "--calibration_pattern is required to calibrate tflite_int8" in (
        capsys.readouterr().err)
    with pytest.raises(SystemExit):
        export_parity.main(["--model_dir", "m", "--pattern", "p", "--formats", "onnx",
                            "--max_images", "0"])
    assert "--max_images must be >= 1, got 0" in capsys.readouterr().err
