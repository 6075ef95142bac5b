"""TrainLoop in-process on a one-layer model: what is saved when training
diverges, and resumption."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.model.meta import TOTAL_LOSS
from deeplab2.training.train_loop import LoopOptions, NonFiniteLossError, TrainLoop


class _StepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`rate` for the first `normal_steps` updates, then `then`."""

    def __init__(self, rate, normal_steps, then):
        self.rate, self.normal_steps, self.then = rate, normal_steps, then

    def __call__(self, step):
        return tf.where(step < self.normal_steps, self.rate, self.then)


def _loop(model_dir, learning_rate, num_steps=4):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(1)])
    model.build((None, 4, 4, 1))

    def loss_fn(inputs, outputs):
        return {TOTAL_LOSS: tf.square(outputs[:, 0] - inputs["target"])}

    def dataset_fn(context, start_step):
        del context, start_step
        images = np.linspace(0.1, 1.0, 2 * 16, dtype=np.float32).reshape(2, 4, 4, 1)
        return tf.data.Dataset.from_tensor_slices(
            {common.IMAGE: images, "target": np.float32([1.0, -1.0])}).batch(2).repeat()

    options = LoopOptions(num_steps=num_steps, global_batch_size=2, steps_per_loop=1,
                          checkpoint_every=1, keep_checkpoints=10)
    return TrainLoop(tf.distribute.get_strategy(), model, loss_fn,
                     keras.optimizers.SGD(learning_rate), dataset_fn, str(model_dir),
                     options)


def _checkpoint_values(path):
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def test_weights_that_become_infinite_are_never_saved(tmp_path):
    # Two normal steps, then an infinite rate (what 1e39 becomes in float32):
    # the third update breaks the weights while its loss, computed before the
    # update, is still finite.
    loop = _loop(tmp_path, _StepSchedule(0.01, 2, float("inf")))
    with pytest.raises(NonFiniteLossError, match="Weights became NaN or Inf by step 3"):
        loop.train()
    latest = tf.train.latest_checkpoint(str(tmp_path))
    assert latest.endswith("ckpt-2")
    values = _checkpoint_values(latest)
    kernels = [v for v in values.values() if np.ndim(v) == 2]
    assert kernels, "the Dense kernel is saved"
    for name, value in values.items():  # every variable, optimizer's included
        if np.asarray(value).dtype.kind == "f":
            assert np.isfinite(value).all(), name


def test_a_non_finite_loss_names_its_step_and_keeps_the_last_finite_checkpoint(tmp_path):
    # 1e30 keeps the weights finite after step 2; the loss of step 3 overflows.
    loop = _loop(tmp_path, _StepSchedule(0.01, 1, 1e30))
    with pytest.raises(NonFiniteLossError, match="Loss became NaN or Inf at step 3"):
        loop.train()
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-2")


def test_a_resumed_run_saves_exactly_what_an_uninterrupted_run_saves(tmp_path):
    reference = _loop(tmp_path / "reference", 0.05)
    reference.train()
    interrupted = _loop(tmp_path / "interrupted", 0.05)
    interrupted.train(until_step=2)
    resumed = _loop(tmp_path / "interrupted", 0.05)
    resumed.train()
    expected = _checkpoint_values(tf.train.latest_checkpoint(str(tmp_path / "reference")))
    actual = _checkpoint_values(tf.train.latest_checkpoint(str(tmp_path / "interrupted")))
    assert actual.keys() == expected.keys()
    assert any(name.startswith("optimizer/") for name in expected)
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
