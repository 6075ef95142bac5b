"""Model directories: the model's configuration beside its checkpoints, loading
without Gin, and one-line errors for everything that does not fit."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import deeplab2
from deeplab2 import common
from deeplab2.inference import Predictor
from deeplab2.inference.loading import load_predictor
from deeplab2.model import build_model
from deeplab2.model import model_dir as model_dir_lib
from deeplab2.model.meta import FORMAT_VERSION
from deeplab2.model.meta.config import CONFIG_FILE

SLIM = dict(semantic_aspp_channels=8, semantic_decoder_channels=8,
            semantic_low_level_channels=(8, 8), semantic_head_channels=8,
            instance_aspp_channels=8, instance_decoder_channels=8,
            instance_low_level_channels=(8, 8), instance_head_channels=8)


def _model(**options):
    return build_model(dataset="synthetic", backbone="mobilenet_v3_small",
                       crop_size=(65, 97), **dict(SLIM, **options))


def _save(model, directory, step=3):
    model_dir_lib.write_model_config(str(directory), model.model_config)
    checkpoint = tf.train.Checkpoint(model=model, step=tf.Variable(step, dtype=tf.int64))
    return checkpoint.save(str(directory / "ckpt"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A model directory written by hand as the trainer writes one."""
    directory = tmp_path_factory.mktemp("model")
    model = _model(postprocess={"nms_kernel": 3})
    _save(model, directory)
    return directory, model


def test_load_model_rebuilds_the_model_and_its_weights(saved):
    directory, model = saved
    loaded = deeplab2.load_model(str(directory))
    assert loaded.model_config == model.model_config
    assert loaded.model_config.postprocess["nms_kernel"] == 3
    images = np.random.default_rng(0).uniform(0, 255, (1, 65, 97, 3)).astype(np.float32)
    expected, actual = model(images), loaded(images)
    for key in expected:
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)
    _, step, path = model_dir_lib.restore_model_dir(str(directory))
    assert step == 3 and path.endswith("ckpt-1")


def test_a_bfloat16_model_reads_the_same_checkpoint_and_computes_close_outputs(saved):
    """Mixed precision: float32 variables (the same checkpoint), bfloat16
    layers, float32 outputs within bfloat16's precision of the model's; the
    global policy is left as it was."""
    directory, model = saved
    loaded = deeplab2.load_model(str(directory), compute_dtype="bfloat16")
    assert keras.config.dtype_policy().name == "float32"
    assert loaded.dtype_policy.compute_dtype == "bfloat16"
    assert all(v.dtype == "float32" for v in loaded.weights)
    for ours, theirs in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(ours, theirs)
    assert Predictor(loaded).compute_dtype == "bfloat16"
    # What predict.py, evaluate.py and export_model.py get from --compute_dtype.
    predictor, _, _ = load_predictor(str(directory), compute_dtype="bfloat16")
    assert predictor.compute_dtype == "bfloat16"
    assert Predictor(model).compute_dtype == "float32"
    images = np.random.default_rng(0).uniform(0, 255, (1, 65, 97, 3)).astype(np.float32)
    expected, actual = model(images), loaded(images)
    heads = loaded.head_outputs(images)
    assert heads[common.SEMANTIC_LOGITS].dtype == "bfloat16"
    # The family's bfloat16_float_layers: no plateaus of rounded heatmap values.
    assert heads[common.CENTER_HEATMAP].dtype == heads[common.OFFSET].dtype == "float32"
    for key in expected:
        assert actual[key].dtype == "float32"
        scale = np.abs(expected[key]).max()
        error = np.abs(np.asarray(actual[key]) - expected[key]).max()
        assert 0 < error <= 0.05 * scale, key  # bfloat16 has 8 bits of mantissa
    with pytest.raises(ValueError, match="compute_dtype must be one of float32, bfloat16"):
        deeplab2.load_model(str(directory), compute_dtype="float16")


def test_the_config_file_is_json_without_gin(saved):
    directory, _ = saved
    values = json.loads((directory / CONFIG_FILE).read_text())
    assert values["format_version"] == FORMAT_VERSION
    assert values["meta_architecture"] == "panoptic_deeplab"
    assert values["dataset"]["name"] == "synthetic"
    assert values["architecture"]["backbone"] == "mobilenet_v3_small"
    assert values["output_stride"] == 32 and values["crop_size"] == [65, 97]


def _copy_with(directory, tmp_path, **changes):
    """A copy of the model directory whose config has `changes`."""
    target = tmp_path / "copy"
    target.mkdir()
    for path in directory.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    values = json.loads((directory / CONFIG_FILE).read_text())
    values.update(changes)
    (target / CONFIG_FILE).write_text(json.dumps(values))
    return target


def test_a_directory_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(model_dir_lib.ModelDirError,
                       match=f"{tmp_path}/{CONFIG_FILE} not found"):
        deeplab2.load_model(str(tmp_path))


def test_a_config_of_a_newer_version_is_refused(saved, tmp_path):
    directory = _copy_with(saved[0], tmp_path, format_version=FORMAT_VERSION + 1)
    with pytest.raises(model_dir_lib.ModelDirError,
                       match=rf"{CONFIG_FILE}: format_version {FORMAT_VERSION + 1} was "
                             r"written by a newer deeplab2"):
        deeplab2.load_model(str(directory))


def test_an_unregistered_meta_architecture_is_named(saved, tmp_path):
    directory = _copy_with(saved[0], tmp_path, meta_architecture="mask_rcnn_plus")
    with pytest.raises(model_dir_lib.ModelDirError,
                       match=r"unknown meta_architecture 'mask_rcnn_plus'; registered: "
                             r".*panoptic_deeplab"):
        deeplab2.load_model(str(directory))


def test_a_checkpoint_of_another_model_is_refused(saved, tmp_path):
    directory, _ = saved
    other = tmp_path / "other"
    other.mkdir()
    path = _save(_model(semantic_head_channels=16), other)
    with pytest.raises(model_dir_lib.ModelDirError,
                       match=rf"checkpoint {path} does not fit the panoptic_deeplab model "
                             r"with backbone 'mobilenet_v3_small'"):
        model_dir_lib.restore_model_dir(str(directory), checkpoint=path)


def test_a_folder_without_checkpoint_is_a_clear_error(saved, tmp_path):
    directory = _copy_with(saved[0], tmp_path)
    for path in directory.glob("ckpt*"):
        path.unlink()
    (directory / "checkpoint").unlink()
    with pytest.raises(model_dir_lib.ModelDirError, match=f"no checkpoint in {directory}"):
        deeplab2.load_model(str(directory))
