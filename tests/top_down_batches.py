"""Training batches, one loss-and-gradient pass and a few SGD steps of a top-down
model, shared by the tests of the families built on Panoptic FPN's Mask R-CNN
(UPSNet, Seamless)."""
import keras
import numpy as np
import tensorflow as tf

from deeplab2 import common


def training_batch(family, config, scenes):
    """A batch of (image, panoptic label) `scenes` with the family's training
    targets and per-example sample seeds [0, index]."""
    targets = family.training_targets(config)
    examples = []
    for index, (image, panoptic) in enumerate(scenes):
        example = {common.IMAGE: tf.constant(image, tf.float32),
                   common.PANOPTIC_LABEL: tf.constant(panoptic)}
        example.update(targets(example[common.PANOPTIC_LABEL]))
        example[common.SAMPLE_SEED] = tf.constant([0, index], tf.int32)
        examples.append(example)
    return {key: tf.stack([e[key] for e in examples]) for key in examples[0]}


def crowd_only_batch(family, config, size):
    """One random image of `size` whose label is stuff (class 0) and a crowd of
    the first thing class (instance 0): no ground-truth instance."""
    info = config.dataset
    panoptic = np.zeros(size, np.int32)
    panoptic[20:40, 30:60] = info.thing_ids[0] * info.label_divisor
    image = np.random.default_rng(0).uniform(0, 255, (*size, 3))
    return training_batch(family, config, [(image, panoptic)])


def losses_and_gradients(family, model, batch):
    """(training outputs, per-image losses, {variable path: gradient of the
    mean total loss})."""
    loss_fn = family.training_loss(model.model_config)
    with tf.GradientTape() as tape:
        outputs = family.training_outputs(model, batch)
        losses = loss_fn(batch, outputs)
        total = tf.reduce_mean(losses["total_loss"])
    return outputs, losses, dict(zip([v.path for v in model.trainable_variables],
                                     tape.gradient(total, model.trainable_variables)))


def sgd_total_losses(family, model, batch, steps=12):
    """The mean total loss of each of `steps` SGD steps (lr 0.02, momentum 0.9)
    on the same batch."""
    optimizer = keras.optimizers.SGD(0.02, momentum=0.9)
    loss_fn = family.training_loss(model.model_config)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            total = tf.reduce_mean(loss_fn(batch, family.training_outputs(model, batch))
                                   ["total_loss"])
        optimizer.apply_gradients(zip(tape.gradient(total, model.trainable_variables),
                                      model.trainable_variables))
        return total

    return [float(step()) for _ in range(steps)]
