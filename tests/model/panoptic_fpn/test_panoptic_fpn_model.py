"""The Panoptic FPN model on a four-layer backbone: inference outputs, frozen
variables, a training forward pass with its losses and gradients, seeded
sampling, and a few SGD steps."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.model.panoptic_fpn.loss import INSTANCE_LOSSES, SEMANTIC_LOSS
from deeplab2.model.panoptic_fpn.model import OUTPUT_KEYS
from deeplab2.model.top_down.instance_targets import GT_VALID

from panoptic_fpn_testing import (FAMILY, SIZE, as_numpy, losses_and_gradients, small_model,
                                  synthetic_batch)


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.fixture(scope="module")
def batch(model):
    return synthetic_batch(model.model_config)


def test_inference_outputs(model, batch):
    outputs = as_numpy(model(batch[common.IMAGE], training=False))
    assert set(outputs) == set(OUTPUT_KEYS) == set(FAMILY.output_keys)
    detections = 20  # SMALL's max_detections
    expected = {
        common.SEMANTIC_LOGITS: ((2, *SIZE, 6), np.float32),
        common.DETECTION_BOXES: ((2, detections, 4), np.float32),
        common.DETECTION_SCORES: ((2, detections), np.float32),
        common.DETECTION_CLASSES: ((2, detections), np.int32),
        common.DETECTION_VALID: ((2, detections), np.int32),
        common.MASK_PROBABILITIES: ((2, detections, 28, 28), np.float32),
    }
    for key, (shape, dtype) in expected.items():
        assert outputs[key].shape == shape and outputs[key].dtype == dtype, key
    valid = outputs[common.DETECTION_VALID] == 1
    assert valid.any()
    scores, classes = outputs[common.DETECTION_SCORES], outputs[common.DETECTION_CLASSES]
    assert np.all(scores[valid] > 0.05) and np.all(scores[~valid] == 0)
    assert np.all((classes[valid] >= 1) & (classes[valid] <= 3)) and np.all(classes[~valid] == 0)
    boxes = outputs[common.DETECTION_BOXES]
    assert np.all(boxes >= 0) and np.all(boxes[..., [2, 3]] <= [SIZE[1], SIZE[0]])
    masks = outputs[common.MASK_PROBABILITIES]
    assert np.all((masks >= 0) & (masks <= 1)) and np.all(masks[~valid] == 0)


def test_other_sizes_are_refused(model):
    with pytest.raises(ValueError, match="multiples of 32"):
        model(np.zeros((1, 65, 96, 3), np.float32), training=False)


def test_training_needs_the_ground_truth(model, batch):
    with pytest.raises(ValueError, match="targets"):
        model(batch[common.IMAGE], training=True)


def test_frozen_batch_norm_and_stages_are_not_trainable(model):
    trainable = {v.path for v in model.trainable_variables}
    backbone = [v.path for v in model.variables if v.path.startswith("strided_conv/")]
    assert not [p for p in backbone if "/bn/" in p and p in trainable]
    # freeze_at 2: the res2 stage's convs are frozen, the later ones train.
    assert not [p for p in backbone if p.startswith("strided_conv/res2") and p in trainable]
    assert {p for p in backbone if p in trainable} == {
        f"strided_conv/res{level}_conv0/conv/kernel" for level in (3, 4, 5)}
    unfrozen = small_model(frozen_bn=False, freeze_at=0, bn_momentum=0.9)
    norms = [layer for layer in unfrozen._flatten_layers()
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and {layer.momentum for layer in norms} == {0.9}
    names = {v.path for v in unfrozen.trainable_variables}
    assert "strided_conv/res2_conv0/conv/kernel" in names
    assert "strided_conv/res2_conv0/bn/gamma" in names
    # Batch norm that trains is synchronized by default; frozen, it has nothing to sync.
    assert unfrozen.model_config.architecture["synchronized_bn"] is True
    assert model.model_config.architecture["synchronized_bn"] is False


def test_a_training_step_has_finite_losses_and_a_gradient_for_every_trainable_variable(
        model, batch):
    statistics = [v for v in model.variables if "moving_" in v.path]
    before = [v.numpy() for v in statistics]
    losses, gradients = losses_and_gradients(model, batch)
    assert set(losses) == {*INSTANCE_LOSSES, SEMANTIC_LOSS, "total_loss"}
    for name, value in losses.items():
        assert value.shape == (2,) and np.all(np.isfinite(value)) and np.all(value > 0), name
    weights = model.model_config.architecture
    expected = (weights["instance_loss_weight"] * sum(losses[k] for k in INSTANCE_LOSSES)
                + weights["semantic_loss_weight"] * losses[SEMANTIC_LOSS])
    np.testing.assert_allclose(losses["total_loss"], expected, rtol=1e-6)
    for variable, gradient in zip(model.trainable_variables, gradients):
        assert gradient is not None, variable.path
        gradient = tf.convert_to_tensor(gradient).numpy()
        assert np.all(np.isfinite(gradient)) and np.any(gradient != 0), variable.path
    # Frozen batch norm keeps its statistics in training.
    for variable, value in zip(statistics, before):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_sampling_follows_the_sample_seed(model, batch):
    first, _ = losses_and_gradients(model, batch)
    again, _ = losses_and_gradients(model, batch)
    reseeded = dict(batch, **{common.SAMPLE_SEED: batch[common.SAMPLE_SEED] + 1})
    other, _ = losses_and_gradients(model, reseeded)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["rpn_objectness_loss"], other["rpn_objectness_loss"])
    assert not np.array_equal(first["box_classification_loss"],
                              other["box_classification_loss"])


@pytest.mark.slow
def test_a_few_sgd_steps_on_one_batch_lower_the_loss():
    # About 30 s, most of it tracing the step.
    model = small_model(seed=1)
    batch = synthetic_batch(model.model_config)
    loss_fn = FAMILY.training_loss(model.model_config)
    optimizer = keras.optimizers.SGD(0.02, momentum=0.9)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            losses = loss_fn(batch, FAMILY.training_outputs(model, batch))
            total = tf.reduce_mean(losses["total_loss"])
        gradients = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return total

    totals = [float(step(batch)) for _ in range(12)]
    assert np.mean(totals[-3:]) < 0.85 * totals[0], totals


def test_images_without_things_or_with_only_crowd_train_with_finite_losses(model):
    """Image 0 is all stuff, image 1 stuff with one crowd region of boxes: no
    detection target anywhere, yet every loss and gradient is finite."""
    height, width = SIZE
    stuff = np.full(SIZE, 2 * 1000, np.int32)  # ground
    stuff[: height // 2] = 0  # sky
    crowd = stuff.copy()
    crowd[10:40, 20:60] = 4 * 1000  # box, instance 0: a crowd region
    config = model.model_config
    targets = FAMILY.training_targets(config)
    rng = np.random.default_rng(0)
    examples = []
    for index, label in enumerate((stuff, crowd)):
        example = {common.IMAGE: tf.constant(rng.uniform(0, 255, (*SIZE, 3)), tf.float32),
                   common.PANOPTIC_LABEL: tf.constant(label)}
        example.update(targets(example[common.PANOPTIC_LABEL]))
        example[common.SAMPLE_SEED] = tf.constant([0, index], tf.int32)
        examples.append(example)
    batch = {key: tf.stack([e[key] for e in examples]) for key in examples[0]}
    assert not np.any(batch[GT_VALID].numpy())  # crowd is no detection target
    losses, gradients = losses_and_gradients(model, batch)
    for name, value in losses.items():
        assert np.all(np.isfinite(value)), name
    assert all(np.all(np.isfinite(tf.convert_to_tensor(g).numpy()))
               for g in gradients if g is not None)
