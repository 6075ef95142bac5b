"""Checkpoint loads report what they did and refuse partial or broken ones."""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model import build_model, checkpoints

SLIM = dict(semantic_aspp_channels=8, semantic_decoder_channels=8,
            semantic_low_level_channels=(8, 8), semantic_head_channels=8,
            instance_aspp_channels=8, instance_decoder_channels=8,
            instance_low_level_channels=(8, 8), instance_head_channels=8)


def _model(backbone="mobilenet_v3_small", **options):
    return build_model(dataset="synthetic", backbone=backbone, crop_size=(33, 33),
                       **dict(SLIM, **options))


def _randomize(model, seed):
    for index, variable in enumerate(model.weights):
        if "seed_generator" not in variable.path:
            variable.assign(tf.random.stateless_uniform(
                variable.shape, (seed, index), 0.5, 1.5, dtype=variable.dtype))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A whole-model checkpoint (as the trainer saves it) and its model."""
    model = _model()
    _randomize(model, 1)
    folder = tmp_path_factory.mktemp("ckpt")
    path = tf.train.Checkpoint(model=model, step=tf.Variable(7, dtype=tf.int64)).save(
        str(folder / "ckpt"))
    return model, path


def test_init_loads_everything_and_reports_it(saved):
    source, path = saved
    target = _model()
    report = checkpoints.init_from_checkpoint(target, os.path.dirname(path),
                                              required="all")
    weights = [v for v in target.weights if "seed_generator" not in v.path]
    assert len(report.loaded) == len(weights) and not report.missing
    assert not report.mismatched and not report.unused  # `step` is training state
    assert f"loaded {len(weights)} of {len(weights)} variables" in report.summary()
    for ours, theirs in zip(target.weights, source.weights):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_variables_of_another_shape_are_skipped_and_reported(saved):
    source, path = saved
    target = _model(semantic_head_channels=16)  # another semantic head
    report = checkpoints.init_from_checkpoint(target, path)
    skipped = sorted(key for key, _ in report.mismatched)
    assert skipped and all(k.startswith("model/semantic_head/") for k in skipped)
    assert "of another shape" in report.summary()
    for ours, theirs in zip(target.backbone.weights, source.backbone.weights):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    with pytest.raises(checkpoints.CheckpointError, match="does not cover the all"):
        checkpoints.init_from_checkpoint(_model(semantic_head_channels=16), path,
                                         required="all")


def test_a_strict_load_of_another_shape_assigns_nothing(saved):
    source, path = saved
    target = _model(semantic_head_channels=16)
    variables = checkpoints.checkpoint_variables(target, "model")
    with pytest.raises(checkpoints.CheckpointError, match="refused.*other shape"):
        checkpoints.load_variables(variables, path)
    assert not np.array_equal(np.asarray(target.backbone.weights[0]),
                              np.asarray(source.backbone.weights[0]))


def test_init_from_another_architecture_is_an_error_listing_what_did_not_load(saved):
    _, path = saved
    target = _model(backbone="resnet50")
    with pytest.raises(checkpoints.CheckpointError) as error:
        checkpoints.init_from_checkpoint(target, path)
    message = str(error.value)
    assert "does not cover the backbone" in message
    assert "conv2_block1" in message  # names what did not load


def test_an_init_below_the_required_fraction_is_refused(saved):
    _, path = saved
    target = _model()
    # Drop the decoder and heads from the checkpoint: keep the backbone only.
    reader = tf.train.load_checkpoint(path)
    keys = [k for k in reader.get_variable_to_shape_map() if k.startswith("model/backbone/")]
    partial = _write_raw(reader, keys, os.path.join(os.path.dirname(path), "partial"))
    report = checkpoints.init_from_checkpoint(target, partial)  # the backbone: enough
    assert report.missing and len(report.loaded) == len(keys)
    with pytest.raises(checkpoints.CheckpointError, match="less than the required 90%"):
        checkpoints.init_from_checkpoint(target, partial, required=0.9)
    with pytest.raises(checkpoints.CheckpointError, match="does not cover the all"):
        checkpoints.init_from_checkpoint(target, partial, required="all")


def _write_raw(reader, keys, prefix):
    """A checkpoint holding exactly `keys` of `reader`, keys unchanged."""
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=list(keys),
                      shape_and_slices=[""] * len(keys),
                      tensors=[tf.constant(reader.get_tensor(key)) for key in keys])
    return prefix


def test_missing_and_truncated_checkpoints_are_one_line_errors(saved, tmp_path):
    _, path = saved
    target = _model()
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint in"):
        checkpoints.init_from_checkpoint(target, str(tmp_path))
    with pytest.raises(checkpoints.CheckpointError, match=r"expected .*\.index"):
        checkpoints.init_from_checkpoint(target, str(tmp_path / "nothing"))
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in os.listdir(os.path.dirname(path)):
        if name.startswith(os.path.basename(path) + "."):
            shutil.copy(os.path.join(os.path.dirname(path), name), broken / name)
    data = next(broken.glob("*.data-*"))
    data.write_bytes(data.read_bytes()[:len(data.read_bytes()) // 2])
    before = [np.asarray(v).copy() for v in target.weights]
    with pytest.raises(checkpoints.CheckpointError, match="damaged|cannot read") as error:
        checkpoints.init_from_checkpoint(target, str(broken / os.path.basename(path)))
    assert "\n" not in str(error.value)
    for value, variable in zip(before, target.weights):  # nothing half-loaded
        np.testing.assert_array_equal(value, np.asarray(variable))
