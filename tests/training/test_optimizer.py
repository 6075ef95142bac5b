"""build_optimizer: Adam or SGD, poly or step-decay schedules with a linear
warmup, their values at the boundaries, serialization and argument errors."""
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.training.optimizer import (FusedAdam, FusedSGD, PolyWithWarmup,
                                         StepDecayWithWarmup, build_optimizer)


def _rates(schedule, steps):
    return [float(schedule(tf.constant(s, tf.int64))) for s in steps]


def test_step_decay_at_warmup_and_boundaries():
    # UPSNet's recipe in small: 0.02 warmed up from 0.002 (factor 0.1).
    schedule = StepDecayWithWarmup(0.02, boundaries=(6, 8), decay_factor=0.1,
                                   warmup_steps=4, warmup_start_factor=0.1)
    steps = [0, 2, 3, 4, 5, 6, 7, 8, 100]
    expected = [0.002, 0.02 * 0.55, 0.02 * 0.775, 0.02, 0.02, 0.002, 0.002, 0.0002, 0.0002]
    np.testing.assert_allclose(_rates(schedule, steps), expected, rtol=1e-6)


def test_step_decay_without_warmup_or_boundaries_is_constant():
    schedule = StepDecayWithWarmup(0.01)
    np.testing.assert_allclose(_rates(schedule, [0, 5, 10 ** 6]), [0.01] * 3, rtol=1e-7)


def test_a_boundary_inside_the_warmup_decays_the_warming_rate():
    schedule = StepDecayWithWarmup(1.0, boundaries=(2,), decay_factor=0.5, warmup_steps=4,
                                   warmup_start_factor=0.0)
    np.testing.assert_allclose(_rates(schedule, [1, 2, 4]), [0.25, 0.25, 0.5], rtol=1e-7)


def test_poly_warmup_starts_at_its_factor():
    schedule = PolyWithWarmup(1.0, decay_steps=10, power=1.0, warmup_steps=4,
                              warmup_start_factor=0.25)
    np.testing.assert_allclose(_rates(schedule, [0, 2, 4, 5, 10, 20]),
                               [0.25, 0.8 * 0.625, 0.6, 0.5, 0.0, 0.0], atol=1e-7)


@pytest.mark.parametrize("schedule", [
    StepDecayWithWarmup(0.02, (6, 8), 0.1, 4, 1 / 3),
    PolyWithWarmup(1e-3, 100, 0.9, 1e-5, 10, 0.001),
])
def test_schedules_serialize(schedule):
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule))
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    steps = [0, 3, 5, 6, 7, 8, 50, 200]
    np.testing.assert_array_equal(_rates(restored, steps), _rates(schedule, steps))


def test_default_is_adam_on_poly_without_warmup():
    optimizer = build_optimizer(num_steps=100)
    assert isinstance(optimizer, keras.optimizers.Adam)
    schedule = optimizer.get_config()["learning_rate"]
    assert schedule["class_name"] == "PolyWithWarmup"
    assert schedule["config"] == dict(base_learning_rate=1e-3, decay_steps=100, power=0.9,
                                         end_learning_rate=0.0, warmup_steps=0,
                                         warmup_start_factor=0.0)
    assert optimizer.weight_decay is None


def test_sgd_on_step_decay():
    optimizer = build_optimizer(num_steps=90, optimizer="sgd", learning_rate=0.02,
                                schedule="step", decay_boundaries=(60, 80),
                                warmup_steps=15, warmup_start_factor=0.1,
                                weight_decay=1e-4)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.momentum == 0.9 and optimizer.nesterov is False
    assert optimizer.weight_decay == 1e-4
    config = keras.optimizers.SGD.from_config(optimizer.get_config()).get_config()
    assert config["learning_rate"]["config"]["boundaries"] == [60, 80]
    variable = keras.Variable(np.ones(2, np.float32))
    optimizer.build([variable])
    for step, rate in [(0, 0.002), (15, 0.02), (60, 0.002), (80, 0.0002)]:
        optimizer.iterations.assign(step)
        np.testing.assert_allclose(float(optimizer.learning_rate), rate, rtol=1e-6)


def test_sgd_weight_decay_is_lr_times_decay_times_weight():
    # Without momentum: w - lr * (g + wd * w), the gradient of an L2 penalty
    # wd / 2 * |w|^2 added to the loss.
    optimizer = build_optimizer(num_steps=10, optimizer="sgd", momentum=0.0,
                                learning_rate=0.1, power=0.0, weight_decay=0.01)
    variable = keras.Variable(np.float32([2.0, -4.0]))
    optimizer.apply_gradients([(tf.constant([1.0, 1.0]), variable)])
    np.testing.assert_allclose(variable.numpy(),
                               [2.0 - 0.1 * (1.0 + 0.01 * 2.0), -4.0 - 0.1 * (1.0 - 0.01 * 4.0)],
                               rtol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(optimizer="momentum"), r"build_optimizer\.optimizer must be one of"),
    (dict(schedule="cosine"), r"build_optimizer\.schedule must be one of"),
    (dict(schedule="step", decay_boundaries=(80, 60)),
     r"build_optimizer\.decay_boundaries must be increasing"),
    (dict(schedule="step", decay_boundaries=(60, 60)),
     r"build_optimizer\.decay_boundaries must be increasing"),
    (dict(schedule="step", decay_boundaries=(60, 91)),
     r"build_optimizer\.decay_boundaries .* 1\.\.num_steps=90, got \(60, 91\)"),
    (dict(schedule="step", decay_boundaries=(0,)),
     r"build_optimizer\.decay_boundaries must be increasing"),
    (dict(decay_boundaries=(60,)), r"build_optimizer\.decay_boundaries apply to schedule='step'"),
    (dict(warmup_start_factor=1.5), r"build_optimizer\.warmup_start_factor must be in \[0, 1\]"),
])
def test_bad_arguments_raise_one_line_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError) as error:
        build_optimizer(num_steps=90, **kwargs)
    # Gin appends the configurable's name on lines of its own.
    assert re.match(match, str(error.value).splitlines()[0])


def test_l2_regularization_enters_the_gradient_before_the_momentum():
    optimizer = build_optimizer(10, optimizer="sgd", learning_rate=0.1, schedule="step",
                                momentum=0.9, l2_regularization=0.1)
    kernel = keras.Variable(2.0, name="kernel")
    gamma = keras.Variable(2.0, name="gamma")
    for _ in range(2):
        optimizer.apply_gradients([(tf.constant(1.0), kernel), (tf.constant(1.0), gamma)])
    # By hand: g = 1 + 0.1 * 2 = 1.2, m = -0.12, w = 1.88; then g = 1.188,
    # m = 0.9 * -0.12 - 0.1188 = -0.2268, w = 1.6532. gamma is not decayed.
    assert float(kernel.numpy()) == pytest.approx(1.6532, abs=1e-6)
    assert float(gamma.numpy()) == pytest.approx(2.0 - 0.1 - (0.09 + 0.1), abs=1e-6)


def test_l2_regularization_equals_the_penalty_in_the_loss():
    weights = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    target = np.ones((3, 4), "float32")

    def train(l2_in_optimizer):
        kernel = keras.Variable(weights, name="kernel")
        optimizer = build_optimizer(
            10, optimizer="sgd", learning_rate=0.05, schedule="step", momentum=0.9,
            nesterov=True, l2_regularization=1e-2 if l2_in_optimizer else None)
        for _ in range(5):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum((kernel - target) ** 2)
                if not l2_in_optimizer:
                    loss += 0.5 * 1e-2 * tf.reduce_sum(kernel ** 2)
            optimizer.apply_gradients([(tape.gradient(loss, kernel), kernel)])
        return kernel.numpy()

    np.testing.assert_allclose(train(True), train(False), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("options, message", [
    (dict(optimizer="adam", l2_regularization=1e-4), "applies to optimizer='sgd' only"),
    (dict(optimizer="sgd", l2_regularization=1e-4, weight_decay=1e-4), "got both"),
    (dict(optimizer="sgd", l2_regularization=-1.0), "must be >= 0"),
])
def test_bad_l2_regularization_is_named(options, message):
    with pytest.raises(ValueError, match=f"build_optimizer.l2_regularization.*{re.escape(message)}"
                       if "both" not in message else "build_optimizer.give one"):
        build_optimizer(10, **options)


def _train(optimizer, mode, steps=5):
    """Weights of a 3-variable model after `steps` updates with fixed gradients
    (a kernel, a bias and a batch-norm-like gamma), run eagerly, in a
    tf.function or XLA-compiled."""
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=shape).astype(np.float32), name=name)
                 for shape, name in (((3, 3, 4, 8), "kernel"), ((8,), "bias"),
                                     ((8,), "gamma"))]
    optimizer.build(variables)
    gradients = [[tf.constant(rng.normal(size=v.shape).astype(np.float32))
                  for v in variables] for _ in range(steps)]

    def step(grads):
        optimizer.apply_gradients(zip(grads, variables))
    if mode != "eager":
        step = tf.function(step, jit_compile=mode == "xla")
    for grads in gradients:
        step(grads)
    return [v.numpy() for v in variables]


FUSED_AND_KERAS = {
    "adam": (lambda: FusedAdam(0.01), lambda: keras.optimizers.Adam(0.01)),
    "sgd_momentum": (lambda: FusedSGD(0.1, momentum=0.9),
                     lambda: keras.optimizers.SGD(0.1, momentum=0.9)),
    "sgd_nesterov": (lambda: FusedSGD(0.1, momentum=0.9, nesterov=True),
                     lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True)),
    "sgd": (lambda: FusedSGD(0.1), lambda: keras.optimizers.SGD(0.1)),
}


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
@pytest.mark.parametrize("name", sorted(FUSED_AND_KERAS))
def test_fused_updates_equal_keras_updates(name, mode):
    fused, plain = FUSED_AND_KERAS[name]
    expected = _train(plain(), "eager")
    for got, want in zip(_train(fused(), mode), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_the_built_optimizers_put_one_fused_op_per_variable_in_the_step():
    variables = [keras.Variable(np.ones((2, 2), np.float32)) for _ in range(3)]
    for options, op_type in (({}, "ResourceApplyAdam"),
                             ({"optimizer": "sgd"}, "ResourceApplyKerasMomentum"),
                             ({"optimizer": "sgd", "momentum": 0.0},
                              "ResourceApplyGradientDescent"),
                             ({"optimizer": "sgd", "l2_regularization": 1e-4},
                              "ResourceApplyKerasMomentum")):
        optimizer = build_optimizer(num_steps=10, **options)
        optimizer.build(variables)
        graph = tf.function(lambda: optimizer.apply_gradients(
            [(tf.ones((2, 2)), v) for v in variables])).get_concrete_function().graph
        types = [op.type for op in graph.get_operations()]
        assert types.count(op_type) == 3, (options, op_type)
