"""Export: a tiny random-weight model directory through export_model.py, reloaded in a
fresh process with both SavedModel loaders (TF2's and TF Serving's graph-mode one)."""
import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.export import export_saved_model, serving_function
from deeplab2.export.saved_model import INSTANCE_KEYS, MAP_KEYS
from deeplab2.inference import Predictor
from deeplab2.model import build_model, get_meta_architecture, model_dir
from deeplab2.utils.graph_dtypes import ops_producing

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
# Exports and reloads in fresh processes: minutes.
pytestmark = pytest.mark.slow
SLIM = dict(semantic_aspp_channels=16, semantic_decoder_channels=16,
            semantic_low_level_channels=(8, 8), semantic_head_channels=16,
            instance_aspp_channels=16, instance_decoder_channels=8,
            instance_low_level_channels=(8, 8), instance_head_channels=8)
# Threshold 0 gives the weak heatmap of random weights centers.
POSTPROCESS = {"nms_kernel": 3, "center_threshold": 0.0}
# Test-time augmentation with a non-unit scale and flips exercises the dynamic sizes.
SCALES, FLIP = (0.75, 1.0), True
SIZES = ((65, 97), (70, 45))  # the second is not of the k * 32 + 1 form
BATCH_SIZE = (70, 97)  # serving_batch's slot: the largest height and width of SIZES
BAD_INPUTS = {"float": ((9, 9, 3), np.float32), "rank2": ((9, 9), np.uint8),
              "channels4": ((9, 9, 4), np.uint8)}
SIZES_NAMES = [f"{h}x{w}" for h, w in SIZES]
MAX_SIDE = 128  # exported with --max_side=128: an image 9x129 is refused
TOO_LARGE = {"too_large": ((9, MAX_SIDE + 1, 3), np.uint8)}

# Runs in a fresh process: loads the SavedModel with tf.saved_model.load and with
# TF1's graph-mode loader in a Session (what TF Serving and `saved_model_cli run`
# use), predicts and probes bad inputs.
_RUN_EXPORTED = """
import json, sys
import numpy as np
import tensorflow as tf

export_dir, images_path, out_path, bad_inputs = sys.argv[1:]
loaded = tf.saved_model.load(export_dir)
images = np.load(images_path)
single = [name for name in images.files if not name.startswith("batch")]
batch = {"images": images["batch_images"], "image_sizes": images["batch_sizes"]}
outputs = {}
for name in single:
    for key, value in loaded.serve(images[name]).items():
        outputs[f"{name}/{key}"] = value.numpy()
for key, value in loaded.serving_batch(**batch).items():
    outputs[f"batch/{key}"] = value.numpy()
outputs["metadata"] = loaded.metadata()["metadata"].numpy()
with open(f"{export_dir}/assets.extra/deeplab2_metadata.json") as f:
    outputs["metadata_file"] = f.read()
signature = loaded.signatures["serving_default"]
last = single[-1]
for key, value in signature(image=tf.constant(images[last])).items():
    assert np.array_equal(value.numpy(), outputs[f"{last}/{key}"]), key
graph = tf.Graph()
with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
    meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
    calls = [(f"{name}/graph_mode", "serving_default", {"image": images[name]})
             for name in single]
    calls += [("batch/graph_mode", "serving_batch", batch),
              ("metadata/graph_mode", "metadata", {})]
    for prefix, name, inputs in calls:
        definition = meta.signature_def[name]
        fetches = {k: v.name for k, v in definition.outputs.items()}
        feed = {definition.inputs[k].name: v for k, v in inputs.items()}
        for key, value in session.run(fetches, feed).items():
            outputs[f"{prefix}/{key}"] = value
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
zeros = tf.zeros([2, 9, 9, 3], tf.uint8)
for name, sizes in (("sizes_beyond", [[9, 9], [9, 10]]), ("sizes_zero", [[9, 9], [0, 9]]),
                    ("sizes_rows", [[9, 9]])):
    try:
        loaded.serving_batch(images=zeros, image_sizes=tf.constant(sizes, tf.int32))
        errors[f"batch_{name}"] = "no error"
    except Exception as error:
        errors[f"batch_{name}"] = f"{type(error).__name__}: {error}"
print(json.dumps(errors))
"""


def _run(command):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT,
                            timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _tiny_model():
    keras.utils.set_random_seed(0)
    return build_model(dataset="synthetic", backbone="mobilenet_v3_small", crop_size=(65, 97),
                       postprocess=POSTPROCESS, **SLIM)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(in-process predictor, test images, outputs of the reloaded SavedModel,
    errors of its entry points on bad inputs)."""
    tmp_path = tmp_path_factory.mktemp("export")
    model = _tiny_model()
    directory = tmp_path / "model"
    model_dir.write_model_config(str(directory), model.model_config)
    tf.train.Checkpoint(model=model, step=tf.Variable(7, dtype=tf.int64)).save(
        str(directory / "ckpt"))
    export_dir = tmp_path / "saved_model"
    stdout = _run([sys.executable, "scripts/export_model.py", f"--model_dir={directory}",
                   f"--output_dir={export_dir}", "--scales=0.75,1.0", "--flip",
                   f"--max_side={MAX_SIDE}"])
    assert "(step 7)" in stdout
    rng = np.random.default_rng(0)
    images = {f"{h}x{w}": rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES}
    # The batch: each test image at the top left of a 70x97 slot filled with
    # noise beyond it (the signature must not see it), then the first image again.
    batch = rng.integers(0, 256, (3, *BATCH_SIZE, 3), dtype=np.uint8)
    for i, (h, w) in enumerate(SIZES + SIZES[:1]):
        batch[i, :h, :w] = images[f"{h}x{w}"]
    np.savez(tmp_path / "images.npz", **images, batch_images=batch,
             batch_sizes=np.array(SIZES + SIZES[:1], np.int32))
    images["batch"] = batch
    bad = {name: (shape, np.dtype(dtype).name)
           for name, (shape, dtype) in {**BAD_INPUTS, **TOO_LARGE}.items()}
    stdout = _run([sys.executable, "-c", _RUN_EXPORTED, str(export_dir),
                   str(tmp_path / "images.npz"), str(tmp_path / "out.npz"), json.dumps(bad)])
    outputs = np.load(tmp_path / "out.npz")
    predictor = Predictor(model, scales=SCALES, flip=FLIP)
    return predictor, images, outputs, json.loads(stdout.strip().splitlines()[-1])


def _reference(predictor, image, slot=None):
    """Predictor on the image padded with 127.5 to k * stride + 1 (at least
    `slot`, the (height, width) it is padded to first), cropped back."""
    height, width, _ = image.shape
    stride = predictor.config.output_stride
    padded_h, padded_w = (-(-(s - 1) // stride) * stride + 1
                          for s in (slot or (height, width)))
    padded = np.pad(image.astype(np.float32), [(0, padded_h - height),
                                               (0, padded_w - width), (0, 0)],
                    constant_values=127.5)
    predictions = tf.function(predictor)(tf.constant(padded[None]),
                                         tf.constant([[height, width]]))
    result = {key: predictions[key][0, :height, :width].numpy() for key in MAP_KEYS}
    result.update({key: predictions[key][0].numpy() for key in INSTANCE_KEYS})
    return result


def test_padded_size_is_the_next_size_the_model_takes():
    config = _tiny_model().model_config
    family = get_meta_architecture(config.meta_architecture)
    assert [family.padded_size(s, config) for s in (1, 33, 34, 65, 70)] == [33, 33, 65, 65,
                                                                            97]
    assert int(family.padded_size(tf.constant(70), config)) == 97


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


def test_the_batch_signature_predicts_each_image_in_its_slot(exported):
    predictor, images, outputs, _ = exported
    void = {common.PANOPTIC: predictor.info.ignore_panoptic_id,
            common.SEMANTIC: predictor.info.ignore_label, common.INSTANCE: 0}
    for i, (height, width) in enumerate(SIZES + SIZES[:1]):
        expected = _reference(predictor, images[f"{height}x{width}"], slot=BATCH_SIZE)
        for key in MAP_KEYS:
            served = outputs[f"batch/{key}"][i]
            assert served.shape == BATCH_SIZE
            np.testing.assert_array_equal(served[:height, :width], expected[key], err_msg=key)
            beyond = np.ones(BATCH_SIZE, bool)
            beyond[:height, :width] = False
            assert (served[beyond] == void[key]).all(), key
        for key in (common.INSTANCE_CLASSES, common.INSTANCE_PANOPTIC_IDS):
            np.testing.assert_array_equal(outputs[f"batch/{key}"][i], expected[key])
        np.testing.assert_allclose(outputs[f"batch/{common.INSTANCE_SCORES}"][i],
                                   expected[common.INSTANCE_SCORES], atol=1e-5, rtol=0)
    # The same image in two slots of a batch: the same predictions.
    for key in MAP_KEYS + (common.INSTANCE_CLASSES, common.INSTANCE_PANOPTIC_IDS):
        np.testing.assert_array_equal(outputs[f"batch/{key}"][0], outputs[f"batch/{key}"][2])
    np.testing.assert_allclose(outputs[f"batch/{common.INSTANCE_SCORES}"][0],
                               outputs[f"batch/{common.INSTANCE_SCORES}"][2], rtol=1e-5)


def test_the_batch_signature_refuses_sizes_that_do_not_fit(exported):
    errors = exported[3]
    for name, message in (("sizes_beyond", "image_sizes must fit in the height and width"),
                          ("sizes_zero", "image_sizes must be at least 1"),
                          ("sizes_rows", "image_sizes must have one row per image")):
        assert errors[f"batch_{name}"].startswith("InvalidArgumentError"), errors
        assert message in errors[f"batch_{name}"], errors[f"batch_{name}"]


def test_the_metadata_signature_and_file_describe_the_model(exported):
    predictor, _, outputs, _ = exported
    metadata = json.loads(outputs["metadata"].item())
    assert outputs["metadata/graph_mode/metadata"].item() == outputs["metadata"].item()
    assert json.loads(outputs["metadata_file"].item()) == metadata
    config = metadata["model_config"]
    assert config["meta_architecture"] == "panoptic_deeplab"
    assert config["dataset"]["class_names"] == list(predictor.info.class_names)
    assert config["dataset"]["thing_ids"] == list(predictor.info.thing_ids)
    assert config["dataset"]["label_divisor"] == predictor.info.label_divisor
    assert [config["output_stride"], config["crop_size"]] == [32, [65, 97]]
    assert config["postprocess"]["nms_kernel"] == 3
    assert metadata["test_time"] == {"scales": list(SCALES), "flip": FLIP,
                                     "shorter_side": None, "max_longer_side": None}
    assert metadata["compute_dtype"] == "float32"
    assert sorted(metadata["signatures"]) == ["metadata", "serving_batch", "serving_default"]


def test_the_signature_returns_the_maps_and_instance_tables_only(exported):
    _, images, outputs, _ = exported
    for name in SIZES_NAMES:
        served = {key.split("/")[1] for key in outputs
                  if key.startswith(f"{name}/") and "/graph_mode/" not in key}
        assert served == set(MAP_KEYS + INSTANCE_KEYS), served


@pytest.mark.parametrize("size", SIZES)
def test_the_graph_mode_loader_of_tf_serving_gives_the_same_outputs(exported, size):
    _, _, outputs, _ = exported
    name = f"{size[0]}x{size[1]}"
    for key in MAP_KEYS + INSTANCE_KEYS:
        np.testing.assert_array_equal(outputs[f"{name}/graph_mode/{key}"],
                                      outputs[f"{name}/{key}"], err_msg=key)
        np.testing.assert_array_equal(outputs[f"batch/graph_mode/{key}"],
                                      outputs[f"batch/{key}"], err_msg=key)


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


def test_images_beyond_the_maximum_side_are_refused(exported):
    errors = exported[3]
    for entry in ("serve", "signature"):
        message = errors[f"too_large/{entry}"]
        assert message.startswith("InvalidArgumentError"), message
        assert f"image side exceeds the maximum of {MAX_SIDE} pixels" in message, message


def test_the_serving_function_has_no_float64_and_strings_only_in_its_size_check():
    predictor = Predictor(_tiny_model(), scales=SCALES, flip=FLIP)
    concrete = serving_function(predictor).get_concrete_function()
    assert ops_producing(concrete, [tf.float32])  # the scan sees the computation
    assert ops_producing(concrete, [tf.float64]) == []
    strings = ops_producing(concrete, [tf.string])
    assert strings and all("/check_image_side/" in op for op in strings), strings


def test_a_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    predictor = Predictor(_tiny_model())
    target = tmp_path / "exported"
    target.mkdir()
    (target / "previous.txt").write_text("an earlier export")

    def fail(self, path, *args, **kwargs):
        os.makedirs(path, exist_ok=True)
        (pathlib.Path(path) / "saved_model.pb").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", fail)
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(predictor, str(target))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]
    assert sorted(p.name for p in target.iterdir()) == ["previous.txt"]


def test_an_output_path_that_is_a_file_is_refused_and_kept(tmp_path):
    from deeplab2.utils.paths import OutputPathError

    target = tmp_path / "exported"
    target.write_text("a file of the user")
    with pytest.raises(OutputPathError,
                       match=f"output_dir {target} is a file; expected a SavedModel"):
        export_saved_model(Predictor(_tiny_model()), str(target))
    assert target.read_text() == "a file of the user"


def test_an_export_removes_what_a_killed_export_left(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".exported.incomplete-{dead.pid}-x1"
    stale.mkdir()
    (stale / "saved_model.pb").write_bytes(b"half")
    export_saved_model(Predictor(_tiny_model()), str(tmp_path / "exported"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]
    assert f"an interrupted run left in {tmp_path}: {stale.name}" in capsys.readouterr().out
