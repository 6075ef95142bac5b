"""TrainLoop in-process on a one-layer model: what is saved when training
diverges, resumption, and gradient accumulation."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import toy_family
from deeplab2 import common
from deeplab2.model import build_model, get_meta_architecture
from deeplab2.model.meta import TOTAL_LOSS
from deeplab2.training.optimizer import build_optimizer
from deeplab2.training.train_loop import LoopOptions, NonFiniteLossError, TrainLoop
from deeplab2.training.trainer import Trainer


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


def _assert_same_latest_checkpoints(reference_dir, other_dir):
    """Every saved value, optimizer slots included, of the two latest checkpoints."""
    expected = _checkpoint_values(tf.train.latest_checkpoint(str(reference_dir)))
    actual = _checkpoint_values(tf.train.latest_checkpoint(str(other_dir)))
    assert actual.keys() == expected.keys()
    assert any(name.startswith("optimizer/") for name in expected)
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


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
    _assert_same_latest_checkpoints(tmp_path / "reference", tmp_path / "interrupted")


# Gradient accumulation, on the toy family of tests/toy_family.py (a 1x1
# convolution): 16 distinct images streamed in order, so that any two loops
# see the same images in the same order whatever their batch.
_IMAGES = 16


def _toy_examples():
    rng = np.random.default_rng(0)
    return {common.IMAGE: rng.uniform(0, 255, (_IMAGES, 6, 6, 3)).astype(np.float32),
            common.SEMANTIC_TARGET: rng.integers(0, 3, (_IMAGES, 6, 6)).astype(np.int32),
            common.SEMANTIC_WEIGHTS: np.ones((_IMAGES, 6, 6), np.float32)}


def _toy_loop(model_dir, batch, accumulation_steps, num_steps=1, optimizer=None,
              jit_compile=False, checkpoint_every=1):
    keras.utils.set_random_seed(0)
    model = build_model(toy_family.NAME, "synthetic")
    family = get_meta_architecture(toy_family.NAME)
    examples = _toy_examples()

    def dataset_fn(context, start_batch):
        del context
        return (tf.data.Dataset.from_tensor_slices(examples).repeat()
                .skip(start_batch * batch).batch(batch))

    options = LoopOptions(num_steps=num_steps, global_batch_size=batch, steps_per_loop=2,
                          checkpoint_every=checkpoint_every, keep_checkpoints=10,
                          jit_compile=jit_compile, accumulation_steps=accumulation_steps)
    return TrainLoop(tf.distribute.get_strategy(), model,
                     family.training_loss(model.model_config),
                     optimizer or keras.optimizers.SGD(0.01), dataset_fn, str(model_dir),
                     options, forward_fn=family.training_outputs)


def _weights(loop):
    return {v.path: v.numpy() for v in loop.model.trainable_variables}


def _assert_same_weights(actual, expected, rtol=1e-5, atol=1e-7):
    assert actual.keys() == expected.keys()
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=rtol, atol=atol,
                                   err_msg=name)


def test_two_accumulated_batches_of_2_update_as_one_batch_of_4(tmp_path):
    accumulated = _toy_loop(tmp_path / "accumulated", batch=2, accumulation_steps=2)
    whole = _toy_loop(tmp_path / "whole", batch=4, accumulation_steps=1)
    before = _weights(whole)
    losses = accumulated.train()
    expected_losses = whole.train()
    _assert_same_weights(_weights(accumulated), _weights(whole))
    assert any(np.abs(_weights(whole)[k] - before[k]).max() > 1e-3 for k in before)
    # The reported loss: the mean over the 4 images.
    np.testing.assert_allclose(losses[TOTAL_LOSS], expected_losses[TOTAL_LOSS], rtol=1e-6)


def test_steps_schedule_and_checkpoints_count_updates(tmp_path):
    optimizer = build_optimizer(num_steps=5, optimizer="sgd", learning_rate=0.01,
                                schedule="step", decay_boundaries=(3,))
    loop = _toy_loop(tmp_path, batch=2, accumulation_steps=3, num_steps=5,
                     optimizer=optimizer, checkpoint_every=2)
    loop.train(until_step=3)
    assert int(loop.step.numpy()) == 3 and int(optimizer.iterations.numpy()) == 3
    np.testing.assert_allclose(float(optimizer.learning_rate), 0.001, rtol=1e-6)
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-3")
    assert [int(p.split("-")[-1]) for p in loop.manager.checkpoints] == [2, 3]
    # Zero between updates, and not saved.
    assert all(not np.any(a.numpy()) for a in loop._accumulators)
    saved = _checkpoint_values(tf.train.latest_checkpoint(str(tmp_path)))
    assert not any("accumulator" in name for name in saved)


def test_a_resumed_accumulating_run_equals_an_uninterrupted_one(tmp_path):
    # Momentum: the optimizer's state is resumed too. 4 updates of 2 x 2
    # images read the 16 images once: a stream resumed at the wrong batch
    # trains on other images.
    def loop(name):
        return _toy_loop(tmp_path / name, batch=2, accumulation_steps=2, num_steps=4,
                         optimizer=keras.optimizers.SGD(0.01, momentum=0.9))

    loop("reference").train()
    loop("interrupted").train(until_step=2)
    loop("interrupted").train()
    _assert_same_latest_checkpoints(tmp_path / "reference", tmp_path / "interrupted")


def test_compiled_accumulation_equals_uncompiled(tmp_path):
    def weights(name, jit_compile):
        loop = _toy_loop(tmp_path / name, batch=2, accumulation_steps=3, num_steps=2,
                         optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                         jit_compile=jit_compile)
        return loop.train(), _weights(loop)

    losses, expected = weights("plain", False)
    compiled_losses, actual = weights("compiled", True)
    _assert_same_weights(actual, expected)
    np.testing.assert_allclose(compiled_losses[TOTAL_LOSS], losses[TOTAL_LOSS], rtol=1e-5)


def test_accumulation_steps_must_be_positive():
    with pytest.raises(ValueError, match="accumulation_steps must be a positive integer, got 0"):
        LoopOptions(num_steps=1, global_batch_size=2, accumulation_steps=0)


class _HalfUsed(keras.Model):
    """A Dense layer the loss reaches and one it does not (no gradient)."""

    def __init__(self):
        super().__init__(name="half_used")
        self.flatten = keras.layers.Flatten()
        self.used = keras.layers.Dense(1, name="used")
        self.unused = keras.layers.Dense(1, name="unused")

    def call(self, images, training=None):
        features = self.flatten(images)
        self.unused(features)
        return self.used(features)


@pytest.mark.filterwarnings("ignore:Gradients do not exist")
@pytest.mark.parametrize("jit_compile", [False, True])
def test_accumulation_leaves_out_variables_without_gradient(tmp_path, jit_compile):
    def loop(name, batch, accumulation_steps):
        keras.utils.set_random_seed(0)
        model = _HalfUsed()
        model(np.zeros((1, 4, 4, 1), np.float32))  # creates the variables
        images = np.linspace(0.1, 1.0, 2 * 16, dtype=np.float32).reshape(2, 4, 4, 1)
        data = {common.IMAGE: images, "target": np.float32([1.0, -1.0])}
        options = LoopOptions(num_steps=1, global_batch_size=batch, jit_compile=jit_compile,
                              accumulation_steps=accumulation_steps)
        return TrainLoop(
            tf.distribute.get_strategy(), model,
            lambda inputs, outputs: {TOTAL_LOSS: tf.square(outputs[:, 0] - inputs["target"])},
            keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.1),
            lambda context, start: tf.data.Dataset.from_tensor_slices(data).batch(batch),
            str(tmp_path / name), options)

    accumulated, whole = loop("accumulated", 1, 2), loop("whole", 2, 1)
    unused = [v.numpy() for v in whole.model.unused.weights]
    accumulated.train()
    whole.train()
    _assert_same_weights(_weights(accumulated), _weights(whole))
    for before, after in zip(unused, accumulated.model.unused.weights):
        np.testing.assert_array_equal(after.numpy(), before)


def test_the_trainers_stream_resumes_after_the_accumulated_batches(tmp_path, tiny_records):
    trainer = Trainer(str(tmp_path), train_file_pattern=f"{tiny_records}/train-*.tfrecord",
                      global_batch_size=2, accumulation_steps=2)
    model = build_model(toy_family.NAME, "synthetic", crop_size=(65, 97))
    loop = trainer.train_loop(tf.distribute.get_strategy(), model)
    stream = loop.data_iterator(0)
    batches = [next(stream)[common.IMAGE_ID].numpy() for _ in range(4)]
    resumed = loop.data_iterator(1)  # after step 0: its 2 batches
    assert [next(resumed)[common.IMAGE_ID].numpy().tolist() for _ in range(2)] == [
        b.tolist() for b in batches[2:]]


@pytest.mark.parametrize("graph_optimization", [False, True])
def test_the_step_runs_with_grappler_as_asked_and_trains_alike(tmp_path, graph_optimization):
    """`graph_optimization` reaches the step's execution (TensorFlow reads the
    option per call) and is restored after it; with Grappler or without, the
    same weights come out. By default, on this host without GPUs or TPUs, the
    step runs without Grappler."""
    assert not tf.config.list_logical_devices("GPU"), "the default below is a CPU host's"
    assert LoopOptions(num_steps=1, global_batch_size=2).graph_optimization is None
    assert _loop(tmp_path / "default", 0.1).graph_optimization is False

    seen = []

    def record_options(x):
        seen.append(tf.config.optimizer.get_experimental_options().get(
            "disable_meta_optimizer", False))
        return x

    def with_probe(loop):
        loss_fn = loop.loss_fn

        def probed(inputs, outputs):
            losses = loss_fn(inputs, outputs)
            total = tf.py_function(record_options, [losses[TOTAL_LOSS]], tf.float32)
            return dict(losses, **{TOTAL_LOSS: tf.ensure_shape(total, [None])})
        loop.loss_fn = probed
        return loop

    before = tf.config.optimizer.get_experimental_options()
    reference = _loop(tmp_path / "reference", 0.1)
    loop = _loop(tmp_path / "probed", 0.1)
    loop.graph_optimization = graph_optimization
    with_probe(loop).train()
    reference.train()
    assert seen == [not graph_optimization] * 4
    assert tf.config.optimizer.get_experimental_options() == before
    _assert_same_latest_checkpoints(tmp_path / "reference", tmp_path / "probed")
