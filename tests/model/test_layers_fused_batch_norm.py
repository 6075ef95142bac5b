"""FusedBatchNormalization: Keras's batch norm, trained by the fused kernel.

Its training pass must give Keras's outputs, gradients and moving averages
(the fused kernel returns the unbiased variance, the moving average takes the
biased one), and every case the fused kernel does not cover must take Keras's
own pass. On two replicas a synchronized layer all-reduces its statistics in
two passes (run as a script, this file prints them from 2 logical CPUs); a
whole mirrored training step is checked by tests/training/test_distribution.py.
"""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.layers.fused_batch_norm import FusedBatchNormalization
from script_runs import script_report

SHAPE = (2, 9, 11, 5)


def _pair(dtype=None, **options):
    """A Keras batch norm and a fused one with the same (non-trivial) weights."""
    layers = (keras.layers.BatchNormalization(dtype=dtype, **options),
              FusedBatchNormalization(dtype=dtype, **options))
    for layer in layers:
        layer.build(SHAPE)
        if layer.scale:
            layer.gamma.assign(np.linspace(0.5, 2.0, SHAPE[-1]))
        if layer.center:
            layer.beta.assign(np.linspace(-1.0, 1.0, SHAPE[-1]))
        layer.moving_mean.assign(np.linspace(-0.3, 0.3, SHAPE[-1]))
        layer.moving_variance.assign(np.linspace(0.5, 1.5, SHAPE[-1]))
    return layers


def _inputs(seed=1):
    return tf.random.stateless_normal(SHAPE, seed=(seed, 0)) * 3.0 + 1.0


def _run(layer, x, training):
    """Output, gradients of a weighted sum (input, gamma, beta), moving averages.

    The weights vary per position: with one weight per channel the input's
    gradient would be zero (a normalized channel sums to a constant).
    """
    weights = tf.random.stateless_normal(SHAPE, seed=(7, 0))
    sources = [x] + [v for v in (layer.gamma, layer.beta) if v is not None]
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
    grads = tape.gradient(loss, sources)
    return (y, [g.numpy() for g in grads],
            layer.moving_mean.numpy(), layer.moving_variance.numpy())


def _relative(a, b):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.mark.parametrize("dtype, tolerance", [(None, 1e-5), ("mixed_bfloat16", 1e-2)])
@pytest.mark.parametrize("options", [
    dict(momentum=0.9, synchronized=True),
    dict(momentum=0.5, epsilon=1e-5, center=False, scale=False),
])
def test_the_training_pass_equals_keras_batch_norm(dtype, tolerance, options):
    keras_bn, fused_bn = _pair(dtype, **options)
    x = _inputs()
    expected, got = _run(keras_bn, x, True), _run(fused_bn, x, True)
    assert got[0].dtype == expected[0].dtype
    assert _relative(got[0], expected[0]) < tolerance
    for g, e in zip(got[1], expected[1]):
        assert _relative(g, e) < tolerance
    # The moving averages are float32 in both precisions: both layers take the
    # statistics of the same (in mixed precision bfloat16-rounded) input in float32.
    assert _relative(got[2], expected[2]) < 1e-5
    assert _relative(got[3], expected[3]) < 1e-5
    # Not the initial values: the batch statistics moved them.
    assert np.abs(got[3] - np.linspace(0.5, 1.5, SHAPE[-1])).min() > 0.1


def test_the_moving_variance_takes_the_biased_batch_variance():
    """Worked by hand: momentum 0.5 averages the old and the batch statistics."""
    layer = FusedBatchNormalization(momentum=0.5)
    x = tf.reshape(tf.constant([1.0, 2.0, 3.0, 6.0]), (1, 2, 2, 1))
    layer(x, training=True)
    # mean 3, biased variance (4 + 1 + 0 + 9) / 4 = 3.5 (the unbiased one is 14 / 3).
    np.testing.assert_allclose(layer.moving_mean.numpy(), [0.5 * 0.0 + 0.5 * 3.0])
    np.testing.assert_allclose(layer.moving_variance.numpy(), [0.5 * 1.0 + 0.5 * 3.5],
                               rtol=1e-6)


@pytest.mark.parametrize("case", ["inference", "frozen", "masked"])
def test_other_passes_are_keras_own(case):
    keras_bn, fused_bn = _pair(momentum=0.9)
    x = _inputs(2)
    mask = None
    if case == "frozen":
        keras_bn.trainable = fused_bn.trainable = False
    if case == "masked":
        mask = tf.random.stateless_uniform(SHAPE[:3], seed=(3, 0)) > 0.3
    training = case != "inference"
    expected = keras_bn(x, training=training, mask=mask)
    got = fused_bn(x, training=training, mask=mask)
    np.testing.assert_array_equal(got.numpy(), expected.numpy())
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_array_equal(getattr(fused_bn, name).numpy(),
                                      getattr(keras_bn, name).numpy())


def test_an_empty_batch_moves_the_averages_as_keras_does():
    """The fused kernel's statistics of no pixels are NaN; the moving averages
    must stay finite and move towards zero as Keras's synchronized layer
    moves them (its unsynchronized one averages to NaN)."""
    keras_bn, fused_bn = _pair(momentum=0.9, synchronized=True)
    x = tf.zeros((0,) + SHAPE[1:])
    assert fused_bn(x, training=True).shape == x.shape
    keras_bn(x, training=True)
    for name in ("moving_mean", "moving_variance"):
        got, expected = getattr(fused_bn, name).numpy(), getattr(keras_bn, name).numpy()
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def _op_types(layer, x, training, mask=None):
    graph = tf.function(lambda t: layer(t, training=training, mask=mask)).get_concrete_function(
        tf.TensorSpec(x.shape, x.dtype)).graph
    return {op.type for op in graph.get_operations()}


def test_only_the_training_pass_without_mask_runs_the_fused_kernel():
    _, fused_bn = _pair(momentum=0.9)
    x = _inputs()
    assert "FusedBatchNormV3" in _op_types(fused_bn, x, True)
    assert "FusedBatchNormV3" not in _op_types(fused_bn, x, False)
    assert "FusedBatchNormV3" not in _op_types(fused_bn, x, True, mask=tf.ones(SHAPE[:3], bool))


@pytest.mark.parametrize("shape, axis", [((6, 5), -1), ((2, 5, 9, 11), 1)])
def test_inputs_the_kernel_does_not_take_get_keras_own_training_pass(shape, axis):
    keras_bn = keras.layers.BatchNormalization(axis=axis, momentum=0.9)
    fused_bn = FusedBatchNormalization(axis=axis, momentum=0.9)
    x = tf.random.stateless_normal(shape, seed=(4, 0)) * 2.0 + 0.5
    assert "FusedBatchNormV3" not in _op_types(fused_bn, x, True)
    np.testing.assert_array_equal(fused_bn(x, training=True).numpy(),
                                  keras_bn(x, training=True).numpy())
    np.testing.assert_array_equal(fused_bn.moving_variance.numpy(),
                                  keras_bn.moving_variance.numpy())


def test_the_config_round_trips_to_the_fused_layer():
    layer = FusedBatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=True, name="bn")
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(copy) is FusedBatchNormalization
    assert (copy.momentum, copy.epsilon, copy.synchronized) == (0.9, 1e-5, True)


def _large_mean_small_variance():
    """Channel 0 is 1000 + 0.01 N(0, 1): E[x^2] - E[x]^2 in float32 loses it."""
    x = np.random.default_rng(0).standard_normal(SHAPE).astype("float32")
    x[..., 0] = 1000.0 + 1e-2 * x[..., 0]
    return x


def test_two_replicas_all_reduce_the_statistics_in_two_passes():
    report = script_report(__file__, timeout=300)
    x = _large_mean_small_variance().astype(np.float64).reshape(-1, SHAPE[-1])
    assert report["num_replicas"] == 2
    np.testing.assert_allclose(report["fused"]["moving_mean"], x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(report["fused"]["moving_variance"], x.var(0), rtol=1e-4)
    # Keras's one-pass synchronized variance of channel 0 is off by far more.
    assert abs(report["keras"]["moving_variance"][0] - x.var(0)[0]) > 0.5 * x.var(0)[0]


if __name__ == "__main__":
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")])
    batch = tf.data.Dataset.from_tensors(_large_mean_small_variance())
    report = {"num_replicas": strategy.num_replicas_in_sync}
    for name, cls in (("fused", FusedBatchNormalization),
                      ("keras", keras.layers.BatchNormalization)):
        with strategy.scope():
            layer = cls(momentum=0.0, synchronized=True)
            layer.build(SHAPE)
        step = tf.function(lambda b, layer=layer: strategy.run(
            lambda x: layer(x, training=True), args=(b,)))
        for distributed in strategy.experimental_distribute_dataset(batch):
            step(distributed)
        report[name] = {v: getattr(layer, v).numpy().tolist()
                        for v in ("moving_mean", "moving_variance")}
    print(json.dumps(report))
