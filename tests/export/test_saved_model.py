"""Export: a tiny random-weight checkpoint through export_model.py, reloaded in a fresh process."""
import json
import os
import pathlib
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.export import restore_predictor
from deeplab2.export.saved_model import INSTANCE_KEYS, MAP_KEYS, PAD_VALUE, padded_size
from deeplab2.inference import build_predictor
from deeplab2.training.experiment import Experiment
from deeplab2.training.config import parse_gin

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY_GIN = PROJECT_ROOT / "tests" / "training" / "tiny.gin"
# Test-time augmentation with a non-unit scale and flips exercises the dynamic sizes;
# threshold 0 gives the weak heatmap of random weights centers.
BINDINGS = ["build_predictor.scales = (0.75, 1.0)", "build_predictor.flip = True",
            "build_predictor.nms_kernel = 3", "build_predictor.center_threshold = 0.0"]
SIZES = ((65, 97), (70, 45))  # the second is not of the k * 32 + 1 form
BAD_INPUTS = {"float": ((9, 9, 3), np.float32), "rank2": ((9, 9), np.uint8),
              "channels4": ((9, 9, 4), np.uint8)}

# Runs in a fresh process: loads the SavedModel, predicts and probes bad inputs.
_RUN_EXPORTED = """
import json, sys
import numpy as np
import tensorflow as tf

export_dir, images_path, out_path, bad_inputs = sys.argv[1:]
loaded = tf.saved_model.load(export_dir)
images = np.load(images_path)
outputs = {}
for name in images.files:
    for key, value in loaded.serve(images[name]).items():
        outputs[f"{name}/{key}"] = value.numpy()
# The signature (as served by TF Serving) runs the same graph.
signature = loaded.signatures["serving_default"]
last = images.files[-1]
for key, value in signature(image=tf.constant(images[last])).items():
    assert np.array_equal(value.numpy(), outputs[f"{last}/{key}"]), key
np.savez(out_path, **outputs)
errors = {}
for name, (shape, dtype) in json.loads(bad_inputs).items():
    bad = tf.zeros(shape, dtype)
    for entry, call in (("serve", loaded.serve),
                        ("signature", lambda x: signature(image=x))):
        try:
            call(bad)
            errors[f"{name}/{entry}"] = "no error"
        except Exception as error:
            errors[f"{name}/{entry}"] = f"{type(error).__name__}: {error}"
print(json.dumps(errors))
"""


def _run(command):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(in-process predictor, test images, outputs of the reloaded SavedModel,
    errors of its entry points on bad inputs)."""
    tmp_path = tmp_path_factory.mktemp("export")
    parse_gin([str(TINY_GIN)], BINDINGS)
    try:
        experiment = Experiment(str(tmp_path))
        experiment.setup_runtime()  # seeds the random weights
        model = experiment.build_model()
        predictor = build_predictor(model, experiment.info)
    finally:
        gin.clear_config()
    checkpoint = tf.train.Checkpoint(model=model, step=tf.Variable(7, dtype=tf.int64))
    tf.train.CheckpointManager(checkpoint, str(tmp_path / "model"), max_to_keep=1).save()
    export_dir = tmp_path / "saved_model"
    command = [sys.executable, "scripts/export_model.py", f"--gin_config={TINY_GIN}",
               f"--checkpoint={tmp_path / 'model'}", f"--output_dir={export_dir}"]
    _run(command + [f"--gin_bindings={b}" for b in BINDINGS])
    rng = np.random.default_rng(0)
    images = {f"{h}x{w}": rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES}
    np.savez(tmp_path / "images.npz", **images)
    bad = {name: (shape, np.dtype(dtype).name) for name, (shape, dtype) in BAD_INPUTS.items()}
    stdout = _run([sys.executable, "-c", _RUN_EXPORTED, str(export_dir),
                   str(tmp_path / "images.npz"), str(tmp_path / "out.npz"), json.dumps(bad)])
    outputs = np.load(tmp_path / "out.npz")
    return predictor, images, outputs, json.loads(stdout.strip().splitlines()[-1])


def _reference(predictor, image):
    """Predictor on the image padded to k * stride + 1 with 127.5, cropped back."""
    height, width, _ = image.shape
    stride = predictor.output_stride
    padded = np.pad(image.astype(np.float32),
                    [(0, padded_size(height, stride) - height),
                     (0, padded_size(width, stride) - width), (0, 0)],
                    constant_values=PAD_VALUE)
    predictions = predictor(tf.constant(padded[None]))
    result = {key: predictions[key][0, :height, :width].numpy() for key in MAP_KEYS}
    result.update({key: predictions[key][0].numpy() for key in INSTANCE_KEYS})
    return result


def test_padded_size_is_the_next_crop_size():
    assert [padded_size(s, 32) for s in (1, 33, 34, 65, 70)] == [33, 33, 65, 65, 97]
    assert int(padded_size(tf.constant(70), 32)) == 97


@pytest.mark.parametrize("size", SIZES)
def test_reloaded_model_equals_the_in_process_pipeline(exported, size):
    predictor, images, outputs, _ = exported
    name = f"{size[0]}x{size[1]}"
    expected = _reference(predictor, images[name])
    assert outputs[f"{name}/{common.PANOPTIC}"].shape == size
    assert (expected[common.INSTANCE] > 0).any(), "the test image should have instances"
    for key in MAP_KEYS + (common.INSTANCE_CLASSES, common.INSTANCE_PANOPTIC_IDS):
        np.testing.assert_array_equal(outputs[f"{name}/{key}"], expected[key], err_msg=key)
    np.testing.assert_allclose(outputs[f"{name}/{common.INSTANCE_SCORES}"],
                               expected[common.INSTANCE_SCORES], atol=1e-5, rtol=0)


def test_bad_inputs_get_clear_errors(exported):
    errors = exported[3]
    # The restored function names the expected input; the signature checks at run time.
    expected = "TensorSpec(shape=(None, None, 3), dtype=tf.uint8, name='image')"
    for name in BAD_INPUTS:
        assert errors[f"{name}/serve"].startswith("TypeError"), errors[f"{name}/serve"]
        assert expected in errors[f"{name}/serve"], errors[f"{name}/serve"]
    assert "expected to be a uint8 tensor but is a float tensor" in errors["float/signature"]
    for name, shape in (("rank2", "[9,9]"), ("channels4", "[9,9,4]")):
        assert (f"Shape of tensor image {shape} is not compatible with expected shape "
                f"[?,?,3]") in errors[f"{name}/signature"], errors[f"{name}/signature"]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="No checkpoint in"):
        restore_predictor(str(tmp_path))
    with pytest.raises(ValueError, match="No checkpoint .*expected .*index"):
        restore_predictor(str(tmp_path / "ckpt-3"))
